#!/usr/bin/env bash
# Builds what users install, the way they receive a native library: prebuilt, so
# installing needs no Rust toolchain. Everything is compiled with the cargo profile
# `dist` (optimised, no debug info, stripped) and lands in dist/ (POLYGEAR_DIST):
#
#   polygear-V-cp39-abi3-*.whl          Python >= 3.9 wheel (maturin)   pip install dist/polygear-*.whl
#   polygear-V.tgz                      npm tarball (npm pack) with prebuilt/<platform>/polygear.node
#                                       and the Rust sources, built from only where no prebuilt fits
#                                                                       npm install dist/polygear-V.tgz
#   polygear-V-x86_64-linux.gem         platform gem, extension inside   gem install dist/polygear-V-x86_64-linux.gem
#   polygear-V.gem                      source gem (compiles with cargo at install)
#   polygear-V-<target>.tar.gz          bin/polygeard, bin/polygear
#   SHA256SUMS, SOURCES                 checksums; fingerprint of the sources packaged
#
# Incremental: cargo rebuilds only what changed. Archives are reproducible for the same
# sources (SOURCE_DATE_EPOCH: the last commit's time), so an unchanged build gives
# byte-identical files.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tag=package
. scripts/lib.sh
need_cargo
export CARGO_TERM_COLOR=never
out=${POLYGEAR_DIST:-$root/dist}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' core/Cargo.toml | head -1)
target=$(rustc -vV | sed -n 's/^host: //p')
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}
built=$CARGO_TARGET_DIR/dist
sources=$(pg_dist_fingerprint) # what is packaged: taken before the build starts
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
t0=$SECONDS

# --- compile (one cargo run, both cores busy) ---------------------------------------
pg_log "cargo build --profile dist: polygeard, polygear, the Node addon, the Ruby extension"
RUBY=$(command -v ruby) cargo build -q --profile dist -p polygear-server -p polygear-cli \
  -p polygear-node -p polygear-ruby

# --- Python wheel -----------------------------------------------------------------
pg_log "maturin build --profile dist (abi3 wheel)"
tools=$PG_ENVS/build/venv
pg_venv "$tools"
"$tools/bin/python" -c 'import maturin' 2>/dev/null || pg_venv "$tools" "maturin>=1.9.4,<2"
# (pipefail: a failing maturin fails the script; only grep's "nothing left" is ignored)
(cd python && "$tools/bin/maturin" build --quiet --profile dist --out "$stage/wheel" 2>&1 |
  { grep -v '^📦\|^🔗\|^🐍\|^📡\|^🍹\|^⚠️  Warning: .*license' || true; })
wheel=$(ls "$stage"/wheel/polygear-"$version"-*.whl)

# --- npm tarball ----------------------------------------------------------------------
pg_log "npm pack (prebuilt addon + Rust sources)"
npm_key=$(node node/scripts/build.js --platform-key) # the key the install script looks for
pkg=$stage/npm/polygear
mkdir -p "$pkg/scripts" "$pkg/prebuilt/$npm_key" "$pkg/rust/bindings"
cp node/package.json node/index.js node/index.d.ts node/README.md "$pkg/"
cp -R node/lib "$pkg/lib"
cp node/scripts/build.js "$pkg/scripts/"
cp "$built/libpolygear_node.so" "$pkg/prebuilt/$npm_key/polygear.node"
# The Rust sources, so a platform without a prebuilt addon can still build one.
(cd "$root" && git ls-files -co --exclude-standard core server bindings/common bindings/node | tar -cf - -T -) | tar -xf - -C "$pkg/rust"
cp Cargo.lock "$pkg/rust/"
{
  echo '# The Rust sources of the polygear npm package: build.js compiles the addon from'
  echo '# here only on a platform with no prebuilt addon.'
  echo '[workspace]'
  echo 'resolver = "2"'
  echo 'members = ["bindings/node"]'
  echo '# path dependencies only: their tests'"'"' dev-dependencies are not in the package'
  echo 'exclude = ["core", "server"]'
  echo
  sed -n '/^\[profile\./,$p' Cargo.toml
} >"$pkg/rust/Cargo.toml"
node -e '
  const fs = require("fs"); const f = process.argv[1];
  const p = JSON.parse(fs.readFileSync(f, "utf8"));
  p.files = ["index.js", "index.d.ts", "lib/", "README.md", "scripts/build.js", "prebuilt/", "rust/"];
  delete p.devDependencies;
  fs.writeFileSync(f, JSON.stringify(p, null, 2) + "\n");' "$pkg/package.json"
(cd "$pkg" && npm pack --silent --pack-destination "$stage" >/dev/null)
tgz=$stage/polygear-$version.tgz

# --- gems -----------------------------------------------------------------------------
pg_log "gem build: source gem and platform gem"
gem build -q polygear.gemspec --output "$stage/polygear-$version.gem" >/dev/null
native_gem=$(ruby scripts/native-gem.rb "$built/libpolygear_rb.so" "$stage/gem")

# --- binaries -------------------------------------------------------------------------
pg_log "binaries tarball"
bindir=$stage/bin/polygear-$version-$target
mkdir -p "$bindir/bin"
cp "$built/polygeard" "$built/polygear" "$bindir/bin/"
cp README.md "$bindir/"
cp server/README.md "$bindir/polygeard.md"
bin_tgz=$stage/polygear-$version-$target.tar.gz
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$stage/bin" -cf - "polygear-$version-$target" | gzip -n >"$bin_tgz"

# --- dist/ ------------------------------------------------------------------------------
mkdir -p "$out"
rm -f "$out"/polygear-* "$out/SHA256SUMS" "$out/SOURCES"
mv "$wheel" "$tgz" "$stage/polygear-$version.gem" "$native_gem" "$bin_tgz" "$out/"
echo "$sources" >"$out/SOURCES"
(cd "$out" && sha256sum polygear-* >SHA256SUMS)
pg_log "dist/ ready in $((SECONDS - t0)) s:"
(cd "$out" && ls -l polygear-* | awk '{ printf "  %-48s %6.1f MB\n", $9, $5 / 1048576 }')
