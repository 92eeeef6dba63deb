# Shared by the scripts in this folder (sourced, not run): installing missing Debian
# packages, finding cargo, and the one place that builds and installs polygear's
# packages into private environments. Callers may set `tag` to their name for messages.
#
# Environments: everything a test, the demo or a benchmark installs goes under the build
# folder, never into the system's gem set, site-packages or npm prefix. An environment
# is a folder ($PG_ENVS/NAME) holding
#   venv/   a Python venv            (pg_python, pg_python_wheel)
#   gems/   a GEM_HOME               (pg_ruby, pg_ruby_gem; pg_gem_env exports it)
#   node/   a Node app folder        (pg_node, pg_node_tarball; NODE_PATH=node/node_modules)
#   bin/    polygeard and polygear   (pg_bin_tarball)
# Each install leaves a stamp; the next call asks the language whether `polygear` loads
# there and compares the stamp with what it would install now, and rebuilds only when
# either says no. So running a script twice, or after another script, gives the same
# result as on a fresh machine.

root=${root:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
PG_ENVS=${POLYGEAR_ENVS:-$CARGO_TARGET_DIR/envs}

pg_log() { echo "${tag:-polygear}: $*"; }

# True if the Debian package is installed.
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Installs the given packages with apt (as root, or through sudo); no-op without arguments.
apt_install() {
  (($#)) || return 0
  pg_log "apt-get install $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Makes `cargo` callable (rustup's ~/.cargo/bin is not always on PATH) or exits.
need_cargo() {
  command -v cargo >/dev/null && return 0
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
    return 0
  fi
  pg_log "cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
}

# The tests' environment: polygear built from this checkout with unoptimised profiles
# (quick to compile). The demo uses $PG_ENVS/demo, benchmarks $PG_ENVS/bench.
PG_TEST=$PG_ENVS/test
pg_test_python() { pg_python "$PG_TEST/venv" "${POLYGEAR_PY_PROFILE:-dev}"; }
pg_test_node() { pg_node "$PG_TEST/node" "${POLYGEAR_BUILD_PROFILE:-debug}"; }
pg_test_ruby() { pg_ruby "$PG_TEST/gems" "${POLYGEAR_CARGO_PROFILE:-dev}"; }

# --- fingerprints and stamps ------------------------------------------------------

# The sources each package is built from (paths relative to the repository root).
PG_PY_SOURCES=(Cargo.toml Cargo.lock core server bindings/common bindings/python python/pyproject.toml python/polygear)
PG_NODE_SOURCES=(Cargo.toml Cargo.lock core server bindings/common bindings/node node/index.js node/index.d.ts
  node/package.json node/scripts)
PG_RB_SOURCES=(Cargo.lock core server bindings/common bindings/ruby ruby/lib ruby/ext/polygear/extconf.rb
  polygear.gemspec)
PG_BIN_SOURCES=(Cargo.toml Cargo.lock core server cli)
# What scripts/package.sh puts into dist/ comes from all of the above and these.
PG_DIST_SOURCES=("${PG_PY_SOURCES[@]}" "${PG_NODE_SOURCES[@]}" "${PG_RB_SOURCES[@]}" "${PG_BIN_SOURCES[@]}"
  README.md node/README.md ruby/README.md server/README.md scripts/package.sh scripts/native-gem.rb)

# pg_fingerprint WORD PATH...: a short hash of WORD and of the names and contents of the
# source files under PATHs (build output, caches and compiled objects left out).
pg_fingerprint() {
  local word=$1
  shift
  {
    echo "$word"
    (cd "$root" && find "$@" -type f -not -path '*/target/*' -not -path '*/node_modules/*' \
      -not -path '*/__pycache__/*' -not -name '*.so' -not -name '*.node' -not -name '*.gem' \
      -not -name '*.sqlite3' -print0 2>/dev/null | LC_ALL=C sort -z | xargs -0 -r sha1sum)
  } | sha1sum | cut -c1-16
}

# pg_dist_fingerprint: the fingerprint of the sources dist/ is made from (package.sh
# writes it to dist/SOURCES).
pg_dist_fingerprint() {
  local paths
  mapfile -t paths < <(printf '%s\n' "${PG_DIST_SOURCES[@]}" | sort -u) # each path once
  pg_fingerprint dist "${paths[@]}"
}

# pg_file_hash FILE: a short hash of one file's contents.
pg_file_hash() { sha1sum "$1" | cut -c1-16; }

# pg_stamp_ok DIR WANT: true if DIR's stamp says WANT was installed there.
pg_stamp_ok() { [ "$(cat "$1/.polygear-stamp" 2>/dev/null)" = "$2" ]; }
pg_stamp() { echo "$2" >"$1/.polygear-stamp"; }

# pg_install LOADS DIR WANT WHAT COMMAND...: unless `LOADS DIR` (polygear loads from DIR)
# and DIR's stamp says WANT, logs WHAT, runs COMMAND, checks that polygear loads now and
# stamps DIR with WANT.
pg_install() {
  local loads=$1 dir=$2 want=$3 what=$4
  shift 4
  "$loads" "$dir" && pg_stamp_ok "$dir" "$want" && return 0
  pg_log "$what"
  "$@" || return 1
  "$loads" "$dir" || { pg_log "polygear does not load from $dir after: $what" >&2; return 1; }
  pg_stamp "$dir" "$want"
}

# --- Python -------------------------------------------------------------------------

# pg_venv VENV [PACKAGE...]: creates the venv if missing and pip-installs the PACKAGEs
# (requirement strings, e.g. pytest "maturin>=1.9.4,<2") that it does not have yet.
pg_venv() {
  local venv=$1
  shift
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" 2>/dev/null || {
      apt_install python3-venv
      rm -rf "$venv"
      python3 -m venv "$venv"
    }
  fi
  (($#)) || return 0
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
}

# pg_python_loads VENV: true if the venv's Python imports polygear.
pg_python_loads() { (cd / && "$1/bin/python" -c 'import polygear') >/dev/null 2>&1; }

# pg_python VENV PROFILE: the venv has polygear built from this checkout (`pip install
# ./python`, maturin, cargo profile PROFILE: dev or release).
pg_python() {
  local venv=$1 profile=$2
  pg_venv "$venv"
  pg_install pg_python_loads "$venv" "$(pg_fingerprint "source:$profile" "${PG_PY_SOURCES[@]}")" \
    "pip install ./python into $venv (cargo profile $profile)" pg_python_build "$venv" "$profile"
}
pg_python_build() { # pg_python_build VENV PROFILE: maturin builds and pip installs ./python
  need_cargo
  pg_venv "$1" "maturin>=1.9.4,<2"
  PATH="$1/bin:$PATH" MATURIN_PEP517_ARGS="--profile $2" "$1/bin/python" -m pip install -q \
    --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall "$root/python"
}

# pg_python_wheel VENV WHEEL [STAMP]: the venv has polygear installed from a prebuilt
# wheel (STAMP names what was installed; default: the wheel's hash).
pg_python_wheel() {
  local venv=$1 wheel=$2 want=${3:-}
  [ -n "$want" ] || want=$(pg_file_hash "$wheel")
  pg_venv "$venv"
  pg_install pg_python_loads "$venv" "$want" "pip install $(basename "$wheel") into $venv" \
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-index --no-deps --force-reinstall "$wheel"
}

# --- Node ---------------------------------------------------------------------------

# pg_node_app APP: creates a Node app folder (a package.json) if missing.
pg_node_app() {
  mkdir -p "$1"
  [ -f "$1/package.json" ] || echo '{ "name": "polygear-env", "private": true }' >"$1/package.json"
}

# pg_node_loads APP: true if `require('polygear')` works from the app folder.
pg_node_loads() { (cd "$1" && node -e "require('polygear')") >/dev/null 2>&1; }

pg_npm_install() { # pg_npm_install APP SPEC: npm install SPEC into the app folder
  (cd "$1" && npm install --no-audit --no-fund --foreground-scripts "$2" 2>&1 |
    grep -v 'Unknown user config "nodedir"') || true
}

# pg_node APP PROFILE: APP/node_modules/polygear is this checkout's node/ package (npm
# links a local folder), its addon compiled from source with PROFILE (debug or release).
# The addon is built in place, so whoever rebuilds node/polygear.node (a benchmark,
# test-node.sh) changes what the app loads: the app folder records the addon's hash and
# the next call checks it too.
pg_node() {
  local app=$1 profile=$2
  pg_node_app "$app"
  pg_install pg_node_loads_ours "$app" "$(pg_fingerprint "source:$profile" "${PG_NODE_SOURCES[@]}")" \
    "npm install ./node into $app (addon profile $profile)" pg_node_build "$app" "$profile"
}
pg_node_loads_ours() { # pg_node_loads_ours APP: polygear loads, with the addon the app was built with
  pg_node_loads "$1" && [ -f "$root/node/polygear.node" ] &&
    [ "$(cat "$1/.polygear-addon" 2>/dev/null)" = "$(pg_file_hash "$root/node/polygear.node")" ]
}
pg_node_build() { # pg_node_build APP PROFILE: npm install ./node, which compiles the addon
  need_cargo
  rm -f "$root/node/polygear.node"
  POLYGEAR_BUILD_PROFILE=$2 pg_npm_install "$1" "$root/node"
  [ -f "$root/node/polygear.node" ] && pg_file_hash "$root/node/polygear.node" >"$1/.polygear-addon"
}

# pg_node_tarball APP TGZ [STAMP]: APP/node_modules/polygear is installed from an npm tarball.
pg_node_tarball() {
  local app=$1 tgz=$2 want=${3:-}
  [ -n "$want" ] || want=$(pg_file_hash "$tgz")
  pg_node_app "$app"
  pg_install pg_node_loads "$app" "$want" "npm install $(basename "$tgz") into $app" pg_npm_install "$app" "$tgz"
}

# --- Ruby ---------------------------------------------------------------------------

# pg_gem_env GEM_HOME: exports GEM_HOME/GEM_PATH so Ruby sees that folder's gems (and the
# default ones, e.g. minitest), not the user's.
pg_gem_env() {
  mkdir -p "$1"
  GEM_HOME=$(cd "$1" && pwd)
  GEM_PATH="$GEM_HOME:$(env -u GEM_HOME -u GEM_PATH ruby -e 'print Gem.default_path.join(":")')"
  export GEM_HOME GEM_PATH
  unset RUBYLIB RUBYOPT
}

# pg_ruby_loads GEM_HOME: true if `require "polygear"` works with only that GEM_HOME.
pg_ruby_loads() { (pg_gem_env "$1" && cd / && ruby -e 'require "polygear"') >/dev/null 2>&1; }

# pg_ruby GEM_HOME PROFILE: GEM_HOME has the gem built from this checkout (gem build +
# gem install, which compiles the extension with cargo profile PROFILE: dev or release).
pg_ruby() {
  local gems=$1 profile=$2
  mkdir -p "$gems"
  pg_install pg_ruby_loads "$gems" "$(pg_fingerprint "source:$profile" "${PG_RB_SOURCES[@]}")" \
    "gem build + gem install into $gems (cargo profile $profile)" pg_ruby_build "$gems" "$profile"
}
# The installed gem compiles its own copy of the Rust sources, in a cargo target folder of
# its own (kept, so a reinstall is quick): artifacts built from a copy must never share a
# folder with this checkout's, where cargo could take them for its own (same relative paths).
pg_ruby_build() { # pg_ruby_build GEM_HOME PROFILE: gem build, then gem install (compiles)
  need_cargo
  local dir rc=0
  dir=$(mktemp -d)
  (cd "$root" && gem build -q polygear.gemspec --output "$dir/polygear.gem" >/dev/null) &&
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR/gem-target" POLYGEAR_CARGO_PROFILE=$2 \
      gem install --local --no-document --install-dir "$1" "$dir/polygear.gem" || rc=$?
  rm -rf "$dir"
  return $rc
}

# pg_ruby_gem GEM_HOME GEMFILE [STAMP]: GEM_HOME has polygear installed from a (prebuilt) gem file.
pg_ruby_gem() {
  local gems=$1 gemfile=$2 want=${3:-}
  [ -n "$want" ] || want=$(pg_file_hash "$gemfile")
  mkdir -p "$gems"
  pg_install pg_ruby_loads "$gems" "$want" "gem install $(basename "$gemfile") into $gems" \
    gem install --local --no-document --install-dir "$gems" "$gemfile"
}

# --- binaries -----------------------------------------------------------------------

# pg_bin_runs BIN: true if BIN's polygeard and polygear run.
pg_bin_runs() { "$1/polygeard" --version >/dev/null 2>&1 && "$1/polygear" --version >/dev/null 2>&1; }

# pg_bin_tarball BIN TARBALL [STAMP]: BIN holds polygeard and polygear from the binaries tarball.
pg_bin_tarball() {
  local bin=$1 tarball=$2 want=${3:-}
  [ -n "$want" ] || want=$(pg_file_hash "$tarball")
  mkdir -p "$bin"
  pg_install pg_bin_runs "$bin" "$want" "unpacking $(basename "$tarball") into $bin" \
    tar -xzf "$tarball" -C "$bin" --strip-components=2 --wildcards '*/bin/*'
}
