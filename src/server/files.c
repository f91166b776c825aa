/* ferry serve: file requests: listings (listing.c) and tree changes (through the writer). */
#include <string.h>

#include "ferry/path.h"
#include "server.h"

static int norm_arg(struct sess *s, const struct ferry_cmd *cmd, const char *key, char **out)
{
    const char *path = NULL;
    char norm[FERRY_PATH_MAX + 1];
    int rc;

    *out = NULL;
    if ((rc = ferry_msg_str(cmd->body, key, FERRY_PATH_MAX + 2, &path)) != 0) {
        srv_send_error(s, cmd->id, FERRY_EPROTO, "missing path");
        return rc;
    }
    if ((rc = ferry_path_normalize(path, strlen(path), norm, sizeof(norm))) != 0) {
        srv_send_error(s, cmd->id, rc, NULL);
        return rc;
    }
    if ((*out = ferry_strdup(norm)) == NULL)
        return -ENOMEM;
    return 0;
}

static int mkdir_apply(struct srv *srv, struct op *op)
{
    int64_t dir;

    return ferry_meta_mkdirs(srv->wdb, op->uid, op->path, op->mtime, op->now, &dir);
}

/* R-STORE-10: a message applied before (a retry after a lost reply) is Ok again. */
static int remove_apply(struct srv *srv, struct op *op)
{
    int rc;

    if ((rc = ferry_meta_op_done(srv->wdb, op->uid, op->ref)) != 0)
        return rc > 0 ? 0 : rc;
    if ((rc = ferry_meta_remove(srv->wdb, op->uid, op->path, op->flag)) != 0)
        return rc;
    return ferry_meta_op_record(srv->wdb, op->uid, op->ref, op->now);
}

static int move_apply(struct srv *srv, struct op *op)
{
    int rc;

    if ((rc = ferry_meta_op_done(srv->wdb, op->uid, op->ref)) != 0)
        return rc > 0 ? 0 : rc;
    if ((rc = ferry_meta_move(srv->wdb, op->uid, op->path, op->path2, op->flag, op->now)) != 0)
        return rc;
    return ferry_meta_op_record(srv->wdb, op->uid, op->ref, op->now);
}

static const struct op_type op_mkdir = {
    .name = "mkdir", .apply = mkdir_apply, .done = srv_op_reply};
static const struct op_type op_remove = {
    .name = "remove", .apply = remove_apply, .done = srv_op_reply};
static const struct op_type op_move = {.name = "move", .apply = move_apply, .done = srv_op_reply};

static int change(struct sess *s, const struct ferry_cmd *cmd, const struct op_type *kind)
{
    char *a = NULL, *b = NULL;
    int64_t mtime = 0;
    int flag = 0, rc;
    struct op *op;

    /* R-PIPE-4: checked first, so a write left unread has changed nothing. */
    if (srv_op_admit(s) != 0)
        return 1;
    if (norm_arg(s, cmd, kind == &op_move ? "from" : "path", &a) != 0)
        return 0;
    if (kind == &op_move && norm_arg(s, cmd, "to", &b) != 0) {
        ferry_free(a);
        return 0;
    }
    rc = ferry_msg_bool_opt(cmd->body, kind == &op_move ? "force" : "recursive", 0, &flag);
    if (rc == 0 && kind == &op_mkdir)
        rc = ferry_msg_i64_opt(cmd->body, "mtime", INT64_MIN, INT64_MAX, srv_now_ns(), &mtime);
    if (rc != 0 || (op = srv_op_new(s, kind, cmd->id)) == NULL) {
        ferry_free(a);
        ferry_free(b);
        return rc != 0 ? srv_send_error(s, cmd->id, rc, NULL) : -ENOMEM;
    }
    op->uid = s->uid;
    op->path = a;
    op->path2 = b;
    op->flag = flag;
    op->mtime = mtime;
    srv_op_submit(s->srv, op);
    return 0;
}

static int remove_request(struct sess *s, const struct ferry_cmd *cmd)
{
    return change(s, cmd, &op_remove);
}

static int move_request(struct sess *s, const struct ferry_cmd *cmd)
{
    return change(s, cmd, &op_move);
}

static int mkdir_request(struct sess *s, const struct ferry_cmd *cmd)
{
    return change(s, cmd, &op_mkdir);
}

/* R-PIPE-2: a listing waits for the connection's earlier writes, so it sees them. */
static const struct srv_handler files_handlers[] = {
    {FERRY_MSG_DIRINFO, SRV_H_ORDERED, srv_listing_dirinfo},
    {FERRY_MSG_REMOVE, 0, remove_request},
    {FERRY_MSG_MOVE, 0, move_request},
    {FERRY_MSG_MKDIR, 0, mkdir_request},
};

static const struct srv_service files = {
    .name = "files",
    .handlers = files_handlers,
    .nhandlers = sizeof(files_handlers) / sizeof(files_handlers[0]),
    /* R-PAGE-1, R-PAGE-2: the next slice of a listing once its output drained. */
    .drain = srv_listing_pump,
    .closing = srv_listing_cleanup,
};

int srv_files_init(struct srv *srv)
{
    return srv_service_add(srv, &files);
}
