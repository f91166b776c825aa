/* libFuzzer target for ferry_path_normalize and ferry_name_valid (R-PATH-1..3). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/core.h"
#include "ferry/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * An independent UTF-8 check written the other way round from path.c: decode
 * each sequence to a code point, then reject overlong forms, surrogates and
 * anything above U+10FFFF. The two must agree on every accepted output.
 */
static int utf8_valid_by_decoding(const uint8_t *p, size_t n)
{
    size_t i = 0, k, need;
    uint32_t cp;

    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if ((p[i] & 0xe0) == 0xc0) {
            need = 1;
            cp = p[i] & 0x1fu;
        } else if ((p[i] & 0xf0) == 0xe0) {
            need = 2;
            cp = p[i] & 0x0fu;
        } else if ((p[i] & 0xf8) == 0xf0) {
            need = 3;
            cp = p[i] & 0x07u;
        } else {
            return 0;
        }
        if (n - i - 1 < need)
            return 0;
        for (k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3fu);
        }
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000))
            return 0;
        if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return 0;
        i += need + 1;
    }
    return 1;
}

/* Aborts (a libFuzzer crash) when an accepted path breaks one of the R-PATH properties. */
static void check_accepted(const uint8_t *data, size_t size, const char *out)
{
    char again[FERRY_PATH_MAX + 1];
    size_t n = strlen(out), i, depth = 0, skip = 0;

    if (n > FERRY_PATH_MAX)
        abort();
    /* The output is the input minus at most one leading and one trailing '/'. */
    if (size > 0 && data[0] == '/')
        skip = 1;
    if (n > size - skip || memcmp(out, data + skip, n) != 0)
        abort();
    if (size - skip - n > 1 || (size - skip - n == 1 && data[size - 1] != '/'))
        abort();
    if (!utf8_valid_by_decoding((const uint8_t *)out, n))
        abort();
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];

        /* R-PATH-3. The NUL check also proves out held no byte past strlen. */
        if (c < 0x20 || c == 0x7f || c == '\\')
            abort();
    }
    if (n > 0) {
        size_t start = 0;

        for (i = 0; i <= n; i++) {
            if (i < n && out[i] != '/')
                continue;
            /* R-PATH-1: no empty, "." or ".." component; R-PATH-2: name cap. */
            if (i == start || i - start > FERRY_NAME_MAX)
                abort();
            if (out[start] == '.' && (i - start == 1 || (i - start == 2 && out[start + 1] == '.')))
                abort();
            if (ferry_name_valid(out + start, i - start) != 0)
                abort();
            depth++;
            start = i + 1;
        }
    }
    if (depth > FERRY_PATH_DEPTH_MAX)
        abort();
    /* Idempotent: the normal form normalises to itself. */
    if (ferry_path_normalize(out, n, again, sizeof(again)) != 0 || strcmp(again, out) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[FERRY_PATH_MAX + 1];
    int rc, nrc;

    rc = ferry_path_normalize((const char *)data, size, out, sizeof(out));
    if (rc == 0) {
        check_accepted(data, size, out);
    } else if (rc != FERRY_EPATH || out[0] != '\0') {
        abort(); /* only one refusal code, and a refusal leaves out empty */
    }
    /* A single name is valid exactly when it normalises to itself with one component. */
    nrc = ferry_name_valid((const char *)data, size);
    if (nrc != 0 && nrc != FERRY_EPATH)
        abort();
    if (nrc == 0 && (rc != 0 || memchr(data, '/', size) != NULL || strlen(out) != size))
        abort();
    return 0;
}
