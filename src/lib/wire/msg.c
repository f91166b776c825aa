/* Command codec: msgtype i32 BE | one JSON object (docs/protocol.md, R-CMD-*, R-MSG-*). */
#include <errno.h>
#include <string.h>

#include "ferry/core.h"
#include "ferry/wire.h"

/* R-CMD-2 (docs/protocol.md section 4): "version" is at most 16 bytes. */
#define MSG_VERSION_MAXLEN 16

const char *ferry_msg_name(int32_t type)
{
    switch (type) {
    case FERRY_MSG_CONNECT:
        return "Connect";
    case FERRY_MSG_ACCEPT:
        return "Accept";
    case FERRY_MSG_REJECT:
        return "Reject";
    case FERRY_MSG_DISCONNECT:
        return "Disconnect";
    case FERRY_MSG_PING:
        return "Ping";
    case FERRY_MSG_PONG:
        return "Pong";
    case FERRY_MSG_ERROR:
        return "Error";
    case FERRY_MSG_OK:
        return "Ok";
    case FERRY_MSG_SIGNUP:
        return "Signup";
    case FERRY_MSG_LOGIN:
        return "Login";
    case FERRY_MSG_CHANGEPWD:
        return "ChangePwd";
    case FERRY_MSG_LOGOUT:
        return "Logout";
    case FERRY_MSG_SESSION:
        return "Session";
    case FERRY_MSG_WHOAMI:
        return "Whoami";
    case FERRY_MSG_IDENTITY:
        return "Identity";
    case FERRY_MSG_DEVICE_LIST:
        return "DeviceList";
    case FERRY_MSG_DEVICES:
        return "Devices";
    case FERRY_MSG_DEVICE_REVOKE:
        return "DeviceRevoke";
    case FERRY_MSG_DIRINFO:
        return "DirInfo";
    case FERRY_MSG_DIRPAGE:
        return "DirPage";
    case FERRY_MSG_REMOVE:
        return "Remove";
    case FERRY_MSG_MOVE:
        return "Move";
    case FERRY_MSG_MKDIR:
        return "Mkdir";
    case FERRY_MSG_UPLOAD:
        return "Upload";
    case FERRY_MSG_DOWNLOAD:
        return "Download";
    case FERRY_MSG_TRANSFER:
        return "Transfer";
    case FERRY_MSG_TRANSFER_CANCEL:
        return "TransferCancel";
    case FERRY_MSG_TRANSFER_COMPLETE:
        return "TransferComplete";
    case FERRY_MSG_COMMITTED:
        return "Committed";
    case FERRY_MSG_CHUNKED_UPLOAD:
        return "ChunkedUpload";
    case FERRY_MSG_CHUNK_NEED:
        return "ChunkNeed";
    case FERRY_MSG_CHUNK_STORED:
        return "ChunkStored";
    case FERRY_MSG_COMMAND:
        return "Command"; /* known, so that the handler can refuse it by name (R-MSG-4) */
    default:
        return NULL;
    }
}

/* Reads a big-endian i32 without the implementation-defined uint32 -> int32 conversion. */
static int32_t get_be32s(const uint8_t *p)
{
    uint32_t u = ferry_get_be32(p);

    if (u <= INT32_MAX)
        return (int32_t)u;
    return (int32_t)(u - 0x80000000u) - INT32_MAX - 1;
}

/*
 * R-CMD-3: returns 1 if no bracket in p nests deeper than FERRY_JSON_DEPTH_MAX.
 * Runs before jansson so that a deep document costs us a linear scan that stops
 * at the first bracket too many, never a deep recursion. Brackets inside strings
 * do not count; a backslash in a string hides the character after it.
 */
static int json_depth_ok(const uint8_t *p, size_t len)
{
    size_t i, depth = 0;
    int in_str = 0, esc = 0;

    for (i = 0; i < len; i++) {
        uint8_t c = p[i];

        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            break;
        case '[':
        case '{':
            if (++depth > FERRY_JSON_DEPTH_MAX)
                return 0;
            break;
        case ']':
        case '}':
            /* Unbalanced closers are jansson's to refuse; just do not wrap. */
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
    }
    return 1;
}

/*
 * R-CMD-2: "version" is "1" or "1.N" (N decimal digits). A well-formed "M" or
 * "M.N" of another major is FERRY_EVERSION, which the peer gets as Error 3 (or
 * Reject 3 for a Connect); anything else is malformed: FERRY_EPROTO.
 */
static int version_check(const char *s)
{
    size_t i = 0, major, minor;

    while (s[i] >= '0' && s[i] <= '9')
        i++;
    major = i;
    if (s[i] == '.') {
        minor = ++i;
        while (s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == minor)
            return FERRY_EPROTO;
    }
    if (major == 0 || s[i] != '\0')
        return FERRY_EPROTO;
    if (major != 1 || s[0] != '1')
        return FERRY_EVERSION;
    return 0;
}

/*
 * Decodes a command payload. On success out->body is owned by the caller
 * (ferry_cmd_cleanup). On error out->body is NULL, out->type holds the
 * msgtype if 4 bytes were there, and out->id holds the message's id if the
 * JSON parsed and carried a valid one, so that the Error reply can name it.
 * Returns 0, FERRY_EPROTO, FERRY_EVERSION (a well-formed "version" whose
 * major part is not 1), or -ENOMEM when jansson reports running out of
 * memory (2.14 reports most allocation failures as syntax errors, which come
 * back as FERRY_EPROTO).
 */
int ferry_cmd_decode(const uint8_t *p, size_t len, struct ferry_cmd *out)
{
    json_error_t jerr;
    json_t *body = NULL;
    const char *s;
    int rc;

    *out = (struct ferry_cmd){0};
    if (len < FERRY_CMD_HDR_LEN) {
        rc = FERRY_EPROTO; /* R-CMD-1 */
        goto out;
    }
    out->type = get_be32s(p);
    p += FERRY_CMD_HDR_LEN;
    len -= FERRY_CMD_HDR_LEN;
    if (!json_depth_ok(p, len)) {
        rc = FERRY_EPROTO; /* R-CMD-3 */
        goto out;
    }
    /*
     * R-CMD-2, R-CMD-3: without JSON_DECODE_ANY the top level must be an
     * object or array, without JSON_DISABLE_EOF_CHECK only whitespace may
     * follow it, and without JSON_ALLOW_NUL "\u0000" is refused; jansson
     * always refuses invalid UTF-8.
     */
    body = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL) {
        rc = json_error_code(&jerr) == json_error_out_of_memory ? -ENOMEM : FERRY_EPROTO;
        goto out;
    }
    if (!json_is_object(body)) {
        rc = FERRY_EPROTO; /* R-CMD-2 */
        goto out;
    }
    if ((rc = ferry_msg_str(body, "id", FERRY_UUID_STR_LEN, &s)) != 0)
        goto out;
    if (!ferry_uuid_valid(s)) {
        rc = FERRY_EPROTO; /* R-CMD-2 */
        goto out;
    }
    memcpy(out->id, s, FERRY_UUID_STR_LEN + 1);
    /* R-CMD-2: the version first, so a peer of another major learns that rather than Error 1. */
    if ((rc = ferry_msg_str(body, "version", MSG_VERSION_MAXLEN, &s)) != 0 ||
        (rc = version_check(s)) != 0)
        goto out;
    /* R-CMD-1, R-CMD-4: judged after the id is known, so the refusal can reference it. */
    if (ferry_msg_name(out->type) == NULL) {
        rc = FERRY_EPROTO;
        goto out;
    }
    out->body = body;
    body = NULL;
    rc = 0;
out:
    json_decref(body);
    return rc;
}

void ferry_cmd_cleanup(struct ferry_cmd *c)
{
    json_decref(c->body);
    c->body = NULL;
}

/*
 * Encodes type and body into out. The size is asked of jansson first, so a
 * body that does not fit leaves out untouched instead of truncated. Returns
 * the payload length, FERRY_ETOOBIG, or FERRY_EPROTO if body is not an
 * object or cannot be serialised.
 */
ssize_t ferry_cmd_encode(int32_t type, const json_t *body, uint8_t *out, size_t cap)
{
    size_t need;

    if (!json_is_object(body))
        return FERRY_EPROTO; /* R-CMD-2: we send only what we would accept */
    if (cap < FERRY_CMD_HDR_LEN)
        return FERRY_ETOOBIG;
    /*
     * One pass: json_dumpb says how long the text is even when it did not
     * fit, and a body too long for cap is an error anyway. Measuring first
     * doubled the cost of every message.
     */
    need =
        json_dumpb(body, (char *)(out + FERRY_CMD_HDR_LEN), cap - FERRY_CMD_HDR_LEN, JSON_COMPACT);
    if (need == 0)
        return FERRY_EPROTO;
    if (need > cap - FERRY_CMD_HDR_LEN)
        return FERRY_ETOOBIG;
    ferry_put_be32(out, (uint32_t)type);
    return (ssize_t)(FERRY_CMD_HDR_LEN + need);
}

int ferry_msg_str(const json_t *o, const char *key, size_t maxlen, const char **out)
{
    const json_t *v;
    const char *s;
    size_t n;

    *out = NULL;
    v = json_object_get(o, key);
    if (!json_is_string(v))
        return FERRY_EPROTO;
    s = json_string_value(v);
    n = json_string_length(v);
    /* Length first: a NUL would hide bytes from strlen() but not from the cap. */
    if (n > maxlen || memchr(s, '\0', n) != NULL)
        return FERRY_EPROTO;
    *out = s;
    return 0;
}

int ferry_msg_str_opt(const json_t *o, const char *key, size_t maxlen, const char **out)
{
    *out = NULL;
    if (json_object_get(o, key) == NULL)
        return 0;
    return ferry_msg_str(o, key, maxlen, out);
}

int ferry_msg_u64(const json_t *o, const char *key, uint64_t max, uint64_t *out)
{
    const json_t *v;
    json_int_t i;

    *out = 0;
    v = json_object_get(o, key);
    /* Reals are refused: 1e3 or 1.5 as a size or offset is a peer bug. */
    if (!json_is_integer(v))
        return FERRY_EPROTO;
    i = json_integer_value(v);
    if (i < 0 || (uint64_t)i > max)
        return FERRY_EPROTO;
    *out = (uint64_t)i;
    return 0;
}

int ferry_msg_i64_opt(const json_t *o, const char *key, int64_t min, int64_t max, int64_t dflt,
                      int64_t *out)
{
    const json_t *v;
    int64_t i;

    *out = 0;
    v = json_object_get(o, key);
    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return FERRY_EPROTO;
    i = (int64_t)json_integer_value(v);
    if (i < min || i > max)
        return FERRY_EPROTO;
    *out = i;
    return 0;
}

int ferry_msg_bool_opt(const json_t *o, const char *key, int dflt, int *out)
{
    const json_t *v;

    *out = 0;
    v = json_object_get(o, key);
    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return FERRY_EPROTO;
    *out = json_is_true(v);
    return 0;
}

int ferry_msg_tid(const json_t *o, const char *key, uint8_t tid[static FERRY_TID_LEN])
{
    uint8_t tmp[FERRY_TID_LEN];
    const char *s;
    int rc;

    memset(tid, 0, FERRY_TID_LEN);
    if ((rc = ferry_msg_str(o, key, 2 * (size_t)FERRY_TID_LEN, &s)) != 0)
        return rc;
    /* Exactly 32 hex digits; ferry_hex_decode checks the length itself. */
    if (ferry_hex_decode(s, tmp, FERRY_TID_LEN) != 0)
        return FERRY_EPROTO;
    memcpy(tid, tmp, FERRY_TID_LEN);
    return 0;
}

int ferry_msg_tids(const json_t *a, size_t max, uint8_t (*out)[FERRY_TID_LEN], size_t *n)
{
    const char *s;
    size_t i, cnt;

    *n = 0;
    if (!json_is_array(a) || (cnt = json_array_size(a)) == 0 || cnt > max)
        return FERRY_EPROTO;
    for (i = 0; i < cnt; i++) {
        s = json_string_value(json_array_get(a, i));
        /* Exactly 32 hex digits; ferry_hex_decode checks the length itself. */
        if (s == NULL || ferry_hex_decode(s, out[i], FERRY_TID_LEN) != 0)
            return FERRY_EPROTO;
    }
    *n = cnt;
    return 0;
}

/*
 * R-CHUNK-16: [first, count] pairs, ascending, neither overlapping nor
 * touching, count >= 1, first + count within 32 bits, 1..max of them.
 * Whether they fit a list is the caller's question.
 */
int ferry_msg_ranges(const json_t *a, size_t max, uint32_t (**out)[2], size_t *n)
{
    uint32_t(*r)[2] = NULL;
    uint64_t next = 0;
    size_t i, cnt;
    json_int_t first, count;
    const json_t *p;

    *out = NULL;
    *n = 0;
    /* The count is checked before anything is allocated. */
    if (!json_is_array(a) || (cnt = json_array_size(a)) == 0 || cnt > max)
        return FERRY_EPROTO;
    if ((r = ferry_calloc(cnt, sizeof(*r))) == NULL)
        return -ENOMEM;
    for (i = 0; i < cnt; i++) {
        p = json_array_get(a, i);
        if (!json_is_array(p) || json_array_size(p) != 2 ||
            !json_is_integer(json_array_get(p, 0)) || !json_is_integer(json_array_get(p, 1)))
            goto bad;
        first = json_integer_value(json_array_get(p, 0));
        count = json_integer_value(json_array_get(p, 1));
        /* Strictly past the previous range's end: no overlap, no touching. */
        if (first < 0 || count < 1 || first > UINT32_MAX || count > UINT32_MAX ||
            (i > 0 && (uint64_t)first <= next) || (uint64_t)first + (uint64_t)count > UINT32_MAX)
            goto bad;
        r[i][0] = (uint32_t)first;
        r[i][1] = (uint32_t)count;
        next = (uint64_t)first + (uint64_t)count;
    }
    *out = r;
    *n = cnt;
    return 0;
bad:
    ferry_free(r);
    return FERRY_EPROTO;
}
