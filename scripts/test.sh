#!/usr/bin/env bash
# Runs every polygear test: Rust unit + interop tests (against the C gearmand
# and polygeard), the CLI end to end, the Python, Node and Ruby packages, the
# cross-language matrix, the examples, the fault and soak suite (tests/chaos, short
# form), a minute of fuzzing (fuzz/, scripts/test-fuzz.sh), and on a fresh clone the main demo and the prebuilt packages installed
# without a toolchain, with the READMEs' code run on them.
# Installs what it needs first, into environments under the build folder
# (target/envs); at the end it checks that the system's gem set, site-packages and
# global npm packages are as they were.
# Usage: scripts/test.sh [rust|chaos|fuzz|python|node|ruby|matrix|examples|dashboard|demo|packages ...]
# (`dashboard`: polygeard's web dashboard in headless chromium, scripts/test-dashboard.sh.)
# (`packages` runs scripts/test-packages.sh in this checkout; `demo` already runs it in the clone.)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR=never

bash scripts/setup.sh || exit 1

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(rust chaos fuzz python node ruby matrix examples dashboard demo)

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

chaos_tests() {
  # The short form of scripts/test-chaos.sh, on the debug binaries the rust suite built
  # (the long form, on release binaries: scripts/test-chaos.sh --long).
  cargo build --bins -p polygear-server -p polygear-cli &&
    POLYGEAR_BIN_DIR=$CARGO_TARGET_DIR/debug cargo test --no-fail-fast -p polygear-chaos -- --nocapture
}

rust_tests() {
  # Binaries first: the interop tests run target/debug/polygeard and polygear.
  cargo build --bins -p polygear-server -p polygear-cli &&
    cargo test --no-fail-fast -p polygear -p polygear-server -p polygear-cli -p polygear-interop -p polygear-bindings
}

demo_test() {
  # The README's main job as a new user runs it: a fresh clone of this checkout (its
  # uncommitted changes copied over), so no venv, GEM_HOME, Node app folder,
  # node/polygear.node or dist/ exists yet. It must count the words and lose no job;
  # a second run must find everything installed and pass again. Then the packages the
  # demo built (the clone's dist/) are installed without a toolchain and the READMEs'
  # code runs on them (scripts/test-packages.sh).
  # Its own cargo target folder (kept between runs, so a second run is quick): a build of
  # the clone's sources must never leave artifacts that cargo would take for this
  # checkout's (path crates have the same relative paths, so their artifacts would
  # share names, and cargo trusts file times).
  local clone=$CARGO_TARGET_DIR/fresh-clone envs=$CARGO_TARGET_DIR/fresh-clone-envs out
  local clone_target=$CARGO_TARGET_DIR/fresh-clone-target
  rm -rf "$clone" "$envs"
  # The files a clone of this checkout would have, with its uncommitted changes: tracked
  # and untracked-but-not-ignored files (works whatever state this checkout is in:
  # shallow, detached, dirty).
  mkdir -p "$clone"
  git ls-files -z -c -o --exclude-standard | (while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"; done) | tar --null -cf - -T - | tar -xf - -C "$clone" || return 1
  (cd "$clone" && git init -q && git add -A && git -c user.name=test -c user.email=test@example.com \
    commit -q -m "fresh clone for the demo test") || return 1
  [ ! -e "$clone/node/polygear.node" ] && [ ! -e "$clone/dist" ] || { echo "the clone is not fresh"; return 1; }
  for run in first second; do
    echo "--- demo.sh in a fresh clone, $run run"
    out=$(cd "$clone" && env -u GEM_HOME -u GEM_PATH -u POLYGEAR_VENV -u POLYGEAR_DIST POLYGEAR_ENVS="$envs" \
      CARGO_TARGET_DIR="$clone_target" \
      bash scripts/demo.sh 2>&1) || { echo "$out"; return 1; }
    echo "$out" | grep -E '^(demo|package):' | head -n 12
    echo "$out" | tail -n 4
    echo "$out" | grep -q ", 0 lost" && echo "$out" | grep -q "pieces counted" || { echo "$out"; return 1; }
  done
  echo "$out" | grep -q "polygear is installed in" || { echo "the second run installed again"; return 1; }
  echo "--- test-packages.sh in the fresh clone"
  (cd "$clone" && env -u POLYGEAR_DIST POLYGEAR_ENVS="$envs" CARGO_TARGET_DIR="$clone_target" \
    bash scripts/test-packages.sh) || return 1
  rm -rf "$clone" "$envs"
}

# What the tests must leave as it was: the system's gem set, site-packages and global npm packages.
system_packages() {
  env -u GEM_HOME -u GEM_PATH gem list --local 2>/dev/null
  python3 -c 'import site; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' |
    while read -r dir; do ls -1 "$dir" 2>/dev/null | sed "s|^|$dir/|"; done
  npm ls -g --depth=0 2>/dev/null | tail -n +2
}
before=$(system_packages)

for s in "${suites[@]}"; do
  case $s in
    rust) run_suite rust rust_tests ;;
    chaos) run_suite chaos chaos_tests ;;
    fuzz) run_suite fuzz bash scripts/test-fuzz.sh ;;
    python) run_suite python bash scripts/test-python.sh ;;
    node) run_suite node bash scripts/test-node.sh ;;
    ruby) run_suite ruby bash scripts/test-ruby.sh ;;
    matrix) run_suite matrix bash scripts/test-matrix.sh ;;
    examples) run_suite examples bash scripts/test-examples.sh ;;
    dashboard) run_suite dashboard bash scripts/test-dashboard.sh ;;
    demo) run_suite demo demo_test ;;
    packages) run_suite packages bash scripts/test-packages.sh ;;
    *) echo "unknown suite $s" >&2; exit 2 ;;
  esac
done

echo
after=$(system_packages)
if [ "$before" != "$after" ]; then
  echo "the tests changed the system's gem set, site-packages or global npm packages:"
  diff <(echo "$before") <(echo "$after") | sed 's/^/  /'
  failed=$((failed + 1)); failed_names+=(hermetic)
else
  echo "hermetic: the system's gems, site-packages and global npm packages are as before"
fi
[ $failed -eq 0 ] || echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
