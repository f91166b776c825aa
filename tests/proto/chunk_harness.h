/*
 * Helpers shared by the chunked-transfer protocol tests (test_chunked.c,
 * test_get_chunks.c): samples cut by R-CHUNK-1, accounts, raw chunk frames,
 * expected replies, whole uploads and downloads.
 */
#ifndef FERRY_TEST_CHUNK_HARNESS_H
#define FERRY_TEST_CHUNK_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include "ferry/manifest.h"
#include "harness.h"

/* Each test program uses some of these helpers: unused ones are no fault. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
/* A file and its chunk list, as a 1.1 client would send it. */
struct sample {
    uint8_t *data;
    size_t size;
    uint8_t *list;
    size_t list_len;
    uint32_t n;
    char cid[FERRY_CID_LEN + 1];
};

/* A user whose device identity and token are kept, so reconnecting costs no hashing. */
struct acct {
    char name[64];
    char dev[320];
    char token[64];
};

/* ---- Samples ---- */

/* Random bytes cut by R-CHUNK-1's chunker, a SHA-256 per chunk. */
static void sample_cdc(struct sample *s, size_t size)
{
    struct ferry_cdc cdc;
    size_t off = 0;
    uint64_t gear;

    memset(s, 0, sizeof(*s));
    s->size = size;
    s->data = malloc(size > 0 ? size : 1);
    s->list = malloc((size / FERRY_CHUNK_MIN + 2) * FERRY_CHUNK_ENT_LEN);
    assert_non_null(s->data);
    assert_non_null(s->list);
    ferry_random(s->data, size);
    ferry_cdc_default(&cdc);
    while (off < size) {
        struct ferry_chunk_ent e = {0};
        size_t len = ferry_cdc_next(&cdc, s->data + off, size - off, &gear);

        assert_true(len > 0 && len <= FERRY_CHUNK_MAX);
        e.len = (uint32_t)len;
        ferry_sha256_buf(s->data + off, len, e.hash);
        ferry_chunk_ent_encode(s->list + (size_t)s->n * FERRY_CHUNK_ENT_LEN, &e);
        s->n++;
        off += len;
    }
    s->list_len = (size_t)s->n * FERRY_CHUNK_ENT_LEN;
    assert_int_equal(ferry_chunk_list_cid(s->list, s->list_len, s->cid), 0);
}

/*
 * n chunks of len bytes (the last of last bytes) with their true hashes; the
 * server does not check where boundaries fall, only R-CHUNK-2's lengths.
 */
static void sample_fixed(struct sample *s, uint32_t n, uint32_t len, uint32_t last)
{
    uint32_t i;
    size_t off = 0;

    memset(s, 0, sizeof(*s));
    s->n = n;
    s->size = (size_t)(n - 1) * len + last;
    s->data = malloc(s->size);
    s->list_len = (size_t)n * FERRY_CHUNK_ENT_LEN;
    s->list = malloc(s->list_len);
    assert_non_null(s->data);
    assert_non_null(s->list);
    ferry_random(s->data, s->size);
    for (i = 0; i < n; i++) {
        struct ferry_chunk_ent e = {.len = i + 1 < n ? len : last};

        ferry_sha256_buf(s->data + off, e.len, e.hash);
        ferry_chunk_ent_encode(s->list + (size_t)i * FERRY_CHUNK_ENT_LEN, &e);
        off += e.len;
    }
    assert_int_equal(ferry_chunk_list_cid(s->list, s->list_len, s->cid), 0);
}

static void sample_free(struct sample *s)
{
    free(s->data);
    free(s->list);
    memset(s, 0, sizeof(*s));
}

/* Offset and length of chunk i. */
static void sample_chunk(const struct sample *s, uint32_t i, size_t *off, uint32_t *len)
{
    struct ferry_chunk_ent e;
    uint32_t k;

    *off = 0;
    for (k = 0; k < i; k++) {
        ferry_chunk_ent_decode(s->list + (size_t)k * FERRY_CHUNK_ENT_LEN, &e);
        *off += e.len;
    }
    ferry_chunk_ent_decode(s->list + (size_t)i * FERRY_CHUNK_ENT_LEN, &e);
    *len = e.len;
}

/* Writes one list entry with a random hash. */
static void put_entry(uint8_t *list, uint32_t i, uint32_t len)
{
    struct ferry_chunk_ent e = {.len = len};

    ferry_random(e.hash, sizeof(e.hash));
    ferry_chunk_ent_encode(list + (size_t)i * FERRY_CHUNK_ENT_LEN, &e);
}

/* ---- Connections ---- */

static void open_device(struct client *cl, struct server *s, const char *dev)
{
    memset(cl, 0, sizeof(*cl));
    assert_int_equal(ferry_identity_load_or_create(dev, &cl->id), 0);
    assert_int_equal(ferry_client_connect(&cl->c, "127.0.0.1", s->port, &cl->id, s->id, 5000), 0);
}

/* Signs a user up once; later connections log in with the token (no Argon2id). */
static void acct_signup(struct server *s, struct acct *a, const char *name)
{
    struct client cl;

    snprintf(a->name, sizeof(a->name), "%s", name);
    snprintf(a->dev, sizeof(a->dev), "%s/acct-%s", s->dir, name);
    open_device(&cl, s, a->dev);
    assert_int_equal(client_signup(&cl, name, a->token, sizeof(a->token)), 1);
    client_close(&cl);
}

/* A logged-in connection that says it speaks version (NULL: HARNESS_CONNECT_VERSION). */
static void acct_open_as(struct server *s, const struct acct *a, struct client *cl,
                         const char *version)
{
    struct ferry_cmd m;

    open_device(cl, s, a->dev);
    assert_int_equal(
        client_send(cl, FERRY_MSG_CONNECT,
                    json_pack("{s:s, s:s, s:s}", "client", "ferry-test", "token", a->token,
                              "version", version != NULL ? version : HARNESS_CONNECT_VERSION)),
        0);
    assert_int_equal(client_expect(cl, FERRY_MSG_ACCEPT, &m), 1);
    assert_string_equal(json_string_value(json_object_get(m.body, "user")), a->name);
    ferry_cmd_cleanup(&m);
}

static void acct_open(struct server *s, const struct acct *a, struct client *cl)
{
    acct_open_as(s, a, cl, NULL);
}

/* ---- Frames ---- */

static void queue_bytes(struct client *cl, const void *p, size_t n)
{
    assert_int_equal(ferry_client_send_raw(cl->c, p, n), 0);
}

/* Queues one data frame (R-DATA) without sending it. */
static void queue_data(struct client *cl, const uint8_t tid[16], uint64_t off, const uint8_t *p,
                       size_t n)
{
    uint8_t h[FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN];

    ferry_frame_header_encode(h, FERRY_FRAME_DATA, (uint32_t)(FERRY_DATA_HDR_LEN + n));
    ferry_data_header_encode(h + FERRY_FRAME_HDR_LEN, tid, off);
    queue_bytes(cl, h, sizeof(h));
    if (n > 0)
        queue_bytes(cl, p, n);
}

/* Queues one chunk frame (type 3, R-CHUNK-6) without sending it. */
static void queue_chunk(struct client *cl, const uint8_t tid[16], uint32_t index, uint32_t off,
                        const uint8_t *p, size_t n)
{
    uint8_t h[FERRY_FRAME_HDR_LEN + FERRY_CHUNK_HDR_LEN];

    ferry_frame_header_encode(h, FERRY_FRAME_CHUNK, (uint32_t)(FERRY_CHUNK_HDR_LEN + n));
    ferry_chunk_frame_header_encode(h + FERRY_FRAME_HDR_LEN, tid, index, off);
    queue_bytes(cl, h, sizeof(h));
    if (n > 0)
        queue_bytes(cl, p, n);
}

static void flush(struct client *cl)
{
    assert_int_equal(ferry_client_pump(cl->c, HARNESS_WAIT_MS, 1), 0);
}

/* Sends list bytes [from, to) as data frames of piece bytes each (R-CHUNK-4). */
static void send_list_range(struct client *cl, const uint8_t tid[16], const uint8_t *list,
                            size_t from, size_t to, size_t piece)
{
    size_t off, n;

    for (off = from; off < to; off += n) {
        n = to - off < piece ? to - off : piece;
        queue_data(cl, tid, off, list + off, n);
    }
    flush(cl);
}

/* Sends a whole chunk of a sample as chunk frames. */
static void send_sample_chunk(struct client *cl, const uint8_t tid[16], const struct sample *s,
                              uint32_t i)
{
    size_t off;
    uint32_t len;

    sample_chunk(s, i, &off, &len);
    assert_int_equal(ferry_client_send_chunk(cl->c, tid, i, s->data + off, len), 0);
    flush(cl);
}

static void new_tid(uint8_t tid[16], char hex[33])
{
    ferry_random(tid, 16);
    ferry_hex_encode(tid, 16, hex);
}

/* Sends ChunkedUpload (R-CHUNK-4) and copies its id into ref. */
static void open_chunked(struct client *cl, const uint8_t tid[16], const char *path,
                         json_int_t size, char ref[37])
{
    char hex[33];

    ferry_hex_encode(tid, 16, hex);
    assert_int_equal(
        client_send(cl, FERRY_MSG_CHUNKED_UPLOAD,
                    json_pack("{s:s, s:s, s:I}", "tid", hex, "path", path, "size", size)),
        0);
    if (ref != NULL)
        memcpy(ref, cl->last_ref, 37);
}

static void open_plain(struct client *cl, const uint8_t tid[16], const char *path, json_int_t size,
                       char ref[37])
{
    char hex[33];

    ferry_hex_encode(tid, 16, hex);
    assert_int_equal(
        client_send(cl, FERRY_MSG_UPLOAD,
                    json_pack("{s:s, s:s, s:I}", "tid", hex, "path", path, "size", size)),
        0);
    if (ref != NULL)
        memcpy(ref, cl->last_ref, 37);
}

static void send_complete(struct client *cl, const uint8_t tid[16], const char *hash)
{
    char hex[33];

    ferry_hex_encode(tid, 16, hex);
    assert_int_equal(client_send(cl, FERRY_MSG_TRANSFER_COMPLETE,
                                 json_pack("{s:s, s:s}", "tid", hex, "hash", hash)),
                     0);
}

static void send_cancel(struct client *cl, const uint8_t tid[16])
{
    char hex[33];

    ferry_hex_encode(tid, 16, hex);
    assert_int_equal(client_send(cl, FERRY_MSG_TRANSFER_CANCEL, json_pack("{s:s}", "tid", hex)), 0);
}

/* ---- Replies ---- */

static const char *str_member(const struct ferry_cmd *m, const char *key)
{
    const char *v = json_string_value(json_object_get(m->body, key));

    return v != NULL ? v : "";
}

/*
 * The next frame for cl, pumping until one is whole; the test fails on a
 * close or once deadline (ferry_now_ms) has passed.
 */
static void next_frame_by(struct client *cl, uint64_t deadline, struct ferry_frame *f)
{
    int rc;

    while ((rc = ferry_client_next_frame(cl->c, f)) == 0) {
        assert_false(ferry_client_eof(cl->c));
        assert_true(ferry_now_ms() < deadline);
        assert_int_equal(ferry_client_pump(cl->c, 1000, 0), 0);
    }
    assert_true(rc > 0);
}

/* The next message must be exactly this type. */
static void recv_type(struct client *cl, int32_t type, struct ferry_cmd *m)
{
    int rc = client_recv(cl, m, HARNESS_WAIT_MS);

    if (rc == 1 && m->type != type)
        fprintf(stderr, "expected message %d, got %d (code %d: %s)\n", type, m->type, err_code(m),
                str_member(m, "message"));
    assert_int_equal(rc, 1);
    assert_int_equal(m->type, type);
}

/*
 * Expects ChunkNeed for tid with this group; copies need (ascending,
 * checked) into out and returns how many.
 */
static size_t expect_need(struct client *cl, const char *ref, const uint8_t tid[16],
                          json_int_t first, json_int_t count, json_int_t *out, size_t cap)
{
    struct ferry_cmd m;
    char hex[33];
    json_t *need, *v;
    size_t i, n;

    ferry_hex_encode(tid, 16, hex);
    recv_type(cl, FERRY_MSG_CHUNK_NEED, &m);
    if (ref != NULL)
        assert_string_equal(str_member(&m, "ref"), ref);
    assert_string_equal(str_member(&m, "tid"), hex);
    assert_int_equal(json_integer_value(json_object_get(m.body, "first")), first);
    assert_int_equal(json_integer_value(json_object_get(m.body, "count")), count);
    need = json_object_get(m.body, "need");
    assert_true(json_is_array(need));
    n = json_array_size(need);
    assert_true(n <= cap);
    json_array_foreach(need, i, v)
    {
        assert_true(json_is_integer(v));
        out[i] = json_integer_value(v);
        assert_true(out[i] >= first && out[i] < first + count);
        if (i > 0)
            assert_true(out[i] > out[i - 1]);
    }
    ferry_cmd_cleanup(&m);
    return n;
}

/* R-CHUNK-5: the size of the group that starts at entry first. */
static json_int_t need_group_at(json_int_t first)
{
    if (first < FERRY_NEED_FIRST)
        return FERRY_NEED_FIRST;
    return first < FERRY_NEED_GROUP ? first : FERRY_NEED_GROUP;
}

/*
 * Expects the ChunkNeeds that answer a whole list of total entries sent at
 * once, in groups of R-CHUNK-5's sizes (16, 16, 32, ...); returns how many
 * indices they ask for, ascending, in out.
 */
static size_t expect_need_groups(struct client *cl, const char *ref, const uint8_t tid[16],
                                 json_int_t total, json_int_t *out, size_t cap)
{
    json_int_t first = 0, count;
    size_t n = 0;

    while (first < total) {
        count = need_group_at(first);
        if (count > total - first)
            count = total - first;
        n += expect_need(cl, ref, tid, first, count, out + n, cap - n);
        first += count;
    }
    return n;
}

/*
 * Expects the ChunkNeeds for entries [first, first + count), sent at once, in
 * R-CHUNK-5's groups, asking for every index.
 */
static void expect_need_all(struct client *cl, const char *ref, const uint8_t tid[16],
                            json_int_t first, json_int_t count)
{
    json_int_t need[FERRY_NEED_GROUP], i, n, end = first + count;

    while (first < end) {
        n = need_group_at(first);
        if (n > end - first)
            n = end - first;
        assert_int_equal(expect_need(cl, ref, tid, first, n, need, FERRY_NEED_GROUP), n);
        for (i = 0; i < n; i++)
            assert_int_equal(need[i], first + i);
        first += n;
    }
}

/* Expects an Error with code; checks ref, tid and index when given (index < 0: absent). */
static void expect_error(struct client *cl, int code, const char *ref, const uint8_t tid[16],
                         json_int_t index)
{
    struct ferry_cmd m;
    char hex[33];

    recv_type(cl, FERRY_MSG_ERROR, &m);
    if (err_code(&m) != code)
        fprintf(stderr, "expected Error %d, got %d: %s\n", code, err_code(&m),
                str_member(&m, "message"));
    assert_int_equal(err_code(&m), code);
    if (ref != NULL)
        assert_string_equal(str_member(&m, "ref"), ref);
    if (tid != NULL) {
        ferry_hex_encode(tid, 16, hex);
        assert_string_equal(str_member(&m, "tid"), hex);
    }
    if (index >= 0) {
        assert_true(json_is_integer(json_object_get(m.body, "index")));
        assert_int_equal(json_integer_value(json_object_get(m.body, "index")), index);
    }
    ferry_cmd_cleanup(&m);
}

/*
 * Expects one Error with code, ref and tid for each of the n chunk indices
 * in idx, in any order: chunks are checked in parallel and join the write
 * queue as their checks finish (R-CHUNK-7).
 */
static void expect_chunk_errors(struct client *cl, int code, const char *ref, const uint8_t tid[16],
                                const json_int_t *idx, size_t n)
{
    struct ferry_cmd m;
    char hex[33];
    size_t i, k, seen = 0;
    json_int_t index;
    uint64_t done[4] = {0}; /* which of up to 256 indices came */

    assert_true(n <= 256);
    ferry_hex_encode(tid, 16, hex);
    for (k = 0; k < n; k++) {
        recv_type(cl, FERRY_MSG_ERROR, &m);
        assert_int_equal(err_code(&m), code);
        assert_string_equal(str_member(&m, "ref"), ref);
        assert_string_equal(str_member(&m, "tid"), hex);
        index = json_integer_value(json_object_get(m.body, "index"));
        for (i = 0; i < n && idx[i] != index; i++)
            ;
        assert_true(i < n);
        assert_false(done[i / 64] & (1ull << (i % 64)));
        done[i / 64] |= 1ull << (i % 64);
        seen++;
        ferry_cmd_cleanup(&m);
    }
    assert_int_equal(seen, n);
}

/* Expects total ChunkStored messages for tid and counts them per index. */
static void expect_stored(struct client *cl, const uint8_t tid[16], int *counts, uint32_t n,
                          int total)
{
    struct ferry_cmd m;
    char hex[33];
    json_int_t index;
    int i;

    ferry_hex_encode(tid, 16, hex);
    for (i = 0; i < total; i++) {
        recv_type(cl, FERRY_MSG_CHUNK_STORED, &m);
        assert_string_equal(str_member(&m, "tid"), hex);
        index = json_integer_value(json_object_get(m.body, "index"));
        assert_true(index >= 0 && index < (json_int_t)n);
        counts[index]++;
        ferry_cmd_cleanup(&m);
    }
}

/* Expects Committed naming tid. */
static void expect_committed(struct client *cl, const uint8_t tid[16])
{
    struct ferry_cmd m;
    char hex[33];
    json_t *tids;

    ferry_hex_encode(tid, 16, hex);
    recv_type(cl, FERRY_MSG_COMMITTED, &m);
    tids = json_object_get(m.body, "tids");
    assert_int_equal(json_array_size(tids), 1);
    assert_string_equal(json_string_value(json_array_get(tids, 0)), hex);
    ferry_cmd_cleanup(&m);
}

/* The next message is a Pong: nothing else was queued for this connection. */
static void expect_quiet(struct client *cl)
{
    struct ferry_cmd m;

    assert_int_equal(client_send(cl, FERRY_MSG_PING, json_object()), 0);
    recv_type(cl, FERRY_MSG_PONG, &m);
    ferry_cmd_cleanup(&m);
}

/*
 * The next message without asserting, for cases that must clean up before
 * they fail: its Error code, 0 for any other message, -1 for a close by the
 * server, -2 for nothing within timeout_ms.
 */
static int next_code(struct client *cl, int timeout_ms)
{
    struct ferry_cmd m;
    int rc = client_recv(cl, &m, timeout_ms), code;

    if (rc == 0)
        return -1;
    if (rc != 1)
        return -2;
    code = m.type == FERRY_MSG_ERROR ? err_code(&m) : 0;
    if (code != 0 || m.type != FERRY_MSG_PONG)
        fprintf(stderr, "next message: %d (code %d: %s)\n", m.type, code,
                str_member(&m, "message"));
    ferry_cmd_cleanup(&m);
    return code;
}

/* Uploads a whole sample: list in 7-byte pieces, every asked-for chunk, TransferComplete. */
static void upload_sample(struct client *cl, const struct sample *s, const char *path)
{
    json_int_t need[FERRY_NEED_GROUP];
    int counts[FERRY_NEED_GROUP] = {0};
    uint8_t tid[16];
    char hex[33], ref[37];
    size_t i, n;

    assert_true(s->n <= FERRY_NEED_GROUP);
    new_tid(tid, hex);
    open_chunked(cl, tid, path, (json_int_t)s->size, ref);
    send_list_range(cl, tid, s->list, 0, s->list_len, 7);
    if (s->n > 0) {
        n = expect_need_groups(cl, ref, tid, s->n, need, FERRY_NEED_GROUP);
        for (i = 0; i < n; i++)
            send_sample_chunk(cl, tid, s, (uint32_t)need[i]);
        expect_stored(cl, tid, counts, s->n, (int)n);
    }
    send_complete(cl, tid, s->cid);
    expect_committed(cl, tid);
}

/*
 * Plain Upload (R-XFER-2) of n bytes, expecting Committed. The bytes go in
 * 256 KiB calls flushed every 2 MiB, so a big file is never queued whole.
 */
static void upload_plain(struct client *cl, const uint8_t *data, size_t n, const char *path)
{
    struct ferry_sha256 sha;
    uint8_t tid[16];
    char hex[33], cid[80];
    size_t off = 0, k;

    new_tid(tid, hex);
    open_plain(cl, tid, path, (json_int_t)n, NULL);
    while (off < n) {
        k = n - off < (256u << 10) ? n - off : (256u << 10);
        assert_int_equal(ferry_client_send_data(cl->c, tid, off, data + off, k), 0);
        off += k;
        if ((off & ((2u << 20) - 1)) == 0)
            flush(cl);
    }
    flush(cl);
    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, data, n);
    ferry_sha256_final_cid(&sha, cid);
    send_complete(cl, tid, cid);
    expect_committed(cl, tid);
}

/*
 * Upload (R-XFER-2) of n bytes with their mtime and exec flag, expecting
 * Committed; the content id goes to cid.
 */
__attribute__((unused)) static void upload_meta(struct client *cl, const uint8_t *data, size_t n,
                                                const char *path, json_int_t mtime, int exec,
                                                char cid[80])
{
    struct ferry_sha256 sha;
    uint8_t tid[16];
    char hex[33];

    new_tid(tid, hex);
    assert_int_equal(client_send(cl, FERRY_MSG_UPLOAD,
                                 json_pack("{s:s, s:s, s:I, s:I, s:b}", "tid", hex, "path", path,
                                           "size", (json_int_t)n, "mtime", mtime, "exec", exec)),
                     0);
    assert_int_equal(ferry_client_send_data(cl->c, tid, 0, data, n), 0);
    flush(cl);
    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, data, n);
    ferry_sha256_final_cid(&sha, cid);
    send_complete(cl, tid, cid);
    expect_committed(cl, tid);
}

/* The connection answers a Ping with its Pong, and nothing before it: still open. */
__attribute__((unused)) static void still_open(struct client *cl)
{
    struct ferry_cmd m;

    assert_int_equal(client_send(cl, FERRY_MSG_PING, json_object()), 0);
    recv_type(cl, FERRY_MSG_PONG, &m);
    ferry_cmd_cleanup(&m);
}

/*
 * Reads the download a Download sent on cl asked for: its Transfer, data
 * frames in order, its TransferComplete. The bytes (malloc'd) go to *out,
 * Transfer's hash and TransferComplete's hash (R-CHUNK-10) to the others:
 * 0. An Error instead of the Transfer returns its code, with nothing in *out.
 */
static int read_download_frames(struct client *cl, uint8_t **out, size_t *len, char xfer_hash[80],
                                char done_hash[80])
{
    uint64_t deadline = ferry_now_ms() + HARNESS_WAIT_MS;
    uint8_t tid[16] = {0}, *buf = NULL;
    size_t size = 0, got = 0;
    int have_transfer = 0;

    for (;;) {
        struct ferry_frame f;

        next_frame_by(cl, deadline, &f);
        if (f.type == FERRY_FRAME_DATA) {
            struct ferry_data d;

            assert_true(have_transfer);
            assert_int_equal(ferry_data_decode(f.payload, f.payload_len, &d), 0);
            assert_memory_equal(d.tid, tid, 16);
            assert_int_equal(d.offset, got);
            assert_true(d.len <= size - got);
            memcpy(buf + got, d.bytes, d.len);
            got += d.len;
        } else if (f.type == FERRY_FRAME_COMMAND) {
            struct ferry_cmd m;

            assert_int_equal(ferry_cmd_decode(f.payload, f.payload_len, &m), 0);
            if (m.type == FERRY_MSG_ERROR && !have_transfer) {
                int code = err_code(&m);

                ferry_cmd_cleanup(&m);
                *out = NULL;
                *len = 0;
                return code;
            }
            if (m.type == FERRY_MSG_ERROR)
                fprintf(stderr, "download: Error %d %s\n", err_code(&m), str_member(&m, "message"));
            if (m.type == FERRY_MSG_TRANSFER) {
                assert_false(have_transfer);
                have_transfer = 1;
                assert_int_equal(ferry_hex_decode(str_member(&m, "tid"), tid, 16), 0);
                size = (size_t)json_integer_value(json_object_get(m.body, "size"));
                snprintf(xfer_hash, 80, "%s", str_member(&m, "hash"));
                buf = malloc(size > 0 ? size : 1);
                assert_non_null(buf);
                ferry_cmd_cleanup(&m);
                continue;
            }
            assert_int_equal(m.type, FERRY_MSG_TRANSFER_COMPLETE);
            assert_true(have_transfer);
            snprintf(done_hash, 80, "%s", str_member(&m, "hash"));
            ferry_cmd_cleanup(&m);
            break;
        }
    }
    assert_int_equal(got, size);
    *out = buf;
    *len = size;
    return 0;
}

/* Downloads path: the bytes, Transfer's hash and TransferComplete's hash (R-CHUNK-10). */
static void download_path(struct client *cl, const char *path, uint8_t **out, size_t *len,
                          char xfer_hash[80], char done_hash[80])
{
    assert_int_equal(client_send(cl, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", path)), 0);
    assert_int_equal(read_download_frames(cl, out, len, xfer_hash, done_hash), 0);
}

/* path reads back as exactly n bytes of data. */
__attribute__((unused)) static void expect_content(struct client *cl, const char *path,
                                                   const uint8_t *data, size_t n)
{
    char xhash[80], dhash[80];
    uint8_t *got = NULL;
    size_t len = 0;

    download_path(cl, path, &got, &len, xhash, dhash);
    assert_int_equal(len, n);
    assert_memory_equal(got, data, n);
    free(got);
}

/*
 * Whether the server stores chunk i of the sample (R-CHUNK-7): a row of
 * some user names it, and the bytes where the row says (its pack, at its
 * offset) have its length and hash.
 */
static int chunk_file_exists(const struct server *s, const struct sample *sm, uint32_t i)
{
    struct ferry_chunk_ent e;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char path[600];
    uint8_t *buf = NULL, h[32];
    int64_t pack = 0, off = 0, uid = 0;
    int fd, ok = 0;

    ferry_chunk_ent_decode(sm->list + (size_t)i * FERRY_CHUNK_ENT_LEN, &e);
    snprintf(path, sizeof(path), "%s/data/ferry.db", s->dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        goto out;
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db,
                           "SELECT user_id, pack, off FROM chunks WHERE hash = ?1 AND size = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_blob(st, 1, e.hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, e.len);
    if (sqlite3_step(st) != SQLITE_ROW)
        goto out;
    uid = sqlite3_column_int64(st, 0);
    pack = sqlite3_column_int64(st, 1);
    off = sqlite3_column_int64(st, 2);
    snprintf(path, sizeof(path), "%s/data/packs/%lld/%lld.pack", s->dir, (long long)uid,
             (long long)pack);
    if ((buf = malloc(e.len)) == NULL || (fd = open(path, O_RDONLY)) < 0)
        goto out;
    if (pread(fd, buf, e.len, (off_t)off) == (ssize_t)e.len) {
        ferry_sha256_buf(buf, e.len, h);
        ok = memcmp(h, e.hash, 32) == 0;
    }
    close(fd);
out:
    free(buf);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

#pragma GCC diagnostic pop

#endif
