#!/usr/bin/env bash
# Cross-language test matrix (tests/matrix/): every client language (Rust,
# Python, Node, Ruby, the C `gearman` CLI) x every worker language (Rust,
# Python, Node, Ruby, the C `gearman -w` worker), on polygeard and on the C
# gearmand. Prints the matrix and "N passed, N failed"; exits non-zero on any
# failure.
#
# Builds polygeard, the polygear CLI and the Rust matrix binary; reuses the
# Python venv, Node addon and Ruby gem built by test-python.sh / test-node.sh /
# test-ruby.sh (scripts/test.sh runs those first) and builds them if missing.
# Env: CARGO_TARGET_DIR (default <repo>/target), POLYGEAR_VENV (default .venv),
# POLYGEAR_TEST_GEM_HOME (default /var/tmp/polygear-ruby-test/gems, as test-ruby.sh),
# MATRIX_ARGS (extra arguments for tests/matrix/run.py, e.g. "--servers gearmand").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR=never
venv="${POLYGEAR_VENV:-$root/.venv}"
gem_dir="${POLYGEAR_TEST_GEM_HOME:-/var/tmp/polygear-ruby-test/gems}"
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

# --- Python ----------------------------------------------------------------------
if ! "$venv/bin/python" -c 'import polygear' 2>/dev/null; then
  log "Python package missing: pip install ./python into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2"
  PATH="$venv/bin:$PATH" "$venv/bin/python" -m pip install -q --disable-pip-version-check ./python
fi

# --- Node ------------------------------------------------------------------------
if ! node -e 'require(process.argv[1])' "$root/node" 2>/dev/null; then
  log "Node addon missing: node scripts/build.js"
  (cd node && POLYGEAR_BUILD_PROFILE="${POLYGEAR_BUILD_PROFILE:-debug}" node scripts/build.js)
fi

# --- Ruby: prefer the gem test-ruby.sh installed, else a system-wide one, else build it
ruby_ok() { ruby -e 'require "polygear"' >/dev/null 2>&1; }
use_gem_dir() {
  GEM_HOME="$gem_dir"
  GEM_PATH="$gem_dir:$(ruby -e 'print Gem.default_path.join(":")')"
  export GEM_HOME GEM_PATH
}
if command -v ruby >/dev/null; then
  if [ -d "$gem_dir" ] && (use_gem_dir && ruby_ok); then
    use_gem_dir
  elif ! ruby_ok && command -v gem >/dev/null; then
    log "Ruby gem missing: gem build + gem install into $gem_dir"
    build_dir=$(mktemp -d)
    gem build polygear.gemspec --output "$build_dir/polygear.gem" >/dev/null &&
      gem install --local --no-document --install-dir "$gem_dir" "$build_dir/polygear.gem" >/dev/null || true
    rm -rf "$build_dir"
    use_gem_dir
  fi
  ruby_ok || log "WARNING: ruby gem not installed; the Ruby cells will be reported as not run"
fi

# --- run (the driver stops every server and worker it started, also on failure) ---
# Run in the background so a SIGTERM/SIGINT to this script reaches the driver, which then
# stops its servers and workers.
rc=0
# shellcheck disable=SC2086
"$venv/bin/python" tests/matrix/run.py \
  --polygeard "$CARGO_TARGET_DIR/debug/polygeard" \
  --rust-bin "$CARGO_TARGET_DIR/debug/polygear-matrix" \
  --python "$venv/bin/python" \
  --node-module "$root/node" \
  ${MATRIX_ARGS:-} &
driver=$!
trap 'kill -TERM "$driver" 2>/dev/null' TERM INT
wait "$driver" || rc=$?
# A trapped signal interrupts the first wait: wait again for the driver's clean-up.
kill -0 "$driver" 2>/dev/null && { wait "$driver" || rc=$?; }
trap - TERM INT
log "done in $((SECONDS - t0)) s"
exit $rc
