/*
 * The reconnect policy every client command shares (R-CLI-3): pauses that
 * back off from 0.5 s, doubling to 10 s, within a window counted from the
 * start of the outage.
 */
#include <errno.h>

#include "ferry/net.h"

uint64_t ferry_backoff_ms(unsigned attempt)
{
    uint64_t ms = FERRY_BACKOFF_FIRST_MS;

    while (attempt-- > 0 && ms < FERRY_BACKOFF_MAX_MS)
        ms *= 2;
    return ms < FERRY_BACKOFF_MAX_MS ? ms : FERRY_BACKOFF_MAX_MS;
}

int ferry_retry_window_open(uint64_t start_ms, uint64_t window_ms, uint64_t now_ms)
{
    return now_ms - start_ms < window_ms;
}

int ferry_conn_lost(int rc)
{
    /* Negative errno values (the socket's, libuv's) sit above the ferry codes. */
    return rc < 0 && (rc > -4096 || rc == FERRY_ETIMEDOUT || rc == FERRY_ECANCELED) &&
           rc != -ENOMEM && rc != -EINTR;
}
