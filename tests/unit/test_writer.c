/*
 * The writer thread (src/lib/transfer/writer.c): a file written and hashed
 * while the caller keeps filling buffers; a write error on the thread seen
 * by the caller (under ThreadSanitizer this is the race of issue 9 item 8:
 * the thread's error was written without the lock the caller reads it
 * under); and a writer ended twice, which crashed `ferry get` (item 2).
 */
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
#include <unistd.h>

#include <cmocka.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/writer.h"

static char tmpdir[] = "/tmp/ferry-test-writer.XXXXXX";

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

static int tmp_open(const char *name)
{
    char path[256];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    return fd;
}

/* Several buffers and a short tail: the bytes land in order and the id is their SHA-256. */
static void test_write_and_hash(void **state)
{
    struct ferry_writer *w;
    char cid[FERRY_CID_LEN + 1], want[FERRY_CID_LEN + 1];
    size_t total = 3 * FERRY_WRITER_BUF + 1234, off = 0;
    uint8_t *data = malloc(total), *back = malloc(total);
    int fd = tmp_open("a.bin");

    (void)state;
    assert_non_null(data);
    assert_non_null(back);
    ferry_random(data, total);
    assert_int_equal(ferry_writer_new(&w), 0);
    assert_int_equal(ferry_writer_begin(w, fd), 0);
    while (off < total) {
        uint8_t *b = ferry_writer_buf(w);
        size_t n = total - off < FERRY_WRITER_BUF ? total - off : FERRY_WRITER_BUF;

        assert_non_null(b);
        memcpy(b, data + off, n);
        ferry_writer_submit(w, b, n);
        off += n;
    }
    assert_int_equal(ferry_writer_end(w, cid), 0);
    {
        uint8_t h[32];
        ferry_sha256_buf(data, total, h);
        memcpy(want, "sha256:", 7);
        ferry_hex_encode(h, sizeof(h), want + 7);
    }
    assert_string_equal(cid, want);
    assert_int_equal(pread(fd, back, total, 0), (ssize_t)total);
    assert_memory_equal(back, data, total);
    ferry_writer_free(w);
    close(fd);
    free(data);
    free(back);
}

/*
 * A write that fails on the thread (a descriptor open for reading only):
 * the caller sees it as no more buffers, then as end's error. The caller
 * keeps asking for buffers while the thread fails, so ThreadSanitizer sees
 * both sides of the error flag (issue 9 item 8).
 */
static void test_thread_error_seen_by_caller(void **state)
{
    struct ferry_writer *w;
    char cid[FERRY_CID_LEN + 1], path[256];
    int fd, round, got_null = 0, i;

    (void)state;
    close(tmp_open("ro.bin"));
    snprintf(path, sizeof(path), "%s/ro.bin", tmpdir);
    assert_int_equal(ferry_writer_new(&w), 0);
    for (round = 0; round < 2000; round++) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(ferry_writer_begin(w, fd), 0);
        for (i = 0; i < 4 * FERRY_WRITER_NBUF; i++) {
            uint8_t *b = ferry_writer_buf(w);
            if (b == NULL) {
                got_null++;
                break;
            }
            memset(b, 'x', 4096);
            ferry_writer_submit(w, b, 4096);
        }
        assert_int_equal(ferry_writer_end(w, cid), -EBADF);
        close(fd);
    }
    /* Once failed, a file hands out no more buffers. */
    assert_true(got_null > 0);
    ferry_writer_free(w);
}

/* Ending a file twice (item 2's crash) is refused and touches nothing. */
static void test_end_twice(void **state)
{
    struct ferry_writer *w;
    char cid[FERRY_CID_LEN + 1];
    int fd = tmp_open("twice.bin");
    uint8_t *b;

    (void)state;
    assert_int_equal(ferry_writer_new(&w), 0);
    assert_int_equal(ferry_writer_begin(w, fd), 0);
    b = ferry_writer_buf(w);
    assert_non_null(b);
    memcpy(b, "hello", 5);
    ferry_writer_submit(w, b, 5);
    assert_int_equal(ferry_writer_end(w, cid), 0);
    assert_false(ferry_writer_busy(w));
    assert_int_equal(ferry_writer_end(w, cid), FERRY_EUSAGE);
    /* Also after a failed file. */
    assert_int_equal(ferry_writer_begin(w, -1), 0);
    b = ferry_writer_buf(w);
    assert_non_null(b);
    ferry_writer_submit(w, b, 5);
    assert_int_equal(ferry_writer_end(w, cid), -EBADF);
    assert_int_equal(ferry_writer_end(w, cid), FERRY_EUSAGE);
    /* The writer still works for the next file. */
    assert_int_equal(ferry_writer_begin(w, fd), 0);
    assert_int_equal(ferry_writer_end(w, cid), 0);
    ferry_writer_free(w);
    close(fd);
}

/*
 * Durable steps taken beside the writes (R-CHUNK-14's every 32 MiB, here
 * every 2 MiB): what ferry_writer_durable reports only grows, never passes
 * the bytes handed over, and advances while the caller keeps submitting,
 * without ferry_writer_sync. A step due when the file ends is not waited
 * for: the caller makes the file durable itself.
 */
static void test_durable_steps(void **state)
{
    struct ferry_writer *w;
    char cid[FERRY_CID_LEN + 1];
    uint64_t handed = 0, last = 0, d;
    int fd = tmp_open("steps.bin"), i;

    (void)state;
    assert_int_equal(ferry_writer_new(&w), 0);
    assert_int_equal(ferry_writer_begin_chunked(w, fd), 0);
    ferry_writer_sync_every(w, 2 * FERRY_WRITER_BUF);
    for (i = 0; i < 24; i++) {
        uint8_t *b = ferry_writer_buf(w);

        assert_non_null(b);
        ferry_random(b, FERRY_WRITER_BUF);
        ferry_writer_submit(w, b, FERRY_WRITER_BUF);
        handed += FERRY_WRITER_BUF;
        d = ferry_writer_durable(w);
        assert_true(d >= last && d <= handed);
        assert_int_equal(d % FERRY_WRITER_BUF, 0);
        last = d;
    }
    /* No signal says a step finished: look until one has (the test's timeout bounds it). */
    while ((d = ferry_writer_durable(w)) < 2 * FERRY_WRITER_BUF)
        sched_yield();
    assert_true(d <= handed);
    assert_int_equal(ferry_writer_end(w, cid), 0);
    ferry_writer_free(w);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_and_hash),
        cmocka_unit_test(test_thread_error_seen_by_caller),
        cmocka_unit_test(test_end_twice),
        cmocka_unit_test(test_durable_steps),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
