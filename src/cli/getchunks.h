/* Downloads by chunks (R-CHUNK-15, R-CHUNK-16): reuse local chunks, resume by bitmap. */
#ifndef FERRY_CLI_GETCHUNKS_H
#define FERRY_CLI_GETCHUNKS_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "ferry/manifest.h"
#include "ferry/wire.h"
#include "getpart.h"

/* New chunk bytes written between two fdatasyncs (and bitmap records). */
#define CLI_PATCH_SYNC_STEP (32u << 20)

struct cli_patch;

/* Starts receiving the list of content cid (size bytes of file); checks list_len's cap. */
int cli_patch_new(const char *cid, uint64_t size, uint64_t list_len, struct cli_patch **out);
void cli_patch_free(struct cli_patch *p);
/* A data frame of the list, in order. */
int cli_patch_list_data(struct cli_patch *p, uint64_t off, const uint8_t *b, size_t n);
/*
 * The list is complete: checks it against the content id, checks that what
 * is missing fits on the disk (R-RECV-6, else -ENOSPC before anything is
 * created), opens the part file `part` in dirfd (sized to the file), and
 * takes every chunk found locally: the saved bitmap and a streamed
 * download's durable prefix, each only if recorded for this very part file
 * (R-RECV-2), and the old file `name`. What it took is durable when it
 * returns 0. When the local index shows `name` already holds this content,
 * it only sets its mode and mtime and returns CLI_PATCH_ALREADY.
 */
int cli_patch_plan(struct cli_patch *p, int dirfd, const char *name, const char *part, mode_t mode,
                   int64_t mtime_ns);
/* After -ENOSPC from cli_patch_plan: the bytes needed, and *avail those free. */
uint64_t cli_patch_need(const struct cli_patch *p, uint64_t *avail);
/* cli_patch_plan's answer when the old file already is the content (its index says so). */
#define CLI_PATCH_ALREADY 1
/* 1 when every chunk is in the part file. */
int cli_patch_complete(const struct cli_patch *p);
/* The Download `chunks` ranges of what is still missing (at most FERRY_DL_RANGES_MAX). */
json_t *cli_patch_ranges(struct cli_patch *p);
/* A chunk frame of the requested ranges; *fresh is the bytes of a chunk it completed. */
int cli_patch_chunk(struct cli_patch *p, const struct ferry_chunk_frame *f, uint64_t *fresh);
/* fdatasyncs what was written and records it. */
int cli_patch_sync(struct cli_patch *p);
/*
 * Sets mode and mtime, fdatasyncs, reads the part file back and checks
 * every chunk against the list (R-RECV-3: FERRY_EHASH, nothing placed, on a
 * mismatch), then renames it to name and fsyncs the folder.
 */
int cli_patch_place(struct cli_patch *p, const char *name, mode_t mode, int64_t mtime_ns);
/* Removes the part file and its records (its bytes cannot be trusted). */
void cli_patch_discard(struct cli_patch *p);
/* Bytes taken from the old file; *kept those a partial download held. */
uint64_t cli_patch_reused(const struct cli_patch *p, uint64_t *kept);
int cli_patch_fd(const struct cli_patch *p);
/* The size of the file the list describes. */
uint64_t cli_patch_size(const struct cli_patch *p);
/*
 * Entry i of the complete list: its length, its offset in the file, and
 * 0 missing, 1 written or 2 durable; then how many entries are not missing.
 * The receiver's state as its tests look at it, without its layout.
 */
uint32_t cli_patch_ent_len(const struct cli_patch *p, size_t i);
uint64_t cli_patch_ent_off(const struct cli_patch *p, size_t i);
int cli_patch_ent_done(const struct cli_patch *p, size_t i);
size_t cli_patch_ndone(const struct cli_patch *p);
/* Whether a chunk bitmap of content cid is recorded for this very part file (R-RECV-2). */
int cli_patch_has_bitmap(int dirfd, const char *part, const char *cid,
                         const struct cli_part_id *id);

#endif
