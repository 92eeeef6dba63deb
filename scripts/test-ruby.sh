#!/usr/bin/env bash
# Builds the polygear gem, installs it like a user would (gem build + gem
# install, compiling the Rust extension with cargo), and runs the minitest
# suite against the INSTALLED gem: every API against the embedded Rust
# server and the C gearmand, plus interop with the C `gearman` CLI and the
# Rust `polygear` CLI. Works on a fresh Debian machine (run as root or with sudo).
#
# Environment:
#   CARGO_TARGET_DIR        cargo build dir shared with the workspace (default: <repo>/target)
#   POLYGEAR_CARGO_PROFILE  release (default) or dev, for the gem's extension
#   POLYGEAR_TEST_GEM_HOME  where the gem is installed (default /var/tmp/polygear-ruby-test/gems;
#                           a private dir outside the repo so concurrent installs of the gem
#                           by other scripts can't interfere, and rebuilds stay incremental)
#   TESTOPTS                extra minitest options, e.g. "-v" or "-n /Gearmand/"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# --- system packages -------------------------------------------------------
tag=test-ruby
. scripts/lib.sh
need=()
for pkg in ruby ruby-dev libclang-dev gearman-job-server gearman-tools; do
  have_pkg "$pkg" || need+=("$pkg")
done
apt_install ${need[@]+"${need[@]}"}
need_cargo

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
GEM_DIR="${POLYGEAR_TEST_GEM_HOME:-/var/tmp/polygear-ruby-test/gems}"
case "$GEM_DIR" in "$ROOT"/*)
  echo "test-ruby: POLYGEAR_TEST_GEM_HOME must be outside the repo (cargo would see the workspace)" >&2
  exit 1;;
esac
mkdir -p "$GEM_DIR"

# --- the Rust CLI, for the Ruby-client/Rust-worker interop test -------------
if cargo build -q -p polygear-cli; then
  export POLYGEAR_BIN_DIR="$CARGO_TARGET_DIR/debug"
else
  echo "test-ruby: WARNING: could not build the polygear CLI; its interop test will be skipped" >&2
fi

# --- gem build + gem install (compiles the extension) ----------------------
rm -f polygear-*.gem
gem build polygear.gemspec
GEM_FILE="$(ls polygear-*.gem)"
echo "test-ruby: installing $GEM_FILE (cargo build, profile ${POLYGEAR_CARGO_PROFILE:-release})"
start=$(date +%s)
gem install --local --no-document --install-dir "$GEM_DIR" "./$GEM_FILE"
echo "test-ruby: installed in $(($(date +%s) - start))s"
rm -f "$GEM_FILE"

# --- tests against the installed gem (no -I: the load path is the gem's) ---
cd /tmp
unset RUBYLIB RUBYOPT
GEM_HOME="$GEM_DIR"
GEM_PATH="$GEM_DIR:$(ruby -e 'print Gem.default_path.join(":")')"
export GEM_HOME GEM_PATH
# shellcheck disable=SC2086
POLYGEAR_TEST_INSTALLED=1 timeout 900 ruby -e '
  Dir[File.join(ARGV.shift, "test_*.rb")].sort.each { |f| require f }
' "$ROOT/ruby/test" ${TESTOPTS:-}
