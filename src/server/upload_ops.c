/*
 * ferry serve: what the write queue does with an upload and with a chunk
 * (R-STORE-2, R-CHUNK-7): their content into the store's batch, their rows
 * in its transaction, their replies once it committed. transfer.c makes
 * these operations; commit.c runs them without knowing what they are.
 */
#include "server.h"

/*
 * A large file's spool goes into the batch, unless the user holds that
 * content already (rows, not files, say what exists); small files and
 * chunked ones have their bytes in the database or in chunks.
 */
static int upload_put(struct srv *srv, struct op *op, struct ferry_blob_batch *bb)
{
    int rc;

    if (op->data != NULL || op->list != NULL)
        return 0;
    if ((rc = ferry_meta_content_has(srv->wdb, op->uid, op->cid)) != 0) {
        if (rc < 0)
            return rc;
        ferry_blob_spool_drop(srv->blobs, &op->spool);
        return 0;
    }
    if ((rc = ferry_blob_put_spool(srv->blobs, bb, op->uid, op->cid, &op->spool, &op->bref,
                                   &op->bstatus)) != 0)
        return srv_io_rc(rc);
    return 1;
}

static int upload_apply(struct srv *srv, struct op *op)
{
    return ferry_meta_put_file(srv->wdb, op->uid, op->path, op->size, op->cid, op->mtime, op->flag,
                               op->now, op->data, op->list, op->list_len, srv->cfg.quota);
}

static void upload_done(struct op *op, json_t **committed)
{
    struct sess *s = op->s;
    char tid[33];
    json_t *e;

    /* R-LOG-5: a committed upload is logged even if its connection is gone. */
    srv_log_transfer(s, "upload", op->path, 0, (uint64_t)op->size, (uint64_t)op->size, op->t0_ms,
                     op->rc, op->rc == 0 ? "ok" : "failed");
    if (s->closed)
        return;
    ferry_hex_encode(op->tid, FERRY_TID_LEN, tid);
    if (op->rc != 0) {
        if ((e = srv_op_error_body(op)) != NULL)
            json_object_set_new(e, "tid", json_string(tid));
        srv_send(s, FERRY_MSG_ERROR, e);
        return;
    }
    if (*committed == NULL)
        *committed = json_array();
    json_array_append_new(*committed, json_string(tid));
}

/* R-CHUNK-30: a committed (or failed) file's list is no longer held. */
static void upload_finish(struct op *op)
{
    srv_list_uncharge(op->s->srv, op->list_uid, op->list_charged);
    op->list_charged = 0;
}

const struct op_type srv_op_upload = {
    .name = "upload",
    .put = upload_put,
    .apply = upload_apply,
    .done = upload_done,
    .finish = upload_finish,
};

/*
 * A chunk (verified when its last byte arrived, transfer.c) goes into its
 * user's pack, unless the user holds it already: then it is only
 * acknowledged.
 */
static int chunk_put(struct srv *srv, struct op *op, struct ferry_blob_batch *bb)
{
    int rc;

    if ((rc = ferry_meta_chunk_has(srv->wdb, op->uid, op->hash)) != 0)
        return rc < 0 ? rc : 0;
    if ((rc = ferry_blob_put_chunk(srv->blobs, bb, op->uid, op->hash, op->data, (size_t)op->size,
                                   &op->bref, &op->bstatus)) != 0)
        return srv_io_rc(rc);
    op->stored = 1;
    return 1;
}

static int chunk_apply(struct srv *srv, struct op *op)
{
    struct ferry_meta *m = srv->wdb;
    int rc;

    if (srv->cfg.quota > 0) {
        if ((rc = ferry_meta_chunk_has(m, op->uid, op->hash)) < 0)
            return rc;
        /* R-QUOTA-2: a chunk not held yet must fit the quota with its whole blocks. */
        if (rc == 0 && (rc = ferry_meta_quota_room(m, op->uid, FERRY_PACK_ROUND(op->size),
                                                   srv->cfg.quota)) != 0)
            return rc;
    }
    /* A chunk held already (or stored twice in one batch) leaves its new bytes unused. */
    rc = ferry_meta_chunk_put(m, op->uid, op->hash, op->size, op->bref.loc, op->bref.off, op->now);
    op->unused = rc == 1;
    return rc < 0 ? rc : 0;
}

static void chunk_done(struct op *op, json_t **committed)
{
    struct sess *s = op->s;
    char tid[33];
    json_t *e;

    (void)committed;
    if (s->closed)
        return;
    ferry_hex_encode(op->tid, FERRY_TID_LEN, tid);
    if (op->rc != 0) {
        if ((e = srv_op_error_body(op)) != NULL) {
            json_object_set_new(e, "tid", json_string(tid));
            json_object_set_new(e, "index", json_integer(op->index));
        }
        srv_send(s, FERRY_MSG_ERROR, e);
        return;
    }
    /* R-CHUNK-7: a durable promise, sent only after the commit. */
    srv_send(s, FERRY_MSG_CHUNK_STORED,
             json_pack("{s:s, s:I}", "tid", tid, "index", (json_int_t)op->index));
}

const struct op_type srv_op_chunk = {
    .name = "chunk",
    .put = chunk_put,
    .apply = chunk_apply,
    .done = chunk_done,
};
