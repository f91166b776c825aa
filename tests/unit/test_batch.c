/*
 * Batches of verified downloads (src/lib/transfer/batch.c): small files held
 * in memory get their part files made, written and timed by the flush
 * (R-RECV-3, R-RECV-4), with a file written before (mode and time set by the
 * flush too); a planted name fails its file alone (R-RECV-1); the bytes held
 * fill a batch and are counted as unwritten until the flush (R-RECV-6).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry/batch.h"
#include "ferry/core.h"

static char tmpdir[] = "/tmp/ferry-test-batch.XXXXXX";

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A folder beneath tmpdir, made new, as the dircache would hand it out. */
static void dir_open(const char *sub, struct ferry_dir *d)
{
    char path[256];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, sub);
    assert_int_equal(mkdir(path, 0700), 0);
    *d = (struct ferry_dir){.rootfd = -1, .rel = NULL};
    d->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(d->fd >= 0);
    assert_int_equal(fstat(d->fd, &st), 0);
    d->dev = (uint64_t)st.st_dev;
    d->ino = (uint64_t)st.st_ino;
}

struct seen {
    int n;
    int rc[32];
    int said[32];
    const char *stage[32];
};

static void on_done(void *ctx, struct ferry_batch_ent *e, int rc, const char *stage)
{
    struct seen *s = ctx;

    assert_true(s->n < 32);
    assert_ptr_equal(e->arg, (void *)(intptr_t)(s->n + 1)); /* in the order added */
    s->rc[s->n] = rc;
    s->said[s->n] = e->said;
    s->stage[s->n] = stage;
    s->n++;
}

static void check_file(int dfd, const char *name, const uint8_t *want, size_t len, mode_t mode,
                       int64_t mtime_ns)
{
    uint8_t back[8192];
    struct stat st;
    int fd;

    fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal((size_t)st.st_size, len);
    assert_int_equal(st.st_mode & 07777, mode);
    assert_int_equal((int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec, mtime_ns);
    assert_int_equal(read(fd, back, sizeof(back)), (ssize_t)len);
    assert_memory_equal(back, want, len);
    close(fd);
}

/* R-RECV-3, R-RECV-4: held files and a written one, all placed by one flush. */
static void test_held_files_placed(void **state)
{
    static const uint8_t tid[FERRY_TID_LEN];
    _Atomic uint64_t unwritten = 0;
    struct ferry_batch b;
    struct ferry_dir d;
    struct seen s = {0};
    uint8_t data[12][4096];
    char part[32], name[32];
    int64_t mtime = 1700000000123456789;
    int i, fd;

    (void)state;
    dir_open("held", &d);
    assert_int_equal(ferry_batch_init(&b, 16, 1u << 20), 0);
    b.unwritten = &unwritten;
    /* A file the writer thread wrote: its part file exists before the flush. */
    memset(data[0], 'w', sizeof(data[0]));
    fd = openat(d.fd, ".p0", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data[0], sizeof(data[0])), (ssize_t)sizeof(data[0]));
    assert_int_equal(ferry_batch_add(&b, &d, fd, ".p0", "f0", "sha256:x", tid, 1, sizeof(data[0]),
                                     0640, mtime, 0, (void *)(intptr_t)1),
                     0);
    /* From FERRY_BATCH_SYNCFS_MIN files the flush takes the syncfs path. */
    for (i = 1; i < 12; i++) {
        memset(data[i], 'a' + i, sizeof(data[i]));
        snprintf(part, sizeof(part), ".p%d", i);
        snprintf(name, sizeof(name), "f%d", i);
        assert_int_equal(ferry_batch_add_held(&b, &d, part, name, "sha256:x", tid, (uint64_t)i + 1,
                                              data[i], (size_t)(100 * i), i % 2 ? 0755 : 0644,
                                              mtime + i, (void *)(intptr_t)(i + 1)),
                         0);
        /* Nothing on disk before the flush, or a slice. */
        assert_int_equal(faccessat(d.fd, part, F_OK, AT_SYMLINK_NOFOLLOW), -1);
        if (i == 6) {
            /* The first files are written by a slice, as while the batch still fills. */
            struct ferry_batch_slice sl;
            ferry_batch_take_slice(&b, &sl);
            assert_int_equal(sl.lo, 0);
            assert_int_equal(sl.hi, 7);
            ferry_batch_write_slice(&sl);
            assert_int_equal(faccessat(d.fd, part, F_OK, AT_SYMLINK_NOFOLLOW), 0);
            assert_int_equal(atomic_load(&unwritten), 0);
        }
    }
    assert_int_equal(atomic_load(&unwritten), 100 * (7 + 11) * 5 / 2);
    ferry_batch_sync(&b, NULL);
    assert_int_equal(atomic_load(&unwritten), 0);
    ferry_batch_done(&b, on_done, &s);
    assert_int_equal(s.n, 12);
    for (i = 0; i < 12; i++)
        assert_int_equal(s.rc[i], 0);
    check_file(d.fd, "f0", data[0], sizeof(data[0]), 0640, mtime);
    for (i = 1; i < 12; i++) {
        snprintf(part, sizeof(part), ".p%d", i);
        snprintf(name, sizeof(name), "f%d", i);
        check_file(d.fd, name, data[i], (size_t)(100 * i), i % 2 ? 0755 : 0644, mtime + i);
        assert_int_equal(faccessat(d.fd, part, F_OK, AT_SYMLINK_NOFOLLOW), -1);
    }
    assert_int_equal(b.n, 0);
    assert_int_equal(b.buflen, 0);
    ferry_batch_cleanup(&b);
    close(d.fd);
}

/* R-RECV-1: a symlink planted at a held file's part name fails that file alone. */
static void test_planted_name(void **state)
{
    static const uint8_t tid[FERRY_TID_LEN];
    static const uint8_t one[] = "one", two[] = "two";
    char target[256], back[16];
    struct ferry_batch b;
    struct ferry_dir d;
    struct seen s = {0};
    int fd;

    (void)state;
    dir_open("planted", &d);
    snprintf(target, sizeof(target), "%s/victim", tmpdir);
    fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep", 4), 4);
    close(fd);
    assert_int_equal(symlinkat(target, d.fd, ".bad"), 0);
    assert_int_equal(ferry_batch_init(&b, 4, 1u << 20), 0);
    assert_int_equal(ferry_batch_add_held(&b, &d, ".bad", "bad", "sha256:x", tid, 1, one, 3, 0644,
                                          0, (void *)(intptr_t)1),
                     0);
    assert_int_equal(ferry_batch_add_held(&b, &d, ".good", "good", "sha256:x", tid, 2, two, 3, 0644,
                                          0, (void *)(intptr_t)2),
                     0);
    ferry_batch_sync(&b, NULL);
    ferry_batch_done(&b, on_done, &s);
    assert_int_equal(s.n, 2);
    assert_int_not_equal(s.rc[0], 0);
    assert_true(s.said[0]);
    assert_non_null(strstr(s.stage[0], "foreign file"));
    assert_int_equal(s.rc[1], 0);
    check_file(d.fd, "good", two, 3, 0644, 0);
    assert_int_equal(faccessat(d.fd, "bad", F_OK, AT_SYMLINK_NOFOLLOW), -1);
    /* The planted link's target is untouched. */
    fd = open(target, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, back, sizeof(back)), 4);
    assert_memory_equal(back, "keep", 4);
    close(fd);
    ferry_batch_cleanup(&b);
    close(d.fd);
}

static void on_dropped(void *ctx, struct ferry_batch_ent *e, int rc, const char *stage)
{
    (void)e;
    (void)rc;
    (void)stage;
    (*(int *)ctx)++;
}

/* What a batch holds in memory is bounded: FERRY_BATCH_HELD bytes fill it. */
static void test_held_bytes_fill(void **state)
{
    static const uint8_t tid[FERRY_TID_LEN];
    struct ferry_batch b;
    struct ferry_dir d;
    uint8_t *big = calloc(1, 1u << 20);
    int i, n = 0;

    (void)state;
    assert_non_null(big);
    dir_open("fill", &d);
    assert_int_equal(ferry_batch_init(&b, 64, 2 * FERRY_BATCH_HELD), 0);
    for (i = 0; i < 16; i++) {
        assert_false(ferry_batch_full(&b));
        assert_int_equal(ferry_batch_add_held(&b, &d, ".p", "f", "sha256:x", tid, 1, big, 1u << 20,
                                              0644, 0, NULL),
                         0);
    }
    assert_int_equal(b.buflen, FERRY_BATCH_HELD);
    assert_true(ferry_batch_full(&b));
    /* Emptied without a flush: nothing was written; the grown buffer is not kept. */
    ferry_batch_done(&b, on_dropped, &n);
    assert_int_equal(n, 16);
    assert_int_equal(b.buflen, 0);
    ferry_batch_cleanup(&b);
    free(big);
    close(d.fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_files_placed),
        cmocka_unit_test(test_planted_name),
        cmocka_unit_test(test_held_bytes_fill),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
