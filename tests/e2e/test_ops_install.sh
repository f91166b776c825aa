#!/usr/bin/env bash
# Issue 9, item 24: install like a real daemon. `make install` lays out the
# binary, man pages, completion, systemd unit, its user and a sample config
# (PREFIX, DESTDIR); the unit passes systemd-analyze verify and is hardened;
# both man pages render without warnings and document every command and
# flag; the completion completes; the sample config has every key and runs.
source "$(dirname "$0")/lib.sh"

SRC=$(cd "$FERRY_TESTS/.." && pwd)
BUILD=${FERRY_BUILD:-$SRC/build/test}
[[ -f "$BUILD/cmake_install.cmake" ]] || fail "no configured build in $BUILD (FERRY_BUILD)"
for tool in make cmake man systemd-analyze; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run scripts/install-deps.sh"
done

# The Makefile's own recipe, on the build under test: -o build-release keeps
# make from building a release tree first.
make_install() { # ARGS...
    make -s -C "$SRC" -o build-release install INSTALL_BUILD="$BUILD" "$@" \
        >"$WORK/install.out" 2>"$WORK/install.err" ||
        fail "make install $*: $(cat "$WORK/install.err")"
}

# ---------------------------------------------------------------- the layout
STAGE=$WORK/stage
make_install DESTDIR="$STAGE" PREFIX=/usr/local
expected=(
    usr/local/bin/ferry
    usr/local/etc/ferry/serve.conf
    usr/local/lib/systemd/system/ferry.service
    usr/local/lib/sysusers.d/ferry.conf
    usr/local/share/bash-completion/completions/ferry
    usr/local/share/doc/ferry/serve.conf.example
    usr/local/share/man/man1/ferry-serve.1
    usr/local/share/man/man1/ferry.1
)
got=$(cd "$STAGE" && find . -type f | sed 's|^\./||' | sort)
assert_eq "$got" "$(printf '%s\n' "${expected[@]}")" "files laid out by make install DESTDIR"
[[ -x "$STAGE/usr/local/bin/ferry" ]] || fail "the installed ferry is not executable"
unit=$STAGE/usr/local/lib/systemd/system/ferry.service
assert_contains "$(cat "$unit")" \
    "ExecStart=/usr/local/bin/ferry serve --config /usr/local/etc/ferry/serve.conf" "the unit"
# An operator's config survives a second install.
echo '# mine' >>"$STAGE/usr/local/etc/ferry/serve.conf"
make_install DESTDIR="$STAGE" PREFIX=/usr/local
assert_contains "$(tail -n 1 "$STAGE/usr/local/etc/ferry/serve.conf")" "# mine" "a reinstalled config"
# PREFIX=/usr keeps its configuration in /etc.
make_install DESTDIR="$WORK/stage-usr" PREFIX=/usr
[[ -f "$WORK/stage-usr/etc/ferry/serve.conf" ]] || fail "PREFIX=/usr: no /etc/ferry/serve.conf"
assert_contains "$(cat "$WORK/stage-usr/usr/lib/systemd/system/ferry.service")" \
    "ExecStart=/usr/bin/ferry serve --config /etc/ferry/serve.conf" "the unit of PREFIX=/usr"

# ---------------------------------------------------------------- the unit
# Installed for real beneath a prefix, so that its ExecStart and its man page exist.
P=$WORK/prefix
make_install PREFIX="$P"
export MANPATH=$P/share/man
out=$(systemd-analyze verify "$P/lib/systemd/system/ferry.service" 2>&1) ||
    fail "systemd-analyze verify failed: $out"
# verify exits 0 even for unknown keys and bad values: it must say nothing.
[[ -z "$out" ]] || fail "systemd-analyze verify: $out"
unit_text=$(cat "$P/lib/systemd/system/ferry.service")
for want in Type=notify User=ferry StateDirectory=ferry StateDirectoryMode=0700 \
    ProtectSystem=strict NoNewPrivileges=yes UMask=0077 LimitNOFILE=; do
    assert_contains "$unit_text" "$want" "the unit"
done
# Hardened: systemd's own exposure score (0 best, 10 worst) stays at 2.0 or under.
out=$(systemd-analyze security --offline=yes --threshold=20 "$P/lib/systemd/system/ferry.service" 2>&1) ||
    fail "systemd-analyze security: exposure over 2.0: $(tail -n 3 <<<"$out")"
log "$(grep 'Overall exposure' <<<"$out")"
assert_contains "$(cat "$P/lib/sysusers.d/ferry.conf")" "u ferry - " "the sysusers entry"

# ---------------------------------------------------------------- the man pages
for page in ferry.1 ferry-serve.1; do
    err=$(MANWIDTH=80 man -l --warnings=w "$P/share/man/man1/$page" 2>&1 >"$WORK/$page.txt") ||
        fail "man -l $page failed: $err"
    [[ -z "$err" ]] || fail "man -l --warnings $page: $err"
    [[ "$(wc -l <"$WORK/$page.txt")" -gt 50 ]] || fail "$page renders to almost nothing"
done
# Every flag of ferry serve, every admin command, and every ferry command, documented.
serve_page=$(sed 's/\xe2\x80\x90/-/g' "$WORK/ferry-serve.1.txt")
while read -r flag; do
    assert_contains "$serve_page" "$flag" "ferry-serve(1)"
done < <("$FERRY_BIN" serve --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
for cmd in "user add" "user list" "user disable" "user enable" "user passwd" "device list" \
    "device revoke"; do
    assert_contains "$serve_page" "$cmd" "ferry-serve(1)"
done
ferry_page=$(cat "$WORK/ferry.1.txt")
while read -r cmd; do
    assert_contains "$ferry_page" "ferry $cmd" "ferry(1)"
done < <("$FERRY_BIN" --help | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }')

# ---------------------------------------------------------------- bash completion
# COMP_WORDS / COMP_CWORD as bash sets them, then the function complete -F names.
complete_words() { # WORDS... (the last is the word being completed)
    bash --norc --noprofile -c '
        source "$1"; shift
        spec=$(complete -p ferry) || exit 3
        [[ "$spec" == *"-F _ferry"* ]] || exit 4
        COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        _ferry
        printf "%s\n" "${COMPREPLY[@]}"' _ "$P/share/bash-completion/completions/ferry" \
        "$P/bin/ferry" "$@"
}
assert_completes() { # EXPECTED WORDS...
    local want=$1 out
    shift
    out=$(complete_words "$@") || fail "completing '$*' failed"
    grep -qxF -- "$want" <<<"$out" || fail "completing 'ferry $*': no '$want' in: $(tr '\n' ' ' <<<"$out")"
}
assert_completes serve ""
assert_completes whoami wh
assert_completes devices dev
assert_completes --max-conns serve --max-c
assert_completes --config serve --con
assert_completes closed serve --signup ""
assert_completes user serve ""
assert_completes passwd serve user ""
assert_completes revoke serve device r
assert_completes --password-stdin serve user add --pass
assert_completes --recursive put --rec
assert_completes revoke devices ""
out=$(complete_words se)
assert_eq "$out" "serve" "completing 'ferry se'"

# ---------------------------------------------------------------- the sample config
sample=$(cat "$P/share/doc/ferry/serve.conf.example")
while read -r key; do
    grep -qE "^(# )?$key = " <<<"$sample" || fail "serve.conf.example lacks the key $key"
done < <("$FERRY_BIN" serve --help | sed -nE 's/^ +(-[a-z], )? *--([a-z-]+).*/\2/p' |
    grep -vxE 'config|help')
# It runs as it is (its data and listen overridden for the test).
start_server --config "$P/etc/ferry/serve.conf"
stop_server
