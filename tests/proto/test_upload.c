/*
 * The upload job (ferry/upload.h) against a real ferry serve: many jobs on
 * one hub and one loop, each reporting progress and ending once; a
 * cancelled job leaves nothing visible; a folder tree arrives whole; an
 * item that fails is named while the others go on. What reached the server
 * is fetched back with a protocol client and compared byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "chunk_harness.h"
#include "ferry/hub.h"
#include "ferry/upload.h"
#include "loop_harness.h"

/* The loop, its guard and the hub every job of a test shares. */
struct bench {
    struct loop_harness lh;
    struct ferry_hub *hub;
    struct ferry_session_cfg cfg;
    struct client cl; /* the device's identity, and a protocol client to fetch with */
    SSL_CTX *ctx;
    char token[64];
    char local[300]; /* a folder for the local files */
};

/* What one job's callbacks saw. */
struct seen {
    int done_calls;
    int done_rc;
    int progress_calls;
    uint64_t bytes_done, bytes_total, files_done;
    int items;
    int item_rc;
    char item_label[300];
    int notes;
    int cancel_at_progress; /* cancel from the first progress report */
    struct ferry_upload *u;
    /* Runs once, at the first report of a planned job, before any file is read. */
    void (*at_plan)(struct seen *s);
    void *plan_arg;
    int nfailed; /* items that failed, in order */
    int failed_rc[8];
    char failed[8][300];
};

static void on_progress(void *arg, const struct ferry_job_progress *p)
{
    struct seen *s = arg;

    s->progress_calls++;
    /* Never more done than there is; no link is lost here, so never less than before. */
    assert_true(p->bytes_done <= p->bytes_total);
    assert_true(p->bytes_done >= s->bytes_done);
    s->bytes_done = p->bytes_done;
    s->bytes_total = p->bytes_total;
    s->files_done = p->files_done;
    if (s->at_plan != NULL && p->bytes_total > 0) {
        void (*fn)(struct seen *) = s->at_plan;
        s->at_plan = NULL;
        fn(s);
    }
    if (s->cancel_at_progress && p->bytes_done > 0 && s->done_calls == 0) {
        ferry_upload_cancel(s->u);
        /* on_done ran inside the cancel, exactly once. */
        assert_int_equal(s->done_calls, 1);
        assert_int_equal(s->done_rc, FERRY_ECANCELED);
    }
}

static void on_item(void *arg, const char *label, int rc, const char *why)
{
    struct seen *s = arg;

    assert_non_null(why);
    s->items++;
    s->item_rc = rc;
    snprintf(s->item_label, sizeof(s->item_label), "%s", label != NULL ? label : "");
    if (s->nfailed < 8) {
        s->failed_rc[s->nfailed] = rc;
        snprintf(s->failed[s->nfailed++], sizeof(s->failed[0]), "%s", s->item_label);
    }
}

static void on_note(void *arg, const char *text)
{
    struct seen *s = arg;

    assert_non_null(text);
    s->notes++;
}

static void on_done(void *arg, int rc)
{
    struct seen *s = arg;

    s->done_calls++;
    s->done_rc = rc;
}

static int failed_with(const struct seen *s, const char *label)
{
    int i;

    for (i = 0; i < s->nfailed; i++)
        if (strcmp(s->failed[i], label) == 0)
            return s->failed_rc[i];
    return 1;
}

static const struct ferry_job_ops job_ops = {
    .on_progress = on_progress,
    .on_item = on_item,
    .on_note = on_note,
    .on_done = on_done,
};

static void bench_open(struct bench *b, struct server *srv)
{
    static int serial;

    memset(b, 0, sizeof(*b));
    assert_int_equal(client_open(&b->cl, srv), 0);
    assert_int_equal(client_signup(&b->cl, "alice", b->token, sizeof(b->token)), 1);
    assert_non_null(b->ctx = ferry_tls_ctx_new(&b->cl.id, 0));
    loop_harness_init(&b->lh);
    b->cfg = loop_harness_cfg(&b->lh, b->ctx, srv, b->token);
    assert_int_equal(ferry_hub_open(&b->cfg, NULL, NULL, &b->hub), 0);
    snprintf(b->local, sizeof(b->local), "%s/local%d", srv->dir, serial++);
    assert_int_equal(mkdir(b->local, 0700), 0);
}

static void bench_close(struct bench *b)
{
    ferry_hub_free(b->hub);
    /* The jobs' tasks and handles end here, and with them their memory. */
    loop_harness_end(&b->lh);
    SSL_CTX_free(b->ctx);
    client_close(&b->cl);
}

/* Whether every job of seen[0..*n) has ended. */
static int all_ended(void *sv, void *nv)
{
    const struct seen *s = sv;
    size_t i, n = *(const size_t *)nv;

    for (i = 0; i < n; i++)
        if (s[i].done_calls == 0)
            return 0;
    return 1;
}

/* Runs the loop until every job of seen[0..n) has ended. */
static void run_jobs(struct bench *b, struct seen *s, size_t n)
{
    loop_harness_run(&b->lh, 4 * HARNESS_WAIT_MS, all_ended, s, &n);
}

/* A local file of size random bytes; returns them (free them). */
static uint8_t *make_file(const char *path, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    FILE *f;

    assert_non_null(p);
    randombytes_buf(p, size);
    assert_non_null(f = fopen(path, "wb"));
    assert_int_equal(fwrite(p, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
    return p;
}

/* Downloads path (R-XFER-3) and checks it is exactly want; 0, or the Error's code. */
static int fetch(struct client *cl, const char *path, const uint8_t *want, size_t size)
{
    char xhash[80], dhash[80];
    uint8_t *got = NULL;
    size_t len = 0;
    int rc;

    assert_int_equal(client_send(cl, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", path)), 0);
    if ((rc = read_download_frames(cl, &got, &len, xhash, dhash)) != 0)
        return rc;
    assert_int_equal(len, size);
    assert_memory_equal(got, want, size);
    free(got);
    return 0;
}

static struct ferry_upload *job_new(struct bench *b, struct seen *s, const char *const *srcs,
                                    size_t nsrcs, const char *dest, int into, int recursive,
                                    unsigned connections, uint64_t bwlimit)
{
    struct ferry_upload_spec spec = {
        .loop = &b->lh.loop,
        .sources = srcs,
        .nsources = nsrcs,
        .dest = dest,
        .into = into,
        .recursive = recursive,
        .bwlimit = bwlimit,
        .connections = connections,
        .link_cfg = &b->cfg,
    };
    struct ferry_upload *u;

    memset(s, 0, sizeof(*s));
    assert_int_equal(ferry_upload_new(b->hub, &spec, &job_ops, s, &u), 0);
    s->u = u;
    assert_int_equal(ferry_upload_start(u), 0);
    return u;
}

static const char *const quiet_args[] = {"--login-rate", "1000", NULL};

#define MANY 20

/*
 * Twenty jobs at once on one hub and one loop, files of 0 to 8 MiB (the
 * ones from 1 MiB on chunked, R-CHUNK-4..8, some over extra links,
 * R-CHUNK-13): each ends once, reports its bytes, and the server holds
 * every byte.
 */
static void test_many_jobs_one_hub(void **state)
{
    static const size_t sizes[MANY] = {
        0,
        1,
        4096,
        16384,
        16385,
        100000,
        (1u << 20) - 1,
        (1u << 20),
        (1u << 20) + 1,
        2u << 20,
        3000000,
        (3u << 20) + 77,
        4u << 20,
        5000000,
        6u << 20,
        7u << 20,
        (8u << 20) - 1,
        8u << 20,
        65536,
        1234567,
    };
    struct server srv;
    struct bench b;
    struct seen s[MANY];
    struct ferry_upload *u[MANY];
    uint8_t *data[MANY];
    char path[MANY][400], remote[MANY][64];
    const char *src[MANY][1];
    struct ferry_upload_stats st;
    size_t i;

    (void)state;
    server_start(&srv, quiet_args);
    bench_open(&b, &srv);
    for (i = 0; i < MANY; i++) {
        snprintf(path[i], sizeof(path[i]), "%s/f%zu.bin", b.local, i);
        snprintf(remote[i], sizeof(remote[i]), "/many/f%zu.bin", i);
        data[i] = make_file(path[i], sizes[i]);
        src[i][0] = path[i];
        /* A few extra links each, under the user's 64 connections (R-SESS-10). */
        u[i] = job_new(&b, &s[i], src[i], 1, remote[i], 0, 0, i % 3 == 0 ? 2 : 1, 0);
    }
    run_jobs(&b, s, MANY);
    /* A few more turns: no job ends twice. */
    for (i = 0; i < 10; i++)
        uv_run(&b.lh.loop, UV_RUN_NOWAIT);
    for (i = 0; i < MANY; i++) {
        assert_int_equal(s[i].done_calls, 1);
        assert_int_equal(s[i].done_rc, 0);
        assert_int_equal(s[i].items, 0);
        assert_true(s[i].progress_calls > 0);
        assert_int_equal(s[i].bytes_total, sizes[i]);
        assert_int_equal(s[i].bytes_done, sizes[i]);
        assert_int_equal(s[i].files_done, 1);
        ferry_upload_stats(u[i], &st);
        assert_int_equal(st.items_done, 1);
        assert_int_equal(st.items_failed, 0);
        assert_int_equal(st.items_left, 0);
        assert_int_equal(st.job.bytes_total, sizes[i]);
        ferry_upload_free(u[i]);
    }
    for (i = 0; i < MANY; i++) {
        assert_int_equal(fetch(&b.cl, remote[i], data[i], sizes[i]), 0);
        free(data[i]);
    }
    bench_close(&b);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/*
 * Cancel: on_done runs once, inside the call, with FERRY_ECANCELED; the
 * half-sent file never becomes visible (R-XFER-5); the hub carries on for
 * another job.
 */
static void test_cancel(void **state)
{
    struct server srv;
    struct bench b;
    struct seen s, t;
    struct ferry_upload *u, *v;
    char big[400], small[400];
    const char *src[1], *src2[1];
    uint8_t *data, *data2;
    size_t i;

    (void)state;
    server_start(&srv, quiet_args);
    bench_open(&b, &srv);
    snprintf(big, sizeof(big), "%s/big.bin", b.local);
    snprintf(small, sizeof(small), "%s/small.bin", b.local);
    data = make_file(big, 8u << 20);
    data2 = make_file(small, 5000);
    src[0] = big;
    src2[0] = small;
    /* Slow enough (--bwlimit 1 MiB/s) that the cancel comes long before the end. */
    u = job_new(&b, &s, src, 1, "/big.bin", 0, 0, 1, 1u << 20);
    s.cancel_at_progress = 1;
    run_jobs(&b, &s, 1);
    for (i = 0; i < 10; i++)
        uv_run(&b.lh.loop, UV_RUN_NOWAIT);
    assert_int_equal(s.done_calls, 1);
    assert_int_equal(s.done_rc, FERRY_ECANCELED);
    assert_true(s.bytes_done < (8u << 20));
    ferry_upload_free(u);
    /* The same hub goes on with another job. */
    v = job_new(&b, &t, src2, 1, "/small.bin", 0, 0, 1, 0);
    run_jobs(&b, &t, 1);
    assert_int_equal(t.done_calls, 1);
    assert_int_equal(t.done_rc, 0);
    ferry_upload_free(v);
    assert_int_equal(fetch(&b.cl, "/small.bin", data2, 5000), 0);
    /* Nothing partial is visible. */
    assert_int_equal(fetch(&b.cl, "/big.bin", data, 8u << 20), 5);
    free(data);
    free(data2);
    bench_close(&b);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/*
 * A folder, recursively, into an existing remote folder (R-CLI-9): every
 * file arrives, empty folders too; a missing source is one failed item,
 * named, and the job still ends with 0; a symlink is a note.
 */
static void test_tree_and_failures(void **state)
{
    struct server srv;
    struct bench b;
    struct seen s;
    struct ferry_upload *u;
    struct ferry_upload_stats st;
    struct ferry_cmd m;
    char dir[400], sub[450], empty[450], f1[450], f2[500], link[450], missing[400];
    const char *src[2];
    uint8_t *d1, *d2;

    (void)state;
    server_start(&srv, quiet_args);
    bench_open(&b, &srv);
    snprintf(dir, sizeof(dir), "%s/tree", b.local);
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    snprintf(empty, sizeof(empty), "%s/empty", dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(mkdir(empty, 0700), 0);
    snprintf(f1, sizeof(f1), "%s/one.txt", dir);
    snprintf(f2, sizeof(f2), "%s/two.bin", sub);
    snprintf(link, sizeof(link), "%s/link", dir);
    d1 = make_file(f1, 10);
    d2 = make_file(f2, (2u << 20) + 5);
    assert_int_equal(symlink("one.txt", link), 0);
    snprintf(missing, sizeof(missing), "%s/missing", b.local);
    src[0] = missing;
    src[1] = dir;
    u = job_new(&b, &s, src, 2, "/", 1, 1, 0, 0);
    run_jobs(&b, &s, 1);
    assert_int_equal(s.done_calls, 1);
    assert_int_equal(s.done_rc, 0);
    assert_int_equal(s.items, 1);
    assert_string_equal(s.item_label, missing);
    assert_int_equal(s.item_rc, -ENOENT);
    assert_int_equal(s.notes, 1); /* the symlink */
    ferry_upload_stats(u, &st);
    assert_int_equal(st.items_done, 5); /* tree, sub, empty, and two files */
    assert_int_equal(st.items_failed, 1);
    assert_int_equal(st.job.files_done, 2);
    ferry_upload_free(u);
    assert_int_equal(fetch(&b.cl, "/tree/one.txt", d1, 10), 0);
    assert_int_equal(fetch(&b.cl, "/tree/sub/two.bin", d2, (2u << 20) + 5), 0);
    assert_int_equal(client_send(&b.cl, FERRY_MSG_DIRINFO,
                                 json_pack("{s:s, s:b}", "path", "/tree/empty", "stat", 1)),
                     0);
    assert_int_equal(client_expect(&b.cl, FERRY_MSG_DIRPAGE, &m), 1);
    ferry_cmd_cleanup(&m);
    free(d1);
    free(d2);
    bench_close(&b);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

#define OPEN_JOBS (FERRY_HUB_UPLOADS_MAX + 16)

/*
 * More jobs on one hub than a connection may have uploads open (R-XFER-1:
 * the 65th is Error 9 and a close): each job's chunked file holds its
 * upload open until its chunks are in, so the hub counts them for all jobs
 * and the last ones wait for a place. Every job ends well on the one link.
 */
static void test_open_uploads_bound(void **state)
{
    struct server srv;
    struct bench b;
    static struct seen s[OPEN_JOBS];
    struct ferry_upload *u[OPEN_JOBS];
    uint8_t *data[OPEN_JOBS];
    char dir[300], path[OPEN_JOBS][400], remote[OPEN_JOBS][64];
    const char *src[OPEN_JOBS][1];
    size_t i;

    (void)state;
    server_start(&srv, quiet_args);
    /* The files first: the hub's dial must not wait on them (its loop runs only later). */
    snprintf(dir, sizeof(dir), "%s/open", srv.dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    for (i = 0; i < OPEN_JOBS; i++) {
        snprintf(path[i], sizeof(path[i]), "%s/c%zu.bin", dir, i);
        snprintf(remote[i], sizeof(remote[i]), "/open/c%zu.bin", i);
        data[i] = make_file(path[i], FERRY_UPLOAD_CHUNKED_MIN + i);
        src[i][0] = path[i];
    }
    bench_open(&b, &srv);
    for (i = 0; i < OPEN_JOBS; i++) {
        /* No extra links: every ChunkedUpload goes on the hub's one connection. */
        u[i] = job_new(&b, &s[i], src[i], 1, remote[i], 0, 0, 1, 0);
    }
    run_jobs(&b, s, OPEN_JOBS);
    for (i = 0; i < OPEN_JOBS; i++) {
        assert_int_equal(s[i].done_calls, 1);
        assert_int_equal(s[i].done_rc, 0);
        assert_int_equal(s[i].items, 0);
        assert_int_equal(s[i].files_done, 1);
        ferry_upload_free(u[i]);
    }
    for (i = 0; i < OPEN_JOBS; i++) {
        assert_int_equal(fetch(&b.cl, remote[i], data[i], FERRY_UPLOAD_CHUNKED_MIN + i), 0);
        free(data[i]);
    }
    bench_close(&b);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

#define SMALLS 150

/* The paths the batch test spoils once the job is planned. */
struct spoil {
    char gone[450], dir[450], fifo[450];
};

static void spoil_files(struct seen *s)
{
    struct spoil *sp = s->plan_arg;

    /* Planned as regular files, each is now something the read refuses. */
    assert_int_equal(unlink(sp->gone), 0);
    assert_int_equal(unlink(sp->dir), 0);
    assert_int_equal(mkdir(sp->dir, 0700), 0);
    assert_int_equal(unlink(sp->fifo), 0);
    assert_int_equal(mkfifo(sp->fifo, 0600), 0);
}

/*
 * Small files travel as plain Uploads (R-XFER-2) read in batches: a file
 * that vanished after planning, one that became a folder and one that
 * became a FIFO (which must not hang the read) fail each for itself,
 * named, while every other file of their batches arrives whole.
 */
static void test_small_batch_failures(void **state)
{
    struct server srv;
    struct bench b;
    struct seen s;
    struct spoil sp;
    struct ferry_upload *u;
    struct ferry_upload_stats st;
    char dir[400], path[SMALLS][450], remote[SMALLS][64];
    uint8_t *data[SMALLS];
    const char *src[1];
    size_t i;

    (void)state;
    server_start(&srv, quiet_args);
    bench_open(&b, &srv);
    snprintf(dir, sizeof(dir), "%s/smalls", b.local);
    assert_int_equal(mkdir(dir, 0700), 0);
    for (i = 0; i < SMALLS; i++) {
        snprintf(path[i], sizeof(path[i]), "%s/f%03zu", dir, i);
        snprintf(remote[i], sizeof(remote[i]), "/smalls/f%03zu", i);
        /* Mostly 4 KiB, a few up to the chunked threshold, so batches end by bytes too. */
        data[i] = make_file(path[i], i % 50 == 7 ? (1u << 20) - 1 - i : 4096 + i);
    }
    snprintf(sp.gone, sizeof(sp.gone), "%s", path[10]);
    snprintf(sp.dir, sizeof(sp.dir), "%s", path[70]);
    snprintf(sp.fifo, sizeof(sp.fifo), "%s", path[120]);
    src[0] = dir;
    memset(&s, 0, sizeof(s));
    u = job_new(&b, &s, src, 1, "/", 1, 1, 0, 0);
    s.at_plan = spoil_files;
    s.plan_arg = &sp;
    run_jobs(&b, &s, 1);
    assert_null(s.at_plan); /* it ran */
    assert_int_equal(s.done_calls, 1);
    assert_int_equal(s.done_rc, 0);
    assert_int_equal(s.nfailed, 3);
    assert_int_equal(failed_with(&s, sp.gone), -ENOENT);
    assert_int_equal(failed_with(&s, sp.dir), FERRY_EISDIR);
    assert_int_equal(failed_with(&s, sp.fifo), FERRY_EISDIR);
    ferry_upload_stats(u, &st);
    assert_int_equal(st.items_failed, 3);
    assert_int_equal(st.items_done, SMALLS - 3 + 1); /* the folder too */
    assert_int_equal(st.items_left, 0);
    assert_int_equal(st.job.files_done, SMALLS - 3);
    ferry_upload_free(u);
    for (i = 0; i < SMALLS; i++) {
        size_t size = i % 50 == 7 ? (1u << 20) - 1 - i : 4096 + i;
        if (i == 10 || i == 70 || i == 120)
            assert_int_equal(fetch(&b.cl, remote[i], data[i], size), 5);
        else
            assert_int_equal(fetch(&b.cl, remote[i], data[i], size), 0);
        free(data[i]);
    }
    bench_close(&b);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_many_jobs_one_hub, harness_teardown),
        cmocka_unit_test_teardown(test_cancel, harness_teardown),
        cmocka_unit_test_teardown(test_tree_and_failures, harness_teardown),
        cmocka_unit_test_teardown(test_small_batch_failures, harness_teardown),
        cmocka_unit_test_teardown(test_open_uploads_bound, harness_teardown),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
