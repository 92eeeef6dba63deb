#!/usr/bin/env bash
# Installs a release build of the polygear gem (gem build + gem install, cargo profile
# release) into the benchmarks' GEM_HOME (target/envs/bench/gems), builds the Rust
# reference pair (loadgen) and polygeard in release, then runs bench.rb, which refuses to
# measure a debug build. Usage: bash bench/ruby/run.sh [bench.rb args]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tag=bench
. scripts/lib.sh
need_cargo
pg_ruby "$PG_ENVS/bench/gems" release
cargo build -q --release -p polygear-bench --bin loadgen -p polygear-server --bin polygeard ||
  echo "bench: warning: loadgen did not build; the Rust reference pair is skipped" >&2
pg_gem_env "$PG_ENVS/bench/gems"
ruby bench/ruby/bench.rb "$@"
