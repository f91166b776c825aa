/*
 * Chunk lists (docs/protocol.md section 7.2, R-CHUNK-*): a file is a sequence
 * of content-defined chunks, each named by its SHA-256. A list travels as
 * 36-byte entries; the file's content id is SHA-256 over those entries.
 */
#ifndef FERRY_MANIFEST_H
#define FERRY_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/chunker.h"
#include "ferry/wire.h" /* the 36-byte entry (R-CHUNK-2) */

/* R-CHUNK-1: FastCDC 2020 parameters, chosen by bench/chunk_sizes. */
#define FERRY_CHUNK_MIN (64u << 10)
#define FERRY_CHUNK_AVG (256u << 10)
#define FERRY_CHUNK_MAX (1u << 20)
/* R-CHUNK-3: scheme prefix of a chunk-list content id. */
#define FERRY_CID_CHUNKS_PREFIX "chunks:"
/* R-CHUNK-15: the longest chunk list either side accepts (about 450 GiB of file). */
#define FERRY_CHUNK_LIST_MAX (64u << 20)
/* R-CHUNK-16: chunk ranges one Download may ask for. */
#define FERRY_DL_RANGES_MAX 1024

/*
 * Checks an encoded list against R-CHUNK-2: every length in 1..FERRY_CHUNK_MAX,
 * every entry but the last at least FERRY_CHUNK_MIN, lengths summing to size.
 * Returns 0 or FERRY_EPROTO. n_bytes must be a multiple of 36.
 */
int ferry_chunk_list_check(const uint8_t *list, size_t n_bytes, uint64_t size);

/* "chunks:" + 64 hex of SHA-256 over the encoded entries (R-CHUNK-3). */
int ferry_chunk_list_cid(const uint8_t *list, size_t n_bytes, char cid[static 72]);

/* A chunker set up with the R-CHUNK-1 parameters. */
void ferry_cdc_default(struct ferry_cdc *c);

/*
 * Streaming chunker: bytes in any pieces; each finished chunk is reported
 * through fn in file order (with its offset). Either fed (feed: the bytes are
 * cut and hashed where they lie, never held; used to verify a download) or
 * written into the stream's own space (space and commit: up to 8 MiB, 8 ×
 * FERRY_CHUNK_MAX, are held, so fn can read the chunk; used by the scanner
 * thread). A stream takes one way until ferry_cdc_stream_reset; the other is
 * FERRY_EUSAGE (space gives NULL).
 */
typedef int (*ferry_chunk_fn)(void *arg, uint64_t offset, const struct ferry_chunk_ent *e);
struct ferry_cdc_stream;
int ferry_cdc_stream_new(ferry_chunk_fn fn, void *arg, struct ferry_cdc_stream **out);
/* Returns 0 or the first non-zero value fn returned. */
int ferry_cdc_stream_feed(struct ferry_cdc_stream *s, const uint8_t *p, size_t n);
/*
 * Without the copy: write up to *room (at least FERRY_CHUNK_MAX) bytes at the
 * pointer returned, then commit how many were written; commit cuts as feed.
 * A stream that failed or finished gives NULL and *room 0.
 */
uint8_t *ferry_cdc_stream_space(struct ferry_cdc_stream *s, size_t *room);
int ferry_cdc_stream_commit(struct ferry_cdc_stream *s, size_t n);
/* Ends the stream (the last chunk may be shorter than the minimum). */
int ferry_cdc_stream_finish(struct ferry_cdc_stream *s);
/* Inside fn only: the bytes of the chunk being reported (e->len of them); NULL when fed. */
const uint8_t *ferry_cdc_stream_bytes(const struct ferry_cdc_stream *s);
/* Starts a new stream with the same callback. */
void ferry_cdc_stream_reset(struct ferry_cdc_stream *s);
void ferry_cdc_stream_free(struct ferry_cdc_stream *s);

/*
 * Scanner thread: reads a file with large reads and chunks and hashes it
 * off the caller's thread, so the caller can send entries as they come.
 */
struct ferry_scan;
int ferry_scan_new(struct ferry_scan **out);
void ferry_scan_free(struct ferry_scan *s);
/* Starts scanning size bytes of fd from offset 0 (pread; fd's offset unused). */
int ferry_scan_begin(struct ferry_scan *s, int fd, uint64_t size);
/*
 * The next entry in file order: 1 with e and *offset set, 0 when the file is
 * done, < 0 on a read error or a file shorter than size. Blocks until the
 * thread has one. ferry_scan_poll is the same but returns FERRY_EBUSY
 * instead of waiting.
 */
int ferry_scan_next(struct ferry_scan *s, struct ferry_chunk_ent *e, uint64_t *offset);
int ferry_scan_poll(struct ferry_scan *s, struct ferry_chunk_ent *e, uint64_t *offset);
/* Stops the current file (early or after 0) so another can begin. */
void ferry_scan_end(struct ferry_scan *s);

#endif
