/*
 * libFuzzer target: ferry_cmd_decode over the whole input. What decodes must
 * re-encode, decode again to the same type, id and body, and survive the
 * field readers the handlers use.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/core.h"
#include "ferry/wire.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            (void)fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_readers(const json_t *body)
{
    const char *s;
    uint64_t u;
    int64_t i;
    int b;
    uint8_t tid[FERRY_TID_LEN];

    if (ferry_msg_str(body, "path", 4096, &s) == 0)
        FUZZ_CHECK(s != NULL && strlen(s) <= 4096);
    else
        FUZZ_CHECK(s == NULL);
    if (ferry_msg_str_opt(body, "hash", 64, &s) == 0)
        FUZZ_CHECK(s == NULL || strlen(s) <= 64);
    if (ferry_msg_u64(body, "size", UINT64_C(1) << 40, &u) == 0)
        FUZZ_CHECK(u <= UINT64_C(1) << 40);
    else
        FUZZ_CHECK(u == 0);
    if (ferry_msg_i64_opt(body, "offset", -5, 5, 0, &i) == 0)
        FUZZ_CHECK(i >= -5 && i <= 5);
    if (ferry_msg_bool_opt(body, "ok", 0, &b) == 0)
        FUZZ_CHECK(b == 0 || b == 1);
    (void)ferry_msg_tid(body, "tid", tid);
    /* R-CHUNK-16: what the range reader accepts is ascending and apart. */
    {
        uint32_t(*r)[2] = NULL;
        size_t n = 0, k;
        if (ferry_msg_ranges(json_object_get(body, "chunks"), 1024, &r, &n) == 0) {
            FUZZ_CHECK(n >= 1 && n <= 1024);
            for (k = 0; k < n; k++) {
                FUZZ_CHECK(r[k][1] >= 1 && (uint64_t)r[k][0] + r[k][1] <= UINT32_MAX);
                FUZZ_CHECK(k == 0 || r[k][0] > r[k - 1][0] + r[k - 1][1]);
            }
            ferry_free(r);
        } else {
            FUZZ_CHECK(r == NULL && n == 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ferry_cmd c, c2;
    uint8_t *buf = NULL;
    size_t need;
    ssize_t n;
    int rc;

    rc = ferry_cmd_decode(data, size, &c);
    if (rc != 0) {
        FUZZ_CHECK(rc == FERRY_EPROTO || rc == FERRY_EVERSION || rc == -ENOMEM);
        FUZZ_CHECK(c.body == NULL);
        FUZZ_CHECK(c.id[0] == '\0' || ferry_uuid_valid(c.id));
        return 0;
    }
    FUZZ_CHECK(json_is_object(c.body));
    FUZZ_CHECK(ferry_msg_name(c.type) != NULL);
    FUZZ_CHECK(ferry_uuid_valid(c.id));
    check_readers(c.body);

    need = json_dumpb(c.body, NULL, 0, JSON_COMPACT);
    FUZZ_CHECK(need > 0);
    buf = malloc(FERRY_CMD_HDR_LEN + need);
    FUZZ_CHECK(buf != NULL);
    /* One byte short must be refused, not truncated. */
    FUZZ_CHECK(ferry_cmd_encode(c.type, c.body, buf, FERRY_CMD_HDR_LEN + need - 1) ==
               FERRY_ETOOBIG);
    n = ferry_cmd_encode(c.type, c.body, buf, FERRY_CMD_HDR_LEN + need);
    FUZZ_CHECK(n == (ssize_t)(FERRY_CMD_HDR_LEN + need));

    rc = ferry_cmd_decode(buf, (size_t)n, &c2);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(c2.type == c.type);
    FUZZ_CHECK(strcmp(c2.id, c.id) == 0);
    FUZZ_CHECK(json_equal(c2.body, c.body));

    ferry_cmd_cleanup(&c2);
    ferry_cmd_cleanup(&c);
    free(buf);
    return 0;
}
