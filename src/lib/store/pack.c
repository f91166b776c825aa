/* Server chunk store: the files of per-user packs (R-CHUNK-7, R-CHUNK-11). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ferry/core.h"
#include "ferry/path.h"
#include "ferry/store.h"

#include "blob_int.h"

/* Pieces of one pwritev: a batch of up to 1000 chunks takes a few calls. */
#define PACK_IOV_MAX 64

int ferry_pack_open(int datafd, int64_t uid, int64_t pack, int fresh)
{
    char rel[FERRY_BLOB_RELPATH_MAX], name[32];
    int dfd, fd, rc = 0;

    snprintf(rel, sizeof(rel), "packs/%lld", (long long)uid);
    snprintf(name, sizeof(name), "%lld.pack", (long long)pack);
    /* Most users have their directory already: one open, not a mkdir per level. */
    if ((dfd = ferry_open_beneath(datafd, rel, O_RDONLY | O_DIRECTORY, 0)) < 0 &&
        (dfd = ferry_mkdirs_beneath(datafd, rel)) < 0)
        return dfd;
    /*
     * A fresh pack's id is past every id a row ever named, so a file there
     * holds only the bytes of a batch that never committed.
     */
    fd = openat(dfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (fresh ? O_TRUNC : 0),
                0600);
    if (fd < 0)
        rc = -errno;
    close(dfd);
    return fd >= 0 ? fd : rc;
}

/* One pwritev of n pieces at off, finishing a short write; -errno on error. */
static int writev_all(int fd, int64_t off, const struct iovec *iov, int n, ferry_pwritev_fn fn,
                      void *arg)
{
    struct iovec v[PACK_IOV_MAX];
    ssize_t w;
    int i = 0;

    memcpy(v, iov, (size_t)n * sizeof(*v));
    while (i < n) {
        w = fn != NULL ? fn(arg, fd, v + i, n - i, (off_t)off)
                       : pwritev(fd, v + i, n - i, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        off += w;
        while (i < n && (size_t)w >= v[i].iov_len)
            w -= (ssize_t)v[i++].iov_len;
        if (i < n) {
            v[i].iov_base = (uint8_t *)v[i].iov_base + w;
            v[i].iov_len -= (size_t)w;
        }
    }
    return 0;
}

/*
 * O_DIRECT where the file system takes it (R-CHUNK-7): filling page-cache
 * pages costs more CPU on this class of machine than hashing them, and the
 * bytes must reach the disk anyway. A file system that refuses it (EINVAL)
 * gets the same pieces through the cache.
 */
int ferry_pack_write(int fd, int64_t off, const struct iovec *iov, int n)
{
    return ferry_pack_write_via(fd, off, iov, n, NULL, NULL);
}

int ferry_pack_write_via(int fd, int64_t off, const struct iovec *iov, int n, ferry_pwritev_fn fn,
                         void *arg)
{
    int fl = fcntl(fd, F_GETFL), direct = 0, rc = 0, k, i, j;

    if (off % FERRY_PACK_ALIGN != 0)
        return -EINVAL;
    for (i = 0; i < n; i++)
        if ((uintptr_t)iov[i].iov_base % FERRY_PACK_ALIGN != 0 ||
            iov[i].iov_len % FERRY_PACK_ALIGN != 0)
            return -EINVAL;
    if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0)
        direct = 1;
    for (i = 0; i < n && rc == 0; i += k) {
        k = n - i < PACK_IOV_MAX ? n - i : PACK_IOV_MAX;
        rc = writev_all(fd, off, iov + i, k, fn, arg);
        if (rc == -EINVAL && direct) {
            fcntl(fd, F_SETFL, fl);
            direct = 0;
            rc = writev_all(fd, off, iov + i, k, fn, arg);
        }
        for (j = i; j < i + k; j++)
            off += (int64_t)iov[j].iov_len;
    }
    if (direct)
        fcntl(fd, F_SETFL, fl);
    return rc;
}

int ferry_pack_punch(int fd, int64_t off, int64_t len)
{
    if (len <= 0)
        return 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) != 0)
        return -errno;
    return 0;
}
