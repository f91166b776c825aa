/*
 * The local index (issue 4, R-CHUNK-2): what a file's chunk list was when
 * the file had a given identity (device, inode, size, mtime, ctime), kept
 * in the client's state store (ferry/state.h, table file_index). A put
 * whose file has not changed sends its list without reading it again; a
 * get whose destination already holds the content reads nothing.
 *
 * A file changed in the same clock tick as it was indexed keeps its mtime,
 * so an entry recorded less than FERRY_INDEX_RACY_NS after the file's
 * mtime proves nothing and is not returned (git's racy rule).
 *
 * Owner: the caller owns the state store and every list handed out. The
 * calls block on SQLite; the index is a cache: losing entries costs a
 * re-read, never a wrong answer.
 */
#ifndef FERRY_INDEX_H
#define FERRY_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct ferry_state;
struct stat;

/* Margin under which an mtime is too close to its indexing to be trusted (100 ms). */
#define FERRY_INDEX_RACY_NS 100000000ll

struct ferry_index_id {
    uint64_t dev;
    uint64_t ino;
    uint64_t size;
    int64_t mtime; /* ns */
    int64_t ctime; /* ns */
};

void ferry_index_id_from_stat(struct ferry_index_id *id, const struct stat *st);
/*
 * 0 and a copy of the encoded list (*list, *len bytes; ferry_free it), or
 * FERRY_ENOTFOUND (no entry, a racy one, or no state store: st NULL), or
 * -ENOMEM.
 */
int ferry_index_get(struct ferry_state *st, const struct ferry_index_id *id, uint8_t **list,
                    size_t *len);
/*
 * Records a list; recorded is the wall-clock time (ns) taken before the
 * file was read. 0, or FERRY_EINTERNAL (also for st NULL).
 */
int ferry_index_put(struct ferry_state *st, const struct ferry_index_id *id, int64_t recorded,
                    const uint8_t *list, size_t len);

#endif
