'use strict';
// index.d.ts matches the runtime: every declared class and method exists, and
// nothing exported at runtime is missing from the declarations; methods and
// constructors take the parameters declared, and declared properties exist.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { it } = require('node:test');

const pg = require('..');

/**
 * The parameters of the declaration starting at `line[open]` (an opening
 * parenthesis): how many are required (no `?`, no default) and how many
 * there are in all (a rest parameter is not counted).
 */
function parameters(line, open) {
  const params = [];
  let depth = 0;
  let current = '';
  for (let i = open + 1; i < line.length; i++) {
    const c = line[i];
    if (c === '=' && line[i + 1] === '>') {
      current += '=>';
      i++;
      continue;
    }
    if ('([{<'.includes(c)) depth++;
    if (')]}>'.includes(c)) {
      if (depth === 0 && c === ')') break;
      depth--;
    }
    if (c === ',' && depth === 0) {
      params.push(current.trim());
      current = '';
    } else {
      current += c;
    }
  }
  if (current.trim()) params.push(current.trim());
  const counted = params.filter((p) => !p.startsWith('...'));
  const optional = (p) => /^\w+\?\s*:/.test(p);
  const firstOptional = counted.findIndex(optional);
  return { required: firstOptional === -1 ? counted.length : firstOptional, total: counted.length };
}

/** Merges the parameter counts of overloads: the fewest required, the most in all. */
function merge(a, b) {
  return a ? { required: Math.min(a.required, b.required), total: Math.max(a.total, b.total) } : b;
}

function declaredClasses() {
  const src = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  const classes = new Map();
  let current = null;
  for (const line of src.split('\n')) {
    const start = /^export class (\w+)/.exec(line);
    if (start) {
      current = { methods: new Map(), statics: new Map(), ctor: null, props: new Set() };
      classes.set(start[1], current);
      if (line.trimEnd().endsWith('{}')) current = null;
      continue;
    }
    if (!current) continue;
    if (/^}/.test(line)) {
      current = null;
      continue;
    }
    const prop = /^ {2}readonly (\w+)\??:/.exec(line);
    if (prop) current.props.add(prop[1]);
    const m = /^ {2}(private )?(static )?(\w+)\(/.exec(line);
    if (!m) continue;
    const params = parameters(line, m[0].length - 1);
    if (m[3] === 'constructor') {
      current.ctor = m[1] ? 'private' : params;
    } else {
      const into = m[2] ? current.statics : current.methods;
      into.set(m[3], merge(into.get(m[3]), params));
    }
  }
  return classes;
}

/** Checks that `fn` (a function or class) takes what `declared` says. */
function assertTakes(fn, declared, what) {
  // fn.length counts the parameters before the first one with a default.
  assert.ok(
    declared.required <= fn.length && fn.length <= declared.total,
    `${what} takes ${fn.length} parameter(s) at runtime, index.d.ts declares ` +
      `${declared.required} required of ${declared.total}`,
  );
}

it('every class and method in index.d.ts exists at runtime', () => {
  const classes = declaredClasses();
  assert.ok(classes.size >= 15, `parsed ${classes.size} classes`);
  for (const [name, { methods, statics }] of classes) {
    assert.equal(typeof pg[name], 'function', `${name} is exported`);
    for (const m of methods.keys()) assert.equal(typeof pg[name].prototype[m], 'function', `${name}.prototype.${m}`);
    for (const m of statics.keys()) assert.equal(typeof pg[name][m], 'function', `${name}.${m}`);
  }
  const src = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  const consts = new Set([...src.matchAll(/^export declare const (\w+)/gm)].map((m) => m[1]));
  for (const name of Object.keys(pg)) {
    assert.ok(classes.has(name) || consts.has(name), `${name} is declared in index.d.ts`);
  }
});

it('methods and constructors take the parameters index.d.ts declares', () => {
  const classes = declaredClasses();
  let checked = 0;
  for (const [name, { methods, statics, ctor }] of classes) {
    for (const [m, declared] of methods) {
      // EventEmitter's own methods, re-declared with typed overloads, are not ours to check.
      if ((name === 'RunningJob' || name === 'Worker') && (m === 'on' || m === 'once')) continue;
      assertTakes(pg[name].prototype[m], declared, `${name}.prototype.${m}`);
      checked++;
    }
    for (const [m, declared] of statics) {
      assertTakes(pg[name][m], declared, `${name}.${m}`);
      checked++;
    }
    if (ctor && ctor !== 'private') {
      assertTakes(pg[name], ctor, `new ${name}`);
      checked++;
    }
  }
  assert.ok(checked >= 40, `checked ${checked} signatures`);
});

it('the declared properties exist on instances', async () => {
  const made = {
    Client: () => new pg.Client(),
    Worker: () => new pg.Worker(),
    Admin: () => new pg.Admin(),
    Server: () => new pg.Server(),
    // constructed by the package only; a stand-in for the native object is enough here
    Job: () => new pg.Job({ handle: 'H:x:1', function: 'f', unique: '', data: Buffer.alloc(0) }),
    RunningJob: () => new pg.RunningJob({ handle: 'H:x:1' }),
  };
  let checked = 0;
  for (const [name, { props }] of declaredClasses()) {
    if (props.size === 0) continue;
    const make = made[name] || (() => new pg[name]('message', 'CODE'));
    const obj = make();
    for (const p of props) {
      assert.ok(p in obj, `${name} instances have ${p}`);
      checked++;
    }
    if (typeof obj.close === 'function' && name !== 'Worker') await obj.close();
  }
  assert.ok(checked >= 10, `checked ${checked} properties`);
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
