/*
 * The download job: remote files and folders into a local destination,
 * over a hub's session (ferry/hub.h), on the hub's loop (see ferry/job.h
 * for the life cycle and the callbacks).
 *
 * What it does is what `ferry get` promises: each file lands under a
 * temporary name in its folder, is checked against its content id, made
 * durable in a batch with others and renamed into place (R-RECV-1..7); a
 * partial file keeps what was made durable for a rerun (R-CHUNK-14); a
 * chunked file builds on the chunks already on this disk (R-CHUNK-15,
 * R-CHUNK-16); a lost link requeues what was not finished and the
 * session's redial carries on.
 *
 * Ownership: the job copies the spec; the hub, the loop and the state
 * store are the caller's and outlive the job. The job owns its part files,
 * folders and writer thread until ferry_download_free().
 */
#ifndef FERRY_DOWNLOAD_H
#define FERRY_DOWNLOAD_H

#include <stdint.h>
#include <sys/types.h>

#include "ferry/hub.h"
#include "ferry/job.h"

struct ferry_state;
struct ferry_download;

struct ferry_download_spec {
    const char *const *srcs; /* remote paths, as the user gave them */
    int nsrc;
    const char *dest;          /* the local destination */
    int dest_dir;              /* dest is a folder (each source lands in it by its base name) */
    int recursive;             /* folders are downloaded with everything in them */
    mode_t umask;              /* applied to the modes files get */
    struct ferry_state *state; /* part-file records and the local index (R-RECV-2) */
};

/* Figures beyond ferry_job_stats: files not received when the job ended. */
struct ferry_download_stats {
    struct ferry_job_stats job;
    uint64_t files_left; /* planned and neither received nor failed */
};

/* A job on hub's loop; nothing is sent before ferry_download_start(). */
int ferry_download_new(struct ferry_hub *hub, uv_loop_t *loop,
                       const struct ferry_download_spec *spec, const struct ferry_job_ops *ops,
                       void *arg, struct ferry_download **out);
/* Starts planning once the session is up (at once if it is). */
int ferry_download_start(struct ferry_download *d);
/*
 * Stops the job: what is verified is placed, partial files keep what is
 * durable, and on_done follows with FERRY_ECANCELED (on a later loop turn
 * when work is still out on the thread pool). A no-op once on_done ran.
 */
void ferry_download_cancel(struct ferry_download *d);
void ferry_download_stats(const struct ferry_download *d, struct ferry_download_stats *out);
/* After on_done (or before start): frees everything. */
void ferry_download_free(struct ferry_download *d);

#endif
