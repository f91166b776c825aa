/*
 * The upload job: files and folders from the local disk to a user's remote
 * tree, over a hub's session (ferry/hub.h), confirmed only once durable.
 *
 * Life cycle (see ferry/job.h): new copies the spec and sends nothing;
 * start plans on the thread pool (the sources are stat'ed and folders
 * walked there, names the protocol cannot carry refused by name, R-NAME-1);
 * then the job moves items in order: a folder is a Mkdir; a file under
 * FERRY_UPLOAD_CHUNKED_MIN (or any file to a 1.0 server) is an Upload with
 * its bytes read and hashed on the pool, small files many to a task
 * (R-XFER-2); a bigger one is a
 * ChunkedUpload (R-CHUNK-4..8): its chunk list comes from the local index
 * or is cut and hashed on the pool while it goes out, and only the chunks
 * the server asks for are read (on the pool) and sent, spread over the
 * job's extra links (R-CHUNK-13). An item is done when Committed names it.
 * A lost link requeues what was not confirmed and the session redials; a
 * chunked file then resumes, since the server holds what it stored
 * (R-CHUNK-12). Output pauses above the connection's high mark and reading
 * pauses with it; --bwlimit is a timer.
 *
 * Ownership: the library allocates the job; it is opaque. The spec's
 * strings are copied. Every callback runs on the loop thread. The hub and
 * its loop must outlive the job; after ferry_upload_free the loop must run
 * on until the job's tasks and handles are over (it frees itself then).
 */
#ifndef FERRY_UPLOAD_H
#define FERRY_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/hub.h"
#include "ferry/job.h"
#include "ferry/session.h"

/* Files from this size on travel as chunks to a 1.1 server (R-CHUNK). */
#define FERRY_UPLOAD_CHUNKED_MIN (1u << 20)
/* Connections of one upload job, the hub's included (R-CHUNK-13). */
#define FERRY_UPLOAD_CONNECTIONS_MAX     16
#define FERRY_UPLOAD_CONNECTIONS_DEFAULT 4
/* Commits refused for a missing chunk before a file counts as failed (R-CHUNK-8). */
#define FERRY_UPLOAD_CHUNK_ATTEMPTS 3

struct ferry_upload;
struct ferry_state;

struct ferry_upload_spec {
    uv_loop_t *loop;            /* the hub's */
    const char *const *sources; /* local paths, as given */
    size_t nsources;
    const char *dest; /* remote destination ("/" for the root) */
    /*
     * R-CLI-9: sources go inside dest (an existing folder, as cp does);
     * else a single source becomes dest itself. A dest ending in '/' is
     * always a folder.
     */
    int into;
    int recursive;    /* folders and everything in them; else a folder is an item's failure */
    uint64_t bwlimit; /* bytes per second; 0: none */
    /* Links, the hub's included (1..FERRY_UPLOAD_CONNECTIONS_MAX; 0: the default). */
    unsigned connections;
    /*
     * How to open the extra links: the hub's configuration (loop, ctx, host,
     * port, token, pin), copied. NULL: no extra links.
     */
    const struct ferry_session_cfg *link_cfg;
    struct ferry_state *state; /* the local index (ferry/index.h), or NULL */
};

/* Figures for --stats and the final message, final after on_done. */
struct ferry_upload_stats {
    struct ferry_job_stats job; /* bytes_moved: sent; bytes_resumed: chunks the server held */
    uint64_t items_done;        /* files and folders confirmed */
    uint64_t items_failed;      /* each named through on_item or on_note */
    uint64_t items_left;        /* neither confirmed nor failed (the job stopped) */
    uint64_t bytes_read;        /* of local files: a file the local index knew costs none */
    uint64_t wire_sent, wire_received; /* TLS bytes of the job's extra links (closed ones) */
};

int ferry_upload_new(struct ferry_hub *hub, const struct ferry_upload_spec *spec,
                     const struct ferry_job_ops *ops, void *arg, struct ferry_upload **out);
/* Begins planning; FERRY_EUSAGE when started twice. */
int ferry_upload_start(struct ferry_upload *u);
/*
 * Stops the job: nothing more is sent but the TransferCancel of each upload
 * it left open (R-XFER-4, so the hub's link keeps its places, R-XFER-1);
 * transfers not confirmed are left to the server to drop (R-XFER-5), and
 * on_done(FERRY_ECANCELED) runs inside this call unless it ran before.
 */
void ferry_upload_cancel(struct ferry_upload *u);
void ferry_upload_stats(const struct ferry_upload *u, struct ferry_upload_stats *st);
/*
 * After on_done, or instead of waiting for it: the job is then cancelled
 * and on_done never runs. NULL is a no-op.
 */
void ferry_upload_free(struct ferry_upload *u);

#endif
