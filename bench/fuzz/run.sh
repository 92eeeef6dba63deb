#!/usr/bin/env bash
# Fuzzes polygear's parsers and the server's state with cargo-fuzz (libFuzzer):
# builds the targets of fuzz/ on the stable toolchain (no sanitizer: -s none,
# debug assertions and overflow checks on), runs each for SECONDS (default 300)
# on a scratch copy of its committed corpus, and prints executions, speed,
# coverage and crashes per target. Exits non-zero if any target crashed,
# printing the reproducer and the command that replays it.
#
# Usage: bench/fuzz/run.sh [--merge] [SECONDS] [TARGET...]
#   --merge   afterwards, add the new inputs (minimised) to fuzz/corpus/<target>/
#   TARGET    default: all (codec_request codec_response packet_roundtrip admin_command server_state)
# Environment:
#   CARGO_TARGET_DIR  build folder (default: target/); the fuzz build goes to
#                     $CARGO_TARGET_DIR/fuzz, runs to $CARGO_TARGET_DIR/fuzz-runs
#   FUZZ_SANITIZER    default none; `address` needs a nightly toolchain, e.g.
#                     FUZZ_SANITIZER=address FUZZ_TOOLCHAIN=+nightly
#   FUZZ_TOOLCHAIN    rustup toolchain for the build, e.g. +nightly (default: the active one)
#   FUZZ_RUNS         also stop a target after this many executions (SECONDS stays the cap)
#   FUZZ_WORK         scratch folder of the runs (default $CARGO_TARGET_DIR/fuzz-runs):
#                     <target>/corpus, <target>/artifacts (crashes), <target>/log
# cargo-fuzz is used from PATH if there; otherwise it is installed (pinned
# version, from crates.io) into $CARGO_TARGET_DIR/tools/bin, the build folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

merge=0
if [ "${1:-}" = "--merge" ]; then
  merge=1
  shift
fi
seconds=${1:-300}
shift || true
all=(codec_request codec_response packet_roundtrip admin_command server_state)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
case $seconds in '' | *[!0-9]*)
  echo "usage: $0 [--merge] [SECONDS] [TARGET...]" >&2
  exit 2
  ;;
esac

base=${CARGO_TARGET_DIR:-$root/target}
mkdir -p "$base"
base=$(cd "$base" && pwd)
tools=$base/tools
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
  if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools" >&2
    # Its own temporary build folder: not the project's.
    env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" \
      --root "$tools" --quiet
  fi
  export PATH=$tools/bin:$PATH
fi

export CARGO_TARGET_DIR=$base/fuzz
sanitizer=${FUZZ_SANITIZER:-none}
toolchain=${FUZZ_TOOLCHAIN:-}
t0=$SECONDS
# All targets (they share their dependencies). Release mode with debug
# assertions and overflow checks; no sanitizer (-s none) works on stable.
# shellcheck disable=SC2086 # FUZZ_TOOLCHAIN is empty or one word
cargo $toolchain fuzz build -s "$sanitizer" --debug-assertions
echo "built in $((SECONDS - t0)) s" >&2
triple=$(rustc ${toolchain} -vV | sed -n 's/^host: //p')
bin=$CARGO_TARGET_DIR/$triple/release

runs=${FUZZ_WORK:-$base/fuzz-runs}
failed=0 passed=0
rows=()
reproducers=()
for t in "${targets[@]}"; do
  [ -x "$bin/$t" ] || { echo "no fuzz target $t" >&2; exit 2; }
  work=$runs/$t
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  if [ -d "fuzz/corpus/$t" ]; then
    cp -r "fuzz/corpus/$t/." "$work/corpus/"
  fi
  opts=()
  case $t in codec_* | admin_*) opts+=(-dict="$root/fuzz/polygear.dict") ;; esac
  # Admin lines are short, and its parsers quote the whole input in every
  # error: 4 KiB inputs run at a third of the speed and add no coverage.
  case $t in admin_*) opts+=(-max_len=1024) ;; esac
  [ -z "${FUZZ_RUNS:-}" ] || opts+=(-runs="$FUZZ_RUNS")
  echo "=== $t: ${seconds} s" >&2
  rc=0
  start=$SECONDS
  "$bin/$t" "$work/corpus" "${opts[@]}" -max_total_time="$seconds" -print_final_stats=1 \
    -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/" >"$work/log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$work/log" | tail -1)
  corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$work/log" | tail -1 | sed 's/corp: //')
  crash=$(sed -n "s/.*Test unit written to //p" "$work/log" | tail -1)
  crashes=0
  if [ "$rc" -ne 0 ] || [ -n "$crash" ]; then
    crashes=1
    failed=$((failed + 1))
    reproducers+=("$t: $(grep -m1 -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$work/log" || echo "exit $rc")"
      "  input: ${crash:-none written} (log: $work/log)"
      "  replay: $bin/$t ${crash:-}")
  else
    passed=$((passed + 1))
  fi
  rows+=("$(printf '%-17s %6s %12s %9s %7s %7s %12s %7s' "$t" "$((SECONDS - start))" "${execs:-?}" \
    "${speed:-?}" "$(echo "$cov" | awk '{print $2}')" "$(echo "$cov" | awk '{print $4}')" \
    "${corp:-?}" "$crashes")")
  if [ "$merge" = 1 ] && [ "$crashes" = 0 ]; then
    mkdir -p "fuzz/corpus/$t"
    "$bin/$t" -merge=1 "fuzz/corpus/$t" "$work/corpus" >"$work/merge.log" 2>&1
  fi
done

echo
printf '%-17s %6s %12s %9s %7s %7s %12s %7s\n' target secs executions exec/s cov ft corpus crashes
for r in "${rows[@]}"; do echo "$r"; done
echo "(at most ${seconds} s per target; cov/ft: libFuzzer's edge coverage and features at the end; sanitizer: $sanitizer)"
if [ ${#reproducers[@]} -gt 0 ]; then
  echo
  echo "CRASHES:"
  printf '%s\n' "${reproducers[@]}"
fi
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
