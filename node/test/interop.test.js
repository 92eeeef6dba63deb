'use strict';
// Interop: a Node worker serving the C `gearman` client, and a Node client
// using a Rust worker (the `polygear` CLI in worker mode).

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { describe, it, before, after } = require('node:test');

const { pg, REPO, SERVER_KINDS, runProcess, fname } = require('./helpers');

const GEARMAN_CLI = process.env.GEARMAN_CLI || '/usr/bin/gearman';
const TARGET = process.env.CARGO_TARGET_DIR || path.join(REPO, 'target');
const POLYGEAR_CLI = process.env.POLYGEAR_CLI || path.join(TARGET, 'debug', 'polygear');

for (const kind of SERVER_KINDS) {
  describe(`interop on the ${kind.name}`, { timeout: 120000 }, () => {
    let server;
    before(async () => {
      server = await kind.start();
    });
    after(async () => {
      if (server) await server.stop();
    });

    it('a Node worker serves the C gearman client', { skip: !fs.existsSync(GEARMAN_CLI) && `${GEARMAN_CLI} not installed (apt-get install gearman-tools)` }, async () => {
      const f = fname('crev');
      const worker = new pg.Worker({ servers: server.addr, concurrency: 2 });
      worker.register(f, (job) => Buffer.from(job.data).reverse());
      const working = worker.work();
      try {
        const args = ['-h', '127.0.0.1', '-p', String(server.port)];
        // (a job submitted before the worker registered waits in the queue)
        const r = await runProcess(GEARMAN_CLI, [...args, '-f', f, 'hello from C'], { timeout: 15000 });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, 'C morf olleh');
        // data on stdin, with a unique key
        const r2 = await runProcess(GEARMAN_CLI, [...args, '-u', 'k1', '-f', f], { timeout: 15000, input: 'abc' });
        assert.equal(r2.code, 0, r2.stderr);
        assert.equal(r2.stdout, 'cba');
      } finally {
        await worker.stop();
        await working;
      }
    });

    it('a Node client uses a Rust worker (polygear -w)', { skip: !fs.existsSync(POLYGEAR_CLI) && `${POLYGEAR_CLI} not built (cargo build -p polygear-cli)` }, async () => {
      const f = fname('rustrev');
      const child = spawn(POLYGEAR_CLI, ['-h', '127.0.0.1', '-p', String(server.port), '-w', '-f', f, '--', 'rev'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const client = new pg.Client({ servers: server.addr, timeout: 10000 });
      try {
        // the job waits in the queue until the worker has registered
        const out = await Promise.race([
          client.submit(f, 'hello rust\n', { timeout: 15000 }),
          exited.then((code) => assert.fail(`polygear -w exited with ${code}: ${stderr}`)),
        ]);
        assert.equal(out.toString(), 'tsur olleh\n');
        const many = await Promise.all(['ab\n', 'cde\n', 'xyz\n'].map((d) => client.submit(f, d)));
        assert.deepEqual(many.map(String), ['ba\n', 'edc\n', 'zyx\n']);
      } finally {
        await client.close();
        child.kill('SIGTERM');
        await exited;
      }
    });
  });
}
