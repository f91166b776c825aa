/*
 * Error codes shared by every ferry module, and their names on the wire.
 * Nothing here owns anything: codes are plain negative integers.
 */
#ifndef FERRY_ERR_H
#define FERRY_ERR_H

/*
 * Functions return 0 on success, -errno for system errors, and one of the
 * codes below (all under -4096, so they never collide with errno) for
 * ferry's own failures. ferry_strerror() reads both kinds.
 */
enum {
    FERRY_EPROTO = -5001,    /* malformed frame or message */
    FERRY_ETOOBIG = -5002,   /* a length or count over its cap */
    FERRY_EVERSION = -5003,  /* unknown protocol version */
    FERRY_EAUTH = -5004,     /* authentication failed or required */
    FERRY_ENOTFOUND = -5005, /* no such file, user, session or transfer */
    FERRY_EEXIST = -5006,    /* target exists */
    FERRY_EPATH = -5007,     /* path name refused */
    FERRY_ENOSPACE = -5008,  /* disk full or quota reached */
    FERRY_EBUSY = -5009,     /* rate limited or too many connections */
    FERRY_EINTERNAL = -5010, /* server-side fault */
    FERRY_ENOTDIR = -5011,   /* a path component is not a directory */
    FERRY_EISDIR = -5012,    /* a directory where a file was expected */
    FERRY_ECANCELED = -5013, /* operation cancelled or connection closed */
    FERRY_EHASH = -5014,     /* content did not match its hash */
    FERRY_ETIMEDOUT = -5015, /* peer silent or too slow */
    FERRY_EPIN = -5016,      /* server identity not pinned or changed */
    FERRY_EDENIED = -5017,   /* not allowed (signup closed, wrong user) */
    FERRY_ENOTEMPTY = -5018, /* directory not empty */
    FERRY_EUSAGE = -5019,    /* bad command-line usage */
    FERRY_EQUOTA = -5020,    /* the user's quota would be exceeded */
};

/* Returns a static, human-readable string for any ferry or errno code. */
const char *ferry_strerror(int rc);

/*
 * Wire error codes (docs/protocol.md, "Error codes"): the positive numbers
 * carried in an Error message. They map one to one onto the codes above.
 */
int ferry_err_to_wire(int rc);
int ferry_err_from_wire(int code);

#endif
