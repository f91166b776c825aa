/* Internals of the metadata store shared by its source files. */
#ifndef FERRY_META_INT_H
#define FERRY_META_INT_H

#include <sqlite3.h>

#include "ferry/store.h"

#define STMT_CACHE 96

struct ferry_meta {
    sqlite3 *db;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    /*
     * The directory the last file went into: uploads of a tree arrive
     * folder by folder, so most lookups of a parent repeat the previous
     * one. Dropped by anything that could remove, move or undo a directory.
     */
    int dc_valid;
    /* Read transactions open: nested ones join the outermost's snapshot. */
    int read_depth;
    int64_t dc_uid;
    struct ferry_node dc_node;
    char dc_path[FERRY_PATH_MAX + 1];
};

/* Maps SQLite results onto ferry codes. */
int ferry_meta_sqlrc(struct ferry_meta *m, int rc);
/* Steps a bound statement once and resets it: 1 a row, 0 none, or an error. */
int ferry_meta_row_exists(struct ferry_meta *m, sqlite3_stmt *st);
/* Returns a reset, cached prepared statement for a static SQL string. */
sqlite3_stmt *ferry_meta_stmt(struct ferry_meta *m, const char *sql);
/* Steps a statement that returns no row. */
int ferry_meta_step(struct ferry_meta *m, sqlite3_stmt *st);
/* The columns of a node, in the order ferry_meta_read_node reads them. */
#define FERRY_META_NODE_COLS "id, parent_id, is_dir, exec, size, mtime, smtime, name, cid"
/* Fills n from a row of FERRY_META_NODE_COLS. */
void ferry_meta_read_node(sqlite3_stmt *st, struct ferry_node *n);

#endif
