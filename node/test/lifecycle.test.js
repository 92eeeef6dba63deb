'use strict';
// stop() with jobs running, dead and dying servers, bad input, clean exit.

const assert = require('node:assert/strict');
const path = require('node:path');
const { describe, it } = require('node:test');

const { pg, SERVER_KINDS, startGearmand, freePort, runNode, eventually, sleep, fname } = require('./helpers');

const PKG = path.resolve(__dirname, '..');

for (const kind of SERVER_KINDS) {
  describe(`worker lifecycle on the ${kind.name}`, { timeout: 60000 }, () => {
    it('stop() lets running jobs finish, then work() resolves and no new job is taken', async () => {
      const server = await kind.start();
      const f = fname('stoppable');
      const started = [];
      const worker = new pg.Worker({ servers: server.addr, concurrency: 3 });
      worker.register(f, async (job) => {
        started.push(job.data.toString());
        await sleep(400);
        return `done ${job.data}`;
      });
      const working = worker.work();
      const client = new pg.Client({ servers: server.addr, timeout: 15000 });
      try {
        const jobs = ['a', 'b', 'c'].map((d) => client.submit(f, d));
        await eventually(() => started.length === 3, 10000, 'three running jobs');
        const stopping = worker.stop();
        assert.deepEqual((await Promise.all(jobs)).map(String).sort(), ['done a', 'done b', 'done c']);
        await stopping;
        await working; // resolves, does not hang
        const handle = await client.submitBackground(f, 'late');
        await sleep(300);
        const st = await client.status(handle);
        assert.equal(st.known, true);
        assert.equal(st.running, false, 'a stopped worker takes no new job');
        assert.equal(started.length, 3);
        await assert.rejects(worker.work(), /already running|stopped/);
        assert.throws(() => worker.register('x', () => 'y'), pg.ClosedError);
      } finally {
        await client.close();
        await worker.stop();
        await server.stop();
      }
    });

    it('stop({ timeout }) hands jobs whose handlers never finish back to the server, which gives them to another worker', async () => {
      const server = await kind.start();
      const f = fname('stuck');
      let started = false;
      const worker = new pg.Worker({ servers: server.addr, logLevel: 'silent' });
      worker.register(f, () => {
        started = true;
        return new Promise(() => {}); // never settles
      });
      const working = worker.work();
      const client = new pg.Client({ servers: server.addr, timeout: 15000 });
      let second;
      let secondWorking;
      try {
        const job = client.submit(f, 'x');
        job.catch(() => {});
        await eventually(() => started, 10000, 'the job to start');
        const t0 = Date.now();
        await worker.stop({ timeout: 300 });
        await working;
        assert.ok(Date.now() - t0 < 3000, `stop took ${Date.now() - t0} ms`);
        // the client still waits: the job went back to the queue, not to WORK_FAIL
        second = new pg.Worker({ servers: server.addr });
        second.register(f, (j) => `second worker got ${j.data}`);
        secondWorking = second.work();
        assert.equal(String(await job), 'second worker got x');
      } finally {
        if (second) await second.stop();
        if (secondWorking) await secondWorking;
        await client.close();
        await server.stop();
      }
    });
  });
}

describe('dead and dying servers', { timeout: 60000 }, () => {
  it('a client fails fast with ECONNREFUSED when nothing listens', async () => {
    const port = await freePort();
    const client = new pg.Client({ servers: [`127.0.0.1:${port}`] });
    const t0 = Date.now();
    for (const op of [() => client.submit('f', 'x'), () => client.submitBackground('f', 'x'), () => client.status('H:x:1'), () => client.echo('x')]) {
      await assert.rejects(op(), (err) => {
        assert.ok(err instanceof pg.ConnectionError, `${err}`);
        assert.ok(err instanceof pg.GearmanError);
        assert.equal(err.code, 'ECONNREFUSED');
        return true;
      });
    }
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    await client.close();
  });

  it('admin on a dead server fails with a ConnectionError', async () => {
    const port = await freePort();
    const admin = new pg.Admin({ server: `127.0.0.1:${port}`, timeout: 2000 });
    await assert.rejects(admin.status(), { name: 'ConnectionError', code: 'ECONNREFUSED' });
    await admin.close();
  });

  it('a worker without a server can still be stopped promptly', async () => {
    const port = await freePort();
    const worker = new pg.Worker({ servers: `127.0.0.1:${port}` });
    worker.register('f', () => 'x');
    const working = worker.work();
    await sleep(200);
    const t0 = Date.now();
    await worker.stop();
    await working.catch(() => {});
    assert.ok(Date.now() - t0 < 3000, `stop took ${Date.now() - t0} ms`);
  });

  it('a job in flight fails with a ConnectionError when the server dies', async () => {
    const server = await startGearmand();
    const f = fname('dies');
    const worker = new pg.Worker({ servers: server.addr });
    let running = false;
    worker.register(f, async () => {
      running = true;
      await sleep(5000);
      return 'too late';
    });
    const working = worker.work();
    const client = new pg.Client({ servers: server.addr });
    try {
      const job = client.submit(f, 'x');
      job.catch(() => {}); // rejects while the server stops; checked below
      await eventually(() => running, 10000, 'the job to start');
      const t0 = Date.now();
      await server.stop();
      await assert.rejects(job, (err) => {
        assert.ok(err instanceof pg.ConnectionError, `${err}`);
        assert.match(err.code, /^E[A-Z]+$/);
        return true;
      });
      assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    } finally {
      await client.close();
      await worker.stop();
      await working.catch(() => {});
    }
  });

  it('a closed client rejects with ClosedError', async () => {
    const client = new pg.Client({ servers: '127.0.0.1:1' });
    await client.close();
    await assert.rejects(client.submit('f', 'x'), { name: 'ClosedError', code: 'ECLOSED' });
  });
});

describe('bad input', () => {
  const client = new pg.Client({ servers: '127.0.0.1:1' });
  const worker = new pg.Worker({ servers: '127.0.0.1:1' });

  it('constructors reject wrong option types with TypeError', () => {
    assert.throws(() => new pg.Client('127.0.0.1:4730'), TypeError);
    assert.throws(() => new pg.Client({ servers: 4730 }), TypeError);
    assert.throws(() => new pg.Client({ servers: [4730] }), TypeError);
    assert.throws(() => new pg.Client({ timeout: '10' }), TypeError);
    assert.throws(() => new pg.Client({ servers: [] }), RangeError);
    assert.throws(() => new pg.Client({ timeout: -1 }), RangeError);
    assert.throws(() => new pg.Worker({ concurrency: '2' }), TypeError);
    assert.throws(() => new pg.Worker({ concurrency: 0 }), RangeError);
    assert.throws(() => new pg.Worker({ concurrency: 1.5 }), RangeError);
    assert.throws(() => new pg.Admin({ server: 1 }), TypeError);
    assert.throws(() => new pg.Client({ servers: 'host:notaport' }), pg.InvalidArgumentError);
  });

  it('client methods reject wrong argument types with TypeError', async () => {
    await assert.rejects(client.submit(), TypeError);
    await assert.rejects(client.submit(42, 'x'), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(client.submit('f', 42), TypeError);
    await assert.rejects(client.submit('f', { data: 'x' }), TypeError);
    await assert.rejects(client.submit('f', null), TypeError);
    await assert.rejects(client.submit('f', [1, 2]), TypeError);
    await assert.rejects(client.submit('f', 'x', 'high'), TypeError);
    await assert.rejects(client.submit('f', 'x', { unique: 5 }), TypeError);
    await assert.rejects(client.submit('f', 'x', { priority: 1 }), TypeError);
    await assert.rejects(client.submit('f', 'x', { priority: 'urgent' }), RangeError);
    await assert.rejects(client.submit('f', 'x', { timeout: 'soon' }), TypeError);
    await assert.rejects(client.submit('f', 'x', { signal: {} }), TypeError);
    await assert.rejects(client.submit('', 'x'), RangeError);
    await assert.rejects(client.submitJob('f', 12), TypeError);
    await assert.rejects(client.submitBackground('f', 'x', { epoch: 'tomorrow' }), TypeError);
    await assert.rejects(client.status(12), TypeError);
    await assert.rejects(client.statusUnique(undefined), TypeError);
    await assert.rejects(client.echo(1), TypeError);
  });

  it('worker methods reject wrong argument types with TypeError', () => {
    assert.throws(() => worker.register(1, () => {}), TypeError);
    assert.throws(() => worker.register('f', 'not a function'), TypeError);
    assert.throws(() => worker.register('f', () => {}, { timeout: 'x' }), TypeError);
    assert.throws(() => worker.unregister(null), TypeError);
  });

  it('admin methods reject wrong argument types with TypeError', async () => {
    const admin = new pg.Admin({ server: '127.0.0.1:1' });
    await assert.rejects(admin.cancelJob(1), TypeError);
    await assert.rejects(admin.maxqueue('f', 'ten'), TypeError);
    await assert.rejects(admin.shutdown('yes'), TypeError);
    await assert.rejects(admin.raw(), TypeError);
  });

  it('values the core refuses come back as InvalidArgumentError', async () => {
    const port = await freePort();
    const c = new pg.Client({ servers: `127.0.0.1:${port}` });
    await assert.rejects(c.submit('f', 'x', { unique: 'u'.repeat(300) }), (err) => {
      assert.ok(err instanceof pg.GearmanError);
      assert.ok(['EINVAL', 'ECONNREFUSED'].includes(err.code), err.code);
      return true;
    });
    await c.close();
  });
});

describe('process exit', { timeout: 60000 }, () => {
  it('exits by itself after client and worker are closed', async () => {
    const server = await startGearmand();
    try {
      const script = `
        const pg = require(${JSON.stringify(PKG)});
        (async () => {
          const worker = new pg.Worker({ servers: process.env.ADDR, concurrency: 2 });
          worker.register('exit_rev', (job) => Buffer.from(job.data).reverse());
          const working = worker.work();
          const client = new pg.Client({ servers: process.env.ADDR });
          const out = await client.submit('exit_rev', 'bye');
          const job = await client.submitJob('exit_rev', 'ev');
          for await (const ev of job) {}
          await new pg.Admin({ server: process.env.ADDR }).close();
          await client.close();
          await worker.stop();
          await working;
          console.log(out.toString());
        })().catch((e) => { console.error(e); process.exit(3); });
      `;
      const r = await runNode(['-e', script], { timeout: 20000, env: { ADDR: server.addr } });
      assert.equal(r.timedOut, false, 'the process did not exit by itself (hanging handles)');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'eyb');
      assert.ok(r.ms < 10000, `exit took ${r.ms} ms`);
    } finally {
      await server.stop();
    }
  });

  it('an unused client or a failed connection does not keep the process alive', async () => {
    const port = await freePort();
    const script = `
      const pg = require(${JSON.stringify(PKG)});
      const c = new pg.Client({ servers: '127.0.0.1:${port}' });
      const w = new pg.Worker({ servers: '127.0.0.1:${port}' });
      c.submit('f', 'x').catch((e) => console.log(e.code));
    `;
    const r = await runNode(['-e', script], { timeout: 15000 });
    assert.equal(r.timedOut, false, 'the process did not exit by itself');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'ECONNREFUSED');
  });
});
