/* A file reader thread: reads and hashes big buffers while the caller sends. */
#ifndef FERRY_READER_H
#define FERRY_READER_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/crypto.h"

/* Bytes per buffer read with one read(2). */
#define FERRY_READER_BUF (1u << 20)
/* Buffers per reader: bounds read-ahead to 8 MiB. */
#define FERRY_READER_NBUF 8

struct ferry_reader;

/* Starts the thread and allocates its buffers once; reused file after file. */
int ferry_reader_new(struct ferry_reader **out);
void ferry_reader_free(struct ferry_reader *r);

/* Starts reading size bytes of fd from its current offset, hashing as it goes. */
int ferry_reader_begin(struct ferry_reader *r, int fd, uint64_t size);
/*
 * The next filled buffer, in file order: returns 1 with buf and len set, 0 when
 * the file is done, < 0 on a read error or a file shorter than its size.
 * Give each buffer back with ferry_reader_release().
 */
int ferry_reader_next(struct ferry_reader *r, const uint8_t **buf, size_t *len);
void ferry_reader_release(struct ferry_reader *r, const uint8_t *buf);
/* Waits for the thread to finish the file; 0 and its content id, or the error. */
int ferry_reader_end(struct ferry_reader *r, char cid[static 72]);

#endif
