'use strict';
// The embedded Server: start/stop, addresses, persistence, keeping Node alive.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, it } = require('node:test');

const { pg, freePort, runNode, eventually, fname } = require('./helpers');

const PKG = path.resolve(__dirname, '..');

describe('embedded Server', { timeout: 60000 }, () => {
  it('starts on a free port, serves jobs and stops', async () => {
    const server = await pg.Server.start();
    assert.equal(server.listening, true);
    assert.equal(server.host, '127.0.0.1');
    assert.ok(server.port > 0 && server.port < 65536);
    assert.equal(server.address, `127.0.0.1:${server.port}`);
    const worker = new pg.Worker({ servers: server.address });
    worker.register('up', (job) => job.data.toString().toUpperCase());
    const working = worker.work();
    const client = new pg.Client({ servers: server.address });
    assert.equal((await client.submit('up', 'abc')).toString(), 'ABC');
    await client.close();
    await worker.stop();
    await working;
    await server.stop();
    assert.equal(server.listening, false);
    await server.stop(); // idempotent
    const after = new pg.Client({ servers: `127.0.0.1:${server.port}` });
    await assert.rejects(after.submit('up', 'x'), { code: 'ECONNREFUSED' });
    await after.close();
  });

  it('binds the port it is given and reports EADDRINUSE', async () => {
    const port = await freePort();
    const a = new pg.Server({ port });
    await a.start();
    assert.equal(a.port, port);
    await assert.rejects(pg.Server.start({ port }), {
      name: 'ConnectionError',
      code: 'EADDRINUSE',
      message: `cannot start the server: port ${port} on 127.0.0.1 is already in use; stop what listens there ` +
        'or pick another port (port: 0 picks a free one)',
    });
    await a.stop();
  });

  it('rejects bad options with TypeError / RangeError', () => {
    assert.throws(() => new pg.Server({ port: '80' }), TypeError);
    assert.throws(() => new pg.Server({ port: 70000 }), RangeError);
    assert.throws(() => new pg.Server({ exceptions: 'yes' }), TypeError);
    assert.throws(() => new pg.Server('127.0.0.1'), TypeError);
    assert.throws(() => new pg.Server().port, /not started/);
  });

  it('keeps background jobs in a queue file across restarts', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-node-queue-'));
    const queueFile = path.join(dir, 'queue.sqlite3');
    const f = fname('durable');
    try {
      const s1 = await pg.Server.start({ queueFile });
      const c1 = new pg.Client({ servers: s1.address });
      const handle = await c1.submitBackground(f, 'kept', { unique: 'durable-1' });
      assert.match(handle, /\S/);
      await c1.close();
      await s1.stop();

      const s2 = await pg.Server.start({ queueFile });
      const got = [];
      const worker = new pg.Worker({ servers: s2.address });
      worker.register(f, (job) => {
        got.push(`${job.unique}=${job.data}`);
      });
      const working = worker.work();
      await eventually(() => got.length === 1, 10000, 'the stored job to run');
      assert.deepEqual(got, ['durable-1=kept']);
      await worker.stop();
      await working;
      await s2.stop();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('admin shutdown stops it when allowed', async () => {
    const server = await pg.Server.start({ allowShutdown: true });
    const admin = new pg.Admin({ server: server.address });
    await admin.shutdown().catch(() => {}); // the connection may close before the reply
    await eventually(() => !server.listening, 5000, 'the server to stop');
    await admin.close();
    await server.stop();
  });

  it('keeps Node alive while running, unless unref()ed', async () => {
    const script = (unref) => `
      const pg = require(${JSON.stringify(PKG)});
      pg.Server.start().then((s) => {
        ${unref ? 's.unref();' : 'setTimeout(() => s.stop().then(() => console.log("stopped")), 300);'}
        console.log('up', s.port);
      });
    `;
    const alive = await runNode(['-e', script(false)], { timeout: 15000 });
    assert.equal(alive.timedOut, false);
    assert.equal(alive.code, 0, alive.stderr);
    assert.match(alive.stdout, /^up \d+\nstopped\n$/);
    assert.ok(alive.ms >= 300);
    const unrefed = await runNode(['-e', script(true)], { timeout: 15000 });
    assert.equal(unrefed.timedOut, false, 'an unref()ed server must not keep Node alive');
    assert.equal(unrefed.code, 0, unrefed.stderr);
    assert.match(unrefed.stdout, /^up \d+\n$/);
  });
});
