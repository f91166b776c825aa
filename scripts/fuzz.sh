#!/usr/bin/env bash
# Runs every libFuzzer target for a while on a scratch copy of its corpus.
# usage: scripts/fuzz.sh BUILD_DIR SECONDS
set -euo pipefail
build=$1 secs=$2
root=$(cd "$(dirname "$0")/.." && pwd)
for bin in "$build"/tests/fuzz_*; do
    name=$(basename "$bin")
    corpus=${name#fuzz_}
    work=$(mktemp -d)
    cp -r "$root/tests/fuzz/corpus/$corpus/." "$work/"
    dict="$root/tests/fuzz/$corpus.dict"
    echo "fuzz: $name for ${secs}s"
    "$bin" -max_total_time="$secs" -max_len=40000 -timeout=2 \
        ${dict:+$( [ -f "$dict" ] && echo "-dict=$dict")} "$work" 2>&1 | tail -3
    rm -rf "$work"
done
