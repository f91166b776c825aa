/* Downloads by chunks (R-CHUNK-15, R-CHUNK-16): reuse local chunks, resume by bitmap. */
#ifndef FERRY_CLI_GETCHUNKS_H
#define FERRY_CLI_GETCHUNKS_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "ferry/manifest.h"
#include "ferry/wire.h"

/* New chunk bytes written between two fdatasyncs (and bitmap records). */
#define CLI_PATCH_SYNC_STEP (32u << 20)

struct cli_patch;

/* Starts receiving the list of content cid (size bytes of file); checks list_len's cap. */
int cli_patch_new(const char *cid, uint64_t size, uint64_t list_len, struct cli_patch **out);
void cli_patch_free(struct cli_patch *p);
/* A data frame of the list, in order. */
int cli_patch_list_data(struct cli_patch *p, uint64_t off, const uint8_t *b, size_t n);
/*
 * The list is complete: checks it against the content id, opens the part
 * file `part` in dirfd (sized to the file), and takes every chunk found
 * locally: the saved bitmap, the first durable_prefix bytes of the part
 * file, the old file `name`. What it took is durable when it returns 0.
 * When the local index shows `name` already holds this content, it only
 * sets its mode and mtime and returns CLI_PATCH_ALREADY.
 */
int cli_patch_plan(struct cli_patch *p, int dirfd, const char *name, const char *part,
                   uint64_t durable_prefix, mode_t mode, int64_t mtime_ns);
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
/* Sets mode and mtime, fdatasyncs and renames the complete part file to name. */
int cli_patch_place(struct cli_patch *p, const char *name, mode_t mode, int64_t mtime_ns);
/* Removes the part file and its record (its bytes cannot be trusted). */
void cli_patch_discard(struct cli_patch *p);
/* Bytes taken from the old file; *kept those a partial download held. */
uint64_t cli_patch_reused(const struct cli_patch *p, uint64_t *kept);
int cli_patch_fd(const struct cli_patch *p);
/* The size of the file the list describes. */
uint64_t cli_patch_size(const struct cli_patch *p);
/* Drops the record of a part file (after its rename, or when it is discarded). */
void cli_patch_forget(int dirfd, const char *part);
int cli_patch_has_bitmap(int dirfd, const char *part, const char *cid);

#endif
