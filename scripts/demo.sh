#!/usr/bin/env bash
# The main job: the polyglot word-count demo (examples/wordcount) on an embedded
# polygeard with its SQLite queue: Python and Ruby workers, a CLI worker, a Node client,
# and a kill -9 of the server that loses no queued job.
#
# It installs polygear the way users receive it: scripts/package.sh builds the prebuilt
# wheel, npm tarball, platform gem and binaries into dist/, and the demo installs those
# into its own environment under the build folder (target/envs/demo: a venv, a GEM_HOME,
# a Node app folder, bin/), never into the system's gem set, site-packages or npm prefix.
# Before building anything it asks Python, Node and Ruby whether polygear loads there and
# whether it is the build of the current sources; only then is it fast (a few seconds).
# Works on a fresh Debian machine with Rust. Env: POLYGEAR_ENVS (where environments go,
# default target/envs), POLYGEAR_VENV (the venv to use), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tag=demo
. scripts/lib.sh
export CARGO_TERM_COLOR=never

bash scripts/setup.sh >/dev/null

env=$PG_ENVS/demo
venv=${POLYGEAR_VENV:-$env/venv}
app=$env/node
gems=$env/gems
bin=$env/bin
want="dist:$(pg_dist_fingerprint)"

installed() {
  pg_python_loads "$venv" && pg_stamp_ok "$venv" "$want" &&
    pg_node_loads "$app" && pg_stamp_ok "$app" "$want" &&
    pg_ruby_loads "$gems" && pg_stamp_ok "$gems" "$want" &&
    pg_bin_runs "$bin" && pg_stamp_ok "$bin" "$want"
}
if installed; then
  pg_log "polygear is installed in $env (current sources)"
else
  pg_log "building the packages (scripts/package.sh; the first build takes a few minutes)"
  dist=${POLYGEAR_DIST:-$root/dist}
  bash scripts/package.sh
  pg_python_wheel "$venv" "$(ls "$dist"/polygear-*.whl)" "$want"
  pg_node_tarball "$app" "$(ls "$dist"/polygear-[0-9]*.tgz)" "$want"
  pg_ruby_gem "$gems" "$(ls "$dist"/polygear-*-"$(ruby -e 'print Gem::Platform.local')".gem)" "$want"
  pg_bin_tarball "$bin" "$(ls "$dist"/polygear-*.tar.gz)" "$want"
fi

pg_gem_env "$gems"
PYTHON="$venv/bin/python" NODE_PATH="$app/node_modules" POLYGEAR_BIN="$bin" bash examples/wordcount/run.sh
