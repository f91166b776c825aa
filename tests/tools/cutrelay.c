/*
 * cutrelay: a TCP relay for tests that cuts a connection after an exact
 * number of bytes (issue 4: "a relay in the test harness that cuts the
 * connection after N bytes, N swept across frame boundaries").
 *
 * usage: cutrelay --listen HOST:PORT --to HOST:PORT [options]
 *   --cut-c2s N   cut once exactly N bytes client->server have been forwarded
 *   --cut-s2c M   cut once exactly M bytes server->client have been forwarded
 *   --rst         cut with a reset (SO_LINGER 0) instead of a plain close
 *   --once        cut only one connection, the first accepted (the default),
 *                 so a client's reconnection then goes through untouched
 *   --conn K      with --once: cut the K-th accepted connection instead (a
 *                 client's second, third... parallel connection)
 *   --every       cut every connection
 *   --verbose     log every read ("conn 1 c2s read 517 at 0"): the peers'
 *                 writes, so roughly their TLS records, to place cut points;
 *                 and which side ended a connection ("conn 3 c2s source
 *                 ended: eof" means the client closed first)
 * Whichever limit is reached first cuts the connection: both sockets are
 * closed at once. Never more than N (M) bytes are forwarded in the cut
 * direction: reads are split to stop exactly there, and the cut waits (at
 * most DRAIN_MAX_MS) until the kernel has transmitted all N, so the peer
 * receives exactly N even with --rst. A limit of 0 cuts the connection as
 * soon as it is accepted.
 *
 * It prints "ready PORT" on stdout once listening (port 0 picks one), logs
 * connections and cuts to stderr ("cut c2s at N"), and exits 0 on SIGTERM
 * or SIGINT. Single-threaded, poll-based, libc only.
 */
#include <errno.h>
#include <getopt.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Connections relayed at the same time; a test client opens a few at most. */
#define PAIRS_MAX 64
/* Bytes held per direction between a read and its writes. */
#define BUF_LEN 65536
/* Longest wait for the kernel to transmit the last bytes before a cut. */
#define DRAIN_MAX_MS 2000
/* Poll interval while a cut waits for its bytes to leave. */
#define DRAIN_POLL_MS 2
/* No limit in this direction. */
#define NO_CUT UINT64_MAX

enum { C2S = 0, S2C = 1 };
static const char *const dir_name[2] = {"c2s", "s2c"};

struct dir {
    uint8_t buf[BUF_LEN];
    size_t off, len;    /* bytes buf[off..len) are read and not yet written */
    uint64_t read;      /* bytes read from the source so far */
    uint64_t forwarded; /* bytes written to the destination so far */
    uint64_t limit;     /* cut once this many are forwarded; NO_CUT for none */
    int eof;            /* the source has ended: shut the destination's write side */
};

struct pair {
    int used;
    unsigned id;
    int fd[2]; /* fd[C2S] is the client's socket, fd[S2C] the server's */
    struct dir d[2];
    uint64_t drain_since; /* when a limit was reached, while its bytes leave; 0 before */
};

static struct pair pairs[PAIRS_MAX];
static volatile sig_atomic_t stopping;
static uint64_t cut_at[2] = {NO_CUT, NO_CUT};
static int use_rst, cut_every, verbose;
static unsigned accepted, cut_conn = 1;

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 1;
}

static void on_signal(int s)
{
    (void)s;
    stopping = 1;
}

/* Splits HOST:PORT (or [HOST]:PORT) and resolves it; exits on error. */
static struct addrinfo *resolve(const char *spec, int passive)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    struct addrinfo hints, *ai = NULL;
    size_t hlen;
    int rc;

    if (colon == NULL || colon == spec || colon[1] == '\0') {
        fprintf(stderr, "cutrelay: %s: give HOST:PORT\n", spec);
        exit(2);
    }
    hlen = (size_t)(colon - spec);
    if (spec[0] == '[' && hlen >= 2 && spec[hlen - 1] == ']') {
        spec++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) {
        fprintf(stderr, "cutrelay: %s: host too long\n", spec);
        exit(2);
    }
    memcpy(host, spec, hlen);
    host[hlen] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    if ((rc = getaddrinfo(host, colon + 1, &hints, &ai)) != 0) {
        fprintf(stderr, "cutrelay: %s: %s\n", spec, gai_strerror(rc));
        exit(2);
    }
    return ai;
}

static uint64_t parse_count(const char *opt, const char *s)
{
    unsigned long long v;
    char *end;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v >= NO_CUT) {
        fprintf(stderr, "cutrelay: %s: give a byte count\n", opt);
        exit(2);
    }
    return (uint64_t)v;
}

/* A plain close sends FIN after the queued bytes; --rst resets at once. */
static void close_fd(int fd, int rst)
{
    if (fd < 0)
        return;
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else {
        shutdown(fd, SHUT_WR);
    }
    close(fd);
}

static void pair_close(struct pair *p, int rst, const char *why)
{
    fprintf(stderr, "conn %u closed (%s): c2s %llu bytes, s2c %llu bytes\n", p->id, why,
            (unsigned long long)p->d[C2S].forwarded, (unsigned long long)p->d[S2C].forwarded);
    close_fd(p->fd[C2S], rst);
    close_fd(p->fd[S2C], rst);
    p->used = 0;
}

/*
 * Cuts the pair once a direction has forwarded exactly its limit and the
 * kernel has transmitted those bytes (or DRAIN_MAX_MS passed). Returns 1
 * if the pair is gone.
 */
static int maybe_cut(struct pair *p)
{
    int k, unsent;

    for (k = 0; k < 2; k++) {
        if (p->d[k].forwarded != p->d[k].limit)
            continue;
        if (p->drain_since == 0)
            p->drain_since = now_ms();
        if (ioctl(p->fd[1 - k], SIOCOUTQNSD, &unsent) != 0)
            unsent = 0;
        if (unsent > 0 && now_ms() - p->drain_since < DRAIN_MAX_MS)
            return 0;
        fprintf(stderr, "cut %s at %llu%s", dir_name[k], (unsigned long long)p->d[k].forwarded,
                use_rst ? " (rst)" : "");
        if (unsent > 0)
            fprintf(stderr, " (%d bytes still unsent)", unsent);
        fputc('\n', stderr);
        pair_close(p, use_rst, "cut");
        return 1;
    }
    return 0;
}

static void accept_one(int lfd, const struct addrinfo *to)
{
    struct pair *p = NULL;
    int cfd, sfd, one = 1, k;

    if ((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
            perror("cutrelay: accept");
        return;
    }
    accepted++;
    for (k = 0; k < PAIRS_MAX; k++) {
        if (!pairs[k].used) {
            p = &pairs[k];
            break;
        }
    }
    if (p == NULL) {
        fprintf(stderr, "conn %u refused: %d connections open\n", accepted, PAIRS_MAX);
        close(cfd);
        return;
    }
    /* Loopback targets: a blocking connect returns at once. */
    sfd = socket(to->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sfd < 0 || connect(sfd, to->ai_addr, to->ai_addrlen) != 0) {
        fprintf(stderr, "conn %u: cannot reach the target: %s\n", accepted, strerror(errno));
        if (sfd >= 0)
            close(sfd);
        close(cfd);
        return;
    }
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(p, 0, sizeof(*p));
    p->used = 1;
    p->id = accepted;
    p->fd[C2S] = cfd;
    p->fd[S2C] = sfd;
    for (k = 0; k < 2; k++)
        p->d[k].limit = cut_every || accepted == cut_conn ? cut_at[k] : NO_CUT;
    fprintf(stderr, "conn %u accepted\n", p->id);
    maybe_cut(p);
}

/* Moves bytes of direction k as far as the sockets allow. */
static void pump(struct pair *p, int k, short revents_src, short revents_dst)
{
    struct dir *d = &p->d[k];
    int src = p->fd[k], dst = p->fd[1 - k];
    ssize_t n;

    if (d->off == d->len && !d->eof && (revents_src & (POLLIN | POLLHUP | POLLERR))) {
        size_t want = BUF_LEN;

        /* Never read past the limit: the cut falls exactly on it. */
        if (d->limit != NO_CUT && d->limit - d->read < want)
            want = (size_t)(d->limit - d->read);
        if (want > 0) {
            n = recv(src, d->buf, want, 0);
            if (n > 0) {
                if (verbose)
                    fprintf(stderr, "conn %u %s read %zd at %llu\n", p->id, dir_name[k], n,
                            (unsigned long long)d->read);
                d->off = 0;
                d->len = (size_t)n;
                d->read += (uint64_t)n;
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                if (verbose)
                    fprintf(stderr, "conn %u %s source ended: %s\n", p->id, dir_name[k],
                            n == 0 ? "eof" : strerror(errno));
                d->eof = 1;
            }
        }
        revents_dst |= POLLOUT; /* try the write at once */
    }
    if (d->off < d->len && (revents_dst & (POLLOUT | POLLERR | POLLHUP))) {
        n = send(dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            d->off += (size_t)n;
            d->forwarded += (uint64_t)n;
        } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
            /* The destination is gone: nothing more can go this way. */
            d->off = d->len = 0;
            d->eof = 2;
        }
    }
    if (d->eof == 1 && d->off == d->len) {
        shutdown(dst, SHUT_WR);
        d->eof = 2;
    }
}

static void loop(int lfd, const struct addrinfo *to)
{
    struct pollfd pfd[1 + 2 * PAIRS_MAX];
    int map[1 + 2 * PAIRS_MAX];
    int k, i;

    while (!stopping) {
        int n = 0, timeout = -1;

        pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
        map[n++] = -1;
        for (k = 0; k < PAIRS_MAX; k++) {
            struct pair *p = &pairs[k];
            if (!p->used)
                continue;
            if (p->drain_since != 0)
                timeout = DRAIN_POLL_MS;
            for (i = 0; i < 2; i++) {
                short ev = 0;
                struct dir *in = &p->d[i], *out = &p->d[1 - i];

                /* Socket i is the source of direction i, the destination of the other. */
                if (in->off == in->len && !in->eof && in->read != in->limit)
                    ev |= POLLIN;
                if (out->off < out->len)
                    ev |= POLLOUT;
                pfd[n] = (struct pollfd){.fd = p->fd[i], .events = ev};
                map[n++] = k;
            }
        }
        if (poll(pfd, (nfds_t)n, timeout) < 0) {
            if (errno == EINTR)
                continue;
            perror("cutrelay: poll");
            exit(1);
        }
        if (pfd[0].revents & POLLIN)
            accept_one(lfd, to);
        for (i = 1; i < n; i += 2) {
            struct pair *p = &pairs[map[i]];
            short rc = pfd[i].revents, rs = pfd[i + 1].revents;

            /* A pair accepted in this round was not polled: skip it. */
            if (!p->used || pfd[i].fd != p->fd[C2S])
                continue;
            pump(p, C2S, rc, rs);
            pump(p, S2C, rs, rc);
            if (maybe_cut(p))
                continue;
            if (p->d[C2S].eof == 2 && p->d[S2C].eof == 2)
                pair_close(p, 0, "ended");
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},  {"to", required_argument, NULL, 't'},
        {"cut-c2s", required_argument, NULL, 'c'}, {"cut-s2c", required_argument, NULL, 's'},
        {"rst", no_argument, NULL, 'r'},           {"once", no_argument, NULL, 'o'},
        {"every", no_argument, NULL, 'e'},         {"conn", required_argument, NULL, 'k'},
        {"verbose", no_argument, NULL, 'v'},       {NULL, 0, NULL, 0},
    };
    const char *listen_spec = NULL, *to_spec = NULL;
    struct addrinfo *la, *ta;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct sigaction sa;
    uint64_t v;
    int c, lfd, one = 1, port;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen_spec = optarg;
            break;
        case 't':
            to_spec = optarg;
            break;
        case 'c':
            cut_at[C2S] = parse_count("--cut-c2s", optarg);
            break;
        case 's':
            cut_at[S2C] = parse_count("--cut-s2c", optarg);
            break;
        case 'r':
            use_rst = 1;
            break;
        case 'o':
            cut_every = 0;
            break;
        case 'e':
            cut_every = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'k':
            v = parse_count("--conn", optarg);
            if (v < 1 || v > UINT32_MAX) {
                fprintf(stderr, "cutrelay: --conn: give a connection number from 1\n");
                return 2;
            }
            cut_conn = (unsigned)v;
            break;
        default:
            goto usage;
        }
    }
    if (listen_spec == NULL || to_spec == NULL || optind != argc)
        goto usage;
    la = resolve(listen_spec, 1);
    ta = resolve(to_spec, 0);
    lfd = socket(la->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, la->ai_addr, la->ai_addrlen) != 0 || listen(lfd, 64) != 0 ||
        getsockname(lfd, (struct sockaddr *)&ss, &sl) != 0) {
        perror("cutrelay: listen");
        return 1;
    }
    port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("ready %d\n", port);
    fflush(stdout);
    loop(lfd, ta);
    for (c = 0; c < PAIRS_MAX; c++)
        if (pairs[c].used)
            pair_close(&pairs[c], 0, "stopping");
    close(lfd);
    freeaddrinfo(la);
    freeaddrinfo(ta);
    return 0;
usage:
    fprintf(stderr, "usage: cutrelay --listen HOST:PORT --to HOST:PORT [--cut-c2s N] "
                    "[--cut-s2c M] [--rst] [--once [--conn K] | --every] [--verbose]\n");
    return 2;
}
