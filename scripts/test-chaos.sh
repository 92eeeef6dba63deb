#!/usr/bin/env bash
# The fault and soak suite (tests/chaos): the release polygeard SIGKILLed during durable
# submits, worker processes SIGKILLed mid-job, network partitions and a lossy, slow
# network (namespaces + a fault proxy), a full disk under the SQLite queue, and a soak
# with 1,000 idle, slowloris and never-reading peers; with the polygear client and worker.
# Builds what it needs (release), runs each scenario, then prints a summary of the figures
# (kills, jobs acked/lost/duplicated, restart and failover times, RSS, p99 latency).
#
# Usage: scripts/test-chaos.sh [--long] [SCENARIO ...]
#   SCENARIO: kill_server kill_workers network queue_partition disk_full soak (default: all, in this order)
#   --long:   20 kills over 100,000 jobs, 12,000 jobs under worker kills, three longer
#             partitions and a minute of latency/loss, a 10-minute soak (about 20 minutes)
# Env: CARGO_TARGET_DIR (default ./target), CHAOS_SEED (repeat a run's random choices).
# The network and disk scenarios need root (network namespaces, a tmpfs); without it they
# print SKIPPED and why.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR=never

long=0
scenarios=()
for a in "$@"; do
  case $a in
    --long) long=1 ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $a" >&2; exit 2 ;;
    *) scenarios+=("$a") ;;
  esac
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(kill_server kill_workers network queue_partition disk_full soak)
for s in "${scenarios[@]}"; do
  [ -f "tests/chaos/tests/$s.rs" ] || { echo "unknown scenario $s" >&2; exit 2; }
done
form=short
[ $long = 1 ] && form=long
export CHAOS_LONG=$long
summary=$(mktemp)
bins=$(mktemp -d)
trap 'rm -rf "$summary" "$bins"' EXIT
export CHAOS_SUMMARY_FILE=$summary

t0=$SECONDS
echo "=== build (release): polygeard, polygear, tests/chaos"
cargo build --release -p polygear-server -p polygear-cli || exit 1
# The scenarios run a private copy of the binaries just built (a target folder shared with
# other checkouts may get theirs meanwhile); tests/chaos/src/lib.rs refuses stale ones.
cp -p "$CARGO_TARGET_DIR/release/polygeard" "$CARGO_TARGET_DIR/release/polygear" "$bins/" || exit 1
export POLYGEAR_BIN_DIR=$bins
cargo test --release -p polygear-chaos --no-run || exit 1
cargo test -q --release -p polygear-chaos --lib || exit 1
built=$((SECONDS - t0))

results=()
failed=0
for s in "${scenarios[@]}"; do
  echo
  echo "=== $s ($form)"
  t=$SECONDS
  if cargo test -q --release -p polygear-chaos --test "$s" -- --nocapture; then
    r=ok
  else
    r=FAILED
    failed=$((failed + 1))
  fi
  results+=("$s: $r ($((SECONDS - t)) s)")
done

echo
echo "=== chaos summary: $form form, build ${built} s, scenarios $((SECONDS - t0 - built)) s"
for r in "${results[@]}"; do
  echo "  $r"
done
echo
sed 's/^/  /' "$summary"
[ $failed -eq 0 ] || echo "chaos: $failed scenario(s) failed"
[ $failed -eq 0 ]
