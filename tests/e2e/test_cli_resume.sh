#!/usr/bin/env bash
# Issue 9, item 19: `ferry resume` and its task list (R-CLI-10).
# - The arguments are recorded byte for byte: before, an argument that was
#   not UTF-8 was dropped (JSON cannot hold it), so `resume -l` showed a put
#   without its file and running it printed put's usage or did something else.
# - The same command run again takes over its unfinished record instead of
#   adding another, and its end takes it off the list: before, a task
#   finished by hand stayed listed and `ferry resume` ran it once more.
# - `ferry resume --forget ID...|--all` drops tasks without running them.
source "$(dirname "$0")/lib.sh"

need_cutrelay

start_server --signup open
new_client alice
signup alice 'resume test password'
STATE_DB=$XDG_STATE_HOME/ferry/state.db
L=$WORK/local
mkdir -p "$L"
cd "$L"

# A relay that drops every connection at once: the server is unreachable, a
# put or get ends interrupted (exit 4) and stays on the task list.
start_relay --every --cut-c2s 0
point_session_at "$ADDR" # the relay is used only where a test points the session at it
task_lines() { fy_ok resume --list; grep '^[0-9]' <<<"$OUT" || true; }

printf 'one\n' >one.txt
printf 'bad name\n' >$'n\xffme.txt'

# ---------------------------------------------------------------- arguments kept whole
point_session_at "$RADDR"
fy put --retry-for 0 $'n\xffme.txt' one.txt /dst/
assert_rc 4 "put with the server unreachable"
lines=$(task_lines)
[[ "$(wc -l <<<"$lines")" == 1 ]] || fail "expected one task, got: $lines"
assert_contains "$lines" 'ferry put --retry-for 0 n\xffme.txt one.txt /dst/' "resume --list"
id=$(awk '{print $1}' <<<"$lines")
# Running it (the server reachable again) runs exactly that command: one.txt
# goes up, the name that cannot travel is refused by name (exit 3, not usage).
point_session_at "$ADDR"
sqlite3 "$STATE_DB" "UPDATE tasks SET server = '$ADDR'"
fy resume "$id"
assert_rc 3 "resume of the put with a non-UTF-8 argument"
assert_err_contains 'n\xffme.txt: not uploaded: the name is not valid UTF-8'
fy_ok ls /dst
assert_out_line 'one.txt'
[[ -z "$(task_lines)" ]] || fail "the resumed task is still listed: $OUT"

# ---------------------------------------------------------------- a re-run takes over its record
point_session_at "$RADDR"
fy put --retry-for 0 one.txt /again.txt
assert_rc 4
fy put --retry-for 0 one.txt /again.txt
assert_rc 4
[[ "$(task_lines | wc -l)" == 1 ]] || fail "two interrupted runs of one command left two tasks: $OUT"
point_session_at "$ADDR"
sqlite3 "$STATE_DB" "UPDATE tasks SET server = '$ADDR'"
# Finished by hand: off the list, and resume has nothing left to run.
fy_ok put --retry-for 0 one.txt /again.txt
[[ -z "$(task_lines)" ]] || fail "the task finished by hand is still listed: $OUT"
fy_ok resume
assert_out_line 'nothing to resume'
# Another folder is another command.
point_session_at "$RADDR"
fy put --retry-for 0 one.txt /again.txt
assert_rc 4
mkdir -p sub
cp one.txt sub/
cd sub
fy put --retry-for 0 one.txt /again.txt
assert_rc 4
cd ..
[[ "$(task_lines | wc -l)" == 2 ]] || fail "the same arguments in two folders are two tasks: $OUT"

# ---------------------------------------------------------------- --forget
fy get --retry-for 0 /dst/one.txt got.txt
assert_rc 4
mapfile -t ids < <(task_lines | awk '{print $1}')
[[ "${#ids[@]}" == 3 ]] || fail "expected three tasks, got: ${ids[*]}"
fy resume --forget "${ids[0]}"
assert_rc 0 "resume --forget ${ids[0]}"
assert_out_line "forgot task ${ids[0]}"
mapfile -t left < <(task_lines | awk '{print $1}')
assert_eq "${left[*]}" "${ids[1]} ${ids[2]}" "tasks left after --forget ${ids[0]}"
fy resume --forget 99999
assert_rc 1 "resume --forget of an unknown task"
assert_err_contains 'no task 99999'
fy resume --forget
assert_rc 2 "resume --forget without IDs or --all"
fy resume --all
assert_rc 2 "resume --all without --forget"
fy resume --forget --all
assert_rc 0
[[ -z "$(task_lines)" ]] || fail "tasks left after --forget --all: $OUT"
assert_no_file got.txt

# ---------------------------------------------------------------- every task runs
# Issue 10: resume runs its tasks in its own process, one after the other;
# each parses its own command line, and none may hide the next.
point_session_at "$RADDR"
fy put --retry-for 0 one.txt /r1.txt
assert_rc 4
mkdir -p other
cd other
fy get --retry-for 0 /dst/one.txt got2.txt
assert_rc 4
cd ..
[[ "$(task_lines | wc -l)" == 2 ]] || fail "expected two tasks to resume: $OUT"
point_session_at "$ADDR"
fy_ok resume
[[ -z "$(task_lines)" ]] || fail "tasks left after resume ran them all: $OUT"
assert_same_file one.txt other/got2.txt
fy_ok get /r1.txt r1.back
assert_same_file one.txt r1.back

stop_server
