/*
 * ferry serve and its host: owner-only files in the data directory, the
 * open-file limit, and the systemd readiness protocol (R-ADMIN-1..3).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "host.h"
#include "server.h"

/*
 * The entries the server creates at the top of its data directory. A
 * directory among them that is owner-only hides whatever an older version
 * left readable beneath it, so these are the ones to check.
 */
static const char *const data_entries[] = {
    "ferry.db",         "ferry.db-wal", "ferry.db-shm", "lock",  "identity", "identity/cert.pem",
    "identity/key.pem", "tmp",          "blobs",        "packs", "chunks",
};

/* Takes group and other bits off one entry, if it is a plain file or a directory. */
static void tighten(int datafd, const char *dir, const char *rel)
{
    struct stat st;
    int fd;

    /* O_NOFOLLOW on every component would need openat2; the names here are our own. */
    fd = openat(datafd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
        (st.st_mode & 077) != 0) {
        if (fchmod(fd, st.st_mode & 07700) == 0)
            ferry_log(FERRY_LOG_WARN,
                      "mode of %s/%s was %04o, readable beyond its owner: made it %04o", dir, rel,
                      (unsigned)(st.st_mode & 07777), (unsigned)(st.st_mode & 07700));
        else
            ferry_log(FERRY_LOG_WARN, "mode of %s/%s is %04o and cannot be tightened: %s", dir, rel,
                      (unsigned)(st.st_mode & 07777), strerror(errno));
    }
    close(fd);
}

void srv_data_modes(int datafd, const char *dir)
{
    struct stat st;
    size_t i;

    /*
     * R-ADMIN-1: the directory itself may be a mount point or shared on
     * purpose, so it is not changed; everything the server keeps in it is
     * owner-only, so a readable directory shows names, never contents.
     */
    if (fstat(datafd, &st) == 0 && (st.st_mode & 077) != 0)
        ferry_log(FERRY_LOG_WARN,
                  "data directory %s has mode %04o: group or others may look into it;"
                  " its files are kept owner-only, but run 'chmod 700 %s'",
                  dir, (unsigned)(st.st_mode & 07777), dir);
    for (i = 0; i < sizeof(data_entries) / sizeof(data_entries[0]); i++)
        tighten(datafd, dir, data_entries[i]);
}

/* The most a process may raise RLIMIT_NOFILE to when the hard limit is unlimited. */
static rlim_t nr_open(void)
{
    FILE *f = fopen("/proc/sys/fs/nr_open", "re");
    unsigned long long v = 0;

    if (f != NULL) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v > 0 ? (rlim_t)v : 1048576;
}

int srv_nofile_check(struct srv_config *cfg, int max_conns_given)
{
    struct rlimit rl;
    rlim_t want, need;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    /* R-ADMIN-2: the soft limit is only a default; the hard one is what we may use. */
    want = rl.rlim_max == RLIM_INFINITY ? nr_open() : rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        struct rlimit nl = {.rlim_cur = want, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
            rl.rlim_cur = want;
        else
            ferry_log(FERRY_LOG_WARN, "cannot raise the open-file limit from %llu to %llu: %s",
                      (unsigned long long)rl.rlim_cur, (unsigned long long)want, strerror(errno));
    }
    /* Sockets being refused with a reason (R-SESS-9) hold a descriptor each too. */
    need = (rlim_t)cfg->max_conns * SRV_FDS_PER_CONN + SRV_FDS_RESERVE + SRV_REFUSING_MAX;
    if (rl.rlim_cur == RLIM_INFINITY || need <= rl.rlim_cur)
        return 0;
    if (rl.rlim_cur <= SRV_FDS_RESERVE + SRV_REFUSING_MAX + SRV_FDS_PER_CONN) {
        fprintf(stderr,
                "ferry serve: the open-file limit is %llu: too low to serve anyone"
                " (raise it: ulimit -n, or LimitNOFILE= for systemd)\n",
                (unsigned long long)rl.rlim_cur);
        return FERRY_EUSAGE;
    }
    if (max_conns_given) {
        fprintf(stderr,
                "ferry serve: --max-conns %d needs %llu open files, but the limit is %llu"
                " (ulimit -n, or LimitNOFILE= for systemd): allow at most %llu connections\n",
                cfg->max_conns, (unsigned long long)need, (unsigned long long)rl.rlim_cur,
                (unsigned long long)((rl.rlim_cur - SRV_FDS_RESERVE - SRV_REFUSING_MAX) /
                                     SRV_FDS_PER_CONN));
        return FERRY_EUSAGE;
    }
    ferry_log(
        FERRY_LOG_WARN,
        "max-conns lowered from %d to %llu: the open-file limit is %llu"
        " (raise it: ulimit -n, or LimitNOFILE= for systemd)",
        cfg->max_conns,
        (unsigned long long)((rl.rlim_cur - SRV_FDS_RESERVE - SRV_REFUSING_MAX) / SRV_FDS_PER_CONN),
        (unsigned long long)rl.rlim_cur);
    cfg->max_conns = (int)((rl.rlim_cur - SRV_FDS_RESERVE - SRV_REFUSING_MAX) / SRV_FDS_PER_CONN);
    return 0;
}

int srv_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len;
    ssize_t n;
    int fd, rc = 0;

    if (path == NULL || path[0] == '\0')
        return 0;
    len = strlen(path);
    /* R-ADMIN-3: a path, or @ for Linux's abstract namespace (a leading NUL). */
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path)) {
        ferry_log(FERRY_LOG_WARN, "NOTIFY_SOCKET '%s' is not a socket path; not notifying", path);
        return 0;
    }
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
        return -errno;
    n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    if (n < 0) {
        rc = -errno;
        ferry_log(FERRY_LOG_WARN, "cannot notify the service manager at %s: %s", path,
                  strerror(errno));
    }
    close(fd);
    return rc;
}
