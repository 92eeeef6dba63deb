#!/usr/bin/env bash
# Builds the polygear gem and installs it like a user would (gem build + gem install,
# compiling the Rust extension with cargo) into the tests' GEM_HOME
# (target/envs/test/gems, never the system's gem set), then runs the minitest suite
# against the INSTALLED gem: every API against the embedded Rust server and the C
# gearmand, plus interop with the C `gearman` CLI and the Rust `polygear` CLI.
# Works on a fresh Debian machine (run as root or with sudo).
#
# Environment:
#   CARGO_TARGET_DIR        cargo build dir shared with the workspace (default: <repo>/target)
#   POLYGEAR_CARGO_PROFILE  dev (default) or release, for the gem's extension
#   POLYGEAR_ENVS           where the test environment lives (default: $CARGO_TARGET_DIR/envs)
#   TESTOPTS                extra minitest options, e.g. "-v" or "-n /Gearmand/"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
tag=test-ruby
. scripts/lib.sh

need=()
for pkg in ruby ruby-dev libclang-dev gearman-job-server gearman-tools; do
  have_pkg "$pkg" || need+=("$pkg")
done
apt_install ${need[@]+"${need[@]}"}
need_cargo

# --- the Rust CLI, for the Ruby-client/Rust-worker interop test -------------
if cargo build -q -p polygear-cli; then
  export POLYGEAR_BIN_DIR="$CARGO_TARGET_DIR/debug"
else
  echo "test-ruby: WARNING: could not build the polygear CLI; its interop test will be skipped" >&2
fi

# --- gem build + gem install (compiles the extension) if not current ---------
start=$SECONDS
pg_test_ruby
echo "test-ruby: gem ready in $((SECONDS - start)) s ($PG_TEST/gems)"

# --- tests against the installed gem (no -I: the load path is the gem's) ---
pg_gem_env "$PG_TEST/gems"
cd /tmp
# shellcheck disable=SC2086
POLYGEAR_TEST_INSTALLED=1 timeout 900 ruby -e '
  Dir[File.join(ARGV.shift, "test_*.rb")].sort.each { |f| require f }
' "$root/ruby/test" ${TESTOPTS:-}
