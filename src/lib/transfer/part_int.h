/*
 * The part-file records' statements, shared inside transfer/: part.c keeps
 * the durable prefix of R-CHUNK-14, piece.c the chunk bitmap of R-CHUNK-16,
 * both keyed the same way in the state store.
 */
#ifndef FERRY_TRANSFER_PART_INT_H
#define FERRY_TRANSFER_PART_INT_H

struct ferry_state;
struct sqlite3_stmt;

/*
 * Prepares sql with ?1 ?2 ?3 bound to a part file's key (its folder's
 * identity and its name): 0, or FERRY_EINTERNAL (also for st NULL) with
 * *out NULL.
 */
int ferry__part_stmt(struct ferry_state *st, int dirfd, const char *part, const char *sql,
                     struct sqlite3_stmt **out);
/*
 * Runs a prepared INSERT of a resume record, committed without a sync of
 * its own (R-RECV-2). 0, or FERRY_EINTERNAL.
 */
int ferry__part_step_record(struct sqlite3_stmt *st);

#endif
