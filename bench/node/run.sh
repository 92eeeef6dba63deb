#!/usr/bin/env bash
# Builds a release polygear addon (npm install here links ../../node and runs its
# install hook with POLYGEAR_BUILD_PROFILE=release), installs npm gearman 2.1.0 and
# the Rust reference pair (loadgen), then runs bench.js, which refuses to measure a
# debug build. Usage: bash bench/node/run.sh [bench.js args]
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export POLYGEAR_BUILD_PROFILE=release
npm install --no-audit --no-fund --foreground-scripts 2>&1 | grep -v 'Unknown user config "nodedir"' || true
(cd "$root" && cargo build -q --release -p polygear-bench --bin loadgen) ||
  echo "bench: warning: loadgen did not build; the Rust reference pair is skipped" >&2
node bench.js "$@"
