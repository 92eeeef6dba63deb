#!/usr/bin/env bash
# Gearman from the shell with the `polygear` CLI (a drop-in for the C `gearman`
# tool): any command becomes a worker, any pipe a client.
#
# Run: bash pipeline.sh HOST:PORT [DIR]
#   DIR (default: a temporary folder) receives app.log and collected.log.
#   POLYGEAR=/path/to/polygear picks the binary (default: the one on PATH).
set -eu # (no pipefail: stopping `tail -f` ends its pipe with SIGTERM on purpose)
server=${1:-127.0.0.1:4730}
host=${server%:*} port=${server##*:}
polygear=${POLYGEAR:-polygear}
dir=${2:-$(mktemp -d)}
mkdir -p "$dir"
applog=$dir/app.log collected=$dir/collected.log
: >"$applog"
: >"$collected"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
gear=("$polygear" -h "$host" -p "$port") # the command and its server options
# wait_until SECONDS COMMAND...: poll until COMMAND succeeds
wait_until() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < end)) || { echo "timed out waiting for: $*" >&2; exit 1; }
    sleep 0.1
  done
}
has_workers() { "$polygear" admin -h "$host" -p "$port" status | awk -v f="$1" '$1 == f && $4 > 0 { ok = 1 } END { exit !ok }'; }

echo "1. Ship a log to a central logger: tail -f app.log | polygear -n -f logger"
# The worker: each job's data is piped to the command after `--`; this one
# appends it to collected.log (a real one could write to syslog or a database).
"${gear[@]}" -w -f logger -- sh -c 'cat >>"$1"' sh "$collected" &
pids+=($!)
wait_until 10 has_workers logger
# The client: -n makes every line of stdin its own job, submitted as soon as
# the line arrives, so the log streams to the worker while tail keeps running.
tail -n +1 -f "$applog" | "${gear[@]}" -n -f logger >/dev/null &
client_pid=$! tail_pid=$(jobs -p %%) # $! is the last command of the pipe, jobs -p the first
pids+=("$tail_pid" "$client_pid")
for event in "user alice logged in" "user bob logged in" "disk /var 91% full" "user alice logged out"; do
  echo "$(date +%T) app: $event" >>"$applog" # the application writes its log
  sleep 0.1
done
wait_until 10 test "$(wc -l <"$collected")" -ge 4
echo "   the logger worker collected $(wc -l <"$collected") lines while tail was still following app.log:"
sed 's/^/     /' "$collected"
kill "$tail_pid"   # end of the input: the client finishes its jobs and exits
wait "$client_pid" # the pipe's status is the client's

echo "2. A command as a function: polygear -w -f wc -- wc -l"
"${gear[@]}" -w -f wc -- wc -l &
pids+=($!)
wait_until 10 has_workers wc
# Without -n all of stdin is one job: the worker's `wc -l` counts its lines.
count=$(ls / | "${gear[@]}" -f wc)
echo "   ls / | polygear -f wc  ->  $count entries (ls / | wc -l here says $(ls / | wc -l))"
echo "   (app.log and collected.log are in $dir)"
