#!/usr/bin/env bash
# Browser test of polygeard's dashboard (tests/dashboard/): builds polygeard and the
# polygear CLI, installs playwright-core into an app folder under the build folder
# ($CARGO_TARGET_DIR/envs/dashboard, never globally) and drives Debian's headless
# chromium (installed by scripts/setup.sh) against a real polygeard.
# Screenshots go to $CARGO_TARGET_DIR/artifacts/ (dashboard.png).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR=never
tag=test-dashboard
. scripts/lib.sh

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
apt_install ${need[@]+"${need[@]}"}
need_cargo

cargo build -q -p polygear-server --bin polygeard -p polygear-cli --bin polygear

app=$PG_ENVS/dashboard
mkdir -p "$app"
if ! cmp -s tests/dashboard/package.json "$app/package.json" ||
  ! (cd "$app" && node -e "require('playwright-core')") >/dev/null 2>&1; then
  cp tests/dashboard/package.json "$app/package.json"
  pg_log "npm install playwright-core into $app"
  (cd "$app" && npm install --no-audit --no-fund --omit=dev 2>&1 | tail -n 2)
fi

POLYGEAR_BIN_DIR=$CARGO_TARGET_DIR/debug DASHBOARD_APP=$app \
  DASHBOARD_ARTIFACTS=${DASHBOARD_ARTIFACTS:-$CARGO_TARGET_DIR/artifacts} \
  node tests/dashboard/dashboard.test.mjs
