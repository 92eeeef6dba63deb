#!/usr/bin/env bash
# Builds and tests the Node.js package (node/): npm install (compiles the
# napi-rs addon from source and installs the devDependencies), `node --test`
# against the embedded server and the C gearmand, `tsc --noEmit` on the
# examples, and `npm install <repo>/node` from a scratch consumer project.
# Works on a fresh Debian machine as root (installs gearmand, the gearman CLI
# and node/npm with apt if missing; cargo must be installed).
#
# Env: POLYGEAR_BUILD_PROFILE=release|debug (default debug here; the npm
# install hook alone defaults to release), CARGO_TARGET_DIR, NODE_TEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export POLYGEAR_BUILD_PROFILE="${POLYGEAR_BUILD_PROFILE:-debug}"
export CARGO_TERM_COLOR=never
log() { echo "test-node: $*"; }
tag=test-node
. scripts/lib.sh

# --- prerequisites -----------------------------------------------------------
need=()
[ -x /usr/sbin/gearmand ] || need+=(gearman-job-server)
command -v gearman >/dev/null || need+=(gearman-tools)
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
apt_install ${need[@]+"${need[@]}"}
need_cargo
log "node $(node --version), npm $(npm --version 2>/dev/null), $(cargo --version)"

# --- the Rust worker CLI used by the interop test (skipped there if absent) ----
if cargo build -q -p polygear-cli --bin polygear; then
  log "built $CARGO_TARGET_DIR/debug/polygear"
else
  log "WARNING: could not build the polygear CLI; the Rust-worker interop test will be skipped" >&2
fi

# --- npm install in node/ (install hook compiles the addon) -----------------
cd "$root/node"
rm -f polygear.node
log "npm install in node/ (profile $POLYGEAR_BUILD_PROFILE)"
npm install --no-audit --no-fund --foreground-scripts 2>&1 | grep -v 'Unknown user config "nodedir"' || true
[ -f polygear.node ] || { log "npm install did not build node/polygear.node" >&2; exit 1; }

# --- node --test ---------------------------------------------------------------
status=0
out=$(mktemp)
trap 'rm -f "$out"; rm -rf "${consumer:-}"' EXIT
# one test file at a time (they start servers and time things); flags exist from Node 20.11
flags=()
for f in --test-concurrency=1 --test-timeout=300000; do
  node "$f" -e 0 2>/dev/null && flags+=("$f")
done
log "node --test ${flags[*]}"
# shellcheck disable=SC2086
node --test "${flags[@]}" ${NODE_TEST_ARGS:-} test/ 2>&1 | tee "$out" || status=1
summary=$(grep -E '^# (tests|pass|fail|skipped) ' "$out" | sed 's/^# //' | paste -sd, - | sed 's/,/, /g')

# --- tsc --noEmit on the examples ----------------------------------------------
log "tsc --noEmit -p examples"
if ./node_modules/.bin/tsc --noEmit -p examples; then tsc_result=ok; else tsc_result=FAILED; status=1; fi

# --- npm install ./node from a consumer project ----------------------------------
consumer=$(mktemp -d)
log "npm install $root/node in a scratch project"
rm -f "$root/node/polygear.node" # the consumer's install must build it again
if (cd "$consumer" && npm init -y >/dev/null 2>&1 &&
    npm install --no-audit --no-fund --foreground-scripts "$root/node" 2>&1 | grep -v 'Unknown user config "nodedir"' &&
    [ -f "$root/node/polygear.node" ] &&
    node -e "const pg = require('polygear'); if (typeof pg.Client !== 'function') process.exit(1)"); then
  consumer_result=ok
else
  consumer_result=FAILED
  status=1
fi

log "node --test: ${summary:-no summary}; tsc: $tsc_result; npm install ./node: $consumer_result"
exit $status
