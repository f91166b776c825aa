/*
 * Transfer jobs (ferry/download.h, ferry/hub.h) against a real ferry serve:
 * many jobs on one loop share one session through the hub, each finishes
 * exactly once, and what lands on disk is byte for byte what the server
 * holds. Each test runs its own loop and its own state store.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ferry/download.h"
#include "ferry/hub.h"
#include "ferry/state.h"
#include "ferry/upload.h"
#include "harness.h"
#include "loop_harness.h"

#include "chunk_harness.h"

/* Jobs of the concurrency test, and the most bytes one file gets. */
#define JOBS_N       50
#define JOBS_MAX_LEN (8u << 20)

struct jobs_rec {
    struct loop_harness lh;
    struct ferry_hub *hub;
    int ups, closed, close_rc;
    SSL_CTX *ctx;
    struct ferry_identity id;
    struct ferry_state *st;
};

/* One job's view of its callbacks. */
struct job_seen {
    int done;     /* on_done calls: must end at exactly 1 */
    int rc;       /* on_done's rc */
    int items;    /* on_item calls (failures) */
    int progress; /* on_progress calls */
    uint64_t last_done;
    uint64_t files_done;
};

static void job_progress(void *arg, const struct ferry_job_progress *p)
{
    struct job_seen *j = arg;

    j->progress++;
    j->last_done = p->bytes_done;
    j->files_done = p->files_done;
}

static void job_item(void *arg, const char *label, int rc, const char *why)
{
    struct job_seen *j = arg;

    j->items++;
    print_message("job item %s failed (%d): %s\n", label, rc, why);
}

static void job_done(void *arg, int rc)
{
    struct job_seen *j = arg;

    j->done++;
    j->rc = rc;
}

static const struct ferry_job_ops job_ops = {
    .on_progress = job_progress,
    .on_item = job_item,
    .on_done = job_done,
};

static void hub_up(struct ferry_hub *h, const struct ferry_session_info *info)
{
    struct jobs_rec *r = ferry_hub_data(h);

    (void)info;
    r->ups++;
}

static void hub_closed(struct ferry_hub *h, int rc)
{
    struct jobs_rec *r = ferry_hub_data(h);

    r->closed++;
    r->close_rc = rc;
}

static const struct ferry_hub_owner owner = {
    .on_up = hub_up,
    .on_close = hub_closed,
};

/* Runs the loop until cond holds; the guard is wide, the jobs move many MiB. */
static void run_until(struct jobs_rec *r, loop_harness_cond cond, void *arg)
{
    loop_harness_run(&r->lh, 4 * HARNESS_WAIT_MS, cond, r, arg);
}

static int is_up(void *rv, void *arg)
{
    struct jobs_rec *r = rv;

    (void)arg;
    return r->ups > 0 || r->closed;
}

static int is_closed(void *rv, void *arg)
{
    struct jobs_rec *r = rv;

    (void)arg;
    return r->closed;
}

/* Opens the loop, the state store and a hub logged in as a. */
static void rec_open(struct jobs_rec *r, struct server *srv, const struct acct *a)
{
    char path[400], why[200];
    struct ferry_session_cfg cfg;

    memset(r, 0, sizeof(*r));
    loop_harness_init(&r->lh);
    assert_int_equal(ferry_identity_load_or_create(a->dev, &r->id), 0);
    assert_non_null(r->ctx = ferry_tls_ctx_new(&r->id, 0));
    snprintf(path, sizeof(path), "%s/state-%s.db", srv->dir, a->name);
    assert_int_equal(ferry_state_open(path, &r->st, why, sizeof(why)), 0);
    cfg = loop_harness_cfg(&r->lh, r->ctx, srv, a->token);
    assert_int_equal(ferry_hub_open(&cfg, &owner, r, &r->hub), 0);
    run_until(r, is_up, NULL);
    assert_int_equal(r->closed, 0);
}

static void rec_close(struct jobs_rec *r)
{
    if (!r->closed) {
        ferry_hub_close(r->hub);
        run_until(r, is_closed, NULL);
        assert_int_equal(r->close_rc, 0);
    }
    ferry_hub_free(r->hub);
    loop_harness_end(&r->lh);
    ferry_state_close(r->st);
    SSL_CTX_free(r->ctx);
    ferry_identity_cleanup(&r->id);
}

/* The i-th file's length: empty, tiny, around the in-memory limit, several MiB. */
static size_t file_len(int i)
{
    static const size_t lens[] = {
        0, 1, 4096, 65536, (1u << 20) - 1, 1u << 20, (1u << 20) + 1, 3u << 20, JOBS_MAX_LEN,
    };

    if (i < (int)(sizeof(lens) / sizeof(lens[0])))
        return lens[i];
    return ((size_t)i * 7919 * 131) % (JOBS_MAX_LEN / 4);
}

static void fill(uint8_t *p, size_t n, int i)
{
    uint32_t x = 0x9e3779b9u * (uint32_t)(i + 1);

    for (size_t k = 0; k < n; k++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[k] = (uint8_t)x;
    }
}

static void expect_file(const char *path, const uint8_t *data, size_t n)
{
    struct stat st;
    uint8_t *got;
    int fd;

    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((size_t)st.st_size, n);
    assert_non_null(got = malloc(n + 1));
    assert_true((fd = open(path, O_RDONLY)) >= 0);
    assert_int_equal(read(fd, got, n + 1), (ssize_t)n);
    close(fd);
    assert_memory_equal(got, data, n);
    free(got);
}

/* Nothing of the job's temporary files is left in dir. */
static void expect_no_parts(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        assert_false(strncmp(e->d_name, ".ferry-", 7) == 0);
    closedir(d);
}

struct all_done {
    struct job_seen *seen;
    int n;
};

static int jobs_over(void *rv, void *arg)
{
    struct jobs_rec *r = rv;
    struct all_done *a = arg;

    (void)r;
    for (int i = 0; i < a->n; i++)
        if (a->seen[i].done == 0)
            return 0;
    return 1;
}

/*
 * Issue 10, item 3: 50 download jobs at once on one loop and one session
 * (R-SESS-10 caps a user's connections far below one per job), files of
 * 0 to 8 MiB, through the in-memory and the writer paths; each job ends
 * exactly once and every file is byte-identical, R-RECV-3/R-RECV-4
 * (verified, durable, placed) and R-RECV-5 (the shared window of
 * acknowledgements).
 */
static void test_many_downloads_one_loop(void **state)
{
    struct server srv;
    struct acct a;
    struct client cl;
    struct jobs_rec r;
    static struct job_seen seen[JOBS_N];
    struct ferry_download *job[JOBS_N];
    uint8_t *data[JOBS_N];
    char out[300], path[400], remote[64];
    struct all_done all = {.seen = seen, .n = JOBS_N};
    int i;

    (void)state;
    memset(seen, 0, sizeof(seen));
    server_start(&srv, NULL);
    acct_signup(&srv, &a, "jobs");
    acct_open(&srv, &a, &cl);
    for (i = 0; i < JOBS_N; i++) {
        size_t n = file_len(i);
        assert_non_null(data[i] = malloc(n + 1));
        fill(data[i], n, i);
        snprintf(remote, sizeof(remote), "/f%02d.bin", i);
        upload_plain(&cl, data[i], n, remote);
    }
    client_close(&cl);
    snprintf(out, sizeof(out), "%s/out", srv.dir);
    assert_int_equal(mkdir(out, 0755), 0);

    rec_open(&r, &srv, &a);
    for (i = 0; i < JOBS_N; i++) {
        const char *src[1];
        struct ferry_download_spec spec = {
            .nsrc = 1, .dest = out, .dest_dir = 1, .umask = 022, .state = r.st};
        snprintf(remote, sizeof(remote), "/f%02d.bin", i);
        src[0] = remote;
        spec.srcs = src;
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &spec, &job_ops, &seen[i], &job[i]),
                         0);
        assert_int_equal(ferry_download_start(job[i]), 0);
    }
    run_until(&r, jobs_over, &all);
    /* Each once: a second on_done would show here after a few more turns of the loop. */
    for (i = 0; i < 4; i++)
        uv_run(&r.lh.loop, UV_RUN_NOWAIT);
    for (i = 0; i < JOBS_N; i++) {
        struct ferry_download_stats st;
        assert_int_equal(seen[i].done, 1);
        assert_int_equal(seen[i].rc, 0);
        assert_int_equal(seen[i].items, 0);
        ferry_download_stats(job[i], &st);
        assert_int_equal(st.job.files_done, 1);
        assert_int_equal(st.job.bytes_total, file_len(i));
        ferry_download_free(job[i]);
        snprintf(path, sizeof(path), "%s/f%02d.bin", out, i);
        expect_file(path, data[i], file_len(i));
        free(data[i]);
    }
    expect_no_parts(out);
    /* One session carried them all. */
    assert_int_equal(r.ups, 1);
    rec_close(&r);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/*
 * Cancelling a job: on_done runs once with FERRY_ECANCELED, the other job
 * on the same hub goes on and finishes, and the session stays up.
 */
static void test_cancel_one_of_two(void **state)
{
    struct server srv;
    struct acct a;
    struct client cl;
    struct jobs_rec r;
    struct job_seen s1 = {0}, s2 = {0};
    struct ferry_download *j1, *j2;
    const char *src1[1] = {"/big.bin"}, *src2[1] = {"/small.bin"};
    size_t big = JOBS_MAX_LEN, small = 100000;
    uint8_t *b1 = malloc(big), *b2 = malloc(small);
    char out1[300], out2[300], path[400];
    struct all_done all = {.seen = &s2, .n = 1};

    (void)state;
    assert_non_null(b1);
    assert_non_null(b2);
    fill(b1, big, 1);
    fill(b2, small, 2);
    server_start(&srv, NULL);
    acct_signup(&srv, &a, "cancel");
    acct_open(&srv, &a, &cl);
    upload_plain(&cl, b1, big, "/big.bin");
    upload_plain(&cl, b2, small, "/small.bin");
    client_close(&cl);
    snprintf(out1, sizeof(out1), "%s/out1", srv.dir);
    snprintf(out2, sizeof(out2), "%s/out2", srv.dir);
    assert_int_equal(mkdir(out1, 0755), 0);
    assert_int_equal(mkdir(out2, 0755), 0);

    rec_open(&r, &srv, &a);
    {
        struct ferry_download_spec spec = {
            .srcs = src1, .nsrc = 1, .dest = out1, .dest_dir = 1, .umask = 022, .state = r.st};
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &spec, &job_ops, &s1, &j1), 0);
        spec.srcs = src2;
        spec.dest = out2;
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &spec, &job_ops, &s2, &j2), 0);
    }
    assert_int_equal(ferry_download_start(j1), 0);
    /* Cancelled before anything of it could be received: it still ends once, and says so. */
    ferry_download_cancel(j1);
    assert_int_equal(ferry_download_start(j2), 0);
    run_until(&r, jobs_over, &all);
    all.seen = &s1;
    run_until(&r, jobs_over, &all);
    ferry_download_cancel(j1); /* a no-op once over */
    for (int i = 0; i < 4; i++)
        uv_run(&r.lh.loop, UV_RUN_NOWAIT);
    assert_int_equal(s1.done, 1);
    assert_int_equal(s1.rc, FERRY_ECANCELED);
    assert_int_equal(s2.done, 1);
    assert_int_equal(s2.rc, 0);
    snprintf(path, sizeof(path), "%s/small.bin", out2);
    expect_file(path, b2, small);
    snprintf(path, sizeof(path), "%s/big.bin", out1);
    assert_int_not_equal(access(path, F_OK), 0); /* nothing half-made in place */
    assert_int_equal(r.closed, 0);
    ferry_download_free(j1);
    ferry_download_free(j2);
    rec_close(&r);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
    free(b1);
    free(b2);
}

/*
 * Chunked files with an old version at the destination go the piece way
 * (R-CHUNK-15, R-CHUNK-16): list, plan on the pool (the old file read and
 * its chunks re-hashed), only the missing chunks fetched, placed on the
 * pool after the whole part file is read back (R-RECV-3). Six such jobs at
 * once on one hub: each once, each file right, most bytes taken from disk.
 */
static void test_chunked_jobs_reuse_local(void **state)
{
    enum { N = 6 };
    struct server srv;
    struct acct a;
    struct client cl;
    struct jobs_rec r;
    static struct job_seen seen[N];
    struct ferry_download *job[N];
    struct sample sm[N];
    char out[300], path[400], remote[N][64];
    struct all_done all = {.seen = seen, .n = N};
    int i, fd;

    (void)state;
    memset(seen, 0, sizeof(seen));
    server_start(&srv, NULL);
    acct_signup(&srv, &a, "pieces");
    acct_open(&srv, &a, &cl);
    snprintf(out, sizeof(out), "%s/out", srv.dir);
    assert_int_equal(mkdir(out, 0755), 0);
    for (i = 0; i < N; i++) {
        sample_cdc(&sm[i], (3u << 20) + (size_t)i * 4099);
        snprintf(remote[i], sizeof(remote[i]), "/c%d.bin", i);
        upload_sample(&cl, &sm[i], remote[i]);
        /* The old version: the same bytes but for 64 KiB in the middle. */
        snprintf(path, sizeof(path), "%s/c%d.bin", out, i);
        assert_true((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)) >= 0);
        assert_int_equal(write(fd, sm[i].data, sm[i].size), (ssize_t)sm[i].size);
        assert_int_equal(pwrite(fd, "changed!", 8, (off_t)sm[i].size / 2), 8);
        close(fd);
    }
    client_close(&cl);

    rec_open(&r, &srv, &a);
    for (i = 0; i < N; i++) {
        const char *src[1] = {remote[i]};
        struct ferry_download_spec spec = {
            .srcs = src, .nsrc = 1, .dest = out, .dest_dir = 1, .umask = 022, .state = r.st};
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &spec, &job_ops, &seen[i], &job[i]),
                         0);
        assert_int_equal(ferry_download_start(job[i]), 0);
    }
    run_until(&r, jobs_over, &all);
    for (i = 0; i < 4; i++)
        uv_run(&r.lh.loop, UV_RUN_NOWAIT);
    for (i = 0; i < N; i++) {
        struct ferry_download_stats st;
        assert_int_equal(seen[i].done, 1);
        assert_int_equal(seen[i].rc, 0);
        assert_int_equal(seen[i].items, 0);
        ferry_download_stats(job[i], &st);
        assert_int_equal(st.job.files_done, 1);
        /* Most of it came from the old file; a few chunks travelled. */
        assert_true(st.job.bytes_reused > sm[i].size / 2);
        assert_true(st.job.bytes_moved > 0);
        assert_true(st.job.bytes_moved < sm[i].size / 2);
        ferry_download_free(job[i]);
        snprintf(path, sizeof(path), "%s/c%d.bin", out, i);
        expect_file(path, sm[i].data, sm[i].size);
        sample_free(&sm[i]);
    }
    expect_no_parts(out);
    rec_close(&r);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

static int some_files_done(void *rv, void *arg)
{
    struct jobs_rec *r = rv;
    const struct job_seen *j = arg;

    (void)r;
    return j->files_done >= 5 || j->done;
}

/*
 * A job cancelled and freed in the middle of a folder of small files, with
 * Downloads still out: their answers (file frames, R-FILE-3) come for a
 * port that is gone and are dropped, not taken for a fault; the other job
 * on the same session finishes and the session stays up.
 */
static void test_cancel_midway_shared(void **state)
{
    enum { SMALL = 300 };
    struct server srv;
    struct acct a;
    struct client cl;
    struct jobs_rec r;
    struct job_seen s1 = {0}, s2 = {0};
    struct ferry_download *j1, *j2;
    const char *src1[1] = {"/many"}, *src2[1] = {"/big.bin"};
    size_t big = JOBS_MAX_LEN;
    /* Just under a file frame's most (R-FILE-2): the window is 2 MiB of answers. */
    static uint8_t small[30000];
    uint8_t *b = malloc(big);
    char out1[300], out2[300], path[400];
    struct all_done all = {.seen = &s2, .n = 1};
    int i;

    (void)state;
    assert_non_null(b);
    fill(b, big, 7);
    server_start(&srv, NULL);
    acct_signup(&srv, &a, "midway");
    acct_open(&srv, &a, &cl);
    for (i = 0; i < SMALL; i++) {
        fill(small, sizeof(small), 100 + i);
        snprintf(path, sizeof(path), "/many/s%03d", i);
        upload_plain(&cl, small, sizeof(small), path);
    }
    upload_plain(&cl, b, big, "/big.bin");
    client_close(&cl);
    snprintf(out1, sizeof(out1), "%s/out1", srv.dir);
    snprintf(out2, sizeof(out2), "%s/out2", srv.dir);
    assert_int_equal(mkdir(out1, 0755), 0);
    assert_int_equal(mkdir(out2, 0755), 0);

    rec_open(&r, &srv, &a);
    {
        struct ferry_download_spec spec = {.srcs = src1,
                                           .nsrc = 1,
                                           .dest = out1,
                                           .dest_dir = 1,
                                           .recursive = 1,
                                           .umask = 022,
                                           .state = r.st};
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &spec, &job_ops, &s1, &j1), 0);
        spec.srcs = src2;
        spec.dest = out2;
        spec.recursive = 0;
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &spec, &job_ops, &s2, &j2), 0);
    }
    assert_int_equal(ferry_download_start(j1), 0);
    run_until(&r, some_files_done, &s1);
    assert_int_equal(s1.done, 0); /* still going: the test is of a job cut in the middle */
    assert_int_equal(ferry_download_start(j2), 0);
    ferry_download_cancel(j1);
    all.seen = &s1;
    run_until(&r, jobs_over, &all);
    assert_int_equal(s1.rc, FERRY_ECANCELED);
    ferry_download_free(j1); /* its port closes with Downloads still answered after */
    all.seen = &s2;
    run_until(&r, jobs_over, &all);
    assert_int_equal(s2.done, 1);
    assert_int_equal(s2.rc, 0);
    assert_int_equal(r.closed, 0);
    snprintf(path, sizeof(path), "%s/big.bin", out2);
    expect_file(path, b, big);
    ferry_download_free(j2);
    rec_close(&r);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
    free(b);
}

/*
 * Issue 10, item 3: 50 uploads and 50 downloads at once through one loop
 * and one session: files of 0 to 8 MiB both ways (small ones as Upload,
 * big ones as ChunkedUpload; in memory and through the writer on the way
 * down), every job done exactly once, every file byte-identical at the
 * other end.
 */
static void test_fifty_up_fifty_down(void **state)
{
    struct server srv;
    struct acct a;
    struct client cl;
    struct jobs_rec r;
    static struct job_seen seen[2 * JOBS_N];
    struct ferry_download *down[JOBS_N];
    struct ferry_upload *up[JOBS_N];
    uint8_t *data[JOBS_N], *updata[JOBS_N];
    char out[300], upd[300], path[JOBS_N][400], remote[JOBS_N][64], uremote[JOBS_N][64];
    struct all_done all = {.seen = seen, .n = 2 * JOBS_N};
    int i, fd;

    (void)state;
    memset(seen, 0, sizeof(seen));
    server_start(&srv, NULL);
    acct_signup(&srv, &a, "both");
    acct_open(&srv, &a, &cl);
    snprintf(out, sizeof(out), "%s/down", srv.dir);
    snprintf(upd, sizeof(upd), "%s/up", srv.dir);
    assert_int_equal(mkdir(out, 0755), 0);
    assert_int_equal(mkdir(upd, 0755), 0);
    for (i = 0; i < JOBS_N; i++) {
        size_t n = file_len(i), un = file_len(JOBS_N - 1 - i);
        assert_non_null(data[i] = malloc(n + 1));
        fill(data[i], n, i);
        snprintf(remote[i], sizeof(remote[i]), "/d%02d.bin", i);
        upload_plain(&cl, data[i], n, remote[i]);
        /* The uploads' files: other sizes, other bytes. */
        assert_non_null(updata[i] = malloc(un + 1));
        fill(updata[i], un, 1000 + i);
        snprintf(path[i], sizeof(path[i]), "%s/u%02d.bin", upd, i);
        assert_true((fd = open(path[i], O_WRONLY | O_CREAT | O_TRUNC, 0644)) >= 0);
        assert_int_equal(write(fd, updata[i], un), (ssize_t)un);
        close(fd);
        snprintf(uremote[i], sizeof(uremote[i]), "/u%02d.bin", i);
    }

    rec_open(&r, &srv, &a);
    for (i = 0; i < JOBS_N; i++) {
        const char *src[1] = {remote[i]}, *usrc[1] = {path[i]};
        struct ferry_download_spec ds = {
            .srcs = src, .nsrc = 1, .dest = out, .dest_dir = 1, .umask = 022, .state = r.st};
        /* One link each: a hundred jobs stay within a user's 64 connections (R-SESS-10). */
        struct ferry_upload_spec us = {.loop = &r.lh.loop,
                                       .sources = usrc,
                                       .nsources = 1,
                                       .dest = uremote[i],
                                       .connections = 1,
                                       .state = r.st};
        assert_int_equal(ferry_upload_new(r.hub, &us, &job_ops, &seen[JOBS_N + i], &up[i]), 0);
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &ds, &job_ops, &seen[i], &down[i]),
                         0);
        assert_int_equal(ferry_upload_start(up[i]), 0);
        assert_int_equal(ferry_download_start(down[i]), 0);
    }
    run_until(&r, jobs_over, &all);
    for (i = 0; i < 4; i++)
        uv_run(&r.lh.loop, UV_RUN_NOWAIT);
    for (i = 0; i < 2 * JOBS_N; i++) {
        assert_int_equal(seen[i].done, 1);
        assert_int_equal(seen[i].rc, 0);
        assert_int_equal(seen[i].items, 0);
    }
    for (i = 0; i < JOBS_N; i++) {
        char got[400];
        ferry_download_free(down[i]);
        ferry_upload_free(up[i]);
        snprintf(got, sizeof(got), "%s/d%02d.bin", out, i);
        expect_file(got, data[i], file_len(i));
        expect_content(&cl, uremote[i], updata[i], file_len(JOBS_N - 1 - i));
        free(data[i]);
        free(updata[i]);
    }
    expect_no_parts(out);
    assert_int_equal(r.ups, 1); /* one session carried them all */
    client_close(&cl);
    rec_close(&r);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/* A job cancelled from its own progress callback once bytes_done reaches at. */
struct cancel_seen {
    struct job_seen s;
    struct ferry_download *j;
    uint64_t at;
    int cancelled;
};

static void cancel_progress(void *arg, const struct ferry_job_progress *p)
{
    struct cancel_seen *k = arg;

    k->s.progress++;
    k->s.last_done = p->bytes_done;
    if (!k->cancelled && k->j != NULL && p->bytes_done >= k->at) {
        k->cancelled = 1;
        ferry_download_cancel(k->j);
    }
}

static void cancel_item(void *arg, const char *label, int rc, const char *why)
{
    (void)label;
    (void)rc;
    (void)why;
    ((struct cancel_seen *)arg)->s.items++;
}

static void cancel_done(void *arg, int rc)
{
    struct cancel_seen *k = arg;

    k->s.done++;
    k->s.rc = rc;
}

static const struct ferry_job_ops cancel_ops = {
    .on_progress = cancel_progress, .on_item = cancel_item, .on_done = cancel_done};

static int cancel_over(void *rv, void *arg)
{
    (void)rv;
    return ((struct cancel_seen *)arg)->s.done > 0;
}

/*
 * A big download cancelled at points near its end, while the rest of its
 * frames keep coming on the shared link: each ends once with
 * FERRY_ECANCELED, the link stays up, and the hub stays usable. Before, a
 * cancel took the lost-link path (FERRY_ECANCELED passes
 * ferry_conn_lost): the job's requests were let go without the hub taking
 * them, and their frames then faulted the link.
 */
static void test_cancel_near_end(void **state)
{
    struct server srv;
    struct acct a;
    struct client cl;
    struct jobs_rec r;
    const char *src[1] = {"/big.bin"};
    size_t big = 24u << 20;
    uint8_t *b = malloc(big);
    char out[300];
    int round;

    (void)state;
    assert_non_null(b);
    fill(b, big, 3);
    server_start(&srv, NULL);
    acct_signup(&srv, &a, "cancelend");
    acct_open(&srv, &a, &cl);
    upload_plain(&cl, b, big, "/big.bin");
    client_close(&cl);
    rec_open(&r, &srv, &a);
    for (round = 0; round < 8; round++) {
        struct cancel_seen k = {0};
        struct ferry_download_spec spec = {
            .srcs = src, .nsrc = 1, .dest = out, .dest_dir = 1, .umask = 022, .state = r.st};

        snprintf(out, sizeof(out), "%s/c%d", srv.dir, round);
        assert_int_equal(mkdir(out, 0755), 0);
        k.at = big - (uint64_t)(round * 3 + 1) * 400 * 1024;
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &spec, &cancel_ops, &k, &k.j), 0);
        assert_int_equal(ferry_download_start(k.j), 0);
        run_until(&r, cancel_over, &k);
        assert_int_equal(k.s.done, 1);
        assert_int_equal(k.s.rc, FERRY_ECANCELED);
        ferry_download_free(k.j);
        assert_false(r.closed);
    }
    rec_close(&r);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
    free(b);
}

/*
 * A folder download cancelled inside its big first file, with the small
 * files' requests behind it: once it is freed, the hub's download window
 * is whole again and another job on the same link gets its file.
 */
static void test_cancel_keeps_hub_sound(void **state)
{
    enum { SMALL = 150 };
    struct server srv;
    struct acct a;
    struct client cl;
    struct jobs_rec r;
    struct cancel_seen k1 = {0}, k2 = {0};
    const char *src1[1] = {"/many"}, *src2[1] = {"/one.bin"};
    size_t big = 8u << 20;
    static uint8_t small[30000];
    uint8_t *b = malloc(big);
    char out1[300], out2[300], path[400];
    int i;

    (void)state;
    assert_non_null(b);
    fill(b, big, 9);
    server_start(&srv, NULL);
    acct_signup(&srv, &a, "cancelwin");
    acct_open(&srv, &a, &cl);
    upload_plain(&cl, b, big, "/many/0big.bin");
    for (i = 0; i < SMALL; i++) {
        fill(small, sizeof(small), 200 + i);
        snprintf(path, sizeof(path), "/many/s%03d", i);
        upload_plain(&cl, small, sizeof(small), path);
    }
    upload_plain(&cl, small, sizeof(small), "/one.bin");
    client_close(&cl);
    snprintf(out1, sizeof(out1), "%s/out1", srv.dir);
    snprintf(out2, sizeof(out2), "%s/out2", srv.dir);
    assert_int_equal(mkdir(out1, 0755), 0);
    assert_int_equal(mkdir(out2, 0755), 0);
    rec_open(&r, &srv, &a);
    {
        struct ferry_download_spec spec = {.srcs = src1,
                                           .nsrc = 1,
                                           .dest = out1,
                                           .dest_dir = 1,
                                           .recursive = 1,
                                           .umask = 022,
                                           .state = r.st};
        k1.at = 2u << 20;
        k2.cancelled = 1; /* the second job is never cancelled */
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &spec, &cancel_ops, &k1, &k1.j), 0);
        spec.srcs = src2;
        spec.dest = out2;
        spec.recursive = 0;
        assert_int_equal(ferry_download_new(r.hub, &r.lh.loop, &spec, &cancel_ops, &k2, &k2.j), 0);
    }
    assert_int_equal(ferry_download_start(k1.j), 0);
    run_until(&r, cancel_over, &k1);
    assert_int_equal(k1.s.rc, FERRY_ECANCELED);
    ferry_download_free(k1.j);
    assert_true(ferry_hub_may_download(r.hub));
    assert_int_equal(ferry_download_start(k2.j), 0);
    run_until(&r, cancel_over, &k2);
    assert_int_equal(k2.s.rc, 0);
    assert_false(r.closed);
    snprintf(path, sizeof(path), "%s/one.bin", out2);
    expect_file(path, small, sizeof(small));
    ferry_download_free(k2.j);
    rec_close(&r);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
    free(b);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_many_downloads_one_loop, harness_teardown),
        cmocka_unit_test_teardown(test_cancel_one_of_two, harness_teardown),
        cmocka_unit_test_teardown(test_cancel_near_end, harness_teardown),
        cmocka_unit_test_teardown(test_cancel_keeps_hub_sound, harness_teardown),
        cmocka_unit_test_teardown(test_chunked_jobs_reuse_local, harness_teardown),
        cmocka_unit_test_teardown(test_cancel_midway_shared, harness_teardown),
        cmocka_unit_test_teardown(test_fifty_up_fifty_down, harness_teardown),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
