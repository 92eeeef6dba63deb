#!/usr/bin/env bash
# Runs every polygear test: Rust unit + interop tests (against the C gearmand
# and polygeard), the CLI end to end, the Python, Node and Ruby packages, the
# cross-language matrix, the examples and the main demo.
# Installs what it needs first. Usage: scripts/test.sh [rust|python|node|ruby|matrix|examples|demo ...]
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR=never

bash scripts/setup.sh || exit 1

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(rust python node ruby matrix examples demo)

passed=0 failed=0 failed_names=()
run_suite() {
  local name=$1; shift
  echo
  echo "=== $name ==="
  local t0=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "=== $name: ok ($((SECONDS - t0)) s) ==="
  else
    failed=$((failed + 1)); failed_names+=("$name")
    echo "=== $name: FAILED ($((SECONDS - t0)) s) ==="
  fi
}

rust_tests() {
  # Binaries first: the interop tests run target/debug/polygeard and polygear.
  cargo build --bins -p polygear-server -p polygear-cli &&
    cargo test --no-fail-fast -p polygear -p polygear-server -p polygear-cli -p polygear-interop
}

demo_test() {
  # The README's main job must keep working: run it and check its ending.
  local out
  out=$(bash scripts/demo.sh 2>&1) || { echo "$out"; return 1; }
  echo "$out" | tail -n 25
  echo "$out" | grep -q ", 0 lost" && echo "$out" | grep -q "pieces counted"
}

for s in "${suites[@]}"; do
  case $s in
    rust) run_suite rust rust_tests ;;
    python) run_suite python bash scripts/test-python.sh ;;
    node) run_suite node bash scripts/test-node.sh ;;
    ruby) run_suite ruby bash scripts/test-ruby.sh ;;
    matrix) run_suite matrix bash scripts/test-matrix.sh ;;
    examples) run_suite examples bash scripts/test-examples.sh ;;
    demo) run_suite demo demo_test ;;
    *) echo "unknown suite $s" >&2; exit 2 ;;
  esac
done

echo
[ $failed -eq 0 ] || echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
