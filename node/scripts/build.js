#!/usr/bin/env node
'use strict';
// Compiles the napi-rs addon (crate `polygear-node`, ../bindings/node) with
// cargo and copies the cdylib to ./polygear.node. Runs as the npm `install`
// hook, so installing the package needs only cargo, crates.io and npm.
//
//   node scripts/build.js            release build (default)
//   node scripts/build.js --debug    debug build (or POLYGEAR_BUILD_PROFILE=debug)
//
// Honours CARGO (path to cargo) and CARGO_TARGET_DIR.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const pkgDir = path.resolve(__dirname, '..');
const manifest = path.resolve(pkgDir, '..', 'bindings', 'node', 'Cargo.toml');
const dest = path.join(pkgDir, 'polygear.node');

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

if (!fs.existsSync(manifest)) {
  fail(`cannot find ${manifest}: this package builds from the polygear source tree ` +
    '(install it with `npm install ./node` from a checkout)');
}
const cargo = findCargo();
if (!cargo) fail('cargo not found: install Rust (https://rustup.rs) or set CARGO=/path/to/cargo');

const debug = process.argv.includes('--debug') || process.env.POLYGEAR_BUILD_PROFILE === 'debug';
const args = ['build', '--lib', '--manifest-path', manifest, '--message-format=json-render-diagnostics'];
if (!debug) args.push('--release');

console.error(`polygear: building the native addon (${debug ? 'debug' : 'release'}) with ${cargo} …`);
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

// Copy to a temporary name and rename, so a running process never sees a half-written file.
const tmp = `${dest}.${process.pid}.tmp`;
fs.copyFileSync(lib, tmp);
fs.renameSync(tmp, dest);
console.error(`polygear: built ${path.relative(process.cwd(), dest) || dest}`);
