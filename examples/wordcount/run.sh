#!/usr/bin/env bash
# The polyglot demo: one polygeard (with its SQLite queue), workers in Python,
# Ruby and the shell, a client in Node. Expects polygear installed where PYTHON, NODE
# (with NODE_PATH) and RUBY (with GEM_HOME) find it, and the binaries in POLYGEAR_BIN:
# scripts/demo.sh installs them into target/envs/demo and sets these.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${POLYGEAR_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}
python=${PYTHON:-python3}
node=${NODE:-node}
ruby=${RUBY:-ruby}
digests=${DIGESTS:-8}

tmp=$(mktemp -d)
pids=()
server_pid=""
cleanup() {
  for p in "${pids[@]}" $server_pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
say() { printf '\n%s%s%s\n' "$bold" "$*" "$plain"; }
t0=$SECONDS
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
db=$tmp/queue.sqlite3

start_server() {
  "$bin/polygeard" -L 127.0.0.1 -p "$port" --libsqlite3-db "$db" -l none &
  server_pid=$!
  disown "$server_pid" # no job-control chatter when the demo kills it
  for _ in $(seq 100); do
    "$bin/polygear" admin -h 127.0.0.1 -p "$port" version >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "polygeard did not start" >&2
  exit 1
}
admin() { "$bin/polygear" admin -h 127.0.0.1 -p "$port" "$@"; }
# prints the TOTAL column of `status` for a function (0 if absent)
queued() { admin status | awk -v f="$1" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }'; }
workers_of() { admin status | awk -v f="$1" '$1 == f { print $4; found = 1 } END { if (!found) print 0 }'; }
wait_for() { # wait_for DESCRIPTION SHELL-CONDITION: poll for up to 30 s
  local what=$1 cond=$2
  for _ in $(seq 300); do eval "$cond" && return; sleep 0.1; done
  echo "timed out waiting for $what" >&2
  exit 1
}

printf '%spolygear demo: one job server, four languages%s\n' "$bold" "$plain"
printf '==============================================\n'

say "1. polygeard starts on $addr, with its SQLite queue"
start_server
echo "   polygeard $(admin version), pid $(admin getpid), queue $db"

say "2. Workers join: Python and Ruby count words, the polygear CLI merges"
"$python" "$here/count_words.py" "$addr" & pids+=($!)
"$ruby" "$here/count_words.rb" "$addr" & pids+=($!)
"$bin/polygear" -w -h 127.0.0.1 -p "$port" -f merge -- sh "$here/merge.sh" & pids+=($!)
wait_for "2 count_words workers" '[ "$(workers_of count_words)" -ge 2 ]'
wait_for "the merge worker" '[ "$(workers_of merge)" -ge 1 ]'
echo "   polygear admin status (function, jobs, running, workers):"
admin status | sed 's/^/     /'

say "3. A Node client counts the words of a story (map, then reduce)"
"$node" "$here/client.js" wordcount "$addr" "$here/text.txt"

say "4. Background jobs survive a crash"
"$node" "$here/client.js" digests "$addr" "$digests"
echo "   No send_digest worker is running yet: the $(queued send_digest) jobs wait in the queue."
kill -9 "$server_pid"
while kill -0 "$server_pid" 2>/dev/null; do sleep 0.05; done
echo "   kill -9 polygeard (pid $server_pid): the server is gone without a goodbye."
start_server
left=$(queued send_digest)
echo "   polygeard restarted on the same database: $left send_digest jobs are still queued."
"$python" "$here/send_digest.py" "$addr" & pids+=($!)
wait_for "the queue to drain" '[ "$(queued send_digest)" -eq 0 ]'
echo "   A Python worker drained the queue: $left of $digests digests sent, $((digests - left)) lost."

say "Done in $((SECONDS - t0)) s. Everything above ran on one polygeard; clients and workers never knew each other's language."
[ "$left" -eq "$digests" ]
