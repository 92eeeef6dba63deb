'use strict';
// A worker that cannot reach its servers says so (issue #13): connection
// events, warn lines when nobody listens, failFast / connect(), and no
// process kept alive after stop().

const assert = require('node:assert/strict');
const path = require('node:path');
const { describe, it } = require('node:test');

const { pg, freePort, runNode, eventually } = require('./helpers');

const PKG = path.resolve(__dirname, '..');

function recorder() {
  const lines = { debug: [], info: [], warn: [], error: [] };
  const logger = {};
  for (const level of Object.keys(lines)) logger[level] = (m) => lines[level].push(m);
  return { logger, lines };
}

describe('a worker without a reachable server', { timeout: 60000 }, () => {
  it('logs each failed connect at warn level when nobody listens', async () => {
    const port = await freePort();
    const { logger, lines } = recorder();
    const worker = new pg.Worker({ servers: `127.0.0.1:${port}`, logger });
    worker.register('f', () => 'x');
    const working = worker.work({ handleSignals: false });
    await eventually(() => lines.warn.length >= 2, 5000, 'two warn lines');
    assert.match(lines.warn[0], new RegExp(`^polygear: worker cannot connect to 127\\.0\\.0\\.1:${port}: .*refused.*\\(attempt 1; retrying in \\d+ ms\\)$`, 'i'));
    assert.match(lines.warn[1], /\(attempt 2; /);
    await worker.stop();
    await working;
  });

  it("emits 'connectError' instead when listened to", async () => {
    const port = await freePort();
    const { logger, lines } = recorder();
    const worker = new pg.Worker({ servers: `127.0.0.1:${port}`, logger });
    const seen = [];
    worker.on('connectError', (ev) => seen.push(ev));
    worker.register('f', () => 'x');
    const working = worker.work({ handleSignals: false });
    await eventually(() => seen.length >= 1, 5000, 'a connectError event');
    assert.equal(seen[0].server, `127.0.0.1:${port}`);
    assert.equal(seen[0].attempt, 1);
    assert.ok(seen[0].retryIn > 0, `retryIn ${seen[0].retryIn}`);
    assert.match(seen[0].error, /refused/i);
    assert.equal(lines.warn.length, 0, 'no warn line when a listener gets the event');
    assert.ok(lines.debug.some((l) => /cannot connect/.test(l)));
    await worker.stop();
    await working;
  });

  it('failFast: work() rejects with ConnectionError (ECONNREFUSED) naming the server, and the worker is stopped', async () => {
    const port = await freePort();
    const worker = new pg.Worker({ servers: `127.0.0.1:${port}`, failFast: true, logLevel: 'silent' });
    worker.register('f', () => 'x');
    const t0 = Date.now();
    await assert.rejects(worker.work(), (err) => {
      assert.ok(err instanceof pg.ConnectionError, `${err}`);
      assert.equal(err.code, 'ECONNREFUSED');
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      return true;
    });
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    await assert.rejects(worker.work(), { name: 'ClosedError' });
    assert.throws(() => new pg.Worker({ failFast: 'yes' }), { name: 'TypeError', message: /options\.failFast/ });
  });

  it('connect() resolves once a server is connected', async () => {
    const server = await pg.Server.start({ port: 0 });
    const worker = new pg.Worker({ servers: server.address });
    worker.register('f', () => 'x');
    try {
      await worker.connect();
      const admin = new pg.Admin({ server: server.address });
      const status = await admin.status();
      await admin.close();
      assert.ok(status.some((s) => s.function === 'f' && s.workers === 1), JSON.stringify(status));
    } finally {
      await worker.stop();
      await server.stop();
    }
  });

  it("'connect' and 'disconnect' events follow the server going away and coming back", async () => {
    let server = await pg.Server.start({ host: '127.0.0.1', port: 0 });
    const port = server.port;
    const { logger, lines } = recorder();
    const worker = new pg.Worker({ servers: server.address, logger });
    const events = [];
    for (const name of ['connect', 'disconnect']) worker.on(name, (ev) => events.push([name, ev]));
    worker.register('f', () => 'x');
    const working = worker.work({ handleSignals: false });
    try {
      await eventually(() => events.length === 1, 5000, 'connect');
      assert.deepEqual(events[0][0], 'connect');
      assert.equal(events[0][1].server, `127.0.0.1:${port}`);
      assert.equal(events[0][1].reconnect, false);
      await server.stop();
      await eventually(() => events.length === 2, 5000, 'disconnect');
      assert.equal(events[1][0], 'disconnect');
      assert.equal(typeof events[1][1].reason, 'string');
      server = await pg.Server.start({ host: '127.0.0.1', port });
      await eventually(() => events.length === 3, 10000, 'reconnect');
      assert.equal(events[2][0], 'connect');
      assert.equal(events[2][1].reconnect, true);
      assert.ok(lines.info.some((l) => /worker connected to/.test(l)), lines.info.join('\n'));
    } finally {
      await worker.stop();
      await working;
      await server.stop();
    }
  });

  it('a stopped worker does not keep the process alive', async () => {
    const port = await freePort();
    const r = await runNode(['-e', `
      const pg = require(${JSON.stringify(PKG)});
      const worker = new pg.Worker({ servers: '127.0.0.1:${port}', logLevel: 'silent' });
      worker.on('connectError', () => {});
      worker.register('f', () => 'x');
      const working = worker.work();
      setTimeout(async () => { await worker.stop(); await working; console.log('stopped'); }, 300);
    `], { timeout: 15000 });
    assert.equal(r.timedOut, false, 'the process did not exit');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'stopped\n');
  });
});
