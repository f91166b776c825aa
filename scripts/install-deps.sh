#!/usr/bin/env bash
# Installs the Debian packages ferry needs to build, test and benchmark.
# systemd, man-db and groff-base are for the tests of `make install`: the
# unit is checked with systemd-analyze, the man pages rendered with man -l.
# Idempotent: when everything is present it only runs dpkg-query and exits.
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev
    libuv1-dev libssl-dev libsodium-dev libjansson-dev libsqlite3-dev libcmocka-dev
    sqlite3 openssl python3 iproute2 procps strace
    systemd man-db groff-base)
bench_pkgs=(rsync openssh-server openssh-client netcat-openbsd hyperfine)

want=("${build_pkgs[@]}")
if [ "${1:-}" = "--bench" ]; then
    want+=("${bench_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
