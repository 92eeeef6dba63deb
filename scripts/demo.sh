#!/usr/bin/env bash
# The main job: builds everything (release) and runs the polyglot word-count
# demo on an embedded polygeard with its SQLite queue (examples/wordcount).
# Works on a fresh Debian machine with Rust; fast after the first build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR=never
log() { echo "demo: $*"; }

bash scripts/setup.sh >/dev/null

log "building polygeard and the polygear CLI (release)"
cargo build -q --release -p polygear-server -p polygear-cli

venv="${POLYGEAR_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
if ! "$venv/bin/python" -c 'import polygear' 2>/dev/null || [ -n "${POLYGEAR_REBUILD:-}" ] ||
  [ -n "$(find core bindings/python python/polygear -newer "$venv/.polygear-built" 2>/dev/null | head -1)" ] ||
  [ ! -f "$venv/.polygear-built" ]; then
  log "building the Python package (pip install ./python)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2"
  PATH="$venv/bin:$PATH" "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    --no-build-isolation --force-reinstall --no-deps ./python
  touch "$venv/.polygear-built"
fi

if [ ! -f node/polygear.node ] || [ -n "$(find core bindings/node -newer node/polygear.node | head -1)" ]; then
  log "building the Node package (npm install in node/)"
  (cd node && POLYGEAR_BUILD_PROFILE=release node scripts/build.js)
fi

gem_dir=$(gem contents polygear 2>/dev/null | head -1 || true)
if [ -z "$gem_dir" ] || [ -n "$(find core bindings/ruby ruby/lib -newer "$gem_dir" 2>/dev/null | head -1)" ]; then
  log "building the Ruby gem (gem build + gem install)"
  rm -f polygear-*.gem
  gem build -q polygear.gemspec >/dev/null
  gem install --local --no-document -q ./polygear-*.gem >/dev/null
  rm -f polygear-*.gem
fi

PYTHON="$venv/bin/python" POLYGEAR_BIN="$CARGO_TARGET_DIR/release" bash examples/wordcount/run.sh
