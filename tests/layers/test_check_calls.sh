#!/usr/bin/env bash
# scripts/check-calls.py against planted object files: a chain passes, two
# files calling each other fail with both named, a known call lets the
# circle pass, and a known call that no longer exists is reported. Without
# this, a check that had stopped seeing calls would pass forever.
set -u
CHECK=${1:?usage: test_check_calls.sh scripts/check-calls.py}
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || CC=gcc
TMP=$(mktemp -d /tmp/ferry-test-calls.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0

obj() { # NAME SOURCE
    printf '%s\n' "$2" >"$TMP/$1.c"
    "$CC" -c -o "$TMP/o/$1.c.o" "$TMP/$1.c" || {
        echo "FAIL: cannot compile $1.c"
        exit 1
    }
}
expect() { # WANT_RC PATTERN ARGS...
    local want=$1 pat=$2 out rc
    shift 2
    out=$(python3 "$CHECK" "$@" 2>&1)
    rc=$?
    if [[ $rc != "$want" ]] || ! grep -q -- "$pat" <<<"$out"; then
        echo "FAIL: check-calls $* gave $rc (want $want, output matching '$pat'):"
        printf '%s\n' "$out"
        fails=$((fails + 1))
    fi
}

mkdir -p "$TMP/o"
obj low 'int low(void) { return 1; }'
obj mid 'int low(void); int mid(void) { return low() + 1; }'
obj top 'int mid(void); int top(void) { return mid() + 1; }'
expect 0 'ok (3 files, 2 calls' "$TMP/o"

# low now calls top: low -> top -> mid -> low.
obj low 'int top(void); int low(void) { return 1; } int up(void) { return top(); }'
expect 1 'in a circle: low, mid, top' "$TMP/o"

printf '# tolerated\nlow -> top\n' >"$TMP/known"
expect 0 'ok (3 files, 3 calls, 1 known)' "$TMP/o" --known "$TMP/known"

printf 'low -> top\ntop -> low\n' >"$TMP/known"
expect 0 'top -> low is gone' "$TMP/o" --known "$TMP/known"

rm -f "$TMP/o"/*.o
expect 1 'no object files' "$TMP/o"

if ((fails)); then
    echo "$fails check(s) failed"
    exit 1
fi
echo "check-calls: every planted case gave the expected answer"
