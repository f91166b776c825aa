/* Unit tests for the wire codecs: frames, data payloads, command payloads, field readers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry/core.h"
#include "ferry/wire.h"

#define VALID_ID "0f8fad5b-d9cb-469f-a165-70867728950e"
#define HDR_OK   "\"id\":\"" VALID_ID "\",\"version\":\"1.0\""

/* Large enough for a maximal frame (6 + 32768) and for the 10,000-bracket case. */
#define GUARD_SPAN  ((size_t)64 * 1024)
#define SCRATCH_CAP ((size_t)64 * 1024)

/*
 * Every decoder input is copied so that it ends right before a PROT_NONE
 * page (picohttpparser's test.c): an over-read faults even without ASan.
 */
static uint8_t *guard_map;
static size_t guard_page;

static int group_setup(void **state)
{
    long pg = sysconf(_SC_PAGESIZE);
    void *m;

    (void)state;
    if (pg <= 0)
        return -1;
    guard_page = (size_t)pg;
    m = mmap(NULL, GUARD_SPAN + guard_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
             0);
    if (m == MAP_FAILED)
        return -1;
    guard_map = m;
    if (mprotect(guard_map + GUARD_SPAN, guard_page, PROT_NONE) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    munmap(guard_map, GUARD_SPAN + guard_page);
    return 0;
}

static const uint8_t *at_guard(const void *p, size_t n)
{
    uint8_t *d;

    assert_true(n <= GUARD_SPAN);
    d = guard_map + GUARD_SPAN - n;
    if (n > 0)
        memmove(d, p, n);
    return d;
}

static uint8_t scratch[SCRATCH_CAP];

/* Builds a frame header + payload of plen bytes (filled with 'x') in scratch. */
static size_t mkframe(uint8_t type, uint32_t plen)
{
    size_t n = ferry_frame_header_encode(scratch, type, plen);

    assert_true(n + plen <= sizeof(scratch));
    memset(scratch + n, 'x', plen);
    return n + plen;
}

/* Builds a command payload: msgtype i32 BE then jlen bytes of JSON text. */
static size_t mkcmd_raw(uint8_t *buf, size_t cap, int32_t type, const char *json, size_t jlen)
{
    assert_true(cap >= FERRY_CMD_HDR_LEN + jlen);
    ferry_put_be32(buf, (uint32_t)type);
    memcpy(buf + FERRY_CMD_HDR_LEN, json, jlen);
    return FERRY_CMD_HDR_LEN + jlen;
}

static size_t mkcmd(uint8_t *buf, size_t cap, int32_t type, const char *json)
{
    return mkcmd_raw(buf, cap, type, json, strlen(json));
}

/* Decodes json (as a Ping) through the guard page; returns the rc, cleans up. */
static int decode_json(const char *json, size_t jlen, struct ferry_cmd *c)
{
    static uint8_t buf[SCRATCH_CAP];
    size_t n = mkcmd_raw(buf, sizeof(buf), FERRY_MSG_PING, json, jlen);

    return ferry_cmd_decode(at_guard(buf, n), n, c);
}

static void assert_frame_zero(const struct ferry_frame *f)
{
    assert_int_equal(f->version, 0);
    assert_int_equal(f->type, 0);
    assert_null(f->payload);
    assert_int_equal(f->payload_len, 0);
}

/* ---- frames ---------------------------------------------------------------------------- */

/* R-FRAME-2: a heartbeat is two bytes, and bytes after it belong to the next frame. */
static void test_frame_heartbeat_r_frame_2(void **state)
{
    const uint8_t hb[] = {1, 0};
    const uint8_t more[] = {1, 0, 1, 1, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t enc[FERRY_FRAME_HDR_LEN];
    struct ferry_frame f;

    (void)state;
    assert_int_equal(ferry_frame_parse(at_guard(hb, 2), 2, &f), 2);
    assert_int_equal(f.version, FERRY_PROTO_VERSION);
    assert_int_equal(f.type, FERRY_FRAME_HEARTBEAT);
    assert_null(f.payload);
    assert_int_equal(f.payload_len, 0);

    for (size_t n = 2; n <= sizeof(more); n++) {
        assert_int_equal(ferry_frame_parse(at_guard(more, n), n, &f), 2);
        assert_int_equal(f.type, FERRY_FRAME_HEARTBEAT);
    }

    memset(enc, 0xaa, sizeof(enc));
    assert_int_equal(ferry_frame_header_encode(enc, FERRY_FRAME_HEARTBEAT, 1234), 2);
    assert_memory_equal(enc, hb, 2);
    assert_int_equal(enc[2], 0xaa); /* no length field written */
}

/* R-FRAME-2, R-FRAME-3: every strict prefix of a valid frame needs more and yields nothing. */
static void test_frame_prefixes_need_more_r_frame_3(void **state)
{
    static const uint32_t plens[] = {0, 1, 17, 300};
    struct ferry_frame f;
    size_t n, k;

    (void)state;
    n = mkframe(FERRY_FRAME_HEARTBEAT, 0);
    for (k = 0; k < n; k++) {
        assert_int_equal(ferry_frame_parse(at_guard(scratch, k), k, &f), 0);
        assert_frame_zero(&f);
    }
    for (uint8_t type = FERRY_FRAME_COMMAND; type <= FERRY_FRAME_FILE; type++) {
        for (size_t i = 0; i < sizeof(plens) / sizeof(plens[0]); i++) {
            n = mkframe(type, plens[i]);
            for (k = 0; k < n; k++) {
                assert_int_equal(ferry_frame_parse(at_guard(scratch, k), k, &f), 0);
                assert_frame_zero(&f);
            }
            assert_int_equal(ferry_frame_parse(at_guard(scratch, n), n, &f), (ssize_t)n);
            assert_int_equal(f.payload_len, plens[i]);
        }
    }
    /* The maximal frame: the header prefixes and the last few payload prefixes. */
    n = mkframe(FERRY_FRAME_DATA, FERRY_FRAME_PAYLOAD_MAX);
    for (k = 0; k < n; k++) {
        if (k > 16 && k < n - 16)
            continue;
        assert_int_equal(ferry_frame_parse(at_guard(scratch, k), k, &f), 0);
        assert_frame_zero(&f);
    }
}

/* R-FRAME-1: versions other than 1 are refused as soon as the first byte is there. */
static void test_frame_bad_version_r_frame_1(void **state)
{
    static const uint8_t versions[] = {0, 2, 255};
    uint8_t b[FERRY_FRAME_HDR_LEN] = {0, 1, 0, 0, 0, 0};
    struct ferry_frame f;

    (void)state;
    for (size_t i = 0; i < sizeof(versions); i++) {
        b[0] = versions[i];
        for (size_t n = 1; n <= sizeof(b); n++) {
            assert_int_equal(ferry_frame_parse(at_guard(b, n), n, &f), FERRY_EVERSION);
            assert_frame_zero(&f);
        }
    }
}

/* R-FRAME-1: types 5..255 are refused once the type byte is there (4 is a file, R-FILE). */
static void test_frame_bad_type_r_frame_1(void **state)
{
    uint8_t b[FERRY_FRAME_HDR_LEN] = {1, 0, 0, 0, 0, 0};
    struct ferry_frame f;

    (void)state;
    assert_int_equal(FERRY_FRAME_FILE, 4);
    for (unsigned t = FERRY_FRAME_FILE + 1; t <= 255; t++) {
        b[1] = (uint8_t)t;
        assert_int_equal(ferry_frame_parse(at_guard(b, 1), 1, &f), 0);
        for (size_t n = 2; n <= sizeof(b); n++) {
            assert_int_equal(ferry_frame_parse(at_guard(b, n), n, &f), FERRY_EPROTO);
            assert_frame_zero(&f);
        }
    }
}

/* R-FRAME-1: types 0 to 4 parse (4 since 1.4, R-FILE), and the first one past them does not. */
static void test_frame_types_r_frame_1(void **state)
{
    uint8_t b[FERRY_FRAME_HDR_LEN + 1];
    struct ferry_frame f;
    const uint8_t *p;

    (void)state;
    for (unsigned t = FERRY_FRAME_COMMAND; t <= FERRY_FRAME_FILE + 1; t++) {
        assert_int_equal(ferry_frame_header_encode(b, (uint8_t)t, 1), FERRY_FRAME_HDR_LEN);
        b[FERRY_FRAME_HDR_LEN] = 0x5a;
        for (size_t n = 2; n < sizeof(b); n++) {
            assert_int_equal(ferry_frame_parse(at_guard(b, n), n, &f),
                             t <= FERRY_FRAME_FILE ? 0 : FERRY_EPROTO);
            assert_frame_zero(&f);
        }
        p = at_guard(b, sizeof(b));
        if (t > FERRY_FRAME_FILE) {
            assert_int_equal(ferry_frame_parse(p, sizeof(b), &f), FERRY_EPROTO);
            assert_frame_zero(&f);
            continue;
        }
        assert_int_equal(ferry_frame_parse(p, sizeof(b), &f), (ssize_t)sizeof(b));
        assert_int_equal(f.type, t);
        assert_ptr_equal(f.payload, p + FERRY_FRAME_HDR_LEN);
        assert_int_equal(f.payload_len, 1);
    }
}

/* R-FRAME-3: the length is judged against the cap before the payload is waited for. */
static void test_frame_lengths_r_frame_3(void **state)
{
    static const struct {
        uint32_t len;
        ssize_t hdr_only; /* result with just the 6-byte header */
    } cases[] = {
        {0, 6}, /* complete: no payload to wait for */
        {1, 0},
        {32767, 0},
        {32768, 0},
        {32769, FERRY_ETOOBIG},
        {65536, FERRY_ETOOBIG},
        {0x7FFFFFFFu, FERRY_ETOOBIG},
        {0x80000000u, FERRY_ETOOBIG},
        {0xFFFFFFFFu, FERRY_ETOOBIG},
    };
    struct ferry_frame f;

    (void)state;
    for (uint8_t type = FERRY_FRAME_COMMAND; type <= FERRY_FRAME_FILE; type++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            uint8_t h[FERRY_FRAME_HDR_LEN];
            const uint8_t *p;
            size_t n;

            assert_int_equal(ferry_frame_header_encode(h, type, cases[i].len), FERRY_FRAME_HDR_LEN);
            assert_int_equal(ferry_frame_parse(at_guard(h, sizeof(h)), sizeof(h), &f),
                             cases[i].hdr_only);
            if (cases[i].len > FERRY_FRAME_PAYLOAD_MAX)
                continue;
            n = mkframe(type, cases[i].len);
            p = at_guard(scratch, n);
            assert_int_equal(ferry_frame_parse(p, n, &f), (ssize_t)n);
            assert_int_equal(f.version, FERRY_PROTO_VERSION);
            assert_int_equal(f.type, type);
            assert_ptr_equal(f.payload, p + FERRY_FRAME_HDR_LEN);
            assert_int_equal(f.payload_len, cases[i].len);
        }
    }
}

/* R-FRAME-3: with more bytes than one frame, only that frame is consumed. */
static void test_frame_back_to_back_r_frame_3(void **state)
{
    uint8_t b[64];
    size_t n = 0;
    ssize_t r;
    struct ferry_frame f;
    const uint8_t *p;

    (void)state;
    n += ferry_frame_header_encode(b + n, FERRY_FRAME_COMMAND, 3);
    memcpy(b + n, "abc", 3);
    n += 3;
    n += ferry_frame_header_encode(b + n, FERRY_FRAME_HEARTBEAT, 0);
    n += ferry_frame_header_encode(b + n, FERRY_FRAME_DATA, 0);
    p = at_guard(b, n);

    r = ferry_frame_parse(p, n, &f);
    assert_int_equal(r, 9);
    assert_int_equal(f.type, FERRY_FRAME_COMMAND);
    assert_memory_equal(f.payload, "abc", 3);
    p += r;
    n -= (size_t)r;
    r = ferry_frame_parse(p, n, &f);
    assert_int_equal(r, 2);
    assert_int_equal(f.type, FERRY_FRAME_HEARTBEAT);
    p += r;
    n -= (size_t)r;
    r = ferry_frame_parse(p, n, &f);
    assert_int_equal(r, 6);
    assert_int_equal(f.type, FERRY_FRAME_DATA);
    assert_int_equal(f.payload_len, 0);
    assert_int_equal(n, 6);
}

/* R-FRAME-1: the header encoder writes version 1 and the length big-endian. */
static void test_frame_header_encode_r_frame_1(void **state)
{
    uint8_t h[FERRY_FRAME_HDR_LEN];
    const uint8_t want[] = {1, 2, 0x01, 0x02, 0x03, 0x04};

    (void)state;
    assert_int_equal(ferry_frame_header_encode(h, FERRY_FRAME_DATA, 0x01020304u), 6);
    assert_memory_equal(h, want, sizeof(want));
}

/* ---- data payloads --------------------------------------------------------------------- */

static size_t mkdata(uint8_t *buf, uint64_t offset, size_t n)
{
    static const uint8_t tid[FERRY_TID_LEN] = {0, 1, 2,  3,  4,  5,  6,  7,
                                               8, 9, 10, 11, 12, 13, 14, 15};

    ferry_data_header_encode(buf, tid, offset);
    memset(buf + FERRY_DATA_HDR_LEN, 'd', n);
    return FERRY_DATA_HDR_LEN + n;
}

/* R-DATA-1: a payload shorter than the 24-byte header is malformed. */
static void test_data_short_r_data_1(void **state)
{
    uint8_t b[FERRY_DATA_HDR_LEN];
    struct ferry_data d;

    (void)state;
    memset(b, 0, sizeof(b));
    for (size_t n = 0; n < FERRY_DATA_HDR_LEN; n++) {
        memset(&d, 0xaa, sizeof(d));
        assert_int_equal(ferry_data_decode(at_guard(b, n), n, &d), FERRY_EPROTO);
        assert_null(d.bytes);
        assert_int_equal(d.len, 0);
        assert_int_equal(d.offset, 0);
    }
    assert_int_equal(ferry_data_decode(at_guard(b, 24), 24, &d), 0);
    assert_int_equal(d.len, 0);
}

/* R-CHUNK-6: chunk frames: every truncated header, the byte cap, the offset range. */
static void test_chunk_frame_r_chunk_6(void **state)
{
    static const struct {
        size_t n;
        uint32_t off;
        int rc;
    } cases[] = {
        {0, 0, 0},
        {1, 0, 0},
        {16383, 0, 0},
        {16384, 0, 0},
        {16385, 0, FERRY_ETOOBIG},
        {32744, 0, FERRY_ETOOBIG},
        {1, UINT32_MAX, FERRY_EPROTO},
        {0, UINT32_MAX, 0},
        {16384, UINT32_MAX - 16384, 0},
        {16384, UINT32_MAX - 16383, FERRY_EPROTO},
    };
    static uint8_t b[FERRY_CHUNK_HDR_LEN + 32744];
    struct ferry_chunk_frame cf;
    uint8_t tid[FERRY_TID_LEN];

    (void)state;
    for (uint8_t j = 0; j < FERRY_TID_LEN; j++)
        tid[j] = j;
    ferry_chunk_frame_header_encode(b, tid, 7, 0);
    for (size_t n = 0; n < FERRY_CHUNK_HDR_LEN; n++) {
        memset(&cf, 0xaa, sizeof(cf));
        assert_int_equal(ferry_chunk_frame_decode(at_guard(b, n), n, &cf), FERRY_EPROTO);
        assert_null(cf.bytes);
        assert_int_equal(cf.len, 0);
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = FERRY_CHUNK_HDR_LEN + cases[i].n;
        const uint8_t *p;

        ferry_chunk_frame_header_encode(b, tid, 0xfffffffeu, cases[i].off);
        memset(b + FERRY_CHUNK_HDR_LEN, 0x5a, cases[i].n);
        p = at_guard(b, n);
        assert_int_equal(ferry_chunk_frame_decode(p, n, &cf), cases[i].rc);
        if (cases[i].rc != 0) {
            assert_null(cf.bytes);
            continue;
        }
        assert_int_equal(cf.len, cases[i].n);
        assert_int_equal(cf.index, 0xfffffffeu);
        assert_int_equal(cf.offset, cases[i].off);
        assert_ptr_equal(cf.bytes, p + FERRY_CHUNK_HDR_LEN);
        assert_memory_equal(cf.tid, tid, FERRY_TID_LEN);
    }
}

/* R-DATA-1: at most 16 KiB of bytes in one data frame. */
static void test_data_sizes_r_data_1(void **state)
{
    static const struct {
        size_t n;
        int rc;
    } cases[] = {
        {0, 0}, {1, 0}, {16383, 0}, {16384, 0}, {16385, FERRY_ETOOBIG}, {32744, FERRY_ETOOBIG},
    };
    static uint8_t b[FERRY_DATA_HDR_LEN + 32744];
    struct ferry_data d;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = mkdata(b, 4096, cases[i].n);
        const uint8_t *p = at_guard(b, n);

        assert_int_equal(ferry_data_decode(p, n, &d), cases[i].rc);
        if (cases[i].rc != 0) {
            assert_null(d.bytes);
            continue;
        }
        assert_int_equal(d.len, cases[i].n);
        assert_ptr_equal(d.bytes, p + FERRY_DATA_HDR_LEN);
        assert_int_equal(d.offset, 4096);
        for (uint8_t j = 0; j < FERRY_TID_LEN; j++)
            assert_int_equal(d.tid[j], j);
    }
}

/* R-DATA-1: offset + len must not wrap past 2^64 - 1; large offsets are fine. */
static void test_data_offsets_r_data_1(void **state)
{
    static const struct {
        uint64_t offset;
        size_t n;
        int rc;
    } cases[] = {
        {UINT64_MAX, 1, FERRY_EPROTO},  {UINT64_MAX, 0, 0},
        {UINT64_MAX - 1, 1, 0},         {UINT64_MAX - 1, 2, FERRY_EPROTO},
        {UINT64_MAX - 16384, 16384, 0}, {UINT64_MAX - 16383, 16384, FERRY_EPROTO},
        {UINT64_C(1) << 32, 16384, 0},  {(UINT64_C(1) << 32) + 1, 1, 0},
        {UINT64_C(1) << 63, 100, 0},    {0, 0, 0},
    };
    static uint8_t b[FERRY_DATA_HDR_LEN + FERRY_DATA_MAX];
    struct ferry_data d;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = mkdata(b, cases[i].offset, cases[i].n);

        assert_int_equal(ferry_data_decode(at_guard(b, n), n, &d), cases[i].rc);
        if (cases[i].rc == 0) {
            assert_true(d.offset == cases[i].offset);
            assert_int_equal(d.len, cases[i].n);
        }
    }
}

/* R-DATA-1: the header round-trips, big-endian offset after the id. */
static void test_data_roundtrip_r_data_1(void **state)
{
    uint8_t tid[FERRY_TID_LEN], b[FERRY_DATA_HDR_LEN + 5];
    struct ferry_data d;
    const uint8_t want_off[8] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};

    (void)state;
    for (size_t i = 0; i < sizeof(tid); i++)
        tid[i] = (uint8_t)(0xf0 + i);
    ferry_data_header_encode(b, tid, UINT64_C(0x0102030405060708));
    assert_memory_equal(b, tid, sizeof(tid));
    assert_memory_equal(b + FERRY_TID_LEN, want_off, sizeof(want_off));
    memcpy(b + FERRY_DATA_HDR_LEN, "hello", 5);
    assert_int_equal(ferry_data_decode(at_guard(b, sizeof(b)), sizeof(b), &d), 0);
    assert_memory_equal(d.tid, tid, sizeof(tid));
    assert_true(d.offset == UINT64_C(0x0102030405060708));
    assert_int_equal(d.len, 5);
    assert_memory_equal(d.bytes, "hello", 5);
}

/* ---- message registry and command payloads --------------------------------------------- */

static const int32_t known_types[] = {
    FERRY_MSG_CONNECT,
    FERRY_MSG_ACCEPT,
    FERRY_MSG_REJECT,
    FERRY_MSG_DISCONNECT,
    FERRY_MSG_PING,
    FERRY_MSG_PONG,
    FERRY_MSG_ERROR,
    FERRY_MSG_OK,
    FERRY_MSG_SIGNUP,
    FERRY_MSG_LOGIN,
    FERRY_MSG_CHANGEPWD,
    FERRY_MSG_LOGOUT,
    FERRY_MSG_SESSION,
    FERRY_MSG_DIRINFO,
    FERRY_MSG_DIRPAGE,
    FERRY_MSG_REMOVE,
    FERRY_MSG_MOVE,
    FERRY_MSG_MKDIR,
    FERRY_MSG_UPLOAD,
    FERRY_MSG_DOWNLOAD,
    FERRY_MSG_TRANSFER,
    FERRY_MSG_TRANSFER_CANCEL,
    FERRY_MSG_TRANSFER_COMPLETE,
    FERRY_MSG_COMMITTED,
    FERRY_MSG_CHUNKED_UPLOAD,
    FERRY_MSG_CHUNK_NEED,
    FERRY_MSG_CHUNK_STORED,
    FERRY_MSG_WHOAMI,
    FERRY_MSG_IDENTITY,
    FERRY_MSG_DEVICE_LIST,
    FERRY_MSG_DEVICES,
    FERRY_MSG_DEVICE_REVOKE,
    FERRY_MSG_COMMAND,
};

static const int32_t unknown_types[] = {
    0, -1, -2, 9, 99, 110, 199, 205, 299, 309, 399, 899, 901, 1000, INT32_MIN, INT32_MAX,
};

/* R-MSG-*: every registry entry has a distinct name; everything else has none. */
static void test_msg_name_registry_r_msg(void **state)
{
    size_t nk = sizeof(known_types) / sizeof(known_types[0]);

    (void)state;
    for (size_t i = 0; i < nk; i++) {
        const char *a = ferry_msg_name(known_types[i]);

        assert_non_null(a);
        for (size_t j = i + 1; j < nk; j++)
            assert_string_not_equal(a, ferry_msg_name(known_types[j]));
    }
    for (size_t i = 0; i < sizeof(unknown_types) / sizeof(unknown_types[0]); i++)
        assert_null(ferry_msg_name(unknown_types[i]));
    assert_string_equal(ferry_msg_name(FERRY_MSG_PING), "Ping");
}

/* R-CMD-1: a payload without the 4-byte msgtype is malformed. */
static void test_cmd_short_r_cmd_1(void **state)
{
    const uint8_t b[4] = {0, 0, 0, FERRY_MSG_PING};
    struct ferry_cmd c;

    (void)state;
    for (size_t n = 0; n < 4; n++) {
        assert_int_equal(ferry_cmd_decode(at_guard(b, n), n, &c), FERRY_EPROTO);
        assert_null(c.body);
        assert_string_equal(c.id, "");
    }
    /* The msgtype alone, with no JSON at all. */
    assert_int_equal(ferry_cmd_decode(at_guard(b, 4), 4, &c), FERRY_EPROTO);
    assert_null(c.body);
}

/* R-CMD-1: every registry type decodes; unknown ones (negatives too) do not, id kept. */
static void test_cmd_types_r_cmd_1(void **state)
{
    uint8_t b[256];
    struct ferry_cmd c;
    size_t n;

    (void)state;
    for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++) {
        n = mkcmd(b, sizeof(b), known_types[i], "{" HDR_OK "}");
        assert_int_equal(ferry_cmd_decode(at_guard(b, n), n, &c), 0);
        assert_int_equal(c.type, known_types[i]);
        assert_string_equal(c.id, VALID_ID);
        assert_true(json_is_object(c.body));
        ferry_cmd_cleanup(&c);
        assert_null(c.body);
    }
    for (size_t i = 0; i < sizeof(unknown_types) / sizeof(unknown_types[0]); i++) {
        n = mkcmd(b, sizeof(b), unknown_types[i], "{" HDR_OK "}");
        assert_int_equal(ferry_cmd_decode(at_guard(b, n), n, &c), FERRY_EPROTO);
        assert_int_equal(c.type, unknown_types[i]);
        assert_null(c.body);
        assert_string_equal(c.id, VALID_ID); /* so the Error reply can name it */
    }
    /* R-CMD-2 before R-CMD-4: a peer of another major version hears about its version. */
    n = mkcmd(b, sizeof(b), 999, "{\"id\":\"" VALID_ID "\",\"version\":\"2.0\"}");
    assert_int_equal(ferry_cmd_decode(at_guard(b, n), n, &c), FERRY_EVERSION);
    assert_string_equal(c.id, VALID_ID);
    /* 0xFFFFFFFF on the wire is -1, not 4294967295. */
    n = mkcmd(b, sizeof(b), -1, "{" HDR_OK "}");
    assert_memory_equal(b, "\xff\xff\xff\xff", 4);
    assert_int_equal(ferry_cmd_decode(at_guard(b, n), n, &c), FERRY_EPROTO);
    assert_int_equal(c.type, -1);
}

struct json_case {
    const char *name;
    const char *json;
    int rc;
    int id_kept; /* out->id holds VALID_ID after the call */
};

/*
 * R-CMD-2, R-CMD-3: one JSON object with a UUID id and a version 1.x, nothing
 * else around it. A well-formed version of another major is FERRY_EVERSION
 * (Error 3 / Reject 3 in docs/protocol.md R-CMD-2); a malformed one FERRY_EPROTO.
 */
static void test_cmd_json_table_r_cmd_2(void **state)
{
    static const struct json_case cases[] = {
        {"minimal", "{" HDR_OK "}", 0, 1},
        {"leading and trailing whitespace", " \t\r\n{" HDR_OK "} \t\r\n", 0, 1},
        {"extra fields", "{" HDR_OK ",\"path\":\"/a\",\"size\":3,\"x\":[1,{\"y\":null}]}", 0, 1},
        {"upper-case uuid", "{\"id\":\"0F8FAD5B-D9CB-469F-A165-70867728950E\",\"version\":\"1.0\"}",
         0, 0},
        {"version 1.2", "{\"id\":\"" VALID_ID "\",\"version\":\"1.2\"}", 0, 1},
        {"version 1.10", "{\"id\":\"" VALID_ID "\",\"version\":\"1.10\"}", 0, 1},
        {"version 1", "{\"id\":\"" VALID_ID "\",\"version\":\"1\"}", 0, 1},
        {"version 2.0", "{\"id\":\"" VALID_ID "\",\"version\":\"2.0\"}", FERRY_EVERSION, 1},
        {"version 0.9", "{\"id\":\"" VALID_ID "\",\"version\":\"0.9\"}", FERRY_EVERSION, 1},
        {"version 10.0", "{\"id\":\"" VALID_ID "\",\"version\":\"10.0\"}", FERRY_EVERSION, 1},
        {"version 2", "{\"id\":\"" VALID_ID "\",\"version\":\"2\"}", FERRY_EVERSION, 1},
        {"version 01.0", "{\"id\":\"" VALID_ID "\",\"version\":\"01.0\"}", FERRY_EVERSION, 1},
        {"version .0", "{\"id\":\"" VALID_ID "\",\"version\":\".0\"}", FERRY_EPROTO, 1},
        {"version v1.0", "{\"id\":\"" VALID_ID "\",\"version\":\"v1.0\"}", FERRY_EPROTO, 1},
        {"version 2.x", "{\"id\":\"" VALID_ID "\",\"version\":\"2.x\"}", FERRY_EPROTO, 1},
        {"version 1.", "{\"id\":\"" VALID_ID "\",\"version\":\"1.\"}", FERRY_EPROTO, 1},
        {"version 1.0a", "{\"id\":\"" VALID_ID "\",\"version\":\"1.0a\"}", FERRY_EPROTO, 1},
        {"version 1.0.0", "{\"id\":\"" VALID_ID "\",\"version\":\"1.0.0\"}", FERRY_EPROTO, 1},
        {"version empty", "{\"id\":\"" VALID_ID "\",\"version\":\"\"}", FERRY_EPROTO, 1},
        {"version number", "{\"id\":\"" VALID_ID "\",\"version\":1.0}", FERRY_EPROTO, 1},
        {"version null", "{\"id\":\"" VALID_ID "\",\"version\":null}", FERRY_EPROTO, 1},
        {"version missing", "{\"id\":\"" VALID_ID "\"}", FERRY_EPROTO, 1},
        {"version too long", "{\"id\":\"" VALID_ID "\",\"version\":\"1.00000000000000000\"}",
         FERRY_EPROTO, 1},
        {"id missing", "{\"version\":\"1.0\"}", FERRY_EPROTO, 0},
        {"id number", "{\"id\":12345,\"version\":\"1.0\"}", FERRY_EPROTO, 0},
        {"id null", "{\"id\":null,\"version\":\"1.0\"}", FERRY_EPROTO, 0},
        {"id object", "{\"id\":{},\"version\":\"1.0\"}", FERRY_EPROTO, 0},
        {"id 35 chars", "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950\",\"version\":\"1.0\"}",
         FERRY_EPROTO, 0},
        {"id 37 chars", "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e0\",\"version\":\"1.0\"}",
         FERRY_EPROTO, 0},
        {"id not hex", "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950g\",\"version\":\"1.0\"}",
         FERRY_EPROTO, 0},
        {"id no dashes", "{\"id\":\"0f8fad5bd9cb469fa16570867728950e0000\",\"version\":\"1.0\"}",
         FERRY_EPROTO, 0},
        {"id empty", "{\"id\":\"\",\"version\":\"1.0\"}", FERRY_EPROTO, 0},
        {"empty text", "", FERRY_EPROTO, 0},
        {"whitespace only", "  \n", FERRY_EPROTO, 0},
        {"invalid json", "{\"id\":", FERRY_EPROTO, 0},
        {"not json", "hello", FERRY_EPROTO, 0},
        {"single quotes", "{'id':'x'}", FERRY_EPROTO, 0},
        {"trailing comma", "{" HDR_OK ",}", FERRY_EPROTO, 0},
        {"array top", "[{" HDR_OK "}]", FERRY_EPROTO, 0},
        {"empty array top", "[]", FERRY_EPROTO, 0},
        {"string top", "\"" VALID_ID "\"", FERRY_EPROTO, 0},
        {"number top", "42", FERRY_EPROTO, 0},
        {"null top", "null", FERRY_EPROTO, 0},
        {"true top", "true", FERRY_EPROTO, 0},
        {"trailing garbage", "{" HDR_OK "}x", FERRY_EPROTO, 0},
        {"second object", "{" HDR_OK "}{}", FERRY_EPROTO, 0},
        {"trailing closer", "{" HDR_OK "}}", FERRY_EPROTO, 0},
        {"duplicate id", "{" HDR_OK ",\"id\":\"" VALID_ID "\"}", FERRY_EPROTO, 0},
        {"duplicate other key", "{" HDR_OK ",\"a\":1,\"a\":1}", FERRY_EPROTO, 0},
        {"duplicate nested key", "{" HDR_OK ",\"o\":{\"b\":1,\"b\":2}}", FERRY_EPROTO, 0},
        {"nul escape in value", "{" HDR_OK ",\"p\":\"a\\u0000b\"}", FERRY_EPROTO, 0},
        {"nul escape in key", "{" HDR_OK ",\"a\\u0000\":1}", FERRY_EPROTO, 0},
        {"lone surrogate escape", "{" HDR_OK ",\"p\":\"\\ud800\"}", FERRY_EPROTO, 0},
        {"invalid utf-8 0xff", "{" HDR_OK ",\"p\":\"\xff\"}", FERRY_EPROTO, 0},
        {"overlong utf-8 c0 af", "{" HDR_OK ",\"p\":\"\xc0\xaf\"}", FERRY_EPROTO, 0},
        {"utf-8 surrogate ed a0 80", "{" HDR_OK ",\"p\":\"\xed\xa0\x80\"}", FERRY_EPROTO, 0},
        {"truncated utf-8", "{" HDR_OK ",\"p\":\"\xe2\x82\"}", FERRY_EPROTO, 0},
        {"invalid utf-8 in key", "{" HDR_OK ",\"\xfe\":1}", FERRY_EPROTO, 0},
        {"valid utf-8", "{" HDR_OK ",\"p\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}", 0, 1},
        {"raw control char in string", "{" HDR_OK ",\"p\":\"a\tb\"}", FERRY_EPROTO, 0},
        /* Refused by jansson itself ("real number overflow"), not by a field reader. */
        {"real 1e400", "{" HDR_OK ",\"size\":1e400}", FERRY_EPROTO, 0},
        /* Refused by jansson ("too big integer"): json_int_t is int64. */
        {"integer 2^64", "{" HDR_OK ",\"size\":18446744073709551616}", FERRY_EPROTO, 0},
        {"integer 2^63", "{" HDR_OK ",\"size\":9223372036854775808}", FERRY_EPROTO, 0},
        {"integer -2^63", "{" HDR_OK ",\"size\":-9223372036854775808}", 0, 1},
    };
    struct ferry_cmd c;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = decode_json(cases[i].json, strlen(cases[i].json), &c);

        if (rc != cases[i].rc || (strcmp(c.id, VALID_ID) == 0) != cases[i].id_kept)
            fail_msg("case \"%s\": rc %d (want %d), id \"%s\"", cases[i].name, rc, cases[i].rc,
                     c.id);
        if (rc == 0) {
            assert_true(json_is_object(c.body));
        } else {
            assert_null(c.body);
        }
        ferry_cmd_cleanup(&c);
    }
}

/* R-CMD-2: embedded NUL bytes in the text are not JSON. */
static void test_cmd_raw_nul_r_cmd_2(void **state)
{
    static const char in_str[] = "{" HDR_OK ",\"p\":\"a\0b\"}";
    static const char after[] = "{" HDR_OK "}\0";
    struct ferry_cmd c;

    (void)state;
    assert_int_equal(decode_json(in_str, sizeof(in_str) - 1, &c), FERRY_EPROTO);
    assert_null(c.body);
    assert_int_equal(decode_json(after, sizeof(after) - 1, &c), FERRY_EPROTO);
    assert_null(c.body);
}

/* Builds {HDR_OK,"x": [[...]]} whose deepest container is at depth `depth` (the object is 1). */
static size_t mkdeep(char *buf, size_t cap, unsigned depth, const char *prefix)
{
    size_t n = 0;
    int w = snprintf(buf, cap, "{" HDR_OK ",%s\"x\":", prefix);

    assert_true(w > 0 && (size_t)w < cap);
    n = (size_t)w;
    assert_true(n + 2 * (size_t)depth + 2 < cap);
    for (unsigned i = 1; i < depth; i++)
        buf[n++] = '[';
    for (unsigned i = 1; i < depth; i++)
        buf[n++] = ']';
    if (depth == 1)
        buf[n++] = '0';
    buf[n++] = '}';
    buf[n] = '\0';
    return n;
}

/* R-CMD-3: nesting is capped at 32 before jansson sees the text. */
static void test_cmd_depth_r_cmd_3(void **state)
{
    char buf[1024];
    struct ferry_cmd c;
    size_t n;

    (void)state;
    n = mkdeep(buf, sizeof(buf), 1, "");
    assert_int_equal(decode_json(buf, n, &c), 0);
    ferry_cmd_cleanup(&c);
    n = mkdeep(buf, sizeof(buf), FERRY_JSON_DEPTH_MAX, "");
    assert_int_equal(decode_json(buf, n, &c), 0);
    ferry_cmd_cleanup(&c);
    /* jansson alone would take depth 33 (its own cap is 2048): this is our pre-scan. */
    n = mkdeep(buf, sizeof(buf), FERRY_JSON_DEPTH_MAX + 1, "");
    assert_int_equal(decode_json(buf, n, &c), FERRY_EPROTO);
    assert_null(c.body);
    assert_string_equal(c.id, ""); /* refused before parsing: no id to keep */

    /* Objects count as well as arrays. */
    n = (size_t)snprintf(buf, sizeof(buf), "{" HDR_OK ",\"x\":");
    for (unsigned i = 1; i <= FERRY_JSON_DEPTH_MAX; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"k\":");
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "0");
    for (unsigned i = 0; i <= FERRY_JSON_DEPTH_MAX; i++)
        buf[n++] = '}';
    assert_int_equal(decode_json(buf, n, &c), FERRY_EPROTO);

    /* Many siblings are not depth: 1000 arrays side by side at depth 2. */
    n = (size_t)snprintf(buf, sizeof(buf), "{" HDR_OK ",\"x\":[");
    while (n < 900) {
        buf[n++] = '[';
        buf[n++] = ']';
        buf[n++] = ',';
    }
    buf[n++] = '0';
    buf[n++] = ']';
    buf[n++] = '}';
    assert_int_equal(decode_json(buf, n, &c), 0);
    ferry_cmd_cleanup(&c);
}

/* R-CMD-3: brackets in strings do not count; escapes inside strings are honoured. */
static void test_cmd_depth_strings_r_cmd_3(void **state)
{
    char buf[1024];
    struct ferry_cmd c;
    size_t n;

    (void)state;
    /* 40 brackets inside a string value, and inside a key. */
    n = (size_t)snprintf(buf, sizeof(buf),
                         "{" HDR_OK ",\"s\":\"[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{{{{{{{{{\","
                         "\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\":1}");
    assert_int_equal(decode_json(buf, n, &c), 0);
    ferry_cmd_cleanup(&c);
    /* An escaped quote does not end the string, so the brackets after it are still text. */
    n = (size_t)snprintf(buf, sizeof(buf),
                         "{" HDR_OK ",\"s\":\"\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}");
    assert_int_equal(decode_json(buf, n, &c), 0);
    ferry_cmd_cleanup(&c);
    /* An escaped backslash does end before the quote: nesting after it counts again. */
    n = mkdeep(buf, sizeof(buf), FERRY_JSON_DEPTH_MAX + 1, "\"s\":\"a\\\\\",");
    assert_int_equal(decode_json(buf, n, &c), FERRY_EPROTO);
    n = mkdeep(buf, sizeof(buf), FERRY_JSON_DEPTH_MAX, "\"s\":\"a\\\\\",");
    assert_int_equal(decode_json(buf, n, &c), 0);
    ferry_cmd_cleanup(&c);
}

/* R-CMD-3: 10,000 '[' are refused at the 33rd, without jansson and without delay. */
static void test_cmd_depth_flood_r_cmd_3(void **state)
{
    static char buf[10000];
    struct ferry_cmd c;
    struct timespec t0, t1;
    double ms;

    (void)state;
    memset(buf, '[', sizeof(buf));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(decode_json(buf, sizeof(buf), &c), FERRY_EPROTO);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    /* 100 rounds; generous for sanitizer builds, still far below a parse. */
    assert_true(ms < 500.0);
    assert_null(c.body);
}

/* R-CMD-2: encode then decode gives back the type, the id and an equal body. */
static void test_cmd_roundtrip_r_cmd_2(void **state)
{
    uint8_t b[FERRY_FRAME_PAYLOAD_MAX];
    json_t *body;
    struct ferry_cmd c;
    ssize_t n;

    (void)state;
    body = json_pack("{s:s, s:s, s:s, s:I, s:b, s:[i,s]}", "id", VALID_ID, "version",
                     FERRY_MSG_VERSION, "path", "/a/\xc3\xa9", "size", (json_int_t)1 << 40, "ok", 1,
                     "list", 7, "..");
    assert_non_null(body);
    for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++) {
        n = ferry_cmd_encode(known_types[i], body, b, sizeof(b));
        assert_true(n > FERRY_CMD_HDR_LEN);
        assert_int_equal(ferry_cmd_decode(at_guard(b, (size_t)n), (size_t)n, &c), 0);
        assert_int_equal(c.type, known_types[i]);
        assert_string_equal(c.id, VALID_ID);
        assert_true(json_equal(c.body, body));
        ferry_cmd_cleanup(&c);
    }
    /* Compact: no spaces between tokens. */
    n = ferry_cmd_encode(FERRY_MSG_OK, body, b, sizeof(b));
    assert_null(memchr(b + FERRY_CMD_HDR_LEN, ' ', (size_t)n - FERRY_CMD_HDR_LEN));
    json_decref(body);
}

/* R-CMD-2, R-FRAME-3: a whole frame made by the encoders parses back. */
static void test_cmd_in_frame_roundtrip_r_frame_3(void **state)
{
    uint8_t b[FERRY_FRAME_HDR_LEN + 256];
    json_t *body = json_pack("{s:s, s:s}", "id", VALID_ID, "version", FERRY_MSG_VERSION);
    struct ferry_frame f;
    struct ferry_cmd c;
    ssize_t n;

    (void)state;
    n = ferry_cmd_encode(FERRY_MSG_LOGIN, body, b + FERRY_FRAME_HDR_LEN,
                         sizeof(b) - FERRY_FRAME_HDR_LEN);
    assert_true(n > 0);
    ferry_frame_header_encode(b, FERRY_FRAME_COMMAND, (uint32_t)n);
    assert_int_equal(ferry_frame_parse(b, FERRY_FRAME_HDR_LEN + (size_t)n, &f),
                     FERRY_FRAME_HDR_LEN + n);
    assert_int_equal(f.type, FERRY_FRAME_COMMAND);
    assert_int_equal(ferry_cmd_decode(f.payload, f.payload_len, &c), 0);
    assert_int_equal(c.type, FERRY_MSG_LOGIN);
    ferry_cmd_cleanup(&c);
    json_decref(body);
}

/*
 * R-CMD-2: encode refuses what does not fit and never writes past its cap
 * (it encodes in one pass, so a refused body may have filled the cap).
 */
static void test_cmd_encode_cap_r_cmd_2(void **state)
{
    static uint8_t b[FERRY_FRAME_PAYLOAD_MAX + 16], ref[sizeof(b)];
    static char pad[FERRY_FRAME_PAYLOAD_MAX];
    json_t *body, *arr;
    size_t need, plen;
    ssize_t n;

    (void)state;
    body = json_pack("{s:s, s:s}", "id", VALID_ID, "version", FERRY_MSG_VERSION);
    need = json_dumpb(body, NULL, 0, JSON_COMPACT);
    assert_true(need > 0);
    memset(b, 0xaa, sizeof(b));
    memcpy(ref, b, sizeof(b));
    /* cap - 1, cap - 4 and tiny caps: refused, nothing written past the cap. */
    for (size_t cap = 0; cap <= need + 3; cap++) {
        memset(b, 0xaa, sizeof(b));
        assert_int_equal(ferry_cmd_encode(FERRY_MSG_PING, body, b, cap), FERRY_ETOOBIG);
        assert_memory_equal(b + cap, ref + cap, sizeof(b) - cap);
    }
    assert_int_equal(ferry_cmd_encode(FERRY_MSG_PING, body, b, need + 4), (ssize_t)(need + 4));
    assert_int_equal(b[need + 4], 0xaa);
    assert_int_equal(ferry_cmd_encode(FERRY_MSG_PING, body, b, need + 5), (ssize_t)(need + 4));

    /* A payload of exactly FERRY_FRAME_PAYLOAD_MAX bytes fits a frame's cap; one more does not. */
    plen = FERRY_FRAME_PAYLOAD_MAX - FERRY_CMD_HDR_LEN - need - strlen(",\"pad\":\"\"");
    memset(pad, 'p', plen);
    assert_int_equal(json_object_set_new(body, "pad", json_stringn(pad, plen)), 0);
    n = ferry_cmd_encode(FERRY_MSG_UPLOAD, body, b, FERRY_FRAME_PAYLOAD_MAX);
    assert_int_equal(n, FERRY_FRAME_PAYLOAD_MAX);
    assert_int_equal(json_object_set_new(body, "pad", json_stringn(pad, plen + 1)), 0);
    assert_int_equal(ferry_cmd_encode(FERRY_MSG_UPLOAD, body, b, FERRY_FRAME_PAYLOAD_MAX),
                     FERRY_ETOOBIG);

    /* Only objects are commands. */
    arr = json_array();
    assert_int_equal(ferry_cmd_encode(FERRY_MSG_PING, arr, b, sizeof(b)), FERRY_EPROTO);
    assert_int_equal(ferry_cmd_encode(FERRY_MSG_PING, NULL, b, sizeof(b)), FERRY_EPROTO);
    json_decref(arr);
    json_decref(body);
}

/*
 * Allocation failures inside jansson end in an error, never in a leak or a
 * crash (LeakSanitizer checks at exit). jansson 2.14 reports most of them as
 * syntax errors rather than json_error_out_of_memory, so the caller mostly
 * sees FERRY_EPROTO; -ENOMEM is returned only when jansson says so.
 */
static long jfail_after;

static void *failing_malloc(size_t n)
{
    if (jfail_after == 0)
        return NULL;
    if (jfail_after > 0)
        jfail_after--;
    return malloc(n);
}

static void test_cmd_decode_oom_r_cmd_2(void **state)
{
    static const char json[] = "{" HDR_OK ",\"path\":\"/a/b\",\"list\":[1,2,{\"k\":\"v\"}]}";
    json_malloc_t old_malloc;
    json_free_t old_free;
    struct ferry_cmd c;
    int rc = -1;
    long nth;

    (void)state;
    json_get_alloc_funcs(&old_malloc, &old_free);
    json_set_alloc_funcs(failing_malloc, free);
    for (nth = 0; nth < 1000; nth++) {
        jfail_after = nth;
        rc = decode_json(json, sizeof(json) - 1, &c);
        if (rc == 0)
            break;
        assert_true(rc == -ENOMEM || rc == FERRY_EPROTO);
        assert_null(c.body);
    }
    jfail_after = -1;
    ferry_cmd_cleanup(&c);
    json_set_alloc_funcs(old_malloc, old_free);
    assert_int_equal(rc, 0);
    assert_true(nth > 0);
}

/* ---- field readers --------------------------------------------------------------------- */

static json_t *load(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &e);

    if (j == NULL)
        fail_msg("bad test JSON: %s", e.text);
    return j;
}

/* R-CMD-2: strings are capped in bytes and may not hold NUL. */
static void test_msg_str(void **state)
{
    json_t *o = load("{\"s7\":\"abcdefg\",\"s8\":\"abcdefgh\",\"s9\":\"abcdefghi\",\"e\":\"\","
                     "\"u\":\"\xc3\xa9\",\"i\":1,\"n\":null,\"a\":[],\"t\":true,\"r\":1.5}");
    static const char *const wrong[] = {"i", "n", "a", "t", "r", "missing"};
    const char *s;

    (void)state;
    assert_int_equal(ferry_msg_str(o, "s7", 8, &s), 0);
    assert_string_equal(s, "abcdefg");
    assert_int_equal(ferry_msg_str(o, "s8", 8, &s), 0);
    assert_string_equal(s, "abcdefgh");
    assert_ptr_equal(s, json_string_value(json_object_get(o, "s8"))); /* a view */
    assert_int_equal(ferry_msg_str(o, "s9", 8, &s), FERRY_EPROTO);
    assert_null(s);
    assert_int_equal(ferry_msg_str(o, "e", 0, &s), 0);
    assert_string_equal(s, "");
    /* The cap counts bytes, not characters. */
    assert_int_equal(ferry_msg_str(o, "u", 1, &s), FERRY_EPROTO);
    assert_int_equal(ferry_msg_str(o, "u", 2, &s), 0);
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        s = "sentinel";
        assert_int_equal(ferry_msg_str(o, wrong[i], 100, &s), FERRY_EPROTO);
        assert_null(s);
    }
    /* A NUL can only come from a body built in-process; it is still refused. */
    assert_int_equal(json_object_set_new(o, "z", json_stringn("a\0b", 3)), 0);
    assert_int_equal(ferry_msg_str(o, "z", 100, &s), FERRY_EPROTO);
    /* Not an object at all. */
    assert_int_equal(ferry_msg_str(json_object_get(o, "a"), "s7", 100, &s), FERRY_EPROTO);
    assert_int_equal(ferry_msg_str(NULL, "s7", 100, &s), FERRY_EPROTO);
    json_decref(o);
}

/* R-CMD-2: optional strings: absent is fine, present-but-wrong is not. */
static void test_msg_str_opt(void **state)
{
    json_t *o = load("{\"s\":\"abc\",\"i\":1,\"n\":null}");
    const char *s;

    (void)state;
    s = "sentinel";
    assert_int_equal(ferry_msg_str_opt(o, "missing", 8, &s), 0);
    assert_null(s);
    assert_int_equal(ferry_msg_str_opt(o, "s", 3, &s), 0);
    assert_string_equal(s, "abc");
    assert_int_equal(ferry_msg_str_opt(o, "s", 2, &s), FERRY_EPROTO);
    assert_int_equal(ferry_msg_str_opt(o, "i", 8, &s), FERRY_EPROTO);
    assert_int_equal(ferry_msg_str_opt(o, "n", 8, &s), FERRY_EPROTO);
    json_decref(o);
}

/* R-CMD-2: unsigned integers: JSON integers in [0, max] only. */
static void test_msg_u64(void **state)
{
    json_t *o = load("{\"z\":0,\"a\":99,\"b\":100,\"c\":101,\"neg\":-1,\"r\":1.0,\"e\":1e3,"
                     "\"s\":\"5\",\"t\":true,\"n\":null,\"big\":9223372036854775807,"
                     "\"min\":-9223372036854775808}");
    static const char *const wrong[] = {"c", "neg", "r", "e", "s", "t", "n", "min", "missing"};
    uint64_t v;

    (void)state;
    assert_int_equal(ferry_msg_u64(o, "z", 0, &v), 0);
    assert_true(v == 0);
    assert_int_equal(ferry_msg_u64(o, "a", 100, &v), 0);
    assert_true(v == 99);
    assert_int_equal(ferry_msg_u64(o, "b", 100, &v), 0);
    assert_true(v == 100);
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        v = 7;
        assert_int_equal(ferry_msg_u64(o, wrong[i], 100, &v), FERRY_EPROTO);
        assert_true(v == 0);
    }
    /* Reals are refused by the reader even when integral (1e3 is a real to jansson). */
    assert_int_equal(ferry_msg_u64(o, "e", UINT64_MAX, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_u64(o, "big", UINT64_MAX, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(ferry_msg_u64(o, "big", (uint64_t)INT64_MAX - 1, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_u64(o, "min", UINT64_MAX, &v), FERRY_EPROTO);
    json_decref(o);
}

/* R-CMD-2: optional signed integers in [min, max]. */
static void test_msg_i64_opt(void **state)
{
    json_t *o = load("{\"lo\":-11,\"m\":-10,\"hi\":10,\"over\":11,\"r\":0.5,\"t\":false,"
                     "\"s\":\"1\",\"n\":null,\"max\":9223372036854775807,"
                     "\"min\":-9223372036854775808}");
    int64_t v;

    (void)state;
    assert_int_equal(ferry_msg_i64_opt(o, "missing", -10, 10, 3, &v), 0);
    assert_true(v == 3);
    assert_int_equal(ferry_msg_i64_opt(o, "m", -10, 10, 3, &v), 0);
    assert_true(v == -10);
    assert_int_equal(ferry_msg_i64_opt(o, "hi", -10, 10, 3, &v), 0);
    assert_true(v == 10);
    assert_int_equal(ferry_msg_i64_opt(o, "lo", -10, 10, 3, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_i64_opt(o, "over", -10, 10, 3, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_i64_opt(o, "r", -10, 10, 3, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_i64_opt(o, "t", -10, 10, 3, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_i64_opt(o, "s", -10, 10, 3, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_i64_opt(o, "n", -10, 10, 3, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_i64_opt(o, "max", INT64_MIN, INT64_MAX, 0, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(ferry_msg_i64_opt(o, "min", INT64_MIN, INT64_MAX, 0, &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(ferry_msg_i64_opt(o, "max", INT64_MIN, INT64_MAX - 1, 0, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_i64_opt(o, "min", INT64_MIN + 1, INT64_MAX, 0, &v), FERRY_EPROTO);
    json_decref(o);
}

/* R-CMD-2: optional booleans are true or false, not 0/1 or "true". */
static void test_msg_bool_opt(void **state)
{
    json_t *o = load("{\"t\":true,\"f\":false,\"one\":1,\"zero\":0,\"s\":\"true\",\"n\":null}");
    static const char *const wrong[] = {"one", "zero", "s", "n"};
    int v;

    (void)state;
    assert_int_equal(ferry_msg_bool_opt(o, "missing", 1, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(ferry_msg_bool_opt(o, "missing", 0, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ferry_msg_bool_opt(o, "t", 0, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(ferry_msg_bool_opt(o, "f", 1, &v), 0);
    assert_int_equal(v, 0);
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++)
        assert_int_equal(ferry_msg_bool_opt(o, wrong[i], 0, &v), FERRY_EPROTO);
    json_decref(o);
}

/* R-CMD-2: transfer ids are exactly 32 hex digits. */
static void test_msg_tid(void **state)
{
    json_t *o = load("{\"ok\":\"000102030405060708090a0b0c0d0e0f\","
                     "\"up\":\"000102030405060708090A0B0C0D0E0F\","
                     "\"d31\":\"000102030405060708090a0b0c0d0e0\","
                     "\"d33\":\"000102030405060708090a0b0c0d0e0f0\","
                     "\"g\":\"000102030405060708090a0b0c0d0e0g\","
                     "\"sp\":\"000102030405060708090a0b0c0d0e0 \","
                     "\"uuid\":\"" VALID_ID "\",\"n\":1234,\"e\":\"\"}");
    static const char *const wrong[] = {"d31", "d33", "g", "sp", "uuid", "n", "e", "missing"};
    uint8_t tid[FERRY_TID_LEN], want[FERRY_TID_LEN];

    (void)state;
    for (uint8_t i = 0; i < FERRY_TID_LEN; i++)
        want[i] = i;
    assert_int_equal(ferry_msg_tid(o, "ok", tid), 0);
    assert_memory_equal(tid, want, sizeof(want));
    assert_int_equal(ferry_msg_tid(o, "up", tid), 0);
    assert_memory_equal(tid, want, sizeof(want));
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        memset(tid, 0xaa, sizeof(tid));
        assert_int_equal(ferry_msg_tid(o, wrong[i], tid), FERRY_EPROTO);
        for (size_t j = 0; j < sizeof(tid); j++)
            assert_int_equal(tid[j], 0);
    }
    json_decref(o);
}

/* R-CMD-2: readers on a decoded body; numbers jansson refuses never reach them. */
/* Parses a JSON text with ferry_msg_ranges (max 4); returns rc, pairs in out. */
static int ranges_of(const char *text, uint32_t (**out)[2], size_t *n)
{
    json_error_t e;
    json_t *a = json_loads(text, JSON_DECODE_ANY, &e);
    int rc;

    assert_non_null(a);
    rc = ferry_msg_ranges(a, 4, out, n);
    json_decref(a);
    return rc;
}

#define T0 "\"00112233445566778899aabbccddeeff\""
#define T1 "\"ffeeddccbbaa99887766554433221100\""

/* Parses a JSON text with ferry_msg_tids (max 3); returns rc. */
static int tids_of(const char *text, uint8_t (*out)[FERRY_TID_LEN], size_t *n)
{
    json_error_t e;
    json_t *a = json_loads(text, JSON_DECODE_ANY, &e);
    int rc;

    assert_non_null(a);
    rc = ferry_msg_tids(a, 3, out, n);
    json_decref(a);
    return rc;
}

/* R-XFER-6: arrays of tids, including the cap at -1, exactly and +1. */
static void test_msg_tids_r_xfer_6(void **state)
{
    static const char *const bad[] = {
        "[]",
        "{}",
        T0,
        "[1]",
        "[null]",
        "[[" T0 "]]",
        "[\"00112233445566778899aabbccddeef\"]",
        "[\"00112233445566778899aabbccddeeff0\"]",
        "[\"00112233445566778899aabbccddeefg\"]",
        "[" T0 ", 5]",
        "[" T0 "," T1 "," T0 "," T1 "]",
    };
    uint8_t t[3][FERRY_TID_LEN];
    size_t n = 99, i;

    (void)state;
    assert_int_equal(tids_of("[" T0 "]", t, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(t[0][0], 0x00);
    assert_int_equal(t[0][15], 0xff);
    assert_int_equal(tids_of("[" T0 "," T1 "]", t, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(t[1][0], 0xff);
    /* The cap; cap + 1 is the last bad case. Repeats are the server's to judge. */
    assert_int_equal(tids_of("[" T0 "," T1 "," T0 "]", t, &n), 0);
    assert_int_equal(n, 3);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = 99;
        if (tids_of(bad[i], t, &n) != FERRY_EPROTO)
            fail_msg("accepted %s", bad[i]);
        assert_int_equal(n, 0);
    }
}

/* R-CHUNK-16: range lists, including the cap at -1, exactly and +1. */
static void test_msg_ranges_r_chunk_16(void **state)
{
    static const char *const bad[] = {
        "[]",
        "{}",
        "\"0\"",
        "[[0,0]]",
        "[[-1,1]]",
        "[[0,-1]]",
        "[[2,1],[1,1]]",
        "[[0,2],[1,1]]",
        "[[0,1],[1,1]]",
        "[[0]]",
        "[[0,1,2]]",
        "[[\"0\",1]]",
        "[[0,1.5]]",
        "[0,1]",
        "[[4294967296,1]]",
        "[[0,4294967296]]",
        "[[4294967295,1]]",
        "[[1,1],[1,1]]",
        "[[0,1],[2,1],[4,1],[6,1],[8,1]]",
    };
    uint32_t(*r)[2] = NULL;
    size_t n = 99, i;

    (void)state;
    assert_int_equal(ranges_of("[[0,1],[2,3],[6,1]]", &r, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(r[1][0], 2);
    assert_int_equal(r[1][1], 3);
    assert_int_equal(r[2][0], 6);
    ferry_free(r);
    assert_int_equal(ranges_of("[[4294967294,1]]", &r, &n), 0);
    ferry_free(r);
    /* cap - 1 and cap are taken; cap + 1 is the last bad case above. */
    assert_int_equal(ranges_of("[[0,1],[2,1],[4,1]]", &r, &n), 0);
    ferry_free(r);
    assert_int_equal(ranges_of("[[0,1],[2,1],[4,1],[6,1]]", &r, &n), 0);
    assert_int_equal(n, 4);
    ferry_free(r);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = (void *)&n;
        if (ranges_of(bad[i], &r, &n) != FERRY_EPROTO)
            fail_msg("accepted %s", bad[i]);
        assert_null(r);
        assert_int_equal(n, 0);
    }
}

static void test_msg_readers_on_decoded_r_cmd_2(void **state)
{
    static const char json[] = "{" HDR_OK ",\"path\":\"/a\",\"size\":1e3,\"off\":4294967296,"
                               "\"tid\":\"000102030405060708090a0b0c0d0e0f\"}";
    struct ferry_cmd c;
    const char *s;
    uint64_t v;
    uint8_t tid[FERRY_TID_LEN];

    (void)state;
    assert_int_equal(decode_json(json, sizeof(json) - 1, &c), 0);
    assert_int_equal(ferry_msg_str(c.body, "path", 4096, &s), 0);
    assert_string_equal(s, "/a");
    /* 1e3 parses as a real: refused by the reader, not by jansson. */
    assert_int_equal(ferry_msg_u64(c.body, "size", UINT64_MAX, &v), FERRY_EPROTO);
    assert_int_equal(ferry_msg_u64(c.body, "off", UINT64_MAX, &v), 0);
    assert_true(v == UINT64_C(4294967296));
    assert_int_equal(ferry_msg_tid(c.body, "tid", tid), 0);
    assert_int_equal(ferry_msg_str(c.body, "version", 3, &s), 0);
    assert_string_equal(s, "1.0");
    ferry_cmd_cleanup(&c);
    ferry_cmd_cleanup(&c); /* idempotent */
}

/* ---- file payloads (1.4, R-FILE) ------------------------------------------------------- */

static const uint8_t file_ref[16] = {0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f,
                                     0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95, 0x0e};

/* A file payload in buf: the header (tid 0xc0.., sha256 0x30..) and n bytes of 'f'. */
static size_t mkfile(uint8_t *buf, size_t cap, int64_t mtime, int exec, size_t n)
{
    uint8_t tid[FERRY_TID_LEN], sha[32];

    assert_true(cap >= FERRY_FILE_HDR_LEN + n);
    for (uint8_t j = 0; j < FERRY_TID_LEN; j++)
        tid[j] = (uint8_t)(0xc0 + j);
    for (uint8_t j = 0; j < sizeof(sha); j++)
        sha[j] = (uint8_t)(0x30 + j);
    ferry_file_frame_header_encode(buf, file_ref, tid, mtime, exec, sha);
    memset(buf + FERRY_FILE_HDR_LEN, 'f', n);
    return FERRY_FILE_HDR_LEN + n;
}

/* A refused file payload leaves nothing behind (R-FILE-2: out is zeroed). */
static void assert_file_zero(const struct ferry_file_frame *ff)
{
    static const uint8_t zero[32];

    assert_memory_equal(ff->ref, zero, sizeof(ff->ref));
    assert_memory_equal(ff->tid, zero, sizeof(ff->tid));
    assert_true(ff->mtime == 0);
    assert_int_equal(ff->exec, 0);
    assert_memory_equal(ff->sha256, zero, sizeof(ff->sha256));
    assert_null(ff->bytes);
    assert_int_equal(ff->len, 0);
}

/*
 * R-FILE-2, R-FRAME-3: a payload shorter than the 73-byte header is refused; every
 * length up to the frame's cap is a file of 0..FERRY_FILE_DATA_MAX bytes, also when
 * it comes out of a maximal frame; past the cap the decoder refuses it as well.
 */
static void test_file_frame_lengths_r_file_2(void **state)
{
    static const struct {
        size_t len; /* payload length */
        int rc;
    } cases[] = {
        {0, FERRY_EPROTO},
        {1, FERRY_EPROTO},
        {FERRY_FILE_HDR_LEN - 1, FERRY_EPROTO},
        {FERRY_FILE_HDR_LEN, 0},
        {FERRY_FILE_HDR_LEN + 1, 0},
        {FERRY_FRAME_PAYLOAD_MAX - 1, 0},
        {FERRY_FRAME_PAYLOAD_MAX, 0},
        {FERRY_FRAME_PAYLOAD_MAX + 1, FERRY_EPROTO},
        {2 * FERRY_FRAME_PAYLOAD_MAX, FERRY_EPROTO},
    };
    static uint8_t b[FERRY_FRAME_HDR_LEN + 2 * FERRY_FRAME_PAYLOAD_MAX];
    struct ferry_file_frame ff;
    struct ferry_frame f;

    (void)state;
    assert_int_equal(FERRY_FILE_HDR_LEN, 73);
    assert_int_equal(FERRY_FILE_DATA_MAX, 32695);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = cases[i].len;
        const uint8_t *p;

        memset(b, 0, sizeof(b));
        if (n >= FERRY_FILE_HDR_LEN)
            mkfile(b, sizeof(b), 42, 1, n - FERRY_FILE_HDR_LEN);
        p = at_guard(b, n);
        memset(&ff, 0xaa, sizeof(ff));
        assert_int_equal(ferry_file_frame_decode(p, n, &ff), cases[i].rc);
        if (cases[i].rc != 0) {
            assert_file_zero(&ff);
            continue;
        }
        assert_int_equal(ff.len, n - FERRY_FILE_HDR_LEN);
        assert_true(ff.len <= FERRY_FILE_DATA_MAX);
        assert_ptr_equal(ff.bytes, p + FERRY_FILE_HDR_LEN);
        assert_memory_equal(ff.ref, file_ref, sizeof(file_ref));
        assert_true(ff.mtime == 42);
        assert_int_equal(ff.exec, 1);
        if (n == FERRY_FRAME_PAYLOAD_MAX)
            assert_int_equal(ff.len, FERRY_FILE_DATA_MAX);

        /* The same payload as the frame layer hands it over. */
        assert_int_equal(ferry_frame_header_encode(b, FERRY_FRAME_FILE, (uint32_t)n),
                         FERRY_FRAME_HDR_LEN);
        mkfile(b + FERRY_FRAME_HDR_LEN, sizeof(b) - FERRY_FRAME_HDR_LEN, 42, 1,
               n - FERRY_FILE_HDR_LEN);
        p = at_guard(b, FERRY_FRAME_HDR_LEN + n);
        assert_int_equal(ferry_frame_parse(p, FERRY_FRAME_HDR_LEN + n, &f),
                         (ssize_t)(FERRY_FRAME_HDR_LEN + n));
        assert_int_equal(f.type, FERRY_FRAME_FILE);
        assert_int_equal(ferry_file_frame_decode(f.payload, f.payload_len, &ff), 0);
        assert_int_equal(ff.len, n - FERRY_FILE_HDR_LEN);
        assert_ptr_equal(ff.bytes, p + FERRY_FRAME_HDR_LEN + FERRY_FILE_HDR_LEN);
    }
}

/* R-FILE-2: every truncated header is refused, with nothing decoded; then any length is a file. */
static void test_file_frame_prefixes_r_file_2(void **state)
{
    uint8_t b[FERRY_FILE_HDR_LEN + 16];
    struct ferry_file_frame ff;
    size_t n = mkfile(b, sizeof(b), -1, 0, 16);

    (void)state;
    for (size_t k = 0; k < FERRY_FILE_HDR_LEN; k++) {
        memset(&ff, 0xaa, sizeof(ff));
        assert_int_equal(ferry_file_frame_decode(at_guard(b, k), k, &ff), FERRY_EPROTO);
        assert_file_zero(&ff);
    }
    for (size_t k = FERRY_FILE_HDR_LEN; k <= n; k++) {
        const uint8_t *p = at_guard(b, k);

        memset(&ff, 0xaa, sizeof(ff));
        assert_int_equal(ferry_file_frame_decode(p, k, &ff), 0);
        assert_int_equal(ff.len, k - FERRY_FILE_HDR_LEN);
        assert_ptr_equal(ff.bytes, p + FERRY_FILE_HDR_LEN);
        assert_true(ff.mtime == -1);
        assert_int_equal(ff.exec, 0);
    }
}

/* R-FILE-2: flags 0 and 1 (executable) only; any other bit set is a protocol fault. */
static void test_file_frame_flags_r_file_2(void **state)
{
    static const size_t lens[] = {0, 1, FERRY_FILE_DATA_MAX};
    static uint8_t b[FERRY_FRAME_PAYLOAD_MAX];
    struct ferry_file_frame ff;

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = mkfile(b, sizeof(b), 7, 0, lens[i]);

        for (unsigned flags = 0; flags <= 255; flags++) {
            const uint8_t *p;

            b[40] = (uint8_t)flags;
            p = at_guard(b, n);
            memset(&ff, 0xaa, sizeof(ff));
            if (flags > FERRY_FILE_EXEC) {
                assert_int_equal(ferry_file_frame_decode(p, n, &ff), FERRY_EPROTO);
                assert_file_zero(&ff);
                continue;
            }
            assert_int_equal(ferry_file_frame_decode(p, n, &ff), 0);
            assert_int_equal(ff.exec, flags == FERRY_FILE_EXEC);
            assert_int_equal(ff.len, lens[i]);
            assert_ptr_equal(ff.bytes, p + FERRY_FILE_HDR_LEN);
        }
    }
}

/*
 * R-FILE: the header round-trips: ref (a UUID's bytes), tid, mtime as a big-endian
 * int64 (negative and extreme values included), the exec flag, the SHA-256; the
 * bytes are a view into the caller's buffer.
 */
static void test_file_frame_roundtrip_r_file(void **state)
{
    static const int64_t mtimes[] = {
        0,
        1,
        -1,
        INT64_MIN,
        INT64_MAX,
        -1234567890123456789,
        INT64_C(1700000000123456789),
        INT64_C(0x0102030405060708),
    };
    static const int execs[] = {0, 1, 7};
    uint8_t ref[16], tid[FERRY_TID_LEN], sha[32], b[FERRY_FILE_HDR_LEN + 5];
    uint8_t want_be[8];
    char text[37];
    struct ferry_file_frame ff;

    (void)state;
    assert_int_equal(ferry_uuid_to_bytes("0F8FAD5B-d9cb-469f-A165-70867728950e", ref), 0);
    assert_memory_equal(ref, file_ref, sizeof(ref));
    for (size_t j = 0; j < sizeof(tid); j++)
        tid[j] = (uint8_t)(0xff - j);
    for (size_t j = 0; j < sizeof(sha); j++)
        sha[j] = (uint8_t)(j * 7 + 1);
    for (size_t i = 0; i < sizeof(mtimes) / sizeof(mtimes[0]); i++) {
        for (size_t e = 0; e < sizeof(execs) / sizeof(execs[0]); e++) {
            const uint8_t *p;

            memset(b, 0xee, sizeof(b));
            ferry_file_frame_header_encode(b, ref, tid, mtimes[i], execs[e], sha);
            /* The layout of section 5.1, byte for byte. */
            assert_memory_equal(b, ref, 16);
            assert_memory_equal(b + 16, tid, FERRY_TID_LEN);
            for (int k = 0; k < 8; k++)
                want_be[k] = (uint8_t)((uint64_t)mtimes[i] >> (56 - 8 * k));
            assert_memory_equal(b + 32, want_be, 8);
            assert_int_equal(b[40], execs[e] ? FERRY_FILE_EXEC : 0);
            assert_memory_equal(b + 41, sha, 32);
            assert_int_equal(b[FERRY_FILE_HDR_LEN], 0xee); /* nothing written past the header */
            memcpy(b + FERRY_FILE_HDR_LEN, "hello", 5);

            p = at_guard(b, sizeof(b));
            assert_int_equal(ferry_file_frame_decode(p, sizeof(b), &ff), 0);
            assert_memory_equal(ff.ref, ref, 16);
            assert_memory_equal(ff.tid, tid, FERRY_TID_LEN);
            assert_true(ff.mtime == mtimes[i]);
            assert_int_equal(ff.exec, execs[e] != 0);
            assert_memory_equal(ff.sha256, sha, 32);
            assert_ptr_equal(ff.bytes, p + FERRY_FILE_HDR_LEN);
            assert_int_equal(ff.len, 5);
            assert_memory_equal(ff.bytes, "hello", 5);
            ferry_uuid_from_bytes(ff.ref, text);
            assert_string_equal(text, VALID_ID);
        }
    }
    /* Big-endian, most significant byte first, two's complement for negative times. */
    ferry_file_frame_header_encode(b, ref, tid, INT64_C(0x0102030405060708), 0, sha);
    assert_memory_equal(b + 32, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    ferry_file_frame_header_encode(b, ref, tid, -2, 0, sha);
    assert_memory_equal(b + 32, "\xff\xff\xff\xff\xff\xff\xff\xfe", 8);
}

/*
 * R-DATA-1: bytes laid out as data frames of at most FERRY_DATA_MAX each,
 * at the cap-1, cap, cap+1 and several frames' lengths: the frames parse
 * back, in order, offsets running on, the bytes unchanged, and the length
 * said beforehand is the length written.
 */
static void test_data_frames_encode_r_data_1(void **state)
{
    static const size_t lens[] = {1, FERRY_DATA_MAX - 1, FERRY_DATA_MAX, FERRY_DATA_MAX + 1,
                                  3 * FERRY_DATA_MAX + 7};
    uint8_t tid[FERRY_TID_LEN];
    size_t i, k;

    (void)state;
    memset(tid, 0x5a, sizeof(tid));
    assert_int_equal(ferry_data_frames_len(0), 0);
    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t len = lens[i], need = ferry_data_frames_len(len), at = 0;
        uint64_t off = 1000;
        uint8_t *src = malloc(len), *buf = malloc(need + 1);

        assert_non_null(src);
        assert_non_null(buf);
        for (k = 0; k < len; k++)
            src[k] = (uint8_t)(k * 7 + i);
        buf[need] = 0xee; /* nothing written past what was said */
        ferry_data_frames_encode(buf, tid, off, src, len);
        assert_int_equal(buf[need], 0xee);
        while (at < need) {
            struct ferry_frame f;
            struct ferry_data d;
            ssize_t n = ferry_frame_parse(buf + at, need - at, &f);

            assert_true(n > 0);
            assert_int_equal(f.type, FERRY_FRAME_DATA);
            assert_int_equal(ferry_data_decode(f.payload, f.payload_len, &d), 0);
            assert_memory_equal(d.tid, tid, FERRY_TID_LEN);
            assert_int_equal(d.offset, off);
            assert_true(d.len >= 1 && d.len <= FERRY_DATA_MAX);
            assert_memory_equal(d.bytes, src + (off - 1000), d.len);
            off += d.len;
            at += (size_t)n;
        }
        assert_int_equal(at, need);
        assert_int_equal(off - 1000, len);
        free(src);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_heartbeat_r_frame_2),
        cmocka_unit_test(test_frame_prefixes_need_more_r_frame_3),
        cmocka_unit_test(test_frame_bad_version_r_frame_1),
        cmocka_unit_test(test_frame_bad_type_r_frame_1),
        cmocka_unit_test(test_frame_types_r_frame_1),
        cmocka_unit_test(test_frame_lengths_r_frame_3),
        cmocka_unit_test(test_frame_back_to_back_r_frame_3),
        cmocka_unit_test(test_frame_header_encode_r_frame_1),
        cmocka_unit_test(test_data_short_r_data_1),
        cmocka_unit_test(test_chunk_frame_r_chunk_6),
        cmocka_unit_test(test_data_sizes_r_data_1),
        cmocka_unit_test(test_data_offsets_r_data_1),
        cmocka_unit_test(test_data_roundtrip_r_data_1),
        cmocka_unit_test(test_file_frame_lengths_r_file_2),
        cmocka_unit_test(test_file_frame_prefixes_r_file_2),
        cmocka_unit_test(test_file_frame_flags_r_file_2),
        cmocka_unit_test(test_file_frame_roundtrip_r_file),
        cmocka_unit_test(test_msg_name_registry_r_msg),
        cmocka_unit_test(test_cmd_short_r_cmd_1),
        cmocka_unit_test(test_cmd_types_r_cmd_1),
        cmocka_unit_test(test_cmd_json_table_r_cmd_2),
        cmocka_unit_test(test_cmd_raw_nul_r_cmd_2),
        cmocka_unit_test(test_cmd_depth_r_cmd_3),
        cmocka_unit_test(test_cmd_depth_strings_r_cmd_3),
        cmocka_unit_test(test_cmd_depth_flood_r_cmd_3),
        cmocka_unit_test(test_cmd_roundtrip_r_cmd_2),
        cmocka_unit_test(test_cmd_in_frame_roundtrip_r_frame_3),
        cmocka_unit_test(test_cmd_encode_cap_r_cmd_2),
        cmocka_unit_test(test_cmd_decode_oom_r_cmd_2),
        cmocka_unit_test(test_msg_str),
        cmocka_unit_test(test_msg_str_opt),
        cmocka_unit_test(test_msg_u64),
        cmocka_unit_test(test_msg_i64_opt),
        cmocka_unit_test(test_msg_bool_opt),
        cmocka_unit_test(test_msg_tid),
        cmocka_unit_test(test_msg_ranges_r_chunk_16),
        cmocka_unit_test(test_msg_tids_r_xfer_6),
        cmocka_unit_test(test_msg_readers_on_decoded_r_cmd_2),
        cmocka_unit_test(test_data_frames_encode_r_data_1),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
