#!/usr/bin/env bash
# Runs the examples under examples/ end to end, so they never rot: reverse (every
# worker language with every client language), thumbnail, mailqueue and shell,
# all against one polygeard (memory queue) on a free loopback port. Lints the
# Python examples (ruff, mypy --strict) and syntax-checks the Node and Ruby ones.
# (examples/wordcount is the demo of scripts/demo.sh.)
#
# Uses the tests' environment (target/envs/test; scripts/lib.sh builds and installs what
# is missing or stale there): polygear in its venv (with mypy, ruff and Pillow), its Node
# app folder and its GEM_HOME; the polygear and polygeard binaries from cargo.
# Env: POLYGEAR_ENVS, POLYGEAR_BIN (dir with polygeard and polygear; default: cargo
# build into target/debug).
# Ends with the line `N passed, N failed`; exits 1 if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tag=test-examples
. scripts/lib.sh
ex="$root/examples"
log() { echo "test-examples: $*"; }
die() { log "$*" >&2; exit 1; }

# --- build / install what is missing ------------------------------------------
if [ -n "${POLYGEAR_BIN:-}" ]; then
  bin=$POLYGEAR_BIN
else
  log "cargo build -p polygear-cli -p polygear-server"
  cargo build -q -p polygear-cli -p polygear-server || die "cargo build failed"
  bin=$CARGO_TARGET_DIR/debug
fi
[ -x "$bin/polygeard" ] && [ -x "$bin/polygear" ] || die "no polygeard/polygear in $bin"

venv=$PG_TEST/venv
python="$venv/bin/python"
pg_test_python || die "could not install the Python package"
"$python" -c 'import mypy, ruff, PIL' 2>/dev/null || pg_venv "$venv" mypy ruff pillow ||
  die "pip install mypy ruff pillow failed"
pg_test_node || die "could not install the Node package"
export NODE_PATH=$PG_TEST/node/node_modules
pg_test_ruby || die "could not install the Ruby gem"
pg_gem_env "$PG_TEST/gems"

log "builds ready after ${SECONDS}s"
t0=$SECONDS

# --- bookkeeping: results, processes, cleanup ---------------------------------
tmp=$(mktemp -d)
passed=0 failed=0
failures=()
bg_pids=()
cleanup() {
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { passed=$((passed + 1)); echo "ok    $1"; }
fail() { # fail NAME LOGFILE...: print the logs
  failed=$((failed + 1)); failures+=("$1"); echo "FAIL  $1"
  shift
  for f in "$@"; do [ -f "$f" ] && sed 's/^/      | /' "$f" | tail -n 30; done
}
# start_bg NAME COMMAND...: a long-running process, its output in $tmp/NAME.log; sets $last_pid
start_bg() {
  local name=$1; shift
  "$@" >"$tmp/$name.log" 2>&1 &
  last_pid=$!
  bg_pids+=("$last_pid")
}
# stop PID: SIGTERM, then SIGKILL after 10 s
stop() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# run LOG COMMAND...: a foreground step with a deadline, output to LOG
run() { local out=$1; shift; timeout -k 5 60 "$@" >"$out" 2>&1; }

# --- the job server -------------------------------------------------------------
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
start_bg polygeard "$bin/polygeard" -L 127.0.0.1 -p "$port" -q builtin
admin() { timeout 10 "$bin/polygear" admin -h 127.0.0.1 -p "$port" "$@"; }
for _ in $(seq 100); do admin version >/dev/null 2>&1 && break; sleep 0.1; done
admin version >/dev/null 2>&1 || { cat "$tmp/polygeard.log"; die "polygeard did not start on $addr"; }
log "polygeard $(admin version) on $addr"
# workers_of FUNC: how many workers the server has for FUNC
workers_of() { admin status | awk -v f="$1" '$1 == f { n = $4 } END { print n + 0 }'; }
# wait_workers FUNC N: until the server has exactly N workers for FUNC (20 s at most)
wait_workers() {
  for _ in $(seq 200); do [ "$(workers_of "$1")" -eq "$2" ] && return 0; sleep 0.1; done
  return 1
}

# --- lint -------------------------------------------------------------------------
mine=(reverse thumbnail mailqueue shell)
py_files=() js_files=() rb_files=() sh_files=()
for d in "${mine[@]}"; do
  for f in "$ex/$d"/*; do
    case $f in
      *.py) py_files+=("$f") ;; *.js) js_files+=("$f") ;; *.rb) rb_files+=("$f") ;; *.sh) sh_files+=("$f") ;;
    esac
  done
done
cfg=(--config "$root/python/pyproject.toml")
if run "$tmp/ruff.log" "$venv/bin/ruff" check "${cfg[@]}" "${py_files[@]}" &&
  run "$tmp/ruff-format.log" "$venv/bin/ruff" format "${cfg[@]}" --check "${py_files[@]}"; then
  pass "ruff: ${#py_files[@]} Python examples"
else
  fail "ruff: Python examples" "$tmp/ruff.log" "$tmp/ruff-format.log"
fi
mypy_ok=1
: >"$tmp/mypy.log"
for d in "${mine[@]}"; do # one folder at a time: each has its own worker/client modules
  set -- "$ex/$d"/*.py
  [ -f "$1" ] || continue
  run "$tmp/mypy-$d.log" "$venv/bin/mypy" --strict --no-incremental --cache-dir=/dev/null "$@" ||
    { mypy_ok=0; cat "$tmp/mypy-$d.log" >>"$tmp/mypy.log"; }
done
if [ $mypy_ok = 1 ]; then pass "mypy --strict: Python examples"; else fail "mypy --strict" "$tmp/mypy.log"; fi
syntax_ok=1
: >"$tmp/syntax.log"
for f in "${js_files[@]}"; do node --check "$f" >>"$tmp/syntax.log" 2>&1 || syntax_ok=0; done
for f in "${rb_files[@]}"; do ruby -wc "$f" >>"$tmp/syntax.log" 2>&1 || syntax_ok=0; done
for f in "${sh_files[@]}"; do bash -n "$f" >>"$tmp/syntax.log" 2>&1 || syntax_ok=0; done
grep -q 'warning' "$tmp/syntax.log" && syntax_ok=0
if [ $syntax_ok = 1 ]; then
  pass "syntax: ${#js_files[@]} Node, ${#rb_files[@]} Ruby, ${#sh_files[@]} shell examples"
else
  fail "syntax: Node/Ruby/shell examples" "$tmp/syntax.log"
fi

# --- reverse: every worker language x every client language ------------------------
declare -A worker_cmd=(
  [python]="$python $ex/reverse/worker.py"
  [node]="node $ex/reverse/worker.js"
  [ruby]="ruby $ex/reverse/worker.rb"
)
declare -A client_cmd=(
  [python]="$python $ex/reverse/client.py"
  [node]="node $ex/reverse/client.js"
  [ruby]="ruby $ex/reverse/client.rb"
)
langs=(python node ruby)
for w in "${langs[@]}"; do
  # shellcheck disable=SC2086 # the commands are words on purpose
  start_bg "reverse-$w-worker" ${worker_cmd[$w]} "$addr"
  wpid=$last_pid
  if ! wait_workers reverse 1; then
    for c in "${langs[@]}"; do fail "reverse: $w worker + $c client (worker did not register)" "$tmp/reverse-$w-worker.log"; done
    stop "$wpid"
    wait_workers reverse 0
    continue
  fi
  for c in "${langs[@]}"; do
    out=$tmp/reverse-$w-$c.log
    before=$(grep -c reversing "$tmp/reverse-$w-worker.log")
    # shellcheck disable=SC2086
    if run "$out" ${client_cmd[$c]} "$addr" "Hello, Gearman!" "ünïcödé ☃" &&
      grep -q '!namraeG ,olleH' "$out" && grep -q '☃ édöcïnü' "$out" &&
      [ "$(grep -c reversing "$tmp/reverse-$w-worker.log")" -eq $((before + 2)) ]; then
      pass "reverse: $w worker + $c client"
    else
      fail "reverse: $w worker + $c client" "$out" "$tmp/reverse-$w-worker.log"
    fi
  done
  stop "$wpid"
  wait_workers reverse 0 || log "warning: the $w reverse worker did not unregister"
done

# --- thumbnail: Python (Pillow) worker, Node client ---------------------------------
start_bg thumbnail-worker "$python" "$ex/thumbnail/thumbnail.py" "$addr" 128
twpid=$last_pid
wait_workers thumbnail 1 || true
thumb=$tmp/thumb.png
if run "$tmp/thumbnail-client.log" node "$ex/thumbnail/client.js" "$addr" "$thumb" &&
  grep -q 'progress 3/3' "$tmp/thumbnail-client.log" &&
  "$python" - "$thumb" >"$tmp/thumbnail-check.log" 2>&1 <<'EOF'
import sys

from PIL import Image

with Image.open(sys.argv[1]) as im:
    im.verify()  # checks the PNG's structure and CRCs
with Image.open(sys.argv[1]) as im:
    im.load()  # decodes the pixels
    assert im.format == "PNG", im.format
    assert im.size == (128, 96), im.size  # 640x480 scaled to fit 128x128
    colours = im.convert("RGB").getcolors(1 << 16)
    assert colours is None or len(colours) > 100, "the thumbnail is not a picture"
EOF
then
  pass "thumbnail: Node client -> Python/Pillow worker, 128x96 PNG back"
else
  fail "thumbnail: Node client -> Python/Pillow worker" "$tmp/thumbnail-client.log" "$tmp/thumbnail-check.log" "$tmp/thumbnail-worker.log"
fi
# not an image: the worker raises, the client reports the exception and exits 1
if ! run "$tmp/thumbnail-bad.log" node "$ex/thumbnail/client.js" "$addr" "$tmp/bad.png" "$ex/thumbnail/README.md" &&
  grep -q 'EJOBEXCEPTION: cannot identify image file' "$tmp/thumbnail-bad.log" && [ ! -e "$tmp/bad.png" ]; then
  pass "thumbnail: a file that is no image reaches the client as a job exception"
else
  fail "thumbnail: no image -> job exception" "$tmp/thumbnail-bad.log"
fi
stop "$twpid"

# --- mailqueue: Ruby client (background jobs, uniques, status), Node worker ---------
outbox=$tmp/outbox
start_bg mail-worker node "$ex/mailqueue/worker.js" "$addr" "$outbox"
mwpid=$last_pid
wait_workers send_mail 1 || true
out=$tmp/mail-client.log
if run "$out" ruby "$ex/mailqueue/client.rb" "$addr" &&
  grep -q 'all 5 mails sent' "$out" &&
  grep -q 'again: same handle' "$out" &&
  grep -Eq ' running 1/2$' "$out" && [ "$(grep -Ec ' done$' "$out")" -eq 5 ] &&
  [ "$(ls "$outbox" | wc -l)" -eq 5 ] &&
  [ "$(grep -l '^To: .*@example.com$' "$outbox"/*.eml | wc -l)" -eq 5 ] &&
  [ "$(grep -c '^  \[node worker\] sent ' "$tmp/mail-worker.log")" -eq 5 ]; then
  pass "mailqueue: Ruby background jobs + status, Node worker, 5 mails in the outbox"
else
  ls -l "$outbox" >"$tmp/outbox.log" 2>&1
  fail "mailqueue" "$out" "$tmp/mail-worker.log" "$tmp/outbox.log"
fi
stop "$mwpid"

# --- shell: the polygear CLI in pipelines --------------------------------------------
out=$tmp/shell.log
sdir=$tmp/shell
if POLYGEAR="$bin/polygear" run "$out" bash "$ex/shell/pipeline.sh" "$addr" "$sdir" &&
  [ "$(wc -l <"$sdir/app.log")" -eq 4 ] && cmp -s "$sdir/app.log" "$sdir/collected.log"; then
  pass "shell: tail -f app.log | polygear -n -f logger"
else
  fail "shell: tail -f | polygear -n -f logger" "$out"
fi
n=$(ls / | wc -l)
if grep -q "polygear -f wc  ->  $n entries" "$out"; then
  pass "shell: ls / | polygear -f wc (worker: wc -l)"
else
  fail "shell: ls / | polygear -f wc" "$out"
fi
for f in logger wc; do
  wait_workers "$f" 0 || fail "shell: pipeline.sh left a $f worker running"
done

# --- summary --------------------------------------------------------------------------
log "examples ran in $((SECONDS - t0))s"
for f in "${failures[@]}"; do log "failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
