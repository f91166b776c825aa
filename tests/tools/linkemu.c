/*
 * linkemu: a userspace link emulator for tests. It joins two network
 * namespaces with one TUN device in each and forwards IP packets between
 * them with delay, jitter, a rate limit, loss, reordering, duplication,
 * corruption and partitions (this kernel has no netem qdisc).
 *
 * usage: linkemu --ns-a NS --ns-b NS [--addr-a IP --addr-b IP] [options]
 *   --delay-ms N      one-way delay (default 0)
 *   --jitter-ms N     uniform extra delay 0..N (default 0)
 *   --rate-mbit N     serialisation rate per direction (default unlimited)
 *   --loss P          drop probability in percent (default 0)
 *   --reorder P       percent of packets sent without their delay (default 0)
 *   --dup P           percent of packets sent twice (default 0)
 *   --corrupt P       percent of packets with one bit flipped (default 0)
 *   --partition-at S --partition-for S   drop everything for a while
 *   --seed N          random seed (default 1)
 * It prints "ready" on stdout once both devices are up, and runs until
 * killed. Only the two namespaces' own addresses ever see a packet.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define PKT_MAX   2048
#define QUEUE_MAX 65536

struct pkt {
    uint64_t at_us;
    int to;
    uint16_t len;
    uint8_t data[PKT_MAX];
};

static struct pkt *queue[QUEUE_MAX];
static size_t qlen;
static double loss, reorder, duplicate, corrupt;
static uint64_t delay_us, jitter_us, rate_bps, part_at_us, part_for_us, start_us;
static uint64_t busy_until[2]; /* serialisation: when each direction's link frees */
static unsigned seed = 1;

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static double uniform(void)
{
    return (double)rand_r(&seed) / ((double)RAND_MAX + 1.0);
}

static int open_tun_in(const char *ns, const char *name)
{
    char path[128];
    struct ifreq ifr;
    int nsfd, fd, self;

    snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
    if ((self = open("/proc/self/ns/net", O_RDONLY)) < 0 || (nsfd = open(path, O_RDONLY)) < 0 ||
        setns(nsfd, CLONE_NEWNET) != 0) {
        perror(path);
        exit(1);
    }
    /* A TUN device belongs to the namespace it was created in. */
    if ((fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)) < 0) {
        perror("/dev/net/tun");
        exit(1);
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        perror("TUNSETIFF");
        exit(1);
    }
    if (setns(self, CLONE_NEWNET) != 0) {
        perror("setns back");
        exit(1);
    }
    close(nsfd);
    close(self);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void enqueue(const uint8_t *p, size_t len, int to, uint64_t t)
{
    struct pkt *k;
    size_t i;

    if (qlen == QUEUE_MAX || (k = malloc(sizeof(*k))) == NULL)
        return; /* a full queue drops, as a real buffer would */
    k->at_us = t;
    k->to = to;
    k->len = (uint16_t)len;
    memcpy(k->data, p, len);
    /* Keep the queue sorted by release time (insertion from the back). */
    for (i = qlen; i > 0 && queue[i - 1]->at_us > t; i--)
        queue[i] = queue[i - 1];
    queue[i] = k;
    qlen++;
}

static void on_packet(const uint8_t *p, size_t len, int to)
{
    uint64_t t = now_us(), send_at;
    int copies = 1, c;

    if (part_for_us > 0 && t - start_us >= part_at_us && t - start_us < part_at_us + part_for_us)
        return;
    if (uniform() * 100 < loss)
        return;
    if (uniform() * 100 < duplicate)
        copies = 2;
    for (c = 0; c < copies; c++) {
        uint8_t buf[PKT_MAX];
        memcpy(buf, p, len);
        if (uniform() * 100 < corrupt && len > 20)
            buf[20 + (size_t)(uniform() * (double)(len - 20))] ^=
                (uint8_t)(1u << (rand_r(&seed) % 8));
        /* Rate: each packet occupies the link for len*8/rate seconds. */
        send_at = t;
        if (rate_bps > 0) {
            uint64_t start = busy_until[to] > t ? busy_until[to] : t;
            busy_until[to] = start + (uint64_t)len * 8u * 1000000u / rate_bps;
            send_at = busy_until[to];
        }
        if (!(uniform() * 100 < reorder))
            send_at += delay_us + (jitter_us > 0 ? (uint64_t)(uniform() * (double)jitter_us) : 0);
        enqueue(buf, len, to, send_at);
    }
}

static volatile sig_atomic_t stop;

static void on_signal(int s)
{
    (void)s;
    stop = 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ns-a", required_argument, NULL, 'a'},
        {"ns-b", required_argument, NULL, 'b'},
        {"delay-ms", required_argument, NULL, 1},
        {"jitter-ms", required_argument, NULL, 2},
        {"rate-mbit", required_argument, NULL, 3},
        {"loss", required_argument, NULL, 4},
        {"reorder", required_argument, NULL, 5},
        {"dup", required_argument, NULL, 6},
        {"corrupt", required_argument, NULL, 7},
        {"partition-at", required_argument, NULL, 8},
        {"partition-for", required_argument, NULL, 9},
        {"seed", required_argument, NULL, 10},
        {NULL, 0, NULL, 0},
    };
    const char *nsa = NULL, *nsb = NULL;
    uint8_t buf[PKT_MAX];
    int fd[2], c;

    while ((c = getopt_long(argc, argv, "a:b:", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            nsa = optarg;
            break;
        case 'b':
            nsb = optarg;
            break;
        case 1:
            delay_us = strtoull(optarg, NULL, 10) * 1000;
            break;
        case 2:
            jitter_us = strtoull(optarg, NULL, 10) * 1000;
            break;
        case 3:
            rate_bps = strtoull(optarg, NULL, 10) * 1000000;
            break;
        case 4:
            loss = atof(optarg);
            break;
        case 5:
            reorder = atof(optarg);
            break;
        case 6:
            duplicate = atof(optarg);
            break;
        case 7:
            corrupt = atof(optarg);
            break;
        case 8:
            part_at_us = strtoull(optarg, NULL, 10) * 1000000;
            break;
        case 9:
            part_for_us = strtoull(optarg, NULL, 10) * 1000000;
            break;
        case 10:
            seed = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: linkemu --ns-a NS --ns-b NS [options] (see the source)\n");
            return 2;
        }
    }
    if (nsa == NULL || nsb == NULL) {
        fprintf(stderr, "linkemu: --ns-a and --ns-b are required\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    fd[0] = open_tun_in(nsa, "emu0");
    fd[1] = open_tun_in(nsb, "emu0");
    start_us = now_us();
    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        struct pollfd p[2] = {{.fd = fd[0], .events = POLLIN}, {.fd = fd[1], .events = POLLIN}};
        int timeout = 100, i;
        uint64_t t = now_us();

        /* Release what is due. */
        while (qlen > 0 && queue[0]->at_us <= t) {
            struct pkt *k = queue[0];
            if (write(fd[k->to], k->data, k->len) < 0 && errno != EAGAIN)
                perror("write");
            free(k);
            memmove(queue, queue + 1, (qlen - 1) * sizeof(queue[0]));
            qlen--;
        }
        if (qlen > 0)
            timeout = (int)((queue[0]->at_us - t + 999) / 1000);
        if (poll(p, 2, timeout) < 0 && errno != EINTR)
            break;
        for (i = 0; i < 2; i++) {
            ssize_t n;
            if (!(p[i].revents & POLLIN))
                continue;
            while ((n = read(fd[i], buf, sizeof(buf))) > 0)
                on_packet(buf, (size_t)n, 1 - i);
        }
    }
    return 0;
}
