/* ferry serve: listings (streamed pages) and tree changes (through the writer). */
#include <string.h>

#include "ferry/path.h"
#include "server.h"

/* Room for the page's own members besides the listed path (R-PAGE-1). */
#define PAGE_OVERHEAD 256

struct pager {
    struct sess *s;
    const char *ref;
    const char *path;
    int64_t dir_id;
    json_t *entries;
    size_t bytes;
    size_t budget; /* entry bytes that fit in one frame with this page's header */
    int rc;
};

static json_t *entry_json(const char *rel, const struct ferry_node *n)
{
    json_t *e = json_pack("{s:I, s:I, s:s, s:s, s:I, s:I, s:I, s:b}", "id", (json_int_t)n->id,
                          "dir_id", (json_int_t)n->parent_id, "name", rel, "type",
                          n->is_dir ? "dir" : "file", "size", (json_int_t)n->size, "mtime",
                          (json_int_t)n->mtime, "smtime", (json_int_t)n->smtime, "exec", n->exec);

    if (e != NULL && !n->is_dir)
        json_object_set_new(e, "hash", json_string(n->cid));
    return e;
}

static int page_send(struct pager *p, int last)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:o, s:b}", "ref", p->ref, "path", p->path, "dir_id",
                          (json_int_t)p->dir_id, "entries", p->entries, "last", last);

    p->entries = last ? NULL : json_array();
    p->bytes = 0;
    if (o == NULL || (!last && p->entries == NULL))
        return -ENOMEM;
    /* R-PIPE-3: a listing may not pile up unbounded output. */
    if (!last && ferry_conn_pending(&p->s->conn) > p->s->srv->cfg.max_listing) {
        json_decref(o);
        return FERRY_ETOOBIG;
    }
    return srv_send(p->s, FERRY_MSG_DIRPAGE, o);
}

static int page_add(void *arg, const char *rel, const struct ferry_node *n)
{
    struct pager *p = arg;
    json_t *e = entry_json(rel, n);
    size_t sz;
    int rc;

    if (e == NULL)
        return -ENOMEM;
    sz = json_dumpb(e, NULL, 0, JSON_COMPACT) + 1;
    if (json_array_size(p->entries) >= SRV_PAGE_ENTRIES ||
        (json_array_size(p->entries) > 0 && p->bytes + sz > p->budget)) {
        if ((rc = page_send(p, 0)) != 0) {
            json_decref(e);
            return rc;
        }
    }
    p->bytes += sz;
    return json_array_append_new(p->entries, e) == 0 ? 0 : -ENOMEM;
}

static int dirinfo(struct sess *s, const struct ferry_cmd *cmd)
{
    const char *path = NULL;
    char norm[FERRY_PATH_MAX + 1];
    struct pager p = {.s = s, .ref = cmd->id};
    struct ferry_node n;
    int recursive = 0, self = 0, rc;

    if ((rc = ferry_msg_str(cmd->body, "path", FERRY_PATH_MAX + 2, &path)) != 0 ||
        (rc = ferry_msg_bool_opt(cmd->body, "recursive", 0, &recursive)) != 0 ||
        (rc = ferry_msg_bool_opt(cmd->body, "stat", 0, &self)) != 0)
        return srv_send_error(s, cmd->id, FERRY_EPROTO, "DirInfo needs a path");
    if ((rc = ferry_path_normalize(path, strlen(path), norm, sizeof(norm))) != 0)
        return srv_send_error(s, cmd->id, rc, NULL);
    /* The pages of one listing come from one snapshot (R-PAGE-1). */
    if ((rc = ferry_meta_read_begin(s->srv->rdb)) != 0)
        return srv_send_error(s, cmd->id, rc, NULL);
    rc = ferry_meta_lookup(s->srv->rdb, s->uid, norm, &n);
    if (rc != 0) {
        ferry_meta_read_end(s->srv->rdb);
        return srv_send_error(s, cmd->id, rc, NULL);
    }
    p.path = norm;
    {
        /* The listed path is repeated in every page; escaping can double it. */
        json_t *hdr = json_pack("{s:s}", "path", norm);
        size_t h = hdr != NULL ? json_dumpb(hdr, NULL, 0, JSON_COMPACT) : 2 * strlen(norm);
        json_decref(hdr);
        p.budget = FERRY_FRAME_PAYLOAD_MAX - FERRY_CMD_HDR_LEN - PAGE_OVERHEAD - h;
    }
    p.entries = json_array();
    p.dir_id = n.is_dir ? n.id : n.parent_id;
    if (p.entries == NULL) {
        ferry_meta_read_end(s->srv->rdb);
        return -ENOMEM;
    }
    /* A file lists as itself, as does anything with stat; a directory as its children. */
    if (!n.is_dir || self)
        rc = page_add(&p, n.name, &n);
    else
        rc = ferry_meta_list(s->srv->rdb, s->uid, n.id, recursive, page_add, &p);
    ferry_meta_read_end(s->srv->rdb);
    if (rc != 0) {
        json_decref(p.entries);
        return srv_send_error(s, cmd->id, rc,
                              rc == FERRY_ETOOBIG ? "listing too large: list a subfolder" : NULL);
    }
    return page_send(&p, 1);
}

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

static int change(struct sess *s, const struct ferry_cmd *cmd, enum op_kind kind)
{
    char *a = NULL, *b = NULL;
    int64_t mtime = 0;
    int flag = 0, rc;
    struct op *op;

    /* R-PIPE-4: checked first, so a write left unread has changed nothing. */
    if (srv_op_admit(s) != 0)
        return 1;
    if (norm_arg(s, cmd, kind == OP_MOVE ? "from" : "path", &a) != 0)
        return 0;
    if (kind == OP_MOVE && norm_arg(s, cmd, "to", &b) != 0) {
        ferry_free(a);
        return 0;
    }
    rc = ferry_msg_bool_opt(cmd->body, kind == OP_MOVE ? "force" : "recursive", 0, &flag);
    if (rc == 0 && kind == OP_MKDIR)
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

int srv_files_handle(struct sess *s, const struct ferry_cmd *cmd)
{
    switch (cmd->type) {
    case FERRY_MSG_DIRINFO:
        return dirinfo(s, cmd);
    case FERRY_MSG_REMOVE:
        return change(s, cmd, OP_REMOVE);
    case FERRY_MSG_MOVE:
        return change(s, cmd, OP_MOVE);
    case FERRY_MSG_MKDIR:
        return change(s, cmd, OP_MKDIR);
    default:
        return FERRY_EPROTO;
    }
}
