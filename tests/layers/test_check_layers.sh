#!/usr/bin/env bash
# scripts/check-layers.py against small planted trees: a clean one passes,
# and each rule, broken once, fails with the file and line named. Without
# this, a check that had stopped finding anything would pass forever.
set -u
CHECK=${1:?usage: test_check_layers.sh scripts/check-layers.py}
TMP=$(mktemp -d /tmp/ferry-test-layers.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0

# A minimal tree that keeps every rule.
clean_tree() {
    rm -rf "$TMP/t"
    mkdir -p "$TMP/t/include/ferry" "$TMP/t/src/lib/core" "$TMP/t/src/lib/wire" \
        "$TMP/t/src/lib/store" "$TMP/t/src/server" "$TMP/t/src/cli" "$TMP/t/tests/unit"
    printf '#include <stddef.h>\n' >"$TMP/t/include/ferry/core.h"
    printf '#include "ferry/core.h"\n' >"$TMP/t/include/ferry/wire.h"
    printf '#include "ferry/core.h"\n' >"$TMP/t/include/ferry/store.h"
    printf '#include "ferry/core.h"\nint one(void) { return 1; }\n' >"$TMP/t/src/lib/core/a.c"
    printf '#include "ferry/wire.h"\nint two(const char *p) { return p[0]; }\n' \
        >"$TMP/t/src/lib/wire/w.c"
    printf '#include "ferry/store.h"\n#include "ferry/wire.h"\n' >"$TMP/t/src/lib/store/s.c"
    printf '#include "ferry/store.h"\n' >"$TMP/t/src/server/serve.h"
    printf '#include "serve.h"\n' >"$TMP/t/src/server/serve.c"
    printf '#include "ferry/core.h"\n' >"$TMP/t/src/cli/cli.h"
    printf '#include "cli.h"\n#include "server/serve.h"\n' >"$TMP/t/src/cli/main.c"
    printf '#include "cli.h"\n' >"$TMP/t/src/cli/put.c"
    printf '#include "ferry/core.h"\nint main(void) { return 0; }\n' >"$TMP/t/tests/unit/test_a.c"
}

# expect_fail WHAT FILE:LINE: the check must exit 1 and name FILE:LINE.
expect_fail() {
    local out rc
    out=$(python3 "$CHECK" "$TMP/t" 2>&1)
    rc=$?
    if [ "$rc" -ne 1 ] || ! grep -qF -- "$2:" <<<"$out"; then
        echo "FAIL: $1: want exit 1 naming $2, got $rc:"
        echo "$out"
        fails=$((fails + 1))
    else
        echo "ok: $1 -> $(grep -F -- "$2:" <<<"$out" | head -1)"
    fi
}

clean_tree
if ! out=$(python3 "$CHECK" "$TMP/t" 2>&1); then
    echo "FAIL: the clean tree does not pass:"
    echo "$out"
    fails=$((fails + 1))
else
    echo "ok: clean tree passes (cli/main.c may include the server)"
fi

clean_tree
printf '#include "ferry/core.h"\n#include "ferry/store.h"\n' >"$TMP/t/src/lib/core/a.c"
expect_fail "core includes a store header" "src/lib/core/a.c:2"

clean_tree
printf '#include "ferry/core.h"\n#include "ferry/store.h"\n' >"$TMP/t/include/ferry/wire.h"
expect_fail "a public header includes one above it" "include/ferry/wire.h:2"

clean_tree
printf '#include "cli.h"\n#include "../server/serve.h"\n' >"$TMP/t/src/cli/put.c"
expect_fail "cli (not main.c) includes the server" "src/cli/put.c:2"

clean_tree
printf '#include "serve.h"\n\n#include "cli/cli.h"\n' >"$TMP/t/src/server/serve.c"
expect_fail "the server includes the cli" "src/server/serve.c:3"

clean_tree
printf '#include "ferry/nosuch.h"\n' >"$TMP/t/src/lib/store/s.c"
expect_fail "a header of no layer" "src/lib/store/s.c:1"

clean_tree
printf '#include <stdlib.h>\n#include "ferry/wire.h"\n/* malloc(1) in a comment is fine */\n'`
      `'void *f(void) { return malloc(16); }\n' >"$TMP/t/src/lib/wire/w.c"
expect_fail "wire allocates" "src/lib/wire/w.c:4"

clean_tree
printf '#include <signal.h>\n#include "ferry/core.h"\nvoid f(void) { signal(SIGPIPE, SIG_IGN); }\n' \
    >"$TMP/t/src/lib/core/a.c"
expect_fail "the library ignores SIGPIPE" "src/lib/core/a.c:3"

clean_tree
printf '#include "ferry/core.h"\n#include "cli/put.c"\n' >"$TMP/t/tests/unit/test_a.c"
expect_fail "a test includes a .c file" "tests/unit/test_a.c:2"

if [ "$fails" -ne 0 ]; then
    echo "$fails case(s) failed"
    exit 1
fi
echo "all cases passed"
