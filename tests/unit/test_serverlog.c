/*
 * Unit tests of the server log's helpers (src/server/serverlog.c): values a
 * peer chose are written so they cannot break a line or a key=value pair
 * (R-LOG-1), and lines a peer can cause in volume are limited per second
 * with a count of what was left out (R-LOG-3); the loop thread's lines are
 * written once per loop turn, other threads' at once (R-LOG-7).
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/server.h"

static void val_is(const char *in, size_t max, const char *want)
{
    char out[128];

    assert_string_equal(srv_log_val(out, sizeof(out), in, max), want);
}

/* R-LOG-1 */
static void test_values(void **state)
{
    (void)state;
    val_is("alice", 64, "alice");
    val_is("/a/b-c_d.txt", 64, "/a/b-c_d.txt");
    val_is("", 64, "\"\"");
    val_is("two words", 64, "\"two words\"");
    val_is("say \"hi\"\\", 64, "\"say \\\"hi\\\"\\\\\"");
    val_is("a=b", 64, "\"a=b\"");
    val_is("line\nbreak\r\t", 64, "\"line\\x0abreak\\x0d\\x09\"");
    val_is("caf\xc3\xa9 \x7f", 64, "\"caf\\xc3\\xa9 \\x7f\"");
    /* At most max bytes of the value, then an ellipsis inside the quotes. */
    val_is("abcdefgh", 5, "\"abcde...\"");
    val_is("abcde", 5, "abcde");
}

/* A small output buffer truncates, and still closes the quotes. */
static void test_value_cap(void **state)
{
    char out[16], in[300];

    (void)state;
    memset(in, '\x01', sizeof(in) - 1);
    in[sizeof(in) - 1] = '\0';
    srv_log_val(out, sizeof(out), in, sizeof(in));
    assert_true(strlen(out) < sizeof(out));
    assert_int_equal(out[0], '"');
    assert_int_equal(out[strlen(out) - 1], '"');
    assert_non_null(strstr(out, "..."));
}

static char lines[32][256];
static int nlines;

static void capture(enum ferry_log_level lvl, const char *msg)
{
    (void)lvl;
    if (nlines < 32)
        snprintf(lines[nlines++], sizeof(lines[0]), "%s", msg);
}

/* R-LOG-3: SRV_LOG_BURST lines a second of each kind, then one count. */
static void test_limit(void **state)
{
    struct srv *srv = ferry_calloc(1, sizeof(*srv));
    int i, allowed = 0;

    (void)state;
    assert_non_null(srv);
    ferry_log_set(capture, FERRY_LOG_DEBUG);
    for (i = 0; i < SRV_LOG_BURST + 25; i++)
        allowed += srv_log_allow(srv, SRV_LOG_REFUSED);
    assert_int_equal(allowed, SRV_LOG_BURST);
    /* Other kinds have limits of their own. */
    assert_int_equal(srv_log_allow(srv, SRV_LOG_FAULT), 1);
    /* Within the second nothing is written yet. */
    srv_log_flush(srv);
    assert_int_equal(nlines, 0);
    /* Once it is over, the count of what was left out. */
    srv->logl.window_ms[SRV_LOG_REFUSED] -= 1000;
    srv_log_flush(srv);
    assert_int_equal(nlines, 1);
    assert_string_equal(lines[0], "event=suppressed what=refused count=25");
    assert_int_equal(srv_log_allow(srv, SRV_LOG_REFUSED), 1);
    srv_log_flush(srv);
    assert_int_equal(nlines, 1);
    ferry_log_set(NULL, FERRY_LOG_INFO);
    ferry_free(srv);
}

/* What standard error (a file in these tests) holds so far. */
static const char *stderr_text(int fd)
{
    static char buf[4096];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void *log_from_thread(void *arg)
{
    (void)arg;
    ferry_log(FERRY_LOG_WARN, "event=other-thread");
    return NULL;
}

static void never_cb(uv_timer_t *t)
{
    (void)t;
}

/* R-LOG-7: gathered on the loop thread until its turn ends; at once elsewhere. */
static void test_log_turns(void **state)
{
    struct srv *srv = ferry_calloc(1, sizeof(*srv));
    char path[] = "/tmp/ferry-test-serverlog.XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);
    uv_loop_t loop;
    uv_timer_t keep;
    pthread_t th;

    (void)state;
    assert_non_null(srv);
    assert_true(fd >= 0 && saved >= 0);
    unlink(path);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    assert_int_equal(uv_loop_init(&loop), 0);
    /* A live handle, so that one turn of the loop runs. */
    uv_timer_init(&loop, &keep);
    uv_timer_start(&keep, never_cb, 3600 * 1000, 0);
    srv->loop = &loop;
    ferry_log_set(srv_log_sink, FERRY_LOG_INFO);

    srv_log_turns_start(srv);
    ferry_log(FERRY_LOG_INFO, "event=one");
    ferry_log(FERRY_LOG_NOTICE, "event=two");
    assert_string_equal(stderr_text(fd), "");
    /* Another thread's line goes at once, and takes the gathered ones before it. */
    assert_int_equal(pthread_create(&th, NULL, log_from_thread, NULL), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_string_equal(stderr_text(fd), "ferry serve: level=info event=one\n"
                                         "ferry serve: level=notice event=two\n"
                                         "ferry serve: level=warn event=other-thread\n");
    ferry_log(FERRY_LOG_INFO, "event=three");
    assert_non_null(strstr(stderr_text(fd), "other-thread\n"));
    assert_null(strstr(stderr_text(fd), "three"));
    /* The end of the turn writes it. */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_non_null(strstr(stderr_text(fd), "other-thread\nferry serve: level=info event=three\n"));
    /* Once stopping, every line at once. */
    ferry_log(FERRY_LOG_INFO, "event=four");
    srv_log_turns_stop(srv);
    assert_non_null(strstr(stderr_text(fd), "event=four\n"));
    ferry_log(FERRY_LOG_INFO, "event=five");
    assert_non_null(strstr(stderr_text(fd), "event=four\nferry serve: level=info event=five\n"));

    ferry_log_set(NULL, FERRY_LOG_INFO);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    ferry_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_value_cap),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_log_turns),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
