#!/usr/bin/env bash
# `make run`: starts ferry serve in the foreground with embedded defaults and
# tells the user what to type next.
set -euo pipefail
bin=$1 data=$2 listen=$3
# The data holds password hashes and every user's files: for its owner only
# (R-ADMIN-1). ferry serve would create it so itself; made here, it is the same.
(umask 077 && mkdir -p "$data")
cat <<TXT

  ferry serve is starting with data in $data
  (SQLite metadata + content blobs), sign-up open, on $listen.

  When it prints "listening on HOST:PORT id ID", open another terminal and type:

    export PATH="$(cd "$(dirname "$bin")" && pwd):\$PATH"
    ferry signup --server ID@HOST:PORT --user alice
    ferry put -r ~/Documents /docs
    ferry ls -l /docs
    ferry get -r /docs ./restored

  (use the ID and HOST:PORT from the line below). Stop the server with Ctrl-C.

TXT
exec "$bin" serve --data "$data" --listen "$listen" --signup open
