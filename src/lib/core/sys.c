/* Clock, logging sink and directory helpers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>

#include "ferry/core.h"

static ferry_log_fn log_sink;
static enum ferry_log_level log_min = FERRY_LOG_INFO;

uint64_t ferry_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t ferry_wall_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void ferry_log_set(ferry_log_fn fn, enum ferry_log_level min)
{
    log_sink = fn;
    log_min = min;
}

void ferry_log(enum ferry_log_level lvl, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (log_sink == NULL || lvl < log_min)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_sink(lvl, msg);
}

int ferry_xdg_dir(const char *env, const char *fallback_rel, char *out, size_t cap)
{
    const char *v = getenv(env);
    const char *home;
    int n;

    /* XDG 0.8: a relative value is invalid and must be ignored. */
    if (v != NULL && v[0] == '/') {
        n = snprintf(out, cap, "%s/ferry", v);
    } else {
        home = getenv("HOME");
        if (home == NULL || home[0] != '/')
            return FERRY_ENOTFOUND;
        n = snprintf(out, cap, "%s/%s/ferry", home, fallback_rel);
    }
    if (n < 0 || (size_t)n >= cap)
        return FERRY_ETOOBIG;
    return 0;
}

int ferry_mkdirs(const char *path, unsigned mode)
{
    char tmp[4096];
    size_t i, n = strlen(path);

    if (n == 0 || n >= sizeof(tmp))
        return FERRY_ETOOBIG;
    memcpy(tmp, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        tmp[i] = '\0';
        if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST)
            return -errno;
        tmp[i] = i == n ? '\0' : '/';
    }
    return 0;
}

int ferry_read_password(const char *prompt, int from_stdin, char *buf, size_t cap)
{
    struct termios old, noecho;
    FILE *in = stdin;
    int tty = 0;
    size_t n;

    if (!from_stdin) {
        /* R-AUTH-2: never from argv; a prompt on the terminal with echo off. */
        if ((in = fopen("/dev/tty", "r+e")) == NULL)
            return -ENOTTY;
        tty = 1;
        /*
         * Echo off first, then the prompt: what is typed once the prompt
         * shows is kept, never flushed by a late TCSAFLUSH, and never echoed.
         */
        tcgetattr(fileno(in), &old);
        noecho = old;
        noecho.c_lflag &= (tcflag_t)~ECHO;
        tcsetattr(fileno(in), TCSAFLUSH, &noecho);
        fprintf(in, "%s", prompt);
        fflush(in);
    }
    if (fgets(buf, (int)cap, in) == NULL)
        buf[0] = '\0';
    if (tty) {
        tcsetattr(fileno(in), TCSAFLUSH, &old);
        fprintf(in, "\n");
        fclose(in);
    }
    n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return n == 0 ? -ENODATA : 0;
}
