#!/usr/bin/env node
'use strict';
// The npm `install` hook: provides ./polygear.node, the napi-rs addon (crate
// `polygear-node`).
//
// A packed polygear (scripts/package.sh) carries a prebuilt addon per platform
// under prebuilt/<platform>-<arch>-<libc>/. When one matches this machine and
// loads, it is used as is: no Rust toolchain needed. Otherwise the addon is
// compiled from source with cargo: from the checkout (../bindings/node) or from
// the Rust sources the package carries (rust/), and the script says why.
//
//   node scripts/build.js                 prebuilt if it matches, else release build
//   node scripts/build.js --debug         debug build (or POLYGEAR_BUILD_PROFILE=debug)
//   POLYGEAR_BUILD_PROFILE=release|debug|dist (dist: the workspace's stripped profile)
//   POLYGEAR_BUILD_FROM_SOURCE=1          ignore a prebuilt addon
//   node scripts/build.js --platform-key  print this machine's prebuilt key and exit
//
// Honours CARGO (path to cargo) and CARGO_TARGET_DIR.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const pkgDir = path.resolve(__dirname, '..');
const dest = path.join(pkgDir, 'polygear.node');
const manifest = [
  path.resolve(pkgDir, '..', 'bindings', 'node', 'Cargo.toml'), // a checkout
  path.join(pkgDir, 'rust', 'bindings', 'node', 'Cargo.toml'), // a packed polygear
].find((m) => fs.existsSync(m));

function fail(msg) {
  console.error(`polygear: ${msg}`);
  process.exit(1);
}

function findCargo() {
  if (process.env.CARGO) return process.env.CARGO;
  const probe = spawnSync('cargo', ['--version'], { stdio: 'ignore' });
  if (probe.status === 0) return 'cargo';
  const home = path.join(os.homedir(), '.cargo', 'bin', 'cargo');
  if (fs.existsSync(home)) return home;
  return null;
}

/** This machine's prebuilt key, e.g. linux-x64-gnu (scripts/package.sh asks with --platform-key). */
function platformKey() {
  let libc = 'unknown';
  if (process.platform !== 'linux') libc = 'none';
  else if (process.report && process.report.getReport().header.glibcVersionRuntime) libc = 'gnu';
  else libc = 'musl';
  return `${process.platform}-${process.arch}-${libc}`;
}

if (process.argv.includes('--platform-key')) {
  console.log(platformKey());
  process.exit(0);
}

/** Copies `from` to ./polygear.node under a temporary name first: a running process never sees half a file. */
function install(from) {
  const tmp = `${dest}.${process.pid}.tmp`;
  fs.copyFileSync(from, tmp);
  fs.renameSync(tmp, dest);
}

/** Uses the prebuilt addon if it matches this machine and loads; returns whether it did. */
function usePrebuilt() {
  const prebuiltDir = path.join(pkgDir, 'prebuilt');
  if (!fs.existsSync(prebuiltDir)) return false; // a checkout: always from source
  const key = platformKey();
  const file = path.join(prebuiltDir, key, 'polygear.node');
  if (process.env.POLYGEAR_BUILD_FROM_SOURCE) {
    console.error('polygear: POLYGEAR_BUILD_FROM_SOURCE is set: building the addon from source');
    return false;
  }
  if (!fs.existsSync(file)) {
    const have = fs.readdirSync(prebuiltDir).join(', ') || 'none';
    console.error(`polygear: no prebuilt addon for ${key} (this package has: ${have}); building from source`);
    return false;
  }
  try {
    require(file);
  } catch (err) {
    console.error(`polygear: the prebuilt addon for ${key} does not load here (${err.message}); building from source`);
    return false;
  }
  install(file);
  console.error(`polygear: using the prebuilt addon for ${key}`);
  return true;
}

if (usePrebuilt()) process.exit(0);

if (!manifest) {
  fail('cannot find the Rust sources (bindings/node/Cargo.toml) to build the addon from: ' +
    'install polygear from a checkout (`npm install ./node`) or from a package made by scripts/package.sh');
}
const cargo = findCargo();
if (!cargo) fail('cargo not found: install Rust (https://rustup.rs) or set CARGO=/path/to/cargo');

const debug = process.argv.includes('--debug') || process.env.POLYGEAR_BUILD_PROFILE === 'debug';
const profile = debug ? 'dev' : process.env.POLYGEAR_BUILD_PROFILE || 'release';
if (!['dev', 'release', 'dist'].includes(profile)) fail(`POLYGEAR_BUILD_PROFILE must be release, debug or dist, not ${profile}`);
const args = ['build', '--lib', '--manifest-path', manifest, '--profile', profile, '--message-format=json-render-diagnostics'];

console.error(`polygear: building the native addon from source (cargo profile ${profile}) with ${cargo} …`);
const res = spawnSync(cargo, args, {
  cwd: path.dirname(manifest),
  stdio: ['ignore', 'pipe', 'inherit'],
  maxBuffer: 512 * 1024 * 1024,
});
if (res.error) fail(`could not run cargo: ${res.error.message}`);
if (res.status !== 0) fail(`cargo build failed (exit code ${res.status})`);

let lib = null;
for (const line of res.stdout.toString().split('\n')) {
  if (!line.startsWith('{')) continue;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    continue;
  }
  if (msg.reason === 'compiler-artifact' && msg.target && msg.target.name === 'polygear_node' &&
      msg.target.kind.includes('cdylib')) {
    lib = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f));
  }
}
if (!lib) fail('cargo did not report the polygear_node cdylib');

install(lib);
console.error(`polygear: built ${path.relative(process.cwd(), dest) || dest}`);
