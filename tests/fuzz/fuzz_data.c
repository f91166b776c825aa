/*
 * libFuzzer target: the payload decoders of data frames (R-DATA-1) and of file
 * frames (R-FILE-2), each on the whole input and checked against the rules it
 * enforces, with the verdict computed independently of the decoder.
 */
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

/* R-FILE-2: a file payload: at least the 73-byte header, at most a frame, flags 0 or 1. */
static void check_file(const uint8_t *data, size_t size)
{
    static const uint8_t zero[32];
    struct ferry_file_frame ff;
    uint8_t hdr[FERRY_FILE_HDR_LEN];
    int rc = ferry_file_frame_decode(data, size, &ff);
    int want;

    if (size < FERRY_FILE_HDR_LEN || size > FERRY_FRAME_PAYLOAD_MAX)
        want = FERRY_EPROTO;
    else
        want = data[40] == 0 || data[40] == 1 ? 0 : FERRY_EPROTO;
    FUZZ_CHECK(rc == want);
    if (rc != 0) {
        FUZZ_CHECK(ff.bytes == NULL && ff.len == 0 && ff.mtime == 0 && ff.exec == 0);
        FUZZ_CHECK(memcmp(ff.ref, zero, sizeof(ff.ref)) == 0);
        FUZZ_CHECK(memcmp(ff.tid, zero, sizeof(ff.tid)) == 0);
        FUZZ_CHECK(memcmp(ff.sha256, zero, sizeof(ff.sha256)) == 0);
        return;
    }
    FUZZ_CHECK(ff.len == size - FERRY_FILE_HDR_LEN);
    FUZZ_CHECK(ff.len <= FERRY_FILE_DATA_MAX);
    FUZZ_CHECK(ff.bytes == data + FERRY_FILE_HDR_LEN);
    FUZZ_CHECK(ff.exec == data[40]);
    FUZZ_CHECK(ff.mtime == (int64_t)ferry_get_be64(data + 32));
    /* The header encodes back to the bytes it was decoded from. */
    ferry_file_frame_header_encode(hdr, ff.ref, ff.tid, ff.mtime, ff.exec, ff.sha256);
    FUZZ_CHECK(memcmp(hdr, data, FERRY_FILE_HDR_LEN) == 0);
}

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
    check_file(data, size);
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
