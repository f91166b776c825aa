/*
 * The scanner's internals for its tests: a queue of a chosen size, so that
 * a small file already fills it, and a way to wait until the thread is
 * blocked on a full queue. The library itself uses ferry_scan_new.
 */
#ifndef FERRY_TRANSFER_SCAN_H
#define FERRY_TRANSFER_SCAN_H

#include <stddef.h>

struct ferry_scan;

/* ferry_scan_new with a queue of `queue` entries (at least 1) instead of 4096. */
int ferry__scan_new(size_t queue, struct ferry_scan **out);
/* Returns once the queue is full: the thread then waits for room (or is about to). */
void ferry__scan_wait_full(struct ferry_scan *s);

#endif
