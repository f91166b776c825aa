/*
 * The upload job's small parts, below both the job (upload.c) and its
 * chunked files (upload_chunked.c): the counts, an item's end, commands
 * and frames laid out in place, and --bwlimit. They call back up only
 * through the job's pump and finish pointers, so no two files of the job
 * call each other in a circle.
 */
#include <errno.h>
#include <string.h>

#include "ferry/manifest.h"
#include "ferry/net.h"
#include "upload_int.h"

void up_kick(struct ferry_upload *u)
{
    u->pump(u);
}

void up_end(struct ferry_upload *u, int rc)
{
    u->finish(u, rc);
}

uint8_t *up_buf_get(struct ferry_upload *u)
{
    if (u->nspare > 0)
        return u->spare[--u->nspare];
    return ferry_malloc(UP_BATCH_BUF);
}

void up_buf_put(struct ferry_upload *u, uint8_t *p)
{
    if (p == NULL)
        return;
    if (!u->freeing && u->nspare < UP_SPARES_MAX)
        u->spare[u->nspare++] = p;
    else
        ferry_free(p);
}

void up_report(struct ferry_upload *u)
{
    if (u->ops.on_progress != NULL && !u->finished)
        u->ops.on_progress(u->arg, &u->prog);
}

void up_progress(struct ferry_upload *u, struct up_item *it, uint64_t n, int skipped)
{
    u->prog.bytes_done += n;
    if (skipped) {
        u->prog.bytes_skipped += n;
        it->skipped += n;
    }
    it->counted += n;
}

void up_uncount(struct ferry_upload *u, struct up_item *it, uint64_t n)
{
    /* Only bytes that travel are taken back: a requeue sends them again. */
    u->prog.bytes_done -= n;
    it->counted -= n;
}

/* An item's last word came: frames about its tid are nobody's now (the hub's table stays small). */
static void forget_tid(struct ferry_upload *u, struct up_item *it)
{
    if (it->has_tid && u->port != NULL)
        ferry_hub_release_tid(u->port, it->tid);
    it->has_tid = 0;
}

void up_fail(struct ferry_upload *u, struct up_item *it, int rc, const char *why)
{
    if (it->state == IT_DONE || it->state == IT_FAILED)
        return;
    it->state = IT_FAILED;
    u->n_failed++;
    forget_tid(u, it);
    if (u->ops.on_item != NULL)
        u->ops.on_item(u->arg, it->local, rc, why);
}

void up_resolve(struct ferry_upload *u, struct up_item *it)
{
    if (it->state != IT_SENT)
        return;
    it->state = IT_DONE;
    u->n_done++;
    forget_tid(u, it);
    if (it->kind == UP_FILE)
        u->prog.files_done++;
    /* R-CLI-3: progress, so a later outage is a new one. */
    ferry_session_progress(ferry_hub_session(u->hub));
    up_report(u);
}

int up_send(struct ferry_upload *u, int32_t type, json_t *body)
{
    if (body == NULL)
        return -ENOMEM;
    return ferry_session_send(ferry_hub_session(u->hub), type, body);
}

int up_slot_take(struct ferry_upload *u, struct up_item *it)
{
    if (it->open != UP_SLOT_NONE)
        return 0;
    if (!ferry_hub_may_upload(u->hub))
        return 1;
    ferry_hub_uploads(u->hub, 1);
    it->open = UP_SLOT_TAKEN;
    return 0;
}

void up_slot_give(struct ferry_upload *u, struct up_item *it)
{
    if (it->open == UP_SLOT_NONE)
        return;
    it->open = UP_SLOT_NONE;
    /* May wake other jobs' ports (and this one's: its pump then runs again after). */
    ferry_hub_uploads(u->hub, -1);
}

void up_slots_drop(struct ferry_upload *u)
{
    size_t k;

    /* All items: one that failed (so counts as over) may not have had its last word yet. */
    for (k = 0; k < u->n; k++) {
        struct up_item *it = &u->v[k];
        if (it->open == UP_SLOT_SENT && it->has_tid && u->port != NULL)
            (void)up_send_cancel(u, it); /* gives the place back, sent or not */
        else
            up_slot_give(u, it);
    }
}

int up_send_open(struct ferry_upload *u, struct up_item *it, int32_t type)
{
    char hex[2 * FERRY_TID_LEN + 1];
    int rc;

    /* R-XFER-1: a fresh tid for every attempt; frames about it come to this job. */
    ferry_random(it->tid, sizeof(it->tid));
    if ((rc = ferry_hub_claim_tid(u->port, it->tid)) != 0)
        return rc;
    it->has_tid = 1;
    ferry_hex_encode(it->tid, FERRY_TID_LEN, hex);
    rc = up_send(u, type,
                 json_pack("{s:s, s:s, s:I, s:I, s:b}", "tid", hex, "path", it->remote, "size",
                           (json_int_t)it->size, "mtime", (json_int_t)it->mtime, "exec", it->exec));
    /* A send that failed took no place on the server: the link is going (its count resets) or the
     * job ends. */
    if (rc == 0)
        it->open = UP_SLOT_SENT;
    return rc;
}

int up_send_complete(struct ferry_upload *u, struct up_item *it, const char *cid)
{
    char hex[2 * FERRY_TID_LEN + 1];
    int rc;

    ferry_hex_encode(it->tid, FERRY_TID_LEN, hex);
    rc = up_send(u, FERRY_MSG_TRANSFER_COMPLETE, json_pack("{s:s, s:s}", "tid", hex, "hash", cid));
    /* Sent or not, the item waits now: for Committed, or for on_down to requeue it. */
    if (it->state == IT_BUSY)
        it->state = IT_SENT;
    up_slot_give(u, it);
    return rc;
}

int up_send_cancel(struct ferry_upload *u, struct up_item *it)
{
    char hex[2 * FERRY_TID_LEN + 1];
    int rc;

    ferry_hex_encode(it->tid, FERRY_TID_LEN, hex);
    /* R-XFER-4: a given-up upload ends with TransferCancel, its last word. */
    rc = up_send(u, FERRY_MSG_TRANSFER_CANCEL, json_pack("{s:s}", "tid", hex));
    up_slot_give(u, it);
    return rc;
}

void up_flush(struct ferry_conn *c)
{
    /* Frames laid out in place leave now; inside input the connection flushes after. */
    if (c != NULL && !ferry_conn_in_input(c))
        ferry_conn_flush(c);
}

int up_lay_data(struct ferry_conn *c, const uint8_t tid[static FERRY_TID_LEN], uint64_t off,
                const uint8_t *p, size_t len)
{
    size_t need = ferry_data_frames_len(len);
    uint8_t *w;
    int rc;

    if (len == 0)
        return 0;
    if ((rc = ferry_conn_reserve(c, need, &w)) != 0)
        return rc;
    ferry_data_frames_encode(w, tid, off, p, len);
    ferry_conn_commit(c, need);
    return 0;
}

/* --- --bwlimit --- */

static void bw_cb(uv_timer_t *t)
{
    struct ferry_upload *u = t->data;

    u->bw_waiting = 0;
    up_kick(u);
}

int up_bw_wait(struct ferry_upload *u)
{
    uint64_t due, now;

    if (u->bwlimit == 0)
        return 0;
    if (u->bw_waiting)
        return 1;
    now = ferry_now_ms();
    if (u->bw_start_ms == 0)
        u->bw_start_ms = now;
    /* A sender ahead of RATE waits on a timer, so the average over the run stays at RATE. */
    due = u->bw_start_ms + u->bw_sent * 1000 / u->bwlimit;
    if (now >= due)
        return 0;
    u->bw_waiting = 1;
    uv_timer_start(&u->bw_timer, bw_cb, due - now, 0);
    return 1;
}

void up_bw_sent(struct ferry_upload *u, uint64_t n)
{
    u->bw_sent += n;
}
