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

static void download_drop(struct sess *s, struct download *d);

static void download_pop(struct sess *s)
{
    struct download *d = s->dl_head;

    s->dl_head = d->next;
    if (s->dl_head == NULL)
        s->dl_tail = NULL;
    s->ndownloads--;
    download_drop(s, d);
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

/* Lays out the file frame's headers (R-FILE) at w, for the body after them. */
static int file_layout(const struct download *d, uint8_t *w)
{
    uint8_t ref[16], sha[32];

    if (ferry_uuid_to_bytes(d->ref, ref) != 0 || ferry_hex_decode(d->cid + 7, sha, 32) != 0)
        return FERRY_EINTERNAL;
    ferry_frame_header_encode(w, FERRY_FRAME_FILE, (uint32_t)(FERRY_FILE_HDR_LEN + d->size));
    ferry_file_frame_header_encode(w + FERRY_FRAME_HDR_LEN, ref, d->tid, d->mtime, d->exec, sha);
    return 0;
}

/*
 * R-XFER-7: the whole file in one file frame (R-FILE). Inline content is
 * copied into the output at once; a blob's bytes are read on the thread
 * pool (the pump starts the read: the download is left with its bytes
 * due). Once its frame is queued the download is finished: the pump
 * records its tid and logs it, with no TransferComplete. Nothing is
 * queued unless all of it is.
 */
static int send_file(struct sess *s, struct download *d)
{
    const size_t len = FERRY_FRAME_HDR_LEN + FERRY_FILE_HDR_LEN + (size_t)d->size;
    uint8_t *w;
    int rc;

    d->whole = 1;
    d->t0_ms = ferry_now_ms();
    d->off0 = 0;
    if (d->mem == NULL && d->size > 0) {
        d->started = 1;
        return 0;
    }
    if ((rc = ferry_conn_reserve(s->conn, len, &w)) != 0 || (rc = file_layout(d, w)) != 0)
        return rc;
    if (d->size > 0)
        memcpy(w + FERRY_FRAME_HDR_LEN + FERRY_FILE_HDR_LEN, d->mem, (size_t)d->size);
    ferry_conn_commit(s->conn, len);
    d->started = 1;
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
static int chunk_open(struct sess *s, struct download *d, int move)
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
    /* A chunk after the first of a read: the read moves the reader when it comes to it. */
    if (!move && d->rd != NULL) {
        d->chunk_len = e.len;
        d->chunk_ready = 1;
        return 0;
    }
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
static int chunk_still_there(struct sess *s, const struct ferry_blob_ref *ref)
{
    struct ferry_blob_ref now;
    int64_t loc, off, size;

    if (!ferry_blob_may_vanish(s->srv->blobs, ref))
        return 1;
    if (ferry_meta_chunk_loc(s->srv->rdb, s->uid, ref->key, &loc, &off, &size) != 1)
        return 0;
    ferry_blob_ref_chunk(&now, s->uid, ref->key, loc, off, size);
    return ferry_blob_ref_same(&now, ref);
}

/*
 * Lays out the frames of the head download's next piece at w (room for
 * SRV_DL_SLOT_CAP bytes): their headers written, their bytes' places in
 * iov. Sets *nfr, *want and *pos (where the bytes start in the content
 * being read) and returns the frames' length. The download's cursor moves
 * past the piece: the caller fills its bytes, or fails the download.
 */
static size_t piece_layout(struct download *d, size_t cap, uint8_t *w, struct iovec *iov, int *nfrp,
                           size_t *wantp, int64_t *posp)
{
    int cf = d->ranges != NULL; /* R-CHUNK-16: chunk frames, not data frames */
    size_t hdr = cf ? FERRY_CHUNK_HDR_LEN : FERRY_DATA_HDR_LEN;
    uint64_t want = d->end - d->off;
    uint8_t *base = w;
    size_t nfr, i, piece;

    _Static_assert(FERRY_CHUNK_HDR_LEN == FERRY_DATA_HDR_LEN, "a slot fits either kind");
    *posp = (int64_t)d->off;
    if (d->list != NULL) {
        /* One piece never crosses a chunk boundary: chunks are found one by one. */
        want = d->chunk_len - d->chunk_pos;
        *posp = (int64_t)d->chunk_pos;
    }
    if (want > cap)
        want = cap;
    nfr = (size_t)((want + FERRY_DATA_MAX - 1) / FERRY_DATA_MAX);
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
    *nfrp = (int)nfr;
    *wantp = (size_t)want;
    d->off += want;
    if (d->list != NULL) {
        d->chunk_pos += (uint32_t)want;
        if (d->chunk_pos == d->chunk_len) {
            /* The chunk's row is looked up again once its last piece is read. */
            d->chunk_ready = 0;
            d->chunk++;
            d->chunk_pos = 0;
            /* R-CHUNK-16: on to the next requested chunk. */
            if (cf && d->chunk == (size_t)d->ranges[d->range][0] + d->ranges[d->range][1] &&
                ++d->range < d->nranges)
                d->chunk = d->ranges[d->range][0];
        }
    }
    return (size_t)(w - base);
}

/* Inline content (a list, or a file to an older client): the next piece copied into the output. */
static int download_step_mem(struct sess *s, struct download *d)
{
    struct iovec iov[SRV_READ_CHUNK / FERRY_DATA_MAX];
    uint64_t from = d->off;
    size_t want, len;
    int64_t pos;
    uint8_t *w;
    int nfr, i, rc;

    if ((rc = ferry_conn_reserve(s->conn,
                                 SRV_READ_CHUNK + (SRV_READ_CHUNK / FERRY_DATA_MAX) *
                                                      (FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN),
                                 &w)) != 0)
        return rc;
    len = piece_layout(d, SRV_READ_CHUNK, w, iov, &nfr, &want, &pos);
    for (i = 0; i < nfr; i++) {
        memcpy(iov[i].iov_base, d->mem + from, iov[i].iov_len);
        from += iov[i].iov_len;
    }
    ferry_conn_commit(s->conn, len);
    if (ferry_conn_queued(s->conn) >= FERRY_NET_COALESCE)
        return ferry_conn_flush(s->conn);
    return 0;
}

/* Where a slot stands (struct dl_slot). */
enum { DL_FREE = 0, DL_READING, DL_READY, DL_QUEUED };

/* A connection that may start no read now (SRV_DL_READS_MAX) waits its turn. */
static void dl_wait(struct sess *s)
{
    struct srv *srv = s->srv;

    if (s->dlw_waiting)
        return;
    s->dlw_waiting = 1;
    s->dlw_next = NULL;
    if (srv->dlw_tail != NULL)
        srv->dlw_tail->dlw_next = s;
    else
        srv->dlw_head = s;
    srv->dlw_tail = s;
}

static void dl_unwait(struct sess *s)
{
    struct srv *srv = s->srv;
    struct sess *p, *prev = NULL;

    if (!s->dlw_waiting)
        return;
    for (p = srv->dlw_head; p != NULL && p != s; prev = p, p = p->dlw_next)
        ;
    if (prev != NULL)
        prev->dlw_next = s->dlw_next;
    else
        srv->dlw_head = s->dlw_next;
    if (srv->dlw_tail == s)
        srv->dlw_tail = prev;
    s->dlw_waiting = 0;
    s->dlw_next = NULL;
}

/*
 * Whether s may start a read now: under the server's cap, and no other
 * connection waiting before it (first come, first served: a connection
 * whose read just ended queues behind those that waited meanwhile).
 */
static int dl_may_read(const struct sess *s)
{
    const struct srv *srv = s->srv;

    return srv->dl_reads < SRV_DL_READS_MAX && (srv->dlw_head == NULL || srv->dlw_head == s);
}

/* A read ended: the connections waiting start theirs, in turn. */
static void dl_wake(struct srv *srv)
{
    struct sess *w;

    while (srv->dl_reads < SRV_DL_READS_MAX && (w = srv->dlw_head) != NULL) {
        srv_download_pump(w);
        /* One that no longer wants a read gives its turn up. */
        if (srv->dlw_head == w)
            dl_unwait(w);
    }
}

/* The slot whose bytes go out next: read (ready) or being read; NULL if none. */
static struct dl_slot *slot_first(struct sess *s)
{
    struct dl_slot *first = NULL, *sl;
    int k;

    for (k = 0; k < SRV_DL_SLOTS; k++) {
        sl = &s->dl_slot[k];
        if ((sl->state == DL_READY || sl->state == DL_READING) &&
            (first == NULL || sl->seq < first->seq))
            first = sl;
    }
    return first;
}

static int slot_reading(const struct sess *s)
{
    int k;

    for (k = 0; k < SRV_DL_SLOTS; k++)
        if (s->dl_slot[k].state == DL_READING)
            return 1;
    return 0;
}

/*
 * A free slot; with none, queued ones are encrypted now (which frees them)
 * rather than waiting for the end of the input.
 */
static struct dl_slot *slot_free(struct sess *s)
{
    int k, again;

    for (again = 0; again < 2; again++) {
        for (k = 0; k < SRV_DL_SLOTS; k++)
            if (s->dl_slot[k].state == DL_FREE)
                return &s->dl_slot[k];
        if (again == 0)
            ferry_conn_flush(s->conn);
    }
    return NULL;
}

/* On the thread pool: one read fills every frame's place (no syscall per 16 KiB frame). */
static void slot_work(uv_work_t *req)
{
    struct dl_slot *sl = req->data;
    struct ferry_blob_store *blobs = sl->s->srv->blobs;
    const struct dl_item *it;
    ssize_t got, total = 0;
    int i, rc;

    for (i = 0; i < sl->nitem; i++) {
        it = &sl->item[i];
        if (i > 0 && (rc = ferry_blob_reader_move(blobs, sl->rd, &it->ref)) != 0) {
            sl->got = rc;
            return;
        }
        got = ferry_blob_read(blobs, sl->rd, it->pos, sl->iov + it->iov0, it->niov);
        if (got != (ssize_t)it->want) {
            sl->got = got < 0 ? got : FERRY_EINTERNAL; /* short: the read fails */
            return;
        }
        total += got;
    }
    sl->got = total;
}

/* Whether every chunk a read took from a pack is still stored where it was (R-CHUNK-11). */
static int slot_still_there(struct sess *s, const struct dl_slot *sl)
{
    int i;

    for (i = 0; i < sl->nitem; i++)
        if (!chunk_still_there(s, &sl->item[i].ref))
            return 0;
    return 1;
}

static void slot_done(uv_work_t *req, int status)
{
    struct dl_slot *sl = req->data;
    struct sess *s = sl->s;
    struct srv *srv = s->srv;

    srv->dl_reads--;
    sl->state = DL_READY;
    if (status != 0)
        sl->got = -ECANCELED;
    if (sl->orphan) {
        /* Its download was cancelled, or its connection closed, during the read. */
        download_free(srv, sl->d);
        sl->d = NULL;
        sl->orphan = 0;
        sl->state = DL_FREE;
    } else if (sl->got == (ssize_t)sl->want && sl->recheck && !slot_still_there(s, sl)) {
        sl->got = -ENOENT; /* deleted meanwhile: the bytes read may be a hole (R-CHUNK-11) */
    }
    if (s->closed) {
        ferry_free(sl->buf);
        sl->buf = NULL;
        sl->state = DL_FREE;
    } else {
        srv_download_pump(s);
    }
    dl_wake(srv);
    srv_sess_unref(s);
}

/* Starts the read of the head download's next bytes into sl, on the thread pool. */
static int slot_submit(struct sess *s, struct dl_slot *sl, struct download *d)
{
    int rc;

    if (d->list != NULL && !d->chunk_ready && (rc = chunk_open(s, d, 1)) != 0)
        return rc;
    if (sl->buf == NULL && (sl->buf = ferry_malloc(SRV_DL_SLOT_CAP)) == NULL)
        return -ENOMEM;
    sl->s = s;
    sl->d = d;
    sl->seq = s->dl_seq++;
    sl->rd = d->rd;
    sl->whole = d->whole;
    sl->recheck = 0;
    sl->nitem = 1;
    sl->item[0].ref = d->bref;
    sl->item[0].iov0 = 0;
    if (d->whole) {
        if ((rc = file_layout(d, sl->buf)) != 0)
            return rc;
        sl->iov[0].iov_base = sl->buf + FERRY_FRAME_HDR_LEN + FERRY_FILE_HDR_LEN;
        sl->iov[0].iov_len = (size_t)d->size;
        sl->nfr = sl->item[0].niov = 1;
        sl->want = sl->item[0].want = (size_t)d->size;
        sl->item[0].pos = 0;
        sl->len = FERRY_FRAME_HDR_LEN + FERRY_FILE_HDR_LEN + (size_t)d->size;
        d->off = d->end;
    } else {
        /*
         * Chunks are read together up to a piece's worth, so a hand-off
         * to the pool costs one per MiB and not one per chunk; each
         * chunk's row is looked up here, and again once read, on this
         * thread (R-CHUNK-11).
         */
        sl->recheck = d->list != NULL;
        sl->len = sl->want = 0;
        sl->nfr = 0;
        sl->nitem = 0;
        for (;;) {
            struct dl_item *it = &sl->item[sl->nitem];
            int n;

            it->ref = d->bref;
            it->iov0 = sl->nfr;
            sl->len += piece_layout(d, SRV_DL_PIECE - sl->want, sl->buf + sl->len,
                                    sl->iov + sl->nfr, &n, &it->want, &it->pos);
            it->niov = n;
            sl->nfr += n;
            sl->want += it->want;
            sl->nitem++;
            if (d->list == NULL || d->off >= d->end || sl->want >= SRV_DL_PIECE ||
                sl->nitem == SRV_DL_ITEMS || d->chunk_ready)
                break;
            /* A chunk that cannot be found is read, and fails, on its own next time. */
            if (chunk_open(s, d, 0) != 0)
                break;
        }
    }
    sl->work.data = sl;
    if ((rc = uv_queue_work(s->srv->loop, &sl->work, slot_work, slot_done)) != 0)
        return rc;
    sl->state = DL_READING;
    s->srv->dl_reads++;
    dl_unwait(s);
    srv_sess_ref(s);
    return 0;
}

/* The connection has encrypted a slot's frames (or gone): the slot is free. */
static void slot_sent(void *arg, int status)
{
    struct dl_slot *sl = arg;

    (void)status;
    sl->state = DL_FREE;
}

/*
 * Queues a slot's frames, read in full, as they lie in its buffer. On
 * failure (closing, or out of memory) the slot is free again and its
 * bytes are not sent.
 */
static int slot_deliver(struct sess *s, struct dl_slot *sl)
{
    int rc;

    sl->d = NULL;
    sl->state = DL_QUEUED;
    if ((rc = ferry_conn_send_ext(s->conn, NULL, 0, sl->buf, sl->len, slot_sent, sl)) != 0)
        sl->state = DL_FREE;
    return rc;
}

/* Frees the slots' buffers once no download needs them (none reading or queued). */
static void slots_release(struct sess *s)
{
    int k;

    for (k = 0; k < SRV_DL_SLOTS; k++)
        if (s->dl_slot[k].state == DL_FREE) {
            ferry_free(s->dl_slot[k].buf);
            s->dl_slot[k].buf = NULL;
        }
}

/*
 * Takes a download out of the slots as it leaves the queue: bytes read
 * for it and not yet queued go; a read in flight frees it when it ends.
 */
static void download_drop(struct sess *s, struct download *d)
{
    int k, reading = 0;

    for (k = 0; k < SRV_DL_SLOTS; k++) {
        struct dl_slot *sl = &s->dl_slot[k];

        if (sl->d != d)
            continue;
        if (sl->state == DL_READING) {
            sl->orphan = 1;
            reading = 1;
        } else {
            sl->state = DL_FREE;
            sl->d = NULL;
        }
    }
    if (!reading)
        download_free(s->srv, d);
}

/* Ends the head download with an Error for a read that failed or came back short. */
static void download_fail(struct sess *s, struct download *d)
{
    char tid[33];

    if (d->whole) {
        /* R-XFER-7: the client never saw its tid: the Error names the Download. */
        d->started = 0;
        srv_send_error(s, d->ref, FERRY_EINTERNAL, NULL);
    } else {
        ferry_hex_encode(d->tid, FERRY_TID_LEN, tid);
        srv_send(s, FERRY_MSG_ERROR,
                 json_pack("{s:s, s:s, s:i, s:s}", "ref", d->ref, "tid", tid, "code",
                           ferry_err_to_wire(FERRY_EINTERNAL), "message",
                           "stored content unreadable"));
    }
    download_log(s, d, FERRY_EINTERNAL, "failed");
    download_pop(s);
}

/* Ends the pass's read transaction, if it opened one. */
static void pump_snapshot_end(struct srv *srv)
{
    if (!srv->rsnap_open)
        return;
    srv->rsnap_open = 0;
    ferry_meta_read_end(srv->rdb);
}

/* Whether the head download's next bytes are read from its blob on the thread pool. */
static int needs_read(const struct download *d)
{
    return d != NULL && d->started && d->off < d->end && d->mem == NULL;
}

void srv_download_pump(struct sess *s)
{
    struct dl_slot *sl, *fr;
    struct download *d;
    int rc, high;

    /*
     * R-PAGE-1: a listing's pages go out back to back (the files service
     * pumps them); downloads wait for its end.
     */
    if (s->listing != NULL)
        return;
    while (!s->closed && !ferry_conn_is_closing(s->conn)) {
        high = ferry_conn_pending(s->conn) >= FERRY_NET_OUT_HIGH;
        d = s->dl_head;
        sl = slot_first(s);
        /* A failed read ends its download before anything more is read for it. */
        if (!high && sl != NULL && sl->state == DL_READY && sl->got != (ssize_t)sl->want) {
            sl->state = DL_FREE;
            sl->d = NULL;
            if (d != NULL)
                download_fail(s, d);
            continue;
        }
        /*
         * The next read starts before the last one's bytes are queued, and
         * while the output is full, so the disk, the encryption and the
         * socket overlap; one read at a time, as the download's reader is
         * the read's until it ends.
         */
        if (needs_read(d) && !slot_reading(s) && (sl == NULL || sl->got == (ssize_t)sl->want) &&
            (fr = slot_free(s)) != NULL) {
            if (dl_may_read(s)) {
                if ((rc = slot_submit(s, fr, d)) != 0)
                    download_fail(s, d);
                continue;
            }
            dl_wait(s); /* a read's end starts ours */
        }
        if (high)
            break; /* on_drain pumps again */
        if (sl != NULL && sl->state == DL_READY) {
            /* Bytes that could not be queued leave a gap: their download ends with an Error. */
            if (slot_deliver(s, sl) != 0 && !ferry_conn_is_closing(s->conn) && d != NULL)
                download_fail(s, d);
            continue;
        }
        if (sl != NULL || needs_read(d))
            break; /* a read is on its way, or waits for its turn: its end pumps again */
        if (d == NULL) {
            slots_release(s);
            break;
        }
        if (!d->started) {
            if ((rc = download_start(s, d)) != 0) {
                srv_send_error(s, d->ref, rc, NULL);
                download_log(s, d, rc, "failed");
                download_pop(s);
            }
            continue;
        }
        if (d->off < d->end) {
            if (download_step_mem(s, d) != 0)
                download_fail(s, d);
            continue;
        }
        if (!d->whole) {
            char tid[33];

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
            download_drop(s, d);
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
        download_drop(s, d);
    }
    s->dl_tail = NULL;
    s->ndownloads = 0;
    dl_unwait(s);
    /* A slot still reading frees its buffer when the read ends (s->closed). */
    slots_release(s);
}
