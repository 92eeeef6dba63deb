'use strict';
// Errors that say what to do (issue #13): bad timeouts and function names
// refused before anything is sent, messages naming units and causes.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');

const { pg } = require('./helpers');

const outOfRange = (name, received) => ({
  name: 'RangeError',
  code: 'ERR_OUT_OF_RANGE',
  message: `The value of "${name}" is out of range. It must be greater than 0 (milliseconds). Received ${received}`,
});

describe('arguments refused before anything is sent', () => {
  it('a timeout of 0 (or less) is refused, naming the unit', async () => {
    assert.throws(() => new pg.Client({ timeout: 0 }), outOfRange('options.timeout', 0));
    assert.throws(() => new pg.Client({ connectTimeout: 0 }), outOfRange('options.connectTimeout', 0));
    assert.throws(() => new pg.Client({ submitTimeout: -1 }), outOfRange('options.submitTimeout', -1));
    assert.throws(() => new pg.Worker({ connectTimeout: 0 }), outOfRange('options.connectTimeout', 0));
    assert.throws(() => new pg.Admin({ timeout: 0 }), outOfRange('options.timeout', 0));
    const worker = new pg.Worker({ servers: '127.0.0.1:1' });
    assert.throws(() => worker.register('f', () => 'x', { timeout: 0 }), outOfRange('options.timeout', 0));
    await worker.stop();
    const client = new pg.Client({ servers: '127.0.0.1:1' });
    for (const submit of [client.submit, client.submitJob, client.submitBackground, client.submitJson]) {
      await assert.rejects(submit.call(client, 'f', 'x', { timeout: 0 }), outOfRange('options.timeout', 0));
    }
    await client.close();
  });

  it('an empty function name is refused by every submit and by register', async () => {
    const empty = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: /"func" is out of range. It must be a non-empty function name/ };
    const client = new pg.Client({ servers: '127.0.0.1:1' });
    for (const submit of [client.submit, client.submitJob, client.submitBackground, client.submitJson]) {
      await assert.rejects(submit.call(client, '', 'x'), empty);
    }
    await client.close();
    const worker = new pg.Worker({ servers: '127.0.0.1:1' });
    assert.throws(() => worker.register('', () => 'x'), { name: 'RangeError', message: /"name" is out of range/ });
    await worker.stop();
  });
});

describe('messages that say what happened', { timeout: 60000 }, () => {
  const { fname, sleep } = require('./helpers');

  it('a timeout while no worker took the job says so, in milliseconds', async () => {
    const server = await pg.Server.start({ port: 0 });
    const client = new pg.Client({ servers: server.address });
    const f = fname('nobody');
    try {
      await assert.rejects(client.submit(f, 'x', { timeout: 300 }), (err) => {
        assert.ok(err instanceof pg.TimeoutError, `${err}`);
        assert.equal(err.code, 'ETIMEDOUT');
        assert.match(err.message,
          new RegExp(`^no worker has taken job \\S+ for function '${f}' in 300 ms; is a worker registered\\? \\(timeout is in milliseconds\\)$`));
        return true;
      });
    } finally {
      await client.close();
      await server.stop();
    }
  });

  it('a timeout while a worker runs the job names the deadline and its unit', async () => {
    const server = await pg.Server.start({ port: 0 });
    const worker = new pg.Worker({ servers: server.address });
    const f = fname('slow');
    let started = false;
    worker.register(f, async () => {
      started = true;
      await sleep(1500);
      return 'late';
    });
    const working = worker.work({ handleSignals: false });
    const client = new pg.Client({ servers: server.address });
    try {
      await worker.connect();
      await assert.rejects(client.submit(f, 'x', { timeout: 400 }), (err) => {
        assert.ok(started, 'the worker took the job');
        assert.equal(err.name, 'TimeoutError');
        assert.match(err.message, /^job \S+ did not finish within 400 ms \(timeout is in milliseconds\)$/);
        return true;
      });
    } finally {
      await client.close();
      await worker.stop();
      await working;
      await server.stop();
    }
  });

  it("a job polygeard failed on the worker's timeout says why (JobFailedError.reason)", async () => {
    const server = await pg.Server.start({ port: 0 });
    const worker = new pg.Worker({ servers: server.address, logLevel: 'silent' });
    const f = fname('overdue');
    worker.register(f, () => new Promise(() => {}), { timeout: 1000 });
    const working = worker.work({ handleSignals: false });
    const client = new pg.Client({ servers: server.address, timeout: 10000 });
    try {
      await worker.connect();
      const check = (err) => {
        assert.equal(err.name, 'JobFailedError');
        assert.equal(err.code, 'EJOBFAILED');
        assert.match(err.message, /^job \S+ failed: the worker exceeded its 1 s timeout$/);
        assert.equal(err.reason, 'the worker exceeded its 1 s timeout');
        return true;
      };
      await assert.rejects(client.submit(f, 'x'), check);
      const running = await client.submitJob(f, 'y');
      await assert.rejects(running.result(), check);
    } finally {
      await client.close();
      await worker.stop();
      await working;
      await server.stop();
    }
  });

  it("a peer that is not a Gearman server is a ProtocolError naming what it answered ('HTTP')", async () => {
    // Node's own HTTP server: it answers the Gearman request with "HTTP/1.1 400 Bad Request".
    const web = require('node:http').createServer((req, res) => res.end('hello'));
    await new Promise((resolve) => web.listen(0, '127.0.0.1', resolve));
    const { port } = web.address();
    try {
      const client = new pg.Client({ servers: `127.0.0.1:${port}`, timeout: 5000 });
      await assert.rejects(client.submit('f', 'x'), (err) => {
        assert.ok(err instanceof pg.ProtocolError, `${err}`);
        assert.equal(err.code, 'EPROTOCOL');
        assert.match(err.message, new RegExp(`the server at 127\\.0\\.0\\.1:${port} answered 'HTTP', not Gearman`));
        return true;
      });
      await client.close();
    } finally {
      web.closeAllConnections();
      await new Promise((resolve) => web.close(resolve));
    }
  });

  it('an unresolvable host is a ConnectionError with code ENOTFOUND', async () => {
    const client = new pg.Client({ servers: ['nosuch.invalid:4730'], connectTimeout: 5000 });
    await assert.rejects(client.submit('f', 'x'), (err) => {
      assert.ok(err instanceof pg.ConnectionError, `${err}`);
      assert.equal(err.code, 'ENOTFOUND');
      assert.match(err.message, /nosuch\.invalid/);
      return true;
    });
    await client.close();
  });
});
