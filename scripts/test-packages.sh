#!/usr/bin/env bash
# Installs what users receive (scripts/package.sh: dist/) the way they would, on a
# machine without a Rust toolchain or C compiler, and runs the READMEs' code there:
#
#   1. dist/ is brought up to date (scripts/package.sh, incremental).
#   2. A fresh environment under the build folder (target/envs/packages: a venv, a
#      GEM_HOME, a Node app folder, bin/) gets the wheel (pip --no-index), the npm
#      tarball, the platform gem and the binaries tarball, with cargo, rustc, cc, gcc,
#      ld, make and friends removed from PATH and HOME an empty folder (no ~/.cargo).
#   3. Every runnable code block of README.md, python/README.md, node/README.md and
#      ruby/README.md runs against those installs (tests/docs/run_readmes.py).
#   4. The npm tarball's fallback: on a platform it has no prebuilt addon for, its
#      install script builds the addon from the Rust sources it carries (with cargo,
#      debug profile to keep it quick) and says so.
# Env: POLYGEAR_DIST (default dist/), POLYGEAR_ENVS, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tag=test-packages
. scripts/lib.sh
dist=${POLYGEAR_DIST:-$root/dist}
failed=0
check() { # check NAME COMMAND...: runs a check, reports it, counts failures
  local name=$1
  shift
  if "$@"; then echo "ok    $name"; else echo "FAIL  $name"; failed=$((failed + 1)); fi
}

# --- 1. dist/ ---------------------------------------------------------------------------
if [ "$(cat "$dist/SOURCES" 2>/dev/null)" != "$(pg_dist_fingerprint)" ]; then
  bash scripts/package.sh
fi
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' core/Cargo.toml | head -1)
wheel=$(ls "$dist"/polygear-"$version"-*.whl)
tgz=$dist/polygear-$version.tgz
native_gem=$(ls "$dist"/polygear-"$version"-"$(ruby -e 'print Gem::Platform.local')".gem)
bin_tgz=$(ls "$dist"/polygear-"$version"-*.tar.gz)

# --- 2. a machine without a toolchain ------------------------------------------------------
# PATH becomes one folder of links to every program on the current PATH except the Rust
# toolchain, C/C++ compilers, linkers and make; HOME an empty folder (no ~/.cargo).
env=$PG_ENVS/packages
rm -rf "$env"
mkdir -p "$env/path" "$env/home"
toolchain='^(cargo|rustc|rustup|rustdoc|rust-.*|cc|c\+\+|cpp|gcc|g\+\+|clang.*|.*-gcc(-[0-9.]+)?|.*-g\+\+(-[0-9.]+)?|gcc-.*|g\+\+-.*|ld|ld\..*|.*-ld|make|gmake|cmake|maturin)$'
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  [ -d "$dir" ] || continue
  for prog in "$dir"/*; do
    name=${prog##*/}
    [ -x "$prog" ] && [ ! -d "$prog" ] && [ ! -e "$env/path/$name" ] || continue
    [[ $name =~ $toolchain ]] || ln -s "$prog" "$env/path/$name"
  done
done
for tool in cargo rustc cc gcc make; do
  [ ! -e "$env/path/$tool" ] || { echo "test-packages: $tool is still on the toolchain-free PATH" >&2; exit 1; }
done
no_toolchain() { # no_toolchain COMMAND...: runs COMMAND (a lib.sh function too) with the toolchain out of reach
  (
    unset CARGO RUSTC CC CXX
    export PATH="$env/path" HOME="$env/home" npm_config_cache="$env/home/.npm" npm_config_update_notifier=false
    "$@"
  )
}
uses_prebuilt() { # uses_prebuilt APP TGZ: installs the tarball and says it used its prebuilt addon
  pg_node_tarball "$1" "$2" | tee "$env/npm-install.log" && grep -q "using the prebuilt addon" "$env/npm-install.log"
}
is_release() { # is_release: every install says it is a release build
  [ "$("$env/venv/bin/python" -c "import polygear; print(polygear.BUILD_PROFILE)")" = release ] &&
    [ "$(cd "$env/node" && node -p "require('polygear').BUILD_PROFILE")" = release ] &&
    [ "$(pg_gem_env "$env/gems" && ruby -e 'require "polygear"; print Polygear::BUILD_PROFILE')" = release ] &&
    "$env/bin/polygeard" --version | grep -q "(release build)"
}

check "pip install $(basename "$wheel") (no toolchain)" no_toolchain pg_python_wheel "$env/venv" "$wheel"
check "npm install $(basename "$tgz") uses its prebuilt addon (no toolchain)" \
  no_toolchain uses_prebuilt "$env/node" "$tgz"
check "gem install $(basename "$native_gem") (no toolchain)" no_toolchain pg_ruby_gem "$env/gems" "$native_gem"
check "tar -x $(basename "$bin_tgz") (no toolchain)" no_toolchain pg_bin_tarball "$env/bin" "$bin_tgz"
check "the installs are release builds" is_release

# --- 3. the READMEs' code, against those installs ----------------------------------------------
(
  pg_gem_env "$env/gems"
  no_toolchain python3 tests/docs/run_readmes.py --python "$env/venv/bin/python" --node-app "$env/node" \
    --bin "$env/bin" README.md python/README.md node/README.md ruby/README.md
) && echo "ok    README code blocks run as written" || { echo "FAIL  README code blocks"; failed=$((failed + 1)); }


# --- 4. the npm tarball on a platform it has no prebuilt addon for ------------------------------
need_cargo
other=$env/other-platform
mkdir -p "$other/pkg"
tar -xzf "$tgz" -C "$other/pkg"
mv "$other/pkg/package/prebuilt/"* "$other/pkg/package/prebuilt/plan9-mips-none"
(cd "$other/pkg/package" && npm pack --silent --pack-destination "$other" >/dev/null)
# Its own cargo target folder: the packed sources may differ from this checkout's, and
# their artifacts must never be taken for this checkout's (same relative paths).
builds_from_source() { # builds_from_source APP TGZ: the install builds the addon from the packed sources
  local out
  out=$(CARGO_TARGET_DIR="$CARGO_TARGET_DIR/packed-sources-target" POLYGEAR_BUILD_PROFILE=debug \
    pg_node_tarball "$1" "$2" 2>&1)
  echo "$out" | tail -n 5
  echo "$out" | grep -q "no prebuilt addon for" && echo "$out" | grep -q "building the native addon from source" &&
    [ "$(cd "$1" && node -p "require('polygear').BUILD_PROFILE")" = debug ]
}
check "npm install on a platform without a prebuilt addon builds from the packed Rust sources" \
  builds_from_source "$other/app" "$other/polygear-$version.tgz"

if ((failed)); then
  echo "test-packages: $failed check(s) failed"
  exit 1
fi
echo "test-packages: all checks passed"
