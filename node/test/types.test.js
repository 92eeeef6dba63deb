'use strict';
// index.d.ts matches the runtime: every declared class and method exists, and
// nothing exported at runtime is missing from the declarations.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { it } = require('node:test');

const pg = require('..');

function declaredClasses() {
  const src = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  const classes = new Map();
  let current = null;
  for (const line of src.split('\n')) {
    const start = /^export class (\w+)/.exec(line);
    if (start) {
      current = { methods: new Set(), statics: new Set() };
      classes.set(start[1], current);
      if (line.trimEnd().endsWith('{}')) current = null;
      continue;
    }
    if (!current) continue;
    if (/^}/.test(line)) {
      current = null;
      continue;
    }
    const m = /^ {2}(static )?(\w+)\(/.exec(line);
    if (m && m[2] !== 'constructor') (m[1] ? current.statics : current.methods).add(m[2]);
  }
  return classes;
}

it('every class and method in index.d.ts exists at runtime', () => {
  const classes = declaredClasses();
  assert.ok(classes.size >= 15, `parsed ${classes.size} classes`);
  for (const [name, { methods, statics }] of classes) {
    assert.equal(typeof pg[name], 'function', `${name} is exported`);
    for (const m of methods) assert.equal(typeof pg[name].prototype[m], 'function', `${name}.prototype.${m}`);
    for (const m of statics) assert.equal(typeof pg[name][m], 'function', `${name}.${m}`);
  }
  const src = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  const consts = new Set([...src.matchAll(/^export declare const (\w+)/gm)].map((m) => m[1]));
  for (const name of Object.keys(pg)) {
    assert.ok(classes.has(name) || consts.has(name), `${name} is declared in index.d.ts`);
  }
});

it('every export is a named export for ES modules (import { Client } from "polygear")', () => {
  const { execFileSync } = require('node:child_process');
  const { pathToFileURL } = require('node:url');
  const url = pathToFileURL(path.join(__dirname, '..', 'index.js')).href;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e',
    `import * as pg from ${JSON.stringify(url)}; console.log(JSON.stringify(Object.keys(pg).sort()))`],
  { encoding: 'utf8' });
  const named = JSON.parse(out).filter((k) => k !== 'default');
  assert.deepEqual(named, Object.keys(pg).sort());
});

it('BUILD_PROFILE says how the addon was compiled', () => {
  assert.ok(['release', 'debug'].includes(pg.BUILD_PROFILE), pg.BUILD_PROFILE);
});

it('error classes form the declared hierarchy', () => {
  for (const name of ['ConnectionError', 'TimeoutError', 'ProtocolError', 'ServerError', 'JobFailedError',
    'JobExceptionError', 'ClosedError', 'InvalidArgumentError', 'AbortError']) {
    assert.ok(pg[name].prototype instanceof pg.GearmanError, name);
  }
  assert.ok(pg.GearmanError.prototype instanceof Error);
  const e = new pg.TimeoutError('late', 'ETIMEDOUT');
  assert.equal(e.name, 'TimeoutError');
  assert.equal(e.code, 'ETIMEDOUT');
  assert.equal(new pg.AbortError().code, 'ABORT_ERR');
  assert.equal(new pg.JobFailedError('f', 'H:x:1').code, 'EJOBFAILED');
});
