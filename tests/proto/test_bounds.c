/*
 * Black-box tests of the server's bounded resources (issue 9): queued writes
 * per connection and in all (R-PIPE-4, R-STORE-11), chunks counted against
 * the quota (R-QUOTA), chunk lists held per user and in all (R-CHUNK-30). Memory is read from
 * /proc/PID/status (VmRSS) of the real ferry serve; ASan's quarantine, which
 * would hold freed memory, is kept small for these servers (see main).
 */
#include "chunk_harness.h"

/* Starts a server; a test that fails midway leaves it to harness_teardown. */
static void start(struct server *sv, const char *const *extra)
{
    server_start(sv, extra);
}

static void stop(struct server *sv)
{
    assert_int_equal(server_stop(sv), 0);
    server_cleanup(sv);
}

/* A path of depth components "dd": each Mkdir of it walks them all in its commit. */
static void deep_path(char *out, size_t cap, int depth)
{
    size_t n = 0;
    int i;

    out[0] = '\0';
    for (i = 0; i < depth && n + 4 < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%sdd", i > 0 ? "/" : "");
}

/* One encoded Mkdir frame for path, to append many times. */
static size_t mkdir_frame(uint8_t *buf, size_t cap, const char *path)
{
    json_t *body = json_pack("{s:s}", "path", path);
    ssize_t n = ferry_frame_cmd(buf, cap, FERRY_MSG_MKDIR, body);

    json_decref(body);
    assert_true(n > 0);
    return (size_t)n;
}

/*
 * Queues count copies of a frame on cl without reading any reply, pumping
 * as the socket takes them; stops early once the server has stopped reading
 * (three pumps in a row that move nothing). Samples the server's RSS after
 * each pump and returns the highest; *sent gets the frames that went out.
 */
static long pipeline_unread(struct client *cl, pid_t pid, const uint8_t *frame, size_t flen,
                            long count, long *sent)
{
    long queued = 0, peak = 0, r;
    int stuck = 0, rc;

    while (stuck < 3) {
        size_t before;

        while (queued < count && ferry_client_pending(cl->c) < (1u << 20)) {
            assert_int_equal(ferry_client_send_raw(cl->c, frame, flen), 0);
            queued++;
        }
        before = ferry_client_pending(cl->c);
        if (before == 0)
            break;
        rc = ferry_client_pump(cl->c, 300, 1);
        assert_true(rc == 0 || rc == FERRY_ETIMEDOUT);
        stuck = ferry_client_pending(cl->c) == before ? stuck + 1 : 0;
        if ((r = proc_rss_kib(pid)) > peak)
            peak = r;
    }
    *sent = queued - (long)((ferry_client_pending(cl->c) + flen - 1) / flen);
    return peak;
}

/* Reads replies on cl until n Ok (or Error) replies have come. */
static void drain_replies(struct client *cl, long n)
{
    struct ferry_cmd m;
    long got = 0;

    while (got < n) {
        assert_int_equal(client_recv(cl, &m, 60000), 1);
        if (m.type == FERRY_MSG_OK || m.type == FERRY_MSG_ERROR)
            got++;
        ferry_cmd_cleanup(&m);
    }
}

/* Skips the ChunkNeeds already sent, then a Ping's Pong: nothing else came. */
static void expect_quiet_after_needs(struct client *cl)
{
    struct ferry_cmd m;

    assert_int_equal(client_send(cl, FERRY_MSG_PING, json_object()), 0);
    for (;;) {
        assert_int_equal(client_recv(cl, &m, 30000), 1);
        if (m.type == FERRY_MSG_PONG)
            break;
        if (m.type != FERRY_MSG_CHUNK_NEED)
            fprintf(stderr, "expected ChunkNeed or Pong, got %d (code %d: %s)\n", m.type,
                    err_code(&m), str_member(&m, "message"));
        assert_int_equal(m.type, FERRY_MSG_CHUNK_NEED);
        ferry_cmd_cleanup(&m);
    }
    ferry_cmd_cleanup(&m);
}

/* A bystander's write and listing are answered. */
static void bystander_served(struct server *sv, const struct acct *by)
{
    struct client b;
    struct ferry_cmd m;

    acct_open(sv, by, &b);
    assert_int_equal(client_send(&b, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", "mine")), 0);
    recv_type(&b, FERRY_MSG_OK, &m);
    ferry_cmd_cleanup(&m);
    assert_int_equal(client_send(&b, FERRY_MSG_DIRINFO, json_pack("{s:s}", "path", "")), 0);
    recv_type(&b, FERRY_MSG_DIRPAGE, &m);
    assert_int_equal(json_array_size(json_object_get(m.body, "entries")), 1);
    ferry_cmd_cleanup(&m);
    assert_true(ping_ok(&b));
    client_close(&b);
}

/*
 * R-PIPE-4: a connection that pipelines far more Mkdirs than the cap
 * without reading a reply stops being read at the cap: the server's memory
 * stays within a few MiB of where it was (it grew by one operation per
 * Mkdir sent, about 1 KiB each, before the cap), and another user is
 * still served meanwhile.
 */
static void test_pipelined_writes_bounded_r_pipe_4(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};
    uint8_t frame[FERRY_FRAME_HDR_LEN + FERRY_FRAME_PAYLOAD_MAX];
    char path[512];
    struct server sv;
    struct acct atk, by;
    struct client a;
    struct ferry_cmd m;
    long base, peak, sent = 0;
    size_t flen;

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &atk, "flood");
    acct_signup(&sv, &by, "bystander");
    acct_open(&sv, &atk, &a);
    /* Slow to apply, cheap to send: each Mkdir walks 120 existing folders. */
    deep_path(path, sizeof(path), 120);
    assert_int_equal(client_send(&a, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", path)), 0);
    recv_type(&a, FERRY_MSG_OK, &m);
    ferry_cmd_cleanup(&m);
    flen = mkdir_frame(frame, sizeof(frame), path);
    assert_true(ping_ok(&a));
    base = proc_rss_kib(sv.pid);
    assert_true(base > 0);
    peak = pipeline_unread(&a, sv.pid, frame, flen, 100000, &sent);
    fprintf(stderr, "pipelined %ld Mkdirs unread: RSS %ld KiB -> peak %ld KiB\n", sent, base, peak);
    bystander_served(&sv, &by);
    if (proc_rss_kib(sv.pid) > peak)
        peak = proc_rss_kib(sv.pid);
    /* 4096 queued operations of ~1.5 KiB with ASan's redzones: a few MiB, not hundreds. */
    assert_true(peak - base < 64 * 1024);
    client_close(&a);
    stop(&sv);
}

/*
 * R-PIPE-4: with small caps, four connections pipelining writes fill the
 * queue in all; a bystander's writes still get their turn, and every
 * write of every connection is eventually answered (no connection stays
 * stopped once room is freed).
 */
static void test_queued_writes_in_all_r_pipe_4(void **state)
{
    static const char *const extra[] = {
        "--login-rate", "1000", "--max-queued-writes", "64", "--max-queued-writes-total",
        "128",          NULL};
    uint8_t frame[FERRY_FRAME_HDR_LEN + FERRY_FRAME_PAYLOAD_MAX];
    char path[512];
    struct server sv;
    struct acct atk, by;
    struct client a[4];
    long sent[4], total = 2000;
    size_t flen;
    int i;

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &atk, "many");
    acct_signup(&sv, &by, "bystander");
    deep_path(path, sizeof(path), 40);
    flen = mkdir_frame(frame, sizeof(frame), path);
    for (i = 0; i < 4; i++) {
        acct_open(&sv, &atk, &a[i]);
        pipeline_unread(&a[i], sv.pid, frame, flen, total, &sent[i]);
    }
    bystander_served(&sv, &by);
    /* Every Mkdir of every connection is answered, the unsent ones once sent. */
    for (i = 0; i < 4; i++) {
        assert_int_equal(ferry_client_pump(a[i].c, 60000, 1), 0);
        drain_replies(&a[i], total);
        assert_true(ping_ok(&a[i]));
        client_close(&a[i]);
    }
    stop(&sv);
}

/*
 * R-STORE-11: with 1 MiB of staged bytes allowed in all, two connections
 * pipelining small uploads (64 KiB each, inline) take turns: every upload
 * commits, none waits forever.
 */
static void test_unacked_in_all_r_store_11(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", "--max-unacked-total", "1M", NULL};
    enum { FILES = 48, SIZE = 64 << 10 };
    struct ferry_sha256 sha;
    struct server sv;
    struct acct u;
    struct client a[2];
    uint8_t *data = malloc(SIZE), tids[2][FILES][16];
    char hex[33], cid[80], name[32];
    struct ferry_cmd m;
    int i, k, committed;

    (void)state;
    assert_non_null(data);
    ferry_random(data, SIZE);
    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, data, SIZE);
    ferry_sha256_final_cid(&sha, cid);
    start(&sv, extra);
    acct_signup(&sv, &u, "staged");
    for (k = 0; k < 2; k++)
        acct_open(&sv, &u, &a[k]);
    /* Both queue every upload without reading; the server takes them as room allows. */
    for (k = 0; k < 2; k++) {
        for (i = 0; i < FILES; i++) {
            new_tid(tids[k][i], hex);
            snprintf(name, sizeof(name), "c%d/f%d", k, i);
            assert_int_equal(ferry_client_send_cmd(a[k].c, FERRY_MSG_UPLOAD,
                                                   json_pack("{s:s, s:s, s:i}", "tid", hex, "path",
                                                             name, "size", SIZE)),
                             0);
            assert_int_equal(ferry_client_send_data(a[k].c, tids[k][i], 0, data, SIZE), 0);
            assert_int_equal(
                ferry_client_send_cmd(a[k].c, FERRY_MSG_TRANSFER_COMPLETE,
                                      json_pack("{s:s, s:s}", "tid", hex, "hash", cid)),
                0);
        }
        (void)ferry_client_pump(a[k].c, 100, 0);
    }
    for (k = 0; k < 2; k++) {
        assert_int_equal(ferry_client_pump(a[k].c, 60000, 1), 0);
        for (committed = 0; committed < FILES;) {
            recv_type(&a[k], FERRY_MSG_COMMITTED, &m);
            committed += (int)json_array_size(json_object_get(m.body, "tids"));
            ferry_cmd_cleanup(&m);
        }
        assert_int_equal(committed, FILES);
        client_close(&a[k]);
    }
    free(data);
    stop(&sv);
}

/* Sends a sample's list and every chunk for tid; returns the ChunkedUpload's id in ref. */
static void send_all_chunks(struct client *cl, const struct sample *sm, const char *path,
                            uint8_t tid[16], char ref[37])
{
    char hex[33];
    uint32_t i;

    new_tid(tid, hex);
    open_chunked(cl, tid, path, (json_int_t)sm->size, ref);
    send_list_range(cl, tid, sm->list, 0, sm->list_len, 36);
    expect_need_all(cl, ref, tid, 0, sm->n);
    for (i = 0; i < sm->n; i++)
        send_sample_chunk(cl, tid, sm, i);
}

/* Whether none of a sample's chunks is stored any more. */
static int chunks_gone(const struct server *sv, const struct sample *sm)
{
    uint32_t i;

    for (i = 0; i < sm->n; i++)
        if (chunk_file_exists(sv, sm, i))
            return 0;
    return 1;
}

/*
 * R-QUOTA-1, R-QUOTA-2 (--quota 4M): chunks of a cancelled upload count
 * against the quota until the TTL collects them, so a second round of new
 * chunks is refused with Error 20 and nothing of it is kept; the
 * abandoned chunks themselves can still complete their file.
 */
static void test_cancelled_chunks_count_r_quota_2(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", "--quota", "4M", NULL};
    struct sample a, b;
    struct server sv;
    struct acct u;
    struct client c;
    uint8_t tid[16];
    char ref[37];
    int counts[4] = {0};
    const json_int_t all[4] = {0, 1, 2, 3};

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &u, "quota");
    /* 3.75 MiB each: one fits the quota; no chunk of a second one fits beside it. */
    sample_fixed(&a, 4, 1u << 20, 768u << 10);
    sample_fixed(&b, 4, 1u << 20, 768u << 10);
    acct_open(&sv, &u, &c);
    /* A: every chunk stored, then the upload is cancelled. */
    send_all_chunks(&c, &a, "a.bin", tid, ref);
    expect_stored(&c, tid, counts, a.n, (int)a.n);
    send_cancel(&c, tid);
    /* B: its declared size fits (no file yet), but its new chunks do not. */
    send_all_chunks(&c, &b, "b.bin", tid, ref);
    expect_chunk_errors(&c, 20, ref, tid, all, b.n);
    assert_true(chunks_gone(&sv, &b));
    send_cancel(&c, tid);
    expect_quiet(&c);
    /* A's chunks are held: its file completes without sending them again. */
    upload_sample(&c, &a, "a.bin");
    client_close(&c);
    sample_free(&a);
    sample_free(&b);
    stop(&sv);
}

/*
 * R-QUOTA-1 with --partial-ttl 2: once the TTL has collected a cancelled
 * upload's chunks (R-CHUNK-11), their space counts no more and another
 * file that needs the whole quota fits.
 */
static void test_collected_chunks_free_quota_r_quota_1(void **state)
{
    static const char *const extra[] = {"--login-rate",  "1000", "--quota", "4M",
                                        "--partial-ttl", "2",    NULL};
    struct sample a, b;
    struct server sv;
    struct acct u;
    struct client c;
    struct ferry_cmd m;
    uint8_t tid[16];
    char ref[37];
    int counts[4] = {0}, sweeps;

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &u, "collected");
    sample_fixed(&a, 4, 1u << 20, 768u << 10);
    sample_fixed(&b, 4, 1u << 20, 768u << 10);
    acct_open(&sv, &u, &c);
    send_all_chunks(&c, &a, "a.bin", tid, ref);
    expect_stored(&c, tid, counts, a.n, (int)a.n);
    send_cancel(&c, tid);
    /* No signal says when the TTL has passed: a commit after it sweeps. */
    for (sweeps = 0; sweeps < 60 && !chunks_gone(&sv, &a); sweeps++) {
        usleep(500 * 1000);
        assert_int_equal(client_send(&c, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", "sweep")), 0);
        recv_type(&c, FERRY_MSG_OK, &m);
        ferry_cmd_cleanup(&m);
    }
    assert_true(chunks_gone(&sv, &a));
    upload_sample(&c, &b, "b.bin");
    client_close(&c);
    sample_free(&a);
    sample_free(&b);
    stop(&sv);
}

/* A list of n entries of len bytes with random hashes (R-CHUNK-2). */
static uint8_t *make_list(size_t n, uint32_t len)
{
    uint8_t *list = malloc(n * FERRY_CHUNK_ENT_LEN);
    size_t i;

    assert_non_null(list);
    for (i = 0; i < n; i++)
        put_entry(list, (uint32_t)i, len);
    return list;
}

/* Sends list bytes [0, len) for tid in 1 MiB steps of data frames. */
static void send_list_fast(struct client *cl, const uint8_t tid[16], const uint8_t *list,
                           size_t len)
{
    size_t off, k, step = 1u << 20;

    for (off = 0; off < len; off += k) {
        k = len - off < step ? len - off : step;
        assert_int_equal(ferry_client_send_data(cl->c, tid, off, list + off, k), 0);
        flush(cl);
    }
}

/* Reads messages until the Error for tid; returns its code and copies its message. */
static int upload_error(struct client *cl, const uint8_t tid[16], char *msg, size_t cap)
{
    struct ferry_cmd m;
    char hex[33];
    int code;

    ferry_hex_encode(tid, 16, hex);
    for (;;) {
        assert_int_equal(client_recv(cl, &m, 30000), 1);
        if (m.type == FERRY_MSG_ERROR && strcmp(str_member(&m, "tid"), hex) == 0)
            break;
        /* ChunkNeeds of the groups answered before the refusal. */
        assert_int_equal(m.type, FERRY_MSG_CHUNK_NEED);
        ferry_cmd_cleanup(&m);
    }
    code = err_code(&m);
    snprintf(msg, cap, "%s", str_member(&m, "message"));
    ferry_cmd_cleanup(&m);
    return code;
}

/*
 * R-CHUNK-30: an upload refused when it arrives (here for its size) keeps
 * no list. Sixteen connections of one user each send a 16 MiB list for
 * one: the server's memory stays where it was (it held every list before,
 * 256 MiB in all), and the connections stay usable.
 */
static void test_refused_lists_not_held_r_chunk_30(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};
    enum { CONNS = 16 };
    const size_t n = (16u << 20) / FERRY_CHUNK_ENT_LEN;
    uint8_t *list = make_list(n, FERRY_CHUNK_MAX), tid[CONNS][16];
    struct client c[CONNS];
    struct server sv;
    struct acct u;
    char hex[33], ref[37];
    long base, after;
    int i;

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &u, "lists");
    for (i = 0; i < CONNS; i++)
        acct_open(&sv, &u, &c[i]);
    assert_true(ping_ok(&c[0]));
    base = proc_rss_kib(sv.pid);
    for (i = 0; i < CONNS; i++) {
        new_tid(tid[i], hex);
        /* 2 TiB passes --max-file-size (1 TiB): Error 2 up front. */
        open_chunked(&c[i], tid[i], "huge.bin", 2ll << 40, ref);
        expect_error(&c[i], 2, ref, tid[i], -1);
        send_list_fast(&c[i], tid[i], list, n * FERRY_CHUNK_ENT_LEN);
        assert_true(ping_ok(&c[i]));
    }
    after = proc_rss_kib(sv.pid);
    fprintf(stderr, "16 refused 16 MiB lists: RSS %ld KiB -> %ld KiB\n", base, after);
    assert_true(after - base < 64 * 1024);
    for (i = 0; i < CONNS; i++) {
        send_cancel(&c[i], tid[i]);
        expect_quiet(&c[i]);
        client_close(&c[i]);
    }
    free(list);
    stop(&sv);
}

/*
 * R-CHUNK-30 with --max-chunk-lists-per-user 2M and --max-chunk-lists 3M:
 * one user's second 1 MiB list on another connection does not fit beside
 * its first and is refused with Error 9 as it grows, connection kept; a
 * declared size whose shortest list passes the cap is refused up front
 * with Error 2; another user's list still fits and its upload completes;
 * a third user's list passes the cap in all and is refused with Error 9.
 */
static void test_list_caps_r_chunk_30(void **state)
{
    static const char *const extra[] = {"--login-rate",
                                        "1000",
                                        "--min-free",
                                        "0",
                                        "--max-file-size",
                                        "1000T",
                                        "--max-chunk-lists",
                                        "3M",
                                        "--max-chunk-lists-per-user",
                                        "2M",
                                        NULL};
    const size_t n = (1u << 20) / FERRY_CHUNK_ENT_LEN;
    const json_int_t size = (json_int_t)n * FERRY_CHUNK_MIN; /* every entry at the minimum */
    uint8_t *list = make_list(n, FERRY_CHUNK_MIN), tid[5][16];
    struct client a1, a2, b, c;
    struct server sv;
    struct acct ua, ub, uc;
    struct sample small;
    char hex[33], ref[37], msg[256];

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &ua, "alice");
    acct_signup(&sv, &ub, "bob");
    acct_signup(&sv, &uc, "carol");
    acct_open(&sv, &ua, &a1);
    acct_open(&sv, &ua, &a2);
    acct_open(&sv, &ub, &b);
    acct_open(&sv, &uc, &c);
    /* Alice's first list is held whole (1.2 MB with its growth). */
    new_tid(tid[0], hex);
    open_chunked(&a1, tid[0], "one.bin", size, ref);
    send_list_fast(&a1, tid[0], list, n * FERRY_CHUNK_ENT_LEN);
    expect_quiet_after_needs(&a1);
    /* Her second does not fit beside it: refused as it grows. */
    new_tid(tid[1], hex);
    open_chunked(&a2, tid[1], "two.bin", size, ref);
    send_list_fast(&a2, tid[1], list, n * FERRY_CHUNK_ENT_LEN);
    assert_int_equal(upload_error(&a2, tid[1], msg, sizeof(msg)), 9);
    assert_non_null(strstr(msg, "busy"));
    expect_quiet_after_needs(&a2);
    send_cancel(&a2, tid[1]);
    /* 100 TiB needs at least 3.6 MB of list at 1 MiB chunks: refused up front. */
    new_tid(tid[2], hex);
    open_chunked(&a2, tid[2], "vast.bin", 100ll << 40, ref);
    expect_error(&a2, 2, ref, tid[2], -1);
    send_cancel(&a2, tid[2]);
    expect_quiet(&a2);
    /* Bob is another user: his list fits, and a real upload of his completes. */
    new_tid(tid[3], hex);
    open_chunked(&b, tid[3], "b.bin", size, ref);
    send_list_fast(&b, tid[3], list, n * FERRY_CHUNK_ENT_LEN);
    expect_quiet_after_needs(&b);
    sample_fixed(&small, 3, FERRY_CHUNK_MIN, 100);
    upload_sample(&b, &small, "small.bin");
    /* Carol's would pass 3 MiB in all. */
    new_tid(tid[4], hex);
    open_chunked(&c, tid[4], "c.bin", size, ref);
    send_list_fast(&c, tid[4], list, n * FERRY_CHUNK_ENT_LEN);
    assert_int_equal(upload_error(&c, tid[4], msg, sizeof(msg)), 9);
    expect_quiet_after_needs(&c);
    /* Once Alice's first goes, Carol's next list fits. */
    send_cancel(&a1, tid[0]);
    expect_quiet_after_needs(&a1);
    send_cancel(&c, tid[4]);
    new_tid(tid[4], hex);
    open_chunked(&c, tid[4], "c.bin", size, ref);
    send_list_fast(&c, tid[4], list, n * FERRY_CHUNK_ENT_LEN);
    expect_quiet_after_needs(&c);
    client_close(&a1);
    client_close(&a2);
    client_close(&b);
    client_close(&c);
    sample_free(&small);
    free(list);
    stop(&sv);
}

/*
 * R-CHUNK-30 with --max-chunk-lists-per-user 64K: a chunked download's
 * list is charged like an upload's. While an open upload's 60 KB list
 * fills the user's room, a download of a chunked file is refused with
 * Error 9 before its Transfer; once the upload is cancelled it goes
 * through.
 */
static void test_download_list_charged_r_chunk_30(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", "--max-chunk-lists-per-user", "64K",
                                        NULL};
    const size_t n = 1700;
    uint8_t *list = make_list(n, FERRY_CHUNK_MIN), tid[16], *got = NULL;
    struct sample f;
    struct server sv;
    struct acct u;
    struct client a, b;
    char hex[33], ref[37], xh[80], dh[80];
    size_t len = 0;

    (void)state;
    start(&sv, extra);
    acct_signup(&sv, &u, "reader");
    acct_open(&sv, &u, &a);
    acct_open(&sv, &u, &b);
    sample_fixed(&f, 3, FERRY_CHUNK_MIN, 100);
    upload_sample(&a, &f, "f.bin");
    new_tid(tid, hex);
    open_chunked(&a, tid, "big.bin", (json_int_t)n * FERRY_CHUNK_MIN, ref);
    send_list_fast(&a, tid, list, n * FERRY_CHUNK_ENT_LEN);
    expect_quiet_after_needs(&a);
    assert_int_equal(client_send(&b, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", "f.bin")), 0);
    expect_error(&b, 9, b.last_ref, NULL, -1);
    send_cancel(&a, tid);
    expect_quiet_after_needs(&a);
    download_path(&b, "f.bin", &got, &len, xh, dh);
    assert_int_equal(len, f.size);
    assert_memory_equal(got, f.data, f.size);
    free(got);
    client_close(&a);
    client_close(&b);
    sample_free(&f);
    free(list);
    stop(&sv);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_pipelined_writes_bounded_r_pipe_4, harness_teardown),
        cmocka_unit_test_teardown(test_queued_writes_in_all_r_pipe_4, harness_teardown),
        cmocka_unit_test_teardown(test_unacked_in_all_r_store_11, harness_teardown),
        cmocka_unit_test_teardown(test_cancelled_chunks_count_r_quota_2, harness_teardown),
        cmocka_unit_test_teardown(test_collected_chunks_free_quota_r_quota_1, harness_teardown),
        cmocka_unit_test_teardown(test_refused_lists_not_held_r_chunk_30, harness_teardown),
        cmocka_unit_test_teardown(test_list_caps_r_chunk_30, harness_teardown),
        cmocka_unit_test_teardown(test_download_list_charged_r_chunk_30, harness_teardown),
    };
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    (void)client_open; /* harness.h's; these tests open devices of their own (acct_open) */
    /*
     * Freed memory sits in ASan's quarantine (256 MiB by default) and would
     * count in the server's RSS whatever it holds live; keep it small for
     * the servers these tests start, so RSS follows what is held.
     */
    snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4", asan != NULL ? asan : "",
             asan != NULL && asan[0] != '\0' ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0)
        return 2;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
