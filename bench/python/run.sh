#!/usr/bin/env bash
# Builds a release polygear wheel into a venv, installs pygearman 0.2.6 from
# PyPI and the Rust reference pair (loadgen), then runs bench.py.
# Usage: bash bench/python/run.sh [bench.py args]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
venv="${POLYGEAR_BENCH_VENV:-$CARGO_TARGET_DIR/venv-bench}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2" "pygearman==0.2.6"
export PATH="$venv/bin:$PATH"
MATURIN_PEP517_ARGS="--profile release" "$venv/bin/python" -m pip install -q --disable-pip-version-check \
  --no-build-isolation --no-deps --force-reinstall ./python
cargo build -q --release -p polygear-bench --bin loadgen -p polygear-server --bin polygeard ||
  echo "bench: warning: loadgen did not build; the Rust reference pair is skipped" >&2
"$venv/bin/python" bench/python/bench.py "$@"
