#!/usr/bin/env bash
# Cross-language test matrix (tests/matrix/), then the failure table
# (tests/failures/: the same failure scenarios from Python, Node and Ruby, which
# must raise the same kind of error with the same message) and the job-lifecycle
# story (tests/lifecycle/: retries, dead set, retained results, pause, cancel and
# schedules across the three languages and the CLI). The matrix: every client language (Rust,
# Python, Node, Ruby, the C `gearman` CLI; on polygeard also HTTP, its
# --http-port) x every worker language (Rust, Python, Node, Ruby, the C
# `gearman -w` worker), on polygeard and on the C gearmand. Prints the matrix and "N passed, N failed"; exits non-zero on any
# failure.
#
# Builds polygeard, the polygear CLI and the Rust matrix binary; the Python, Node
# and Ruby packages come from the tests' environment (target/envs/test), which
# scripts/lib.sh builds or brings up to date as test-python.sh, test-node.sh and
# test-ruby.sh do.
# Env: CARGO_TARGET_DIR (default <repo>/target), POLYGEAR_ENVS,
# MATRIX_ARGS (extra arguments for tests/matrix/run.py, e.g. "--servers gearmand").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR=never
log() { echo "test-matrix: $*"; }
t0=$SECONDS

# --- prerequisites --------------------------------------------------------------
need=()
[ -x /usr/sbin/gearmand ] || need+=(gearman-job-server)
command -v gearman >/dev/null || need+=(gearman-tools)
command -v rev >/dev/null || need+=(util-linux)
tag=test-matrix
. scripts/lib.sh
apt_install ${need[@]+"${need[@]}"}
need_cargo

# --- Rust: server, CLI, matrix binary -----------------------------------------------
log "cargo build polygeard, polygear CLI, tests/matrix/rust"
cargo build -q -p polygear-server -p polygear-cli --bins
cargo build -q --manifest-path tests/matrix/rust/Cargo.toml

# --- Python, Node, Ruby: the tests' environment ------------------------------------
venv=$PG_TEST/venv
pg_test_python
pg_test_node
pg_test_ruby
pg_gem_env "$PG_TEST/gems"

# --- run (the driver stops every server and worker it started, also on failure) ---
# Run in the background so a SIGTERM/SIGINT to this script reaches the driver, which then
# stops its servers and workers.
rc=0
# shellcheck disable=SC2086
"$venv/bin/python" tests/matrix/run.py \
  --polygeard "$CARGO_TARGET_DIR/debug/polygeard" \
  --rust-bin "$CARGO_TARGET_DIR/debug/polygear-matrix" \
  --python "$venv/bin/python" \
  --node-module "$PG_TEST/node/node_modules/polygear" \
  ${MATRIX_ARGS:-} &
driver=$!
trap 'kill -TERM "$driver" 2>/dev/null' TERM INT
wait "$driver" || rc=$?
# A trapped signal interrupts the first wait: wait again for the driver's clean-up.
kill -0 "$driver" 2>/dev/null && { wait "$driver" || rc=$?; }
trap - TERM INT

# --- the cross-language failure table (tests/failures): same failures, same errors ---
log "failure table (tests/failures/run.py)"
"$venv/bin/python" tests/failures/run.py \
  --polygeard "$CARGO_TARGET_DIR/debug/polygeard" \
  --python "$venv/bin/python" \
  --node-module "$PG_TEST/node/node_modules/polygear" || rc=1

# --- the job lifecycle across languages (tests/lifecycle, issue #19) ---
log "job lifecycle story (tests/lifecycle/run.py)"
"$venv/bin/python" tests/lifecycle/run.py \
  --polygeard "$CARGO_TARGET_DIR/debug/polygeard" \
  --cli "$CARGO_TARGET_DIR/debug/polygear" \
  --python "$venv/bin/python" \
  --node-module "$PG_TEST/node/node_modules/polygear" || rc=1
log "done in $((SECONDS - t0)) s"
exit $rc
