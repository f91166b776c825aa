/* libFuzzer target: ferry_data_decode, checked against the rules it enforces (R-DATA-1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/core.h"
#include "ferry/wire.h"

/* Compiled in so that libFuzzer sees the codec's coverage (see fuzz_frame.c). */
#include "wire/data.c" /* NOLINT(bugprone-suspicious-include) */

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            (void)fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ferry_data d;
    uint8_t hdr[FERRY_DATA_HDR_LEN];
    int rc = ferry_data_decode(data, size, &d);
    int want;

    /* The expected verdict, computed independently of the decoder. */
    if (size < FERRY_DATA_HDR_LEN)
        want = FERRY_EPROTO;
    else if (size - FERRY_DATA_HDR_LEN > FERRY_DATA_MAX)
        want = FERRY_ETOOBIG;
    else
        want = ferry_get_be64(data + FERRY_TID_LEN) > UINT64_MAX - (size - FERRY_DATA_HDR_LEN)
                   ? FERRY_EPROTO
                   : 0;
    FUZZ_CHECK(rc == want);
    if (rc != 0) {
        FUZZ_CHECK(d.bytes == NULL && d.len == 0 && d.offset == 0);
        return 0;
    }
    FUZZ_CHECK(d.len == size - FERRY_DATA_HDR_LEN);
    FUZZ_CHECK(d.len <= FERRY_DATA_MAX);
    FUZZ_CHECK(d.bytes == data + FERRY_DATA_HDR_LEN);
    FUZZ_CHECK(UINT64_MAX - d.offset >= d.len);
    ferry_data_header_encode(hdr, d.tid, d.offset);
    FUZZ_CHECK(memcmp(hdr, data, FERRY_DATA_HDR_LEN) == 0);
    return 0;
}
