#!/usr/bin/env bash
# The client's state store (issue 10 item 4, ferry/state.h): one handle per
# process whatever the command does (a put and a get of a tree open
# state.db once each), a file written before the store had a version is
# migrated in place with its session kept, and one written by a newer ferry
# is refused with a clear message and left alone.
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 (the command-line shell) is required"
command -v strace >/dev/null || fail "strace is required (scripts/install-deps.sh installs it)"

start_server --signup open
new_client alice
signup alice 'state store password'
DB=$XDG_STATE_HOME/ferry/state.db
L=$WORK/tree
mkdir -p "$L/sub"
for i in 1 2 3 4 5; do head -c $((i * 40000)) /dev/urandom >"$L/sub/f$i"; done
printf 'small\n' >"$L/s.txt"

# opens_of CMD...: runs ferry under strace; sets OPENS to the successful opens of state.db.
opens_of() {
    CMD_N=$((CMD_N + 1))
    LAST_CMD="ferry $* (under strace)"
    RC=0
    # LeakSanitizer cannot run under ptrace; the other tests look for leaks.
    ASAN_OPTIONS=detect_leaks=0 timeout -k 5 180 strace -f -qq -e trace=open,openat \
        -o "$WORK/strace$CMD_N" "$FERRY_BIN" "$@" >"$WORK/cmd$CMD_N.out" \
        2>"$WORK/cmd$CMD_N.err" || RC=$?
    OUT=$(<"$WORK/cmd$CMD_N.out") ERR=$(<"$WORK/cmd$CMD_N.err")
    assert_sanitizer_clean "$WORK/cmd$CMD_N.err" "$LAST_CMD"
    OPENS=$(grep -c "/state\.db\", [^)]*) = [0-9]" "$WORK/strace$CMD_N" || true)
}

opens_of put -q -r "$L" /t
assert_rc 0
assert_eq "$OPENS" 1 "opens of state.db by a put of a tree"
opens_of get -q -r /t "$WORK/got"
assert_rc 0
assert_eq "$OPENS" 1 "opens of state.db by a get of a tree"
check assert_same_file "$L/sub/f5" "$WORK/got/sub/f5"
assert_eq "$(sqlite3 "$DB" 'PRAGMA user_version')" 1 "schema of a new state store"

# A store from before the schema had a version: tasks in their first form, resume records
# without the part file's identity. The session survives; the untrusted records go.
sqlite3 "$DB" "PRAGMA user_version = 0; DROP TABLE tasks; DROP TABLE partials;
    CREATE TABLE tasks(id INTEGER PRIMARY KEY, server TEXT NOT NULL, user TEXT NOT NULL,
        cwd TEXT NOT NULL, argv TEXT NOT NULL, started INTEGER NOT NULL) STRICT;
    CREATE TABLE partials(dev INTEGER NOT NULL, ino INTEGER NOT NULL, name TEXT NOT NULL,
        cid TEXT NOT NULL, durable INTEGER NOT NULL, PRIMARY KEY(dev, ino, name)) STRICT;
    INSERT INTO partials VALUES(1, 2, '.ferry-x.part', 'sha256:c', 4096);"
fy_ok ls /t
assert_out_contains "sub"
assert_eq "$(sqlite3 "$DB" 'PRAGMA user_version')" 1 "schema after the migration"
assert_eq "$(sqlite3 "$DB" 'SELECT COUNT(*) FROM partials')" 0 "resume records without identity"
assert_eq "$(sqlite3 "$DB" "SELECT COUNT(*) FROM pragma_table_info('tasks') WHERE name = 'dest_dir'")" \
    1 "the tasks table's later columns"
fy_ok get -q /t/s.txt "$WORK/s.txt"
check assert_same_file "$L/s.txt" "$WORK/s.txt"

# A newer ferry's store: refused, named, untouched.
sqlite3 "$DB" 'PRAGMA user_version = 99'
fy ls /t
assert_rc 1
assert_err_contains "written by a newer ferry"
assert_eq "$(sqlite3 "$DB" 'PRAGMA user_version')" 99 "the newer store's schema"
