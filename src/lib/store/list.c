/* Server metadata: a listing cursor that walks a tree in bounded memory (R-PAGE-2). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ferry/core.h"
#include "ferry/path.h"
#include "ferry/store.h"
#include "meta_int.h"

/*
 * Rows fetched per query: enough that a folder of many entries costs few
 * queries, few enough that the cursor stays small (64 nodes, 24 KiB).
 */
#define CURSOR_BATCH 64
#define STR_(x)      #x
#define STR(x)       STR_(x)

/* One directory being walked: where its children's names start in path. */
struct level {
    int64_t dir;
    size_t plen;                   /* its children's prefix is path[0, plen) */
    char last[FERRY_NAME_MAX + 1]; /* the name of its child returned last */
    int started;                   /* whether last is set */
};

struct ferry_meta_cursor {
    int64_t uid;
    int recursive;
    int depth; /* levels in use; 0 once the walk is over */
    struct level lv[FERRY_PATH_DEPTH_MAX + 1];
    char path[FERRY_PATH_MAX + 2]; /* the relative path of the deepest level */
    /* Children of the deepest level fetched and not yet returned. */
    struct ferry_node batch[CURSOR_BATCH];
    int nb;
    int ib;
};

int ferry_meta_cursor_new(int64_t uid, int64_t dir_id, int recursive,
                          struct ferry_meta_cursor **out)
{
    struct ferry_meta_cursor *c;

    *out = NULL;
    if ((c = ferry_calloc(1, sizeof(*c))) == NULL)
        return -ENOMEM;
    c->uid = uid;
    c->recursive = recursive;
    c->depth = 1;
    c->lv[0].dir = dir_id;
    *out = c;
    return 0;
}

void ferry_meta_cursor_free(struct ferry_meta_cursor *c)
{
    ferry_free(c);
}

/*
 * Fetches the next children of the deepest level, in name order, after the
 * one returned last: a range of the (user, parent, name) index, so a folder
 * of a million entries is read a batch at a time, never whole.
 */
static int fetch(struct ferry_meta *m, struct ferry_meta_cursor *c)
{
    static const char sql_first[] = "SELECT " FERRY_META_NODE_COLS " FROM nodes"
                                    " WHERE user_id = ?1 AND parent_id = ?2"
                                    " ORDER BY name LIMIT " STR(CURSOR_BATCH);
    static const char sql_after[] = "SELECT " FERRY_META_NODE_COLS " FROM nodes"
                                    " WHERE user_id = ?1 AND parent_id = ?2 AND name > ?3"
                                    " ORDER BY name LIMIT " STR(CURSOR_BATCH);
    struct level *l = &c->lv[c->depth - 1];
    sqlite3_stmt *st = ferry_meta_stmt(m, l->started ? sql_after : sql_first);
    int rc;

    c->nb = c->ib = 0;
    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, c->uid);
    sqlite3_bind_int64(st, 2, l->dir);
    if (l->started)
        sqlite3_bind_text(st, 3, l->last, -1, SQLITE_STATIC);
    while (c->nb < CURSOR_BATCH && (rc = sqlite3_step(st)) == SQLITE_ROW)
        ferry_meta_read_node(st, &c->batch[c->nb++]);
    if (c->nb < CURSOR_BATCH && rc != SQLITE_DONE) {
        sqlite3_reset(st);
        c->nb = 0;
        return ferry_meta_sqlrc(m, rc);
    }
    sqlite3_reset(st);
    return 0;
}

int ferry_sqlite_cursor_next(struct ferry_meta *m, struct ferry_meta_cursor *c, const char **rel,
                             struct ferry_node *out)
{
    struct ferry_node *n;
    struct level *l;
    size_t len, nlen, sep;
    int rc;

    *rel = NULL;
    for (;;) {
        if (c->depth == 0)
            return 0;
        if (c->ib == c->nb) {
            if ((rc = fetch(m, c)) != 0)
                return rc;
            if (c->nb == 0) {
                /* This folder is done: on with its parent, after the folder's name. */
                c->depth--;
                continue;
            }
        }
        break;
    }
    l = &c->lv[c->depth - 1];
    n = &c->batch[c->ib++];
    /* A name read back from a row fits its buffer (FERRY_NAME_MAX); so does last. */
    nlen = strlen(n->name);
    memcpy(l->last, n->name, nlen + 1);
    l->started = 1;
    /* path[0, plen) is this level's prefix; the entry's path replaces what follows. */
    sep = l->plen > 0;
    if (l->plen + sep + nlen >= sizeof(c->path))
        return FERRY_ETOOBIG;
    if (sep)
        c->path[l->plen] = '/';
    memcpy(c->path + l->plen + sep, n->name, nlen + 1);
    len = l->plen + sep + nlen;
    *out = *n;
    *rel = c->path;
    if (c->recursive && n->is_dir) {
        /* As ferry_meta_list: a tree deeper than paths may be is refused. */
        if (c->depth > FERRY_PATH_DEPTH_MAX)
            return FERRY_ETOOBIG;
        /* The rest of this batch is fetched again after the folder's name, on return. */
        c->lv[c->depth] = (struct level){.dir = n->id, .plen = len};
        c->depth++;
        c->nb = c->ib = 0;
    }
    return 1;
}
