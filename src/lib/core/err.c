/* Error strings and the mapping between local codes and wire error codes. */
#include <string.h>

#include "ferry/err.h"

static const struct {
    int rc;
    int wire;
    const char *msg;
} errtab[] = {
    {FERRY_EPROTO, 1, "protocol error"},
    {FERRY_ETOOBIG, 2, "size over limit"},
    {FERRY_EVERSION, 3, "unsupported protocol version"},
    {FERRY_EAUTH, 4, "authentication failed"},
    {FERRY_ENOTFOUND, 5, "not found"},
    {FERRY_EEXIST, 6, "already exists"},
    {FERRY_EPATH, 7, "invalid path name"},
    {FERRY_ENOSPACE, 8, "no space left on the server"},
    {FERRY_EBUSY, 9, "too many requests, try again later"},
    {FERRY_EINTERNAL, 10, "internal server error"},
    {FERRY_ENOTDIR, 11, "not a directory"},
    {FERRY_EISDIR, 12, "is a directory"},
    {FERRY_ECANCELED, 13, "cancelled"},
    {FERRY_EHASH, 14, "content hash mismatch"},
    {FERRY_ETIMEDOUT, 15, "timed out"},
    {FERRY_EPIN, 16, "server identity mismatch"},
    {FERRY_EDENIED, 17, "permission denied"},
    {FERRY_ENOTEMPTY, 18, "directory not empty"},
    {FERRY_EUSAGE, 19, "invalid value"},
    {FERRY_EQUOTA, 20, "quota exceeded"},
};

const char *ferry_strerror(int rc)
{
    size_t i;

    if (rc == 0)
        return "success";
    for (i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
        if (errtab[i].rc == rc)
            return errtab[i].msg;
    if (rc < 0 && rc > -4096)
        return strerror(-rc);
    return "unknown error";
}

int ferry_err_to_wire(int rc)
{
    size_t i;

    for (i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
        if (errtab[i].rc == rc)
            return errtab[i].wire;
    return 10; /* any system error is internal to the sender */
}

int ferry_err_from_wire(int code)
{
    size_t i;

    for (i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
        if (errtab[i].wire == code)
            return errtab[i].rc;
    return FERRY_EINTERNAL;
}
