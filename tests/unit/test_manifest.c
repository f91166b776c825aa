/* Unit tests for chunk lists, the streaming chunker and the scanner thread (R-CHUNK-1..3). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "ferry/core.h"
#include "ferry/manifest.h"

/*
 * The scanner runs with a queue of 8 entries rather than 4096, so that files
 * of a few MiB make the thread wait for room and ferry_scan_end meet a
 * thread blocked on a full queue.
 */
#define SCAN_QUEUE 8
#include "transfer/scan.h"

/* 20 MiB: 55 chunks, 3 of them cut at the maximum inside a zero run. */
#define DATA_LEN ((size_t)20 << 20)
#define RECS_CAP 4096

static uint8_t *data;

struct rec {
    uint64_t offset;
    struct ferry_chunk_ent e;
};

struct recs {
    struct rec v[RECS_CAP];
    size_t n;
    size_t fail_at; /* collect returns 42 for this entry index (0: never) */
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    /* xorshift64*: reproducible, and independent of libc's rand(). */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static int group_setup(void **state)
{
    size_t i;

    (void)state;
    data = malloc(DATA_LEN);
    if (data == NULL)
        return -1;
    for (i = 0; i < DATA_LEN; i++)
        data[i] = (uint8_t)(rng() >> 56);
    /* One gear value over and over: the hash settles and never matches, so cuts fall at max. */
    memset(data + (5u << 20), 0, 3u << 20);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(data);
    return 0;
}

static struct recs *recs_new(void)
{
    struct recs *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    return r;
}

static int collect(void *arg, uint64_t offset, const struct ferry_chunk_ent *e)
{
    struct recs *r = arg;

    if (r->n >= RECS_CAP)
        return -1;
    if (r->fail_at != 0 && r->n == r->fail_at)
        return 42;
    r->v[r->n].offset = offset;
    r->v[r->n].e = *e;
    r->n++;
    return 0;
}

/* SHA-256 straight through EVP, so the expected values do not share ferry's code. */
static void evp_sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned len = 0;

    assert_int_equal(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
    assert_int_equal(len, 32);
}

/* The reference: ferry_cdc_next over the whole buffer at once. */
static void one_shot(const uint8_t *p, size_t n, struct recs *r)
{
    struct ferry_cdc c;
    uint64_t g;
    size_t off = 0, len;

    ferry_cdc_default(&c);
    assert_int_equal(c.max, FERRY_CHUNK_MAX);
    r->n = 0;
    while (off < n) {
        len = ferry_cdc_next(&c, p + off, n - off, &g);
        assert_true(len > 0 && len <= FERRY_CHUNK_MAX);
        assert_true(r->n < RECS_CAP);
        r->v[r->n].offset = off;
        r->v[r->n].e.len = (uint32_t)len;
        evp_sha256(p + off, len, r->v[r->n].e.hash);
        r->n++;
        off += len;
    }
}

static void assert_recs_equal(const struct recs *a, const struct recs *b)
{
    size_t i;

    assert_int_equal(a->n, b->n);
    for (i = 0; i < a->n; i++) {
        assert_int_equal(a->v[i].offset, b->v[i].offset);
        assert_int_equal(a->v[i].e.len, b->v[i].e.len);
        assert_memory_equal(a->v[i].e.hash, b->v[i].e.hash, 32);
    }
}

/* Encodes r as a list; returns its length in bytes (caller frees *out). */
static size_t recs_encode(const struct recs *r, uint8_t **out)
{
    uint8_t *l = malloc(r->n * FERRY_CHUNK_ENT_LEN + 1);
    size_t i;

    assert_non_null(l);
    for (i = 0; i < r->n; i++)
        ferry_chunk_ent_encode(l + i * FERRY_CHUNK_ENT_LEN, &r->v[i].e);
    *out = l;
    return r->n * FERRY_CHUNK_ENT_LEN;
}

static void hex_lower(const uint8_t *p, size_t n, char *out)
{
    size_t i;

    for (i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static void expected_cid(const uint8_t *list, size_t n, char out[72])
{
    uint8_t sum[32];

    evp_sha256(list, n, sum);
    memcpy(out, "chunks:", 7);
    hex_lower(sum, 32, out + 7);
}

/* ---- Entries ------------------------------------------------------------- */

static void test_ent_round_trip(void **state)
{
    struct ferry_chunk_ent e, d;
    uint8_t b[FERRY_CHUNK_ENT_LEN];
    size_t i;

    (void)state;
    e.len = 0xa1b2c3d4u;
    for (i = 0; i < 32; i++)
        e.hash[i] = (uint8_t)(i * 7 + 1);
    ferry_chunk_ent_encode(b, &e);
    /* R-CHUNK-2: u32 big-endian length, then the hash. */
    assert_int_equal(b[0], 0xa1);
    assert_int_equal(b[1], 0xb2);
    assert_int_equal(b[2], 0xc3);
    assert_int_equal(b[3], 0xd4);
    assert_memory_equal(b + 4, e.hash, 32);
    memset(&d, 0x55, sizeof(d));
    ferry_chunk_ent_decode(b, &d);
    assert_int_equal(d.len, e.len);
    assert_memory_equal(d.hash, e.hash, 32);

    for (i = 0; i < 1000; i++) {
        uint8_t b2[FERRY_CHUNK_ENT_LEN];
        size_t k;

        for (k = 0; k < sizeof(b); k++)
            b[k] = (uint8_t)rng();
        ferry_chunk_ent_decode(b, &d);
        ferry_chunk_ent_encode(b2, &d);
        assert_memory_equal(b, b2, sizeof(b));
    }
}

/* ---- ferry_chunk_list_check --------------------------------------------- */

/*
 * Runs the check on a copy of the list that ends right before a PROT_NONE
 * page, so a read past n_bytes crashes even without ASan (picohttpparser).
 */
static int check_guarded(const uint8_t *list, size_t n, uint64_t size)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = n == 0 ? pg : (n + pg - 1) / pg * pg;
    uint8_t *map;
    int rc;

    map = mmap(NULL, span + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + span, pg, PROT_NONE), 0);
    if (n > 0)
        memcpy(map + span - n, list, n);
    rc = ferry_chunk_list_check(map + span - n, n, size);
    munmap(map, span + pg);
    return rc;
}

/* Writes n entries with the given lengths (hashes arbitrary); returns the byte count. */
static size_t mklist(uint8_t *out, const uint32_t *lens, size_t n)
{
    struct ferry_chunk_ent e;
    size_t i;

    for (i = 0; i < n; i++) {
        e.len = lens[i];
        memset(e.hash, (int)(0xa0 + i), sizeof(e.hash));
        ferry_chunk_ent_encode(out + i * FERRY_CHUNK_ENT_LEN, &e);
    }
    return n * FERRY_CHUNK_ENT_LEN;
}

static int check_lens(const uint32_t *lens, size_t n, uint64_t size)
{
    uint8_t l[8 * FERRY_CHUNK_ENT_LEN];

    assert_true(n <= 8);
    return check_guarded(l, mklist(l, lens, n), size);
}

static void test_list_single_entry_caps(void **state)
{
    uint32_t len;

    (void)state;
    /* Size 0 is the empty list; an empty list of a non-empty file is refused. */
    assert_int_equal(check_guarded(NULL, 0, 0), 0);
    assert_int_equal(check_guarded(NULL, 0, 1), FERRY_EPROTO);
    assert_int_equal(check_guarded(NULL, 0, FERRY_CHUNK_MAX), FERRY_EPROTO);
    /* R-CHUNK-2: 1..FERRY_CHUNK_MAX; a lone (last) entry may be under the minimum. */
    len = 0;
    assert_int_equal(check_lens(&len, 1, 0), FERRY_EPROTO);
    len = 1;
    assert_int_equal(check_lens(&len, 1, 1), 0);
    len = FERRY_CHUNK_MIN - 1;
    assert_int_equal(check_lens(&len, 1, len), 0);
    len = FERRY_CHUNK_MAX - 1;
    assert_int_equal(check_lens(&len, 1, len), 0);
    len = FERRY_CHUNK_MAX;
    assert_int_equal(check_lens(&len, 1, len), 0);
    len = FERRY_CHUNK_MAX + 1;
    assert_int_equal(check_lens(&len, 1, len), FERRY_EPROTO);
    len = UINT32_MAX;
    assert_int_equal(check_lens(&len, 1, len), FERRY_EPROTO);
    /* The sum must be size exactly, either way. */
    len = 1000;
    assert_int_equal(check_lens(&len, 1, 999), FERRY_EPROTO);
    assert_int_equal(check_lens(&len, 1, 1001), FERRY_EPROTO);
    assert_int_equal(check_lens(&len, 1, UINT64_MAX), FERRY_EPROTO);
}

static void test_list_inner_entry_caps(void **state)
{
    uint32_t l2[2], l3[3];

    (void)state;
    /* R-CHUNK-2: every entry but the last is at least FERRY_CHUNK_MIN. */
    l2[0] = FERRY_CHUNK_MIN - 1;
    l2[1] = 5;
    assert_int_equal(check_lens(l2, 2, (uint64_t)l2[0] + l2[1]), FERRY_EPROTO);
    l2[0] = FERRY_CHUNK_MIN;
    assert_int_equal(check_lens(l2, 2, (uint64_t)l2[0] + l2[1]), 0);
    l2[0] = FERRY_CHUNK_MAX;
    assert_int_equal(check_lens(l2, 2, (uint64_t)l2[0] + l2[1]), 0);
    l2[0] = FERRY_CHUNK_MAX + 1;
    assert_int_equal(check_lens(l2, 2, (uint64_t)l2[0] + l2[1]), FERRY_EPROTO);
    /* A short middle entry is refused even though the last may be short. */
    l3[0] = FERRY_CHUNK_MIN;
    l3[1] = FERRY_CHUNK_MIN - 1;
    l3[2] = FERRY_CHUNK_MIN;
    assert_int_equal(check_lens(l3, 3, 3ull * FERRY_CHUNK_MIN - 1), FERRY_EPROTO);
    l3[1] = FERRY_CHUNK_MIN;
    assert_int_equal(check_lens(l3, 3, 3ull * FERRY_CHUNK_MIN), 0);
    assert_int_equal(check_lens(l3, 3, 3ull * FERRY_CHUNK_MIN + 1), FERRY_EPROTO);
    assert_int_equal(check_lens(l3, 3, 3ull * FERRY_CHUNK_MIN - 1), FERRY_EPROTO);
    /* A zero-length last entry is refused too. */
    l2[0] = FERRY_CHUNK_MIN;
    l2[1] = 0;
    assert_int_equal(check_lens(l2, 2, FERRY_CHUNK_MIN), FERRY_EPROTO);
}

static void test_list_not_whole_entries(void **state)
{
    uint32_t lens[2] = {FERRY_CHUNK_MIN, 100};
    uint8_t l[2 * FERRY_CHUNK_ENT_LEN];
    size_t n = mklist(l, lens, 2), k;

    (void)state;
    for (k = 1; k < n; k++)
        if (k % FERRY_CHUNK_ENT_LEN != 0)
            assert_int_equal(check_guarded(l, k, FERRY_CHUNK_MIN + 100), FERRY_EPROTO);
    assert_int_equal(check_guarded(l, n, FERRY_CHUNK_MIN + 100), 0);
}

static void test_list_truncated_prefixes(void **state)
{
    uint32_t lens[3] = {FERRY_CHUNK_MIN, FERRY_CHUNK_MAX, 5};
    uint64_t size = (uint64_t)FERRY_CHUNK_MIN + FERRY_CHUNK_MAX + 5, sum = 0;
    uint8_t l[3 * FERRY_CHUNK_ENT_LEN];
    size_t n = mklist(l, lens, 3), k;

    (void)state;
    assert_int_equal(check_guarded(l, n, size), 0);
    for (k = 0; k < n; k++) {
        /* Every strict prefix is refused for the whole file's size. */
        assert_int_equal(check_guarded(l, k, size), FERRY_EPROTO);
        if (k % FERRY_CHUNK_ENT_LEN == 0) {
            /* Whole entries: refused only for the size, as the prefix's own sum passes. */
            assert_int_equal(check_guarded(l, k, sum), 0);
            sum += lens[k / FERRY_CHUNK_ENT_LEN];
        }
    }
}

static void test_list_many_max_entries(void **state)
{
    /* 4097 entries of the maximum: no overflow, and size must match to the byte. */
    size_t n = 4097, i;
    uint8_t *l = malloc(n * FERRY_CHUNK_ENT_LEN);
    uint64_t size = (uint64_t)n * FERRY_CHUNK_MAX;
    uint32_t len = FERRY_CHUNK_MAX;

    (void)state;
    assert_non_null(l);
    for (i = 0; i < n; i++)
        mklist(l + i * FERRY_CHUNK_ENT_LEN, &len, 1);
    assert_int_equal(check_guarded(l, n * FERRY_CHUNK_ENT_LEN, size), 0);
    assert_int_equal(check_guarded(l, n * FERRY_CHUNK_ENT_LEN, size - 1), FERRY_EPROTO);
    assert_int_equal(check_guarded(l, n * FERRY_CHUNK_ENT_LEN, size + 1), FERRY_EPROTO);
    assert_int_equal(check_guarded(l, n * FERRY_CHUNK_ENT_LEN, UINT64_MAX), FERRY_EPROTO);
    free(l);
}

/* ---- ferry_chunk_list_cid ------------------------------------------------ */

static void test_cid_known_answers(void **state)
{
    uint8_t zero[FERRY_CHUNK_ENT_LEN] = {0}, l[3 * FERRY_CHUNK_ENT_LEN];
    uint32_t lens[3] = {FERRY_CHUNK_MIN, FERRY_CHUNK_MAX, 5};
    char cid[72], want[72];

    (void)state;
    /* SHA-256 of 36 zero bytes, from `python3 -c 'hashlib.sha256(bytes(36))'`. */
    memset(cid, 'X', sizeof(cid));
    assert_int_equal(ferry_chunk_list_cid(zero, sizeof(zero), cid), 0);
    assert_string_equal(cid,
                        "chunks:6db65fd59fd356f6729140571b5bcd6bb3b83492a16e1bf0a3884442fc3c8a0e");
    assert_int_equal(strlen(cid), 71);
    expected_cid(zero, sizeof(zero), want);
    assert_string_equal(cid, want);

    /* A 3-entry list, against EVP directly. */
    mklist(l, lens, 3);
    assert_int_equal(ferry_chunk_list_cid(l, sizeof(l), cid), 0);
    expected_cid(l, sizeof(l), want);
    assert_string_equal(cid, want);

    /* The empty list of an empty file: SHA-256 of nothing. */
    assert_int_equal(ferry_chunk_list_cid(NULL, 0, cid), 0);
    assert_string_equal(cid,
                        "chunks:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    /* Not whole entries: refused, and the output is empty rather than stale. */
    memset(cid, 'X', sizeof(cid));
    assert_int_equal(ferry_chunk_list_cid(l, sizeof(l) - 1, cid), FERRY_EPROTO);
    assert_string_equal(cid, "");
}

/* ---- Streaming chunker --------------------------------------------------- */

static void check_list_of(const struct recs *r, uint64_t size)
{
    uint8_t *l;
    size_t n = recs_encode(r, &l);
    char cid[72], want[72];

    /* What the chunker makes always passes the check a peer applies. */
    assert_int_equal(ferry_chunk_list_check(l, n, size), 0);
    assert_int_equal(ferry_chunk_list_cid(l, n, cid), 0);
    expected_cid(l, n, want);
    assert_string_equal(cid, want);
    free(l);
}

/* Feeds data[0, n) cut by piece(), then finishes; compares with one-shot chunking. */
static void stream_vs_one_shot(size_t n, size_t (*piece)(size_t i))
{
    struct recs *want = recs_new(), *got = recs_new();
    struct ferry_cdc_stream *s;
    size_t off = 0, i = 0, k;

    one_shot(data, n, want);
    assert_int_equal(ferry_cdc_stream_new(collect, got, &s), 0);
    while (off < n) {
        k = piece(i++);
        if (k > n - off)
            k = n - off;
        assert_int_equal(ferry_cdc_stream_feed(s, data + off, k), 0);
        off += k;
    }
    assert_int_equal(ferry_cdc_stream_finish(s), 0);
    assert_recs_equal(got, want);
    check_list_of(got, n);
    ferry_cdc_stream_free(s);
    free(want);
    free(got);
}

static size_t piece_mixed(size_t i)
{
    static const size_t sizes[] = {1, 7, 16384, (1u << 20) + 3, 0, 65535, 3u << 20, 2, 1u << 20};

    return sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
}

static size_t piece_random(size_t i)
{
    (void)i;
    /* Mostly large, sometimes tiny, so the buffer is full at every phase. */
    switch (rng() % 4) {
    case 0:
        return (size_t)(rng() % 16);
    case 1:
        return (size_t)(rng() % 70000);
    default:
        return (size_t)(rng() % (2u << 20));
    }
}

static size_t piece_whole(size_t i)
{
    (void)i;
    return SIZE_MAX;
}

static size_t piece_byte(size_t i)
{
    (void)i;
    return 1;
}

static void test_stream_mixed_pieces(void **state)
{
    (void)state;
    stream_vs_one_shot(DATA_LEN, piece_mixed);
}

static void test_stream_random_pieces(void **state)
{
    (void)state;
    stream_vs_one_shot(DATA_LEN, piece_random);
}

static void test_stream_whole(void **state)
{
    (void)state;
    stream_vs_one_shot(DATA_LEN, piece_whole);
}

static void test_stream_bytewise(void **state)
{
    (void)state;
    /* A byte at a time over 3 MiB + 1: cuts inside, then a short tail. */
    stream_vs_one_shot((3u << 20) + 1, piece_byte);
}

static void test_stream_edges(void **state)
{
    (void)state;
    /* Exactly max, max - 1 and max + 1 bytes, and a stream under the minimum. */
    stream_vs_one_shot(FERRY_CHUNK_MAX, piece_mixed);
    stream_vs_one_shot(FERRY_CHUNK_MAX - 1, piece_mixed);
    stream_vs_one_shot(FERRY_CHUNK_MAX + 1, piece_mixed);
    stream_vs_one_shot(1000, piece_mixed);
    stream_vs_one_shot(1, piece_mixed);
}

static void test_stream_reset_and_errors(void **state)
{
    struct recs *want = recs_new(), *got = recs_new();
    struct ferry_cdc_stream *s;
    size_t n = 6u << 20;

    (void)state;
    assert_int_equal(ferry_cdc_stream_new(NULL, NULL, &s), FERRY_EUSAGE);
    assert_null(s);
    one_shot(data, n, want);
    assert_true(want->n > 3);
    assert_int_equal(ferry_cdc_stream_new(collect, got, &s), 0);

    /* An empty stream has no chunks. */
    assert_int_equal(ferry_cdc_stream_feed(s, data, 0), 0);
    assert_int_equal(ferry_cdc_stream_finish(s), 0);
    assert_int_equal(got->n, 0);
    /* Finished: more bytes are a usage error, finishing again is harmless. */
    assert_int_equal(ferry_cdc_stream_feed(s, data, 1), FERRY_EUSAGE);
    assert_int_equal(ferry_cdc_stream_finish(s), 0);

    /* The callback's value comes back and sticks until reset. */
    ferry_cdc_stream_reset(s);
    got->fail_at = 2;
    assert_int_equal(ferry_cdc_stream_feed(s, data, n), 42);
    assert_int_equal(got->n, 2);
    assert_int_equal(ferry_cdc_stream_feed(s, data, 1), 42);
    assert_int_equal(ferry_cdc_stream_finish(s), 42);
    assert_int_equal(got->n, 2);

    /* After reset the same stream starts again at offset 0. */
    ferry_cdc_stream_reset(s);
    got->fail_at = 0;
    got->n = 0;
    assert_int_equal(ferry_cdc_stream_feed(s, data, n / 2), 0);
    assert_int_equal(ferry_cdc_stream_feed(s, data + n / 2, n - n / 2), 0);
    assert_int_equal(ferry_cdc_stream_finish(s), 0);
    assert_recs_equal(got, want);

    /* An error from the last cut, made by finish. */
    ferry_cdc_stream_reset(s);
    got->n = 0;
    got->fail_at = want->n - 1;
    assert_int_equal(ferry_cdc_stream_feed(s, data, n), 0);
    assert_int_equal(ferry_cdc_stream_finish(s), 42);
    assert_int_equal(got->n, want->n - 1);

    ferry_cdc_stream_free(s);
    ferry_cdc_stream_free(NULL);
    free(want);
    free(got);
}

static int bytes_seen;

/* Records whether the stream offered the chunk's bytes to its callback. */
static int collect_bytes(void *arg, uint64_t offset, const struct ferry_chunk_ent *e)
{
    struct ferry_cdc_stream **s = arg;

    (void)offset;
    (void)e;
    bytes_seen += ferry_cdc_stream_bytes(*s) != NULL ? 1 : -1;
    return 0;
}

/*
 * A stream is either fed (bytes hashed where they lie, none held, so the
 * callback sees no bytes) or written into its space (bytes held and shown);
 * the other way is refused until a reset.
 */
static void test_stream_fed_or_held(void **state)
{
    struct ferry_cdc_stream *s = NULL;
    size_t room;
    uint8_t *w;

    (void)state;
    assert_int_equal(ferry_cdc_stream_new(collect_bytes, &s, &s), 0);
    bytes_seen = 0;
    assert_int_equal(ferry_cdc_stream_feed(s, data, 3u << 20), 0);
    assert_null(ferry_cdc_stream_space(s, &room));
    assert_int_equal(room, 0);
    assert_int_equal(ferry_cdc_stream_commit(s, 1), FERRY_EUSAGE);
    assert_int_equal(ferry_cdc_stream_finish(s), 0);
    assert_true(bytes_seen < 0);

    ferry_cdc_stream_reset(s);
    bytes_seen = 0;
    w = ferry_cdc_stream_space(s, &room);
    assert_non_null(w);
    memcpy(w, data, 3u << 20);
    assert_int_equal(ferry_cdc_stream_commit(s, 3u << 20), 0);
    assert_int_equal(ferry_cdc_stream_feed(s, data, 1), FERRY_EUSAGE);
    assert_int_equal(ferry_cdc_stream_finish(s), 0);
    assert_true(bytes_seen > 0);
    ferry_cdc_stream_free(s);
}

/*
 * Writing into the stream's own space gives the same chunks as feed; room is
 * at least FERRY_CHUNK_MAX on a live stream, a commit past it is refused,
 * and a failed or finished stream offers no room at all.
 */
static void test_stream_space_commit(void **state)
{
    struct recs *want = recs_new(), *got = recs_new();
    struct ferry_cdc_stream *s;
    size_t n = DATA_LEN, off = 0, room, take, k = 0;
    uint8_t *w;

    (void)state;
    one_shot(data, n, want);
    assert_int_equal(ferry_cdc_stream_new(collect, got, &s), 0);
    while (off < n) {
        w = ferry_cdc_stream_space(s, &room);
        assert_non_null(w);
        assert_true(room >= FERRY_CHUNK_MAX);
        /* Pieces of every size, up to the whole room. */
        take = k++ % 3 == 0 ? room : piece_random(0) % (room + 1);
        if (take > n - off)
            take = n - off;
        memcpy(w, data + off, take);
        assert_int_equal(ferry_cdc_stream_commit(s, take), 0);
        off += take;
    }
    (void)ferry_cdc_stream_space(s, &room);
    assert_int_equal(ferry_cdc_stream_commit(s, room + 1), FERRY_EUSAGE);
    assert_int_equal(ferry_cdc_stream_finish(s), 0);
    assert_recs_equal(got, want);
    /* Finished: no room. */
    assert_null(ferry_cdc_stream_space(s, &room));
    assert_int_equal(room, 0);

    /* Failed with bytes left uncut: no room, and the error sticks. */
    ferry_cdc_stream_reset(s);
    got->n = 0;
    got->fail_at = 1;
    w = ferry_cdc_stream_space(s, &room);
    assert_non_null(w);
    memcpy(w, data, room);
    assert_int_equal(ferry_cdc_stream_commit(s, room), 42);
    assert_null(ferry_cdc_stream_space(s, &room));
    assert_int_equal(room, 0);
    assert_int_equal(ferry_cdc_stream_commit(s, 1), 42);
    assert_int_equal(ferry_cdc_stream_feed(s, data, 1), 42);
    ferry_cdc_stream_free(s);
    free(want);
    free(got);
}

/* ---- Scanner thread ------------------------------------------------------ */

/* An unlinked temporary file holding p[0, n). */
static int tmp_with(const uint8_t *p, size_t n)
{
    char path[] = "/tmp/ferry_test_manifest_XXXXXX";
    int fd = mkstemp(path);
    size_t off = 0;
    ssize_t w;

    assert_true(fd >= 0);
    assert_int_equal(unlink(path), 0);
    while (off < n) {
        w = write(fd, p + off, n - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    /* The scanner preads: leave the file offset somewhere else on purpose. */
    assert_true(lseek(fd, 12345, SEEK_SET) == 12345);
    return fd;
}

/* Takes entries until next says stop; returns its final value. */
static int drain(struct ferry_scan *s, struct recs *r, size_t max)
{
    struct ferry_chunk_ent e;
    uint64_t off;
    int rc = 1;

    r->n = 0;
    while (r->n < max && (rc = ferry_scan_next(s, &e, &off)) == 1)
        assert_int_equal(collect(r, off, &e), 0);
    return r->n == max ? 1 : rc;
}

static void test_scan_matches_one_shot(void **state)
{
    struct recs *want = recs_new(), *got = recs_new();
    struct ferry_chunk_ent e;
    struct ferry_scan *s;
    uint64_t off;
    int fd = tmp_with(data, DATA_LEN), rc;

    (void)state;
    one_shot(data, DATA_LEN, want);
    assert_int_equal(ferry__scan_new(SCAN_QUEUE, &s), 0);
    assert_int_equal(ferry_scan_begin(s, fd, DATA_LEN), 0);
    assert_int_equal(drain(s, got, RECS_CAP), 0);
    assert_recs_equal(got, want);
    /* The end stays the end until ferry_scan_end. */
    assert_int_equal(ferry_scan_next(s, &e, &off), 0);
    assert_int_equal(ferry_scan_poll(s, &e, &off), 0);
    ferry_scan_end(s);

    /* The same through poll, which never waits. */
    assert_int_equal(ferry_scan_begin(s, fd, DATA_LEN), 0);
    got->n = 0;
    while ((rc = ferry_scan_poll(s, &e, &off)) != 0) {
        if (rc == FERRY_EBUSY) {
            sched_yield();
            continue;
        }
        assert_int_equal(rc, 1);
        assert_int_equal(collect(got, off, &e), 0);
    }
    assert_recs_equal(got, want);
    ferry_scan_end(s);
    ferry_scan_free(s);
    close(fd);
    free(want);
    free(got);
}

static void test_scan_short_file(void **state)
{
    struct recs *want = recs_new(), *got = recs_new();
    struct ferry_chunk_ent e;
    struct ferry_scan *s;
    uint64_t off;
    size_t n = (5u << 20) + 17, i;
    int fd = tmp_with(data, n);

    (void)state;
    one_shot(data, n, want);
    assert_int_equal(ferry__scan_new(SCAN_QUEUE, &s), 0);
    /* One byte short, and far short: the file changed, FERRY_ECANCELED. */
    assert_int_equal(ferry_scan_begin(s, fd, (uint64_t)n + 1), 0);
    assert_int_equal(drain(s, got, RECS_CAP), FERRY_ECANCELED);
    /* The entries before the error are true ones: the cuts made with max bytes held. */
    assert_true(got->n < want->n);
    for (i = 0; i < got->n; i++) {
        assert_int_equal(got->v[i].offset, want->v[i].offset);
        assert_int_equal(got->v[i].e.len, want->v[i].e.len);
        assert_memory_equal(got->v[i].e.hash, want->v[i].e.hash, 32);
    }
    assert_int_equal(ferry_scan_next(s, &e, &off), FERRY_ECANCELED);
    assert_int_equal(ferry_scan_poll(s, &e, &off), FERRY_ECANCELED);
    ferry_scan_end(s);
    assert_int_equal(ferry_scan_begin(s, fd, (uint64_t)n * 4), 0);
    assert_int_equal(drain(s, got, RECS_CAP), FERRY_ECANCELED);
    ferry_scan_end(s);
    ferry_scan_free(s);
    close(fd);
    free(want);
    free(got);
}

static void test_scan_two_files(void **state)
{
    struct recs *want = recs_new(), *got = recs_new();
    struct ferry_scan *s;
    size_t nb = (3u << 20) + 1;
    int fa = tmp_with(data, DATA_LEN), fb = tmp_with(data + 7, nb);

    (void)state;
    assert_int_equal(ferry__scan_new(SCAN_QUEUE, &s), 0);
    one_shot(data, DATA_LEN, want);
    assert_int_equal(ferry_scan_begin(s, fa, DATA_LEN), 0);
    assert_int_equal(drain(s, got, RECS_CAP), 0);
    assert_recs_equal(got, want);
    ferry_scan_end(s);

    one_shot(data + 7, nb, want);
    assert_int_equal(ferry_scan_begin(s, fb, nb), 0);
    assert_int_equal(drain(s, got, RECS_CAP), 0);
    assert_recs_equal(got, want);
    ferry_scan_end(s);
    /* Ending twice is harmless. */
    ferry_scan_end(s);

    /* A prefix of a file is scanned as a file of that size. */
    one_shot(data, nb, want);
    assert_int_equal(ferry_scan_begin(s, fa, nb), 0);
    assert_int_equal(drain(s, got, RECS_CAP), 0);
    assert_recs_equal(got, want);
    ferry_scan_end(s);

    ferry_scan_free(s);
    close(fa);
    close(fb);
    free(want);
    free(got);
}

static void test_scan_end_midway(void **state)
{
    struct recs *want = recs_new(), *got = recs_new();
    struct ferry_chunk_ent e;
    struct ferry_scan *s;
    uint64_t off;
    size_t nb = (4u << 20) + 99;
    int fa = tmp_with(data, DATA_LEN), fb = tmp_with(data + 1000, nb), i;

    (void)state;
    one_shot(data + 1000, nb, want);
    assert_int_equal(ferry__scan_new(SCAN_QUEUE, &s), 0);
    /* Misuse: no file begun, and begin over a begun file. */
    assert_int_equal(ferry_scan_next(s, &e, &off), FERRY_EUSAGE);
    assert_int_equal(ferry_scan_poll(s, &e, &off), FERRY_EUSAGE);
    ferry_scan_end(s);
    assert_int_equal(ferry_scan_begin(s, -1, 10), FERRY_EUSAGE);

    /* Ended after a few entries, with the thread waiting on the full queue. */
    assert_int_equal(ferry_scan_begin(s, fa, DATA_LEN), 0);
    assert_int_equal(ferry_scan_begin(s, fb, nb), FERRY_EUSAGE);
    assert_int_equal(drain(s, got, 3), 1);
    assert_int_equal(got->n, 3);
    /* Wait until the queue is full, so the thread is blocked in push(). */
    ferry__scan_wait_full(s);
    ferry_scan_end(s);
    assert_int_equal(ferry_scan_next(s, &e, &off), FERRY_EUSAGE);

    assert_int_equal(ferry_scan_begin(s, fb, nb), 0);
    assert_int_equal(drain(s, got, RECS_CAP), 0);
    assert_recs_equal(got, want);
    ferry_scan_end(s);

    /* Ended at once, before or while the thread picks the file up, many times over. */
    for (i = 0; i < 50; i++) {
        assert_int_equal(ferry_scan_begin(s, fa, DATA_LEN), 0);
        if (i % 2)
            sched_yield();
        ferry_scan_end(s);
    }
    assert_int_equal(ferry_scan_begin(s, fb, nb), 0);
    assert_int_equal(drain(s, got, RECS_CAP), 0);
    assert_recs_equal(got, want);
    ferry_scan_end(s);

    /* Freed with a file half read: the join does not hang. */
    assert_int_equal(ferry_scan_begin(s, fa, DATA_LEN), 0);
    assert_int_equal(drain(s, got, 1), 1);
    ferry_scan_free(s);
    ferry_scan_free(NULL);
    close(fa);
    close(fb);
    free(want);
    free(got);
}

static void test_scan_empty_and_errors(void **state)
{
    struct ferry_chunk_ent e;
    struct ferry_scan *s;
    uint64_t off = 99;
    int fe = tmp_with(data, 0), fa = tmp_with(data, 100), fd;

    (void)state;
    assert_int_equal(ferry__scan_new(SCAN_QUEUE, &s), 0);
    /* Size 0: 0 at once, with no entry. */
    assert_int_equal(ferry_scan_begin(s, fe, 0), 0);
    assert_int_equal(ferry_scan_poll(s, &e, &off), 0);
    assert_int_equal(off, 0);
    assert_int_equal(ferry_scan_next(s, &e, &off), 0);
    ferry_scan_end(s);
    /* Size 0 of a non-empty file reads nothing either. */
    assert_int_equal(ferry_scan_begin(s, fa, 0), 0);
    assert_int_equal(ferry_scan_next(s, &e, &off), 0);
    ferry_scan_end(s);
    /* An empty file declared non-empty changed under us. */
    assert_int_equal(ferry_scan_begin(s, fe, 1), 0);
    assert_int_equal(ferry_scan_next(s, &e, &off), FERRY_ECANCELED);
    ferry_scan_end(s);
    /* A read error comes back as -errno: pread of a directory is EISDIR. */
    fd = open("/tmp", O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    assert_int_equal(ferry_scan_begin(s, fd, 100), 0);
    assert_int_equal(ferry_scan_next(s, &e, &off), -EISDIR);
    ferry_scan_end(s);
    close(fd);
    /* And the scanner still works afterwards. */
    assert_int_equal(ferry_scan_begin(s, fa, 100), 0);
    assert_int_equal(ferry_scan_next(s, &e, &off), 1);
    assert_int_equal(off, 0);
    assert_int_equal(e.len, 100);
    assert_int_equal(ferry_scan_next(s, &e, &off), 0);
    ferry_scan_end(s);
    ferry_scan_free(s);
    close(fe);
    close(fa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ent_round_trip),
        cmocka_unit_test(test_list_single_entry_caps),
        cmocka_unit_test(test_list_inner_entry_caps),
        cmocka_unit_test(test_list_not_whole_entries),
        cmocka_unit_test(test_list_truncated_prefixes),
        cmocka_unit_test(test_list_many_max_entries),
        cmocka_unit_test(test_cid_known_answers),
        cmocka_unit_test(test_stream_mixed_pieces),
        cmocka_unit_test(test_stream_random_pieces),
        cmocka_unit_test(test_stream_whole),
        cmocka_unit_test(test_stream_bytewise),
        cmocka_unit_test(test_stream_space_commit),
        cmocka_unit_test(test_stream_fed_or_held),
        cmocka_unit_test(test_stream_edges),
        cmocka_unit_test(test_stream_reset_and_errors),
        cmocka_unit_test(test_scan_matches_one_shot),
        cmocka_unit_test(test_scan_short_file),
        cmocka_unit_test(test_scan_two_files),
        cmocka_unit_test(test_scan_end_midway),
        cmocka_unit_test(test_scan_empty_and_errors),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
