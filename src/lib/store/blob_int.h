/* Inside the content store: what the pack-file store lends the fault-injecting one. */
#ifndef FERRY_BLOB_INT_H
#define FERRY_BLOB_INT_H

#include <sys/types.h>
#include <sys/uio.h>

#include "ferry/blob.h"

/* One pwritev(2) as the pack store makes it: bytes written, or -1 with errno set. */
typedef ssize_t (*ferry_pwritev_fn)(void *arg, int fd, const struct iovec *iov, int n, off_t off);

/* ferry_pack_write with fn in place of pwritev(2) (NULL: pwritev itself). */
int ferry_pack_write_via(int fd, int64_t off, const struct iovec *iov, int n, ferry_pwritev_fn fn,
                         void *arg);

/* Routes the pack store's writes through fn; -EINVAL if st is no pack store. */
int ferry_blob_pack_hook(struct ferry_blob_store *st, ferry_pwritev_fn fn, void *arg);

#endif
