#!/usr/bin/env bash
# CI's short fuzzing pass (issue #18): the server simulation's own unit tests,
# then every fuzz target of fuzz/ for FUZZ_SECONDS (default 12) each, about a
# minute in all, on its committed corpus (bench/fuzz/run.sh: installs cargo-fuzz
# into the build folder if missing, builds on stable without a sanitizer). Fails
# on a crash and prints the reproducer. Longer runs: bench/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR=never
cargo test -p polygear-server --features fuzzing --lib sim::
exec bash bench/fuzz/run.sh "${FUZZ_SECONDS:-12}"
