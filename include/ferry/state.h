/*
 * The client's state store (issue 10 item 4): the one SQLite file in which
 * a device keeps its session, the servers it pinned, its local index of
 * chunk lists, its unfinished tasks and the records of its part files.
 * A process opens it once and shares the handle: closing a second handle
 * on the same file would drop the POSIX locks of the first. Opening brings
 * a file written by an older ferry to this build's schema, in one
 * transaction, and refuses one written by a newer ferry.
 *
 * Owner: the caller owns the struct from ferry_state_open until
 * ferry_state_close; the sqlite3 handle is borrowed from it.
 */
#ifndef FERRY_STATE_H
#define FERRY_STATE_H

#include <stddef.h>

struct sqlite3;
struct ferry_state;

/* The schema this build writes (PRAGMA user_version). */
#define FERRY_STATE_SCHEMA 1

/*
 * Opens (creating it 0600 if new) the state file at path, with WAL, FULL
 * synchronous commits and a busy timeout, and migrates it. Returns 0;
 * -ELOOP when something other than a regular file is at path; FERRY_EVERSION
 * when a newer ferry wrote it; FERRY_EINTERNAL with SQLite's reason in
 * why (when given) otherwise.
 */
int ferry_state_open(const char *path, struct ferry_state **out, char *why, size_t whycap);
/* The SQLite handle, for the modules that keep their records there. */
struct sqlite3 *ferry_state_db(const struct ferry_state *st);
/*
 * The handle is shared by the threads of a process (serialized mode), and
 * SQLite makes each call whole but not a span of calls: a transaction
 * opened with BEGIN, or a step run under a changed PRAGMA, would take in
 * another thread's statements or lend them its setting. Such a span runs
 * between ferry_state_enter and ferry_state_leave on the handle (spans
 * nest). Never on a loop thread: it waits for the span of another thread.
 */
void ferry_state_enter(struct sqlite3 *db);
void ferry_state_leave(struct sqlite3 *db);
void ferry_state_close(struct ferry_state *st);

#endif
