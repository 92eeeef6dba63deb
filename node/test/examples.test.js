'use strict';
// The TypeScript examples run (transpiled with the typescript devDependency).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, it, before, after } = require('node:test');

const { startGearmand, runNode } = require('./helpers');

const PKG = path.resolve(__dirname, '..');
const EXAMPLES = path.join(PKG, 'examples');

let ts = null;
try {
  ts = require('typescript');
} catch {
  // devDependencies not installed
}

describe('examples', { skip: !ts && 'typescript is not installed (npm install in node/)', timeout: 120000 }, () => {
  let dir;
  let gearmand;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-node-examples-'));
    for (const file of fs.readdirSync(EXAMPLES).filter((f) => f.endsWith('.ts'))) {
      const src = fs.readFileSync(path.join(EXAMPLES, file), 'utf8');
      const js = ts.transpileModule(src, {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      }).outputText.replace(/require\("polygear"\)/g, `require(${JSON.stringify(PKG)})`);
      fs.writeFileSync(path.join(dir, file.replace(/\.ts$/, '.js')), js);
    }
    gearmand = await startGearmand();
  });
  after(async () => {
    if (gearmand) await gearmand.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const run = async (name, env) => {
    const r = await runNode([path.join(dir, `${name}.js`)], { timeout: 30000, env });
    assert.equal(r.timedOut, false, `${name} did not exit`);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };

  it('quickstart', async () => {
    assert.equal(await run('quickstart'), 'olleh A B C\n');
  });

  it('events', async () => {
    const out = await run('events');
    assert.match(out, /progress 1\/3\n[^]*chunk 3\n[^]*resized 1024 bytes\n/);
    assert.match(out, /done: resized 10 bytes\n$/);
  });

  it('errors', async () => {
    const out = await run('errors', { GEARMAN_SERVERS: gearmand.addr });
    assert.match(out, /^2\.5\nworker raised: division by zero \(EJOBEXCEPTION, \S+\)\n(ABORT_ERR|ETIMEDOUT)\n\S+ (true|false) (true|false) \d+\/\d+\n$/);
  });

  it('json', async () => {
    assert.match(await run('json'),
      /^order 7: 2 items\ntotal failed: the workload of job \S+ for function 'total' is not valid JSON: [^\n]+\nclient: JobExceptionError\n$/);
  });

  it('admin', async () => {
    const out = await run('admin', { GEARMAN_SERVER: gearmand.addr });
    assert.match(out, /^version \S+ pid \d+\n/);
  });
});
