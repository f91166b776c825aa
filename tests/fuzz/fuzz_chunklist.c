/*
 * libFuzzer target: chunk lists as a server receives them (R-CHUNK-2, R-CHUNK-3).
 * The first 8 input bytes are the file size (big-endian); the rest, cut down
 * to whole 36-byte entries, is the list. The verdict of
 * ferry_chunk_list_check is compared with one computed here independently,
 * and a list that passes must have a well-formed content id.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/core.h"
#include "ferry/manifest.h"

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
    const uint8_t *list;
    struct ferry_chunk_ent e;
    uint8_t again[FERRY_CHUNK_ENT_LEN];
    uint64_t fsize, sum = 0;
    size_t n, i;
    uint32_t len;
    char cid[72], cid2[72];
    int rc, want = 0;

    if (size < 8)
        return 0;
    fsize = ferry_get_be64(data);
    list = data + 8;
    n = (size - 8) / FERRY_CHUNK_ENT_LEN * FERRY_CHUNK_ENT_LEN;
    rc = ferry_chunk_list_check(list, n, fsize);

    /*
     * The expected verdict, from R-CHUNK-2's words. The sum cannot overflow:
     * libFuzzer inputs hold far fewer than 2^44 entries.
     */
    for (i = 0; i < n; i += FERRY_CHUNK_ENT_LEN) {
        len = (uint32_t)list[i] << 24 | (uint32_t)list[i + 1] << 16 | (uint32_t)list[i + 2] << 8 |
              list[i + 3];
        if (len < 1 || len > FERRY_CHUNK_MAX)
            want = FERRY_EPROTO;
        if (i + FERRY_CHUNK_ENT_LEN < n && len < FERRY_CHUNK_MIN)
            want = FERRY_EPROTO;
        sum += len;
        /* Entries survive a decode and encode unchanged. */
        ferry_chunk_ent_decode(list + i, &e);
        FUZZ_CHECK(e.len == len);
        ferry_chunk_ent_encode(again, &e);
        FUZZ_CHECK(memcmp(again, list + i, FERRY_CHUNK_ENT_LEN) == 0);
    }
    if (sum != fsize)
        want = FERRY_EPROTO;
    FUZZ_CHECK(rc == want);
    /* A list that is not whole entries is refused whatever it holds. */
    if (size - 8 != n)
        FUZZ_CHECK(ferry_chunk_list_check(list, size - 8, fsize) == FERRY_EPROTO);
    if (rc != 0)
        return 0;

    /* R-CHUNK-3: "chunks:" and 64 lower-case hex digits, the same every time. */
    FUZZ_CHECK(ferry_chunk_list_cid(list, n, cid) == 0);
    FUZZ_CHECK(strlen(cid) == 71);
    FUZZ_CHECK(memcmp(cid, FERRY_CID_CHUNKS_PREFIX, 7) == 0);
    for (i = 7; i < 71; i++)
        FUZZ_CHECK((cid[i] >= '0' && cid[i] <= '9') || (cid[i] >= 'a' && cid[i] <= 'f'));
    FUZZ_CHECK(ferry_chunk_list_cid(list, n, cid2) == 0);
    FUZZ_CHECK(strcmp(cid, cid2) == 0);
    return 0;
}
