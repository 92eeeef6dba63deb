#!/usr/bin/env bash
# Installs a release build of polygear (pip install ./python, cargo profile release) and
# pygearman 0.2.6 from PyPI into the benchmarks' venv (target/envs/bench/venv), builds
# the Rust reference pair (loadgen) and polygeard in release, then runs bench.py, which
# refuses to measure a debug build. Usage: bash bench/python/run.sh [bench.py args]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tag=bench
. scripts/lib.sh
need_cargo
venv=$PG_ENVS/bench/venv
pg_venv "$venv"
"$venv/bin/python" -c 'import gearman' 2>/dev/null || pg_venv "$venv" "pygearman==0.2.6"
pg_python "$venv" release
cargo build -q --release -p polygear-bench --bin loadgen -p polygear-server --bin polygeard ||
  echo "bench: warning: loadgen did not build; the Rust reference pair is skipped" >&2
"$venv/bin/python" bench/python/bench.py "$@"
