/*
 * ferry serve: downloads, streamed from inline content and blobs (R-XFER,
 * R-CHUNK-10 to R-CHUNK-16, R-FILE).
 */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "ferry/manifest.h"
#include "ferry/path.h"
#include "server.h"

static int fault(struct sess *s, const char *ref, int rc, const char *msg)
{
    srv_log_fault(s, msg);
    srv_send_error(s, ref, rc, msg);
    return rc < 0 ? rc : FERRY_EPROTO;
}

static void download_free(struct srv *srv, struct download *d)
{
    srv_list_uncharge(srv, d->uid, d->list_charged);
    ferry_free(d->ranges);
    ferry_free(d->list);
    ferry_free(d->mem);
    ferry_blob_reader_close(srv->blobs, d->rd);
    ferry_free(d->path);
    ferry_free(d);
}

/* R-LOG-5: one line for a download that ends, however it ends. */
static void download_log(struct sess *s, const struct download *d, int rc, const char *result)
{
    srv_log_transfer(s, "download", d->started ? NULL : d->path, d->started ? d->file_id : 0,
                     d->size, d->off - d->off0, d->started ? d->t0_ms : ferry_now_ms(), rc, result);
}

static void download_pop(struct sess *s)
{
    struct download *d = s->dl_head;

    s->dl_head = d->next;
    if (s->dl_head == NULL)
        s->dl_tail = NULL;
    s->ndownloads--;
    download_free(s->srv, d);
    if (ferry_conn_is_paused(s->conn) && !s->barrier && s->unacked < s->srv->cfg.max_unacked)
        ferry_conn_resume(s->conn);
}

int srv_download_queue(struct sess *s, const struct ferry_cmd *cmd)
{
    const char *path = NULL, *hash = NULL;
    int64_t file_id = 0, offset = 0;
    struct download *d;
    const json_t *chunks;
    uint32_t(*ranges)[2] = NULL;
    size_t nranges = 0;
    int rc, list_mode = 0;

    if ((rc = ferry_msg_str_opt(cmd->body, "path", FERRY_PATH_MAX + 2, &path)) != 0 ||
        (rc = ferry_msg_i64_opt(cmd->body, "file_id", 1, INT64_MAX, 0, &file_id)) != 0 ||
        (path == NULL) == (file_id == 0))
        return fault(s, cmd->id, FERRY_EPROTO, "Download needs one of path or file_id");
    if ((rc = ferry_msg_i64_opt(cmd->body, "offset", 0, INT64_MAX, 0, &offset)) != 0 ||
        (rc = ferry_msg_str_opt(cmd->body, "hash", FERRY_CID_LEN, &hash)) != 0 ||
        (rc = ferry_msg_bool_opt(cmd->body, "list", 0, &list_mode)) != 0)
        return fault(s, cmd->id, FERRY_EPROTO, "malformed Download");
    chunks = json_object_get(cmd->body, "chunks");
    if (chunks != NULL &&
        (list_mode || offset > 0 || hash == NULL ||
         (rc = ferry_msg_ranges(chunks, FERRY_DL_RANGES_MAX, &ranges, &nranges)) != 0))
        return fault(s, cmd->id, FERRY_EPROTO, "malformed Download chunk ranges");
    if (s->ndownloads >= s->srv->cfg.max_downloads) {
        ferry_free(ranges);
        ferry_conn_pause(s->conn);
        return 1; /* redelivered once a download finishes */
    }
    if (s->done_tids == NULL &&
        (s->done_tids = ferry_calloc(SRV_DONE_TIDS, sizeof(*s->done_tids))) == NULL) {
        ferry_free(ranges);
        return -ENOMEM;
    }
    if ((d = ferry_calloc(1, sizeof(*d))) == NULL) {
        ferry_free(ranges);
        return -ENOMEM;
    }
    d->file_id = file_id;
    d->list_mode = list_mode;
    d->plain = !list_mode && ranges == NULL && offset == 0;
    d->ranges = ranges;
    d->nranges = nranges;
    if (ranges != NULL)
        snprintf(d->want_cid, sizeof(d->want_cid), "%s", hash);
    if (offset > 0 && hash != NULL && !list_mode) {
        d->want_off = (uint64_t)offset;
        snprintf(d->want_cid, sizeof(d->want_cid), "%s", hash);
    }
    snprintf(d->ref, sizeof(d->ref), "%s", cmd->id);
    if (path != NULL && (d->path = ferry_strdup(path)) == NULL) {
        ferry_free(d);
        return -ENOMEM;
    }
    ferry_random_id(d->tid, sizeof(d->tid));
    if (s->dl_tail != NULL)
        s->dl_tail->next = d;
    else
        s->dl_head = d;
    s->dl_tail = d;
    s->ndownloads++;
    /*
     * The Downloads of one read are resolved together when it has been
     * handled (on_input_end), in one read transaction: pumping per
     * Download opened one each, two lock calls apiece.
     */
    if (!ferry_conn_in_input(s->conn))
        srv_download_pump(s);
    return 0;
}

static int download_resolve(struct sess *s, struct download *d);

/* Sends the Transfer that opens a download's data. */
static int announce(struct sess *s, struct download *d)
{
    char tid[33];
    json_t *m;

    ferry_hex_encode(d->tid, FERRY_TID_LEN, tid);
    d->started = 1;
    d->t0_ms = ferry_now_ms();
    d->off0 = d->off;
    m = json_pack("{s:s, s:s, s:I, s:I, s:s, s:I, s:b}", "ref", d->ref, "tid", tid, "file_id",
                  (json_int_t)d->file_id, "size", (json_int_t)d->size, "hash", d->cid, "mtime",
                  (json_int_t)d->mtime, "exec", d->exec);
    if (m != NULL && d->list_mode)
        json_object_set_new(m, "list_len", json_integer((json_int_t)d->end));
    return srv_send(s, FERRY_MSG_TRANSFER, m);
}

/*
 * R-XFER-7: the whole file in one file frame (R-FILE), its bytes copied
 * from inline content or read from its blob at once. The download is then
 * finished: the pump records its tid and logs it, with no TransferComplete.
 * Nothing is queued unless all of it is.
 */
static int send_file(struct sess *s, struct download *d)
{
    const size_t len = FERRY_FILE_HDR_LEN + (size_t)d->size;
    uint8_t ref[16], sha[32], *w, *body;
    ssize_t got;
    int rc;

    if (ferry_uuid_to_bytes(d->ref, ref) != 0 || ferry_hex_decode(d->cid + 7, sha, 32) != 0)
        return FERRY_EINTERNAL;
    if ((rc = ferry_conn_reserve(s->conn, FERRY_FRAME_HDR_LEN + len, &w)) != 0)
        return rc;
    body = w + FERRY_FRAME_HDR_LEN + FERRY_FILE_HDR_LEN;
    if (d->size > 0 && d->mem != NULL) {
        memcpy(body, d->mem, (size_t)d->size);
    } else if (d->size > 0) {
        struct iovec v = {.iov_base = body, .iov_len = (size_t)d->size};

        got = ferry_blob_read(s->srv->blobs, d->rd, 0, &v, 1);
        if (got != (ssize_t)d->size)
            return FERRY_EINTERNAL; /* the file is shorter than its row says */
    }
    ferry_frame_header_encode(w, FERRY_FRAME_FILE, (uint32_t)len);
    ferry_file_frame_header_encode(w + FERRY_FRAME_HDR_LEN, ref, d->tid, d->mtime, d->exec, sha);
    ferry_conn_commit(s->conn, FERRY_FRAME_HDR_LEN + len);
    d->started = 1;
    d->whole = 1;
    d->t0_ms = ferry_now_ms();
    d->off0 = 0;
    d->off = d->end;
    return 0;
}

/*
 * R-CHUNK-16: some chunks of the content the client holds the list of.
 * Another content is Error 14 (the file changed); ranges past the list are
 * Error 1. d->end becomes the sum of the chunks' lengths.
 */
static int chunks_resolve(struct sess *s, struct download *d)
{
    struct ferry_chunk_ent e;
    size_t nent, i;
    uint32_t k;

    if (d->list == NULL || strcmp(d->want_cid, d->cid) != 0)
        return FERRY_EHASH;
    nent = d->list_len / FERRY_CHUNK_ENT_LEN;
    if ((uint64_t)d->ranges[d->nranges - 1][0] + d->ranges[d->nranges - 1][1] > nent)
        return FERRY_EPROTO;
    d->end = 0;
    for (i = 0; i < d->nranges; i++)
        for (k = 0; k < d->ranges[i][1]; k++) {
            ferry_chunk_ent_decode(d->list + (size_t)(d->ranges[i][0] + k) * FERRY_CHUNK_ENT_LEN,
                                   &e);
            d->end += e.len;
        }
    d->range = 0;
    d->chunk = d->ranges[0][0];
    d->chunk_pos = 0;
    return announce(s, d);
}

/*
 * Resolves and opens the head download, then announces it, in the read
 * transaction of the pump's pass: one for every download the pass starts,
 * where a transaction each cost a third of the server's CPU in locks.
 */
static int download_start(struct sess *s, struct download *d)
{
    struct srv *srv = s->srv;
    int rc;

    if (!srv->rsnap_open) {
        if ((rc = ferry_meta_read_begin(srv->rdb)) != 0)
            return rc;
        srv->rsnap_open = 1;
        srv->rsnap++;
    }
    return download_resolve(s, d);
}

static int download_resolve(struct sess *s, struct download *d)
{
    char norm[FERRY_PATH_MAX + 1];
    struct ferry_node n;
    size_t memlen = 0;
    int rc;

    if (d->path != NULL) {
        if ((rc = ferry_path_normalize(d->path, strlen(d->path), norm, sizeof(norm))) != 0)
            return rc;
        rc = ferry_meta_lookup(s->srv->rdb, s->uid, norm, &n);
    } else {
        rc = ferry_meta_node_by_id(s->srv->rdb, s->uid, d->file_id, &n);
    }
    if (rc != 0)
        return rc;
    if (n.is_dir)
        return FERRY_EISDIR;
    if (!ferry_cid_valid(n.cid))
        return FERRY_EINTERNAL;
    rc = ferry_meta_content_inline(s->srv->rdb, s->uid, n.cid, (void **)&d->mem, &memlen);
    if (rc < 0)
        return rc == FERRY_ENOTFOUND ? FERRY_EINTERNAL : rc;
    if (rc == 1) {
        if (memlen != (size_t)n.size)
            return FERRY_EINTERNAL;
    } else if (rc == 2) {
        /* R-CHUNK-30: the list is charged to the user while the download holds it. */
        if ((rc = srv_list_fits(s->srv, s->uid, 0, memlen)) != 0 ||
            (rc = srv_list_charge(s->srv, s->uid, memlen)) != 0)
            return rc;
        d->uid = s->uid;
        d->list_charged = memlen;
        /* R-CHUNK-10: chunked content is read chunk file by chunk file. */
        d->list = d->mem;
        d->list_len = memlen;
        d->mem = NULL;
        if (ferry_chunk_list_check(d->list, d->list_len, (uint64_t)n.size) != 0)
            return FERRY_EINTERNAL;
    } else if (ferry_blob_ref_file(&d->bref, s->uid, n.cid, n.size) != 0 ||
               ferry_blob_reader_open(s->srv->blobs, &d->bref, &d->rd) != 0) {
        return FERRY_EINTERNAL;
    }
    d->size = d->end = (uint64_t)n.size;
    d->mtime = n.mtime;
    d->exec = n.exec;
    d->file_id = n.id;
    memcpy(d->cid, n.cid, sizeof(d->cid));
    if (d->ranges != NULL)
        return chunks_resolve(s, d);
    if (d->list_mode && d->list != NULL) {
        /* R-CHUNK-15: the list goes out like inline content. */
        d->mem = d->list;
        d->list = NULL;
        d->end = d->list_len;
    } else {
        d->list_mode = 0; /* content stored whole: the file itself */
    }
    /* R-XFER-7: a small whole file, to a client that reads file frames, in one. */
    if (s->peer_minor >= 4 && d->plain && d->list == NULL && d->size <= FERRY_FILE_DATA_MAX &&
        strncmp(d->cid, "sha256:", 7) == 0)
        return send_file(s, d);
    /* R-CHUNK-14: the rest of the same content only; anything else from byte 0. */
    if (d->want_off > 0 && d->want_off <= d->size && strcmp(d->want_cid, d->cid) == 0) {
        d->off = d->want_off;
        if (d->list != NULL) {
            struct ferry_chunk_ent e;
            uint64_t start = 0;

            for (d->chunk = 0; (d->chunk + 1) * FERRY_CHUNK_ENT_LEN <= d->list_len; d->chunk++) {
                ferry_chunk_ent_decode(d->list + d->chunk * FERRY_CHUNK_ENT_LEN, &e);
                if (start + e.len > d->off)
                    break;
                start += e.len;
            }
            d->chunk_pos = (uint32_t)(d->off - start);
        }
    }
    return announce(s, d);
}

/*
 * Locates the next chunk of a chunked download: in its pack (kept open
 * while the chunks stay in it) or, for a store of the old layout, its file.
 */
static int chunk_open(struct sess *s, struct download *d)
{
    struct ferry_chunk_ent e;
    int64_t loc, off, size;
    int rc;

    if ((d->chunk + 1) * FERRY_CHUNK_ENT_LEN > d->list_len)
        return FERRY_EINTERNAL;
    ferry_chunk_ent_decode(d->list + d->chunk * FERRY_CHUNK_ENT_LEN, &e);
    if ((rc = ferry_meta_chunk_loc(s->srv->rdb, s->uid, e.hash, &loc, &off, &size)) != 1 ||
        size != e.len)
        return FERRY_EINTERNAL;
    ferry_blob_ref_chunk(&d->bref, s->uid, e.hash, loc, off, size);
    if ((d->rd != NULL ? ferry_blob_reader_move(s->srv->blobs, d->rd, &d->bref)
                       : ferry_blob_reader_open(s->srv->blobs, &d->bref, &d->rd)) != 0)
        return FERRY_EINTERNAL;
    d->chunk_len = e.len;
    d->chunk_ready = 1;
    /* chunk_pos is kept: a resumed download starts inside its first chunk. */
    return 0;
}

/*
 * Whether the chunk just read from a pack is still stored where it was: a
 * chunk deleted meanwhile may have become a hole (R-CHUNK-11), but only
 * after the commit that deleted its row, and pack ids and offsets are
 * never reused. A chunk file of the old layout stays readable once open.
 */
static int chunk_still_there(struct sess *s, struct download *d)
{
    struct ferry_blob_ref now;
    int64_t loc, off, size;

    if (!ferry_blob_may_vanish(s->srv->blobs, &d->bref))
        return 1;
    if (ferry_meta_chunk_loc(s->srv->rdb, s->uid, d->bref.key, &loc, &off, &size) != 1)
        return 0;
    ferry_blob_ref_chunk(&now, s->uid, d->bref.key, loc, off, size);
    return ferry_blob_ref_same(&now, &d->bref);
}

/* Reads the next piece of the head download straight into data frames. */
static int download_step(struct sess *s, struct download *d)
{
    struct iovec iov[SRV_READ_CHUNK / FERRY_DATA_MAX];
    uint64_t want = d->end - d->off;
    size_t nfr, i, need, piece, hdr;
    int cf = d->ranges != NULL; /* R-CHUNK-16: chunk frames, not data frames */
    uint8_t *w, *base;
    int64_t pos = (int64_t)d->off;
    ssize_t got;
    int rc;

    if (d->list != NULL) {
        /* One step never crosses a chunk boundary: chunks are found one by one. */
        if (!d->chunk_ready && (rc = chunk_open(s, d)) != 0)
            return rc;
        want = d->chunk_len - d->chunk_pos;
        pos = (int64_t)d->chunk_pos;
    }
    if (want > SRV_READ_CHUNK)
        want = SRV_READ_CHUNK;
    nfr = (size_t)((want + FERRY_DATA_MAX - 1) / FERRY_DATA_MAX);
    hdr = cf ? FERRY_CHUNK_HDR_LEN : FERRY_DATA_HDR_LEN;
    need = (size_t)want + nfr * (FERRY_FRAME_HDR_LEN + hdr);
    if ((rc = ferry_conn_reserve(s->conn, need, &base)) != 0)
        return rc;
    w = base;
    for (i = 0; i < nfr; i++) {
        piece = i + 1 < nfr ? FERRY_DATA_MAX : (size_t)want - i * FERRY_DATA_MAX;
        iov[i].iov_base = w + FERRY_FRAME_HDR_LEN + hdr;
        iov[i].iov_len = piece;
        ferry_frame_header_encode(w, cf ? FERRY_FRAME_CHUNK : FERRY_FRAME_DATA,
                                  (uint32_t)(hdr + piece));
        if (cf)
            ferry_chunk_frame_header_encode(w + FERRY_FRAME_HDR_LEN, d->tid, (uint32_t)d->chunk,
                                            d->chunk_pos + (uint32_t)(i * FERRY_DATA_MAX));
        else
            ferry_data_header_encode(w + FERRY_FRAME_HDR_LEN, d->tid, d->off + i * FERRY_DATA_MAX);
        w += FERRY_FRAME_HDR_LEN + hdr + piece;
    }
    if (d->mem != NULL) {
        for (i = 0; i < nfr; i++)
            memcpy(iov[i].iov_base, d->mem + d->off + i * FERRY_DATA_MAX, iov[i].iov_len);
        got = (ssize_t)want;
    } else {
        /* One read fills every frame's slot: no syscall per 16 KiB frame. */
        got = ferry_blob_read(s->srv->blobs, d->rd, pos, iov, (int)nfr);
    }
    if (got != (ssize_t)want)
        return FERRY_EINTERNAL; /* the file is shorter than its row says */
    if (d->list != NULL && !chunk_still_there(s, d))
        return FERRY_EINTERNAL;
    ferry_conn_commit(s->conn, (size_t)(w - base));
    d->off += want;
    if (d->list != NULL) {
        d->chunk_pos += (uint32_t)want;
        if (d->chunk_pos == d->chunk_len) {
            d->chunk_ready = 0;
            d->chunk++;
            d->chunk_pos = 0;
            /* R-CHUNK-16: on to the next requested chunk. */
            if (cf && d->chunk == (size_t)d->ranges[d->range][0] + d->ranges[d->range][1] &&
                ++d->range < d->nranges)
                d->chunk = d->ranges[d->range][0];
        }
    }
    if (ferry_conn_queued(s->conn) >= FERRY_NET_COALESCE)
        return ferry_conn_flush(s->conn);
    return 0;
}

/* Ends the pass's read transaction, if it opened one. */
static void pump_snapshot_end(struct srv *srv)
{
    if (!srv->rsnap_open)
        return;
    srv->rsnap_open = 0;
    ferry_meta_read_end(srv->rdb);
}

void srv_download_pump(struct sess *s)
{
    struct download *d;
    char tid[33];
    int rc;

    /*
     * R-PAGE-1: a listing's pages go out back to back (the files service
     * pumps them); downloads wait for its end.
     */
    if (s->listing != NULL)
        return;
    while (!s->closed && !ferry_conn_is_closing(s->conn) && (d = s->dl_head) != NULL &&
           ferry_conn_pending(s->conn) < FERRY_NET_OUT_HIGH) {
        if (!d->started) {
            if ((rc = download_start(s, d)) != 0) {
                srv_send_error(s, d->ref, rc, NULL);
                download_log(s, d, rc, "failed");
                download_pop(s);
            }
            continue;
        }
        if (d->off < d->end) {
            if ((rc = download_step(s, d)) != 0) {
                ferry_hex_encode(d->tid, FERRY_TID_LEN, tid);
                srv_send(s, FERRY_MSG_ERROR,
                         json_pack("{s:s, s:s, s:i, s:s}", "ref", d->ref, "tid", tid, "code",
                                   ferry_err_to_wire(FERRY_EINTERNAL), "message",
                                   "stored content unreadable"));
                download_log(s, d, FERRY_EINTERNAL, "failed");
                download_pop(s);
            }
            continue;
        }
        if (!d->whole) {
            ferry_hex_encode(d->tid, FERRY_TID_LEN, tid);
            srv_send(s, FERRY_MSG_TRANSFER_COMPLETE,
                     json_pack("{s:s, s:s}", "tid", tid, "hash", d->cid));
        }
        /* R-XFER-3, R-XFER-7: remembered in the order the client sees them finish. */
        memcpy(s->done_tids[s->done_next++ % SRV_DONE_TIDS], d->tid, FERRY_TID_LEN);
        download_log(s, d, 0, "ok");
        download_pop(s);
    }
    pump_snapshot_end(s->srv);
    /*
     * R-FRAME-4: while the connection's input is being handled, its end
     * flushes what every frame of it queued: a flush per Download put each
     * small file in a TLS record and a write(2) of its own.
     */
    if (!s->closed && !ferry_conn_in_input(s->conn))
        ferry_conn_flush(s->conn);
}

void srv_download_cancel(struct sess *s, const uint8_t tid[static FERRY_TID_LEN])
{
    struct download *d, **pp;

    for (pp = &s->dl_head; (d = *pp) != NULL; pp = &d->next) {
        if (memcmp(d->tid, tid, FERRY_TID_LEN) != 0)
            continue;
        if (d->started)
            download_log(s, d, 0, "cancelled");
        if (d == s->dl_head) {
            download_pop(s);
        } else {
            *pp = d->next;
            if (s->dl_tail == d)
                s->dl_tail = NULL;
            s->ndownloads--;
            download_free(s->srv, d);
            /* Find the new tail: the list is short. */
            for (d = s->dl_head; d != NULL && d->next != NULL; d = d->next)
                ;
            s->dl_tail = d;
        }
        return;
    }
    /* Not found: already finished, and cancelling is idempotent. */
}

void srv_download_cleanup(struct sess *s)
{
    while (s->dl_head != NULL) {
        struct download *d = s->dl_head;
        s->dl_head = d->next;
        if (d->started)
            download_log(s, d, 0, "cancelled");
        download_free(s->srv, d);
    }
    s->dl_tail = NULL;
    s->ndownloads = 0;
}
