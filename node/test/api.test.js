'use strict';
// Every API of the package against the embedded polygear Server and the C gearmand.

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');

const { pg, SERVER_KINDS, eventually, sleep, fname } = require('./helpers');

for (const kind of SERVER_KINDS) {
  describe(`API against the ${kind.name}`, { timeout: 120000 }, () => {
    let server;
    let client;
    let worker;
    let working;
    const F = {
      rev: fname('rev'),
      echo: fname('echo'),
      sync: fname('sync'),
      events: fname('events'),
      slow: fname('slow'),
      hold: fname('hold'),
      throws: fname('throws'),
      rejects: fname('rejects'),
      badResult: fname('badresult'),
      meta: fname('meta'),
      timed: fname('timed'),
      nobody: fname('nobody'),
    };
    const holds = [];
    let releaseHolds;
    const released = new Promise((resolve) => (releaseHolds = resolve));

    before(async () => {
      server = await kind.start();
      worker = new pg.Worker({ servers: [server.addr], concurrency: 16, clientId: 'node-api-worker' });
      worker
        .register(F.rev, async (job) => Buffer.from(job.data).reverse())
        .register(F.echo, (job) => job.data)
        .register(F.sync, (job) => `sync:${job.data.toString()}`)
        .register(F.events, async (job) => {
          job.sendStatus(1, 3);
          job.sendData('part1');
          job.sendWarning(new Uint8Array([119, 33]));
          job.sendData(Buffer.from('part2'));
          job.sendStatus(3, 3);
          return 'done';
        })
        .register(F.slow, async (job) => {
          await sleep(Number(job.data.toString()));
          return 'slept';
        })
        .register(F.hold, async (job) => {
          holds.push(job.handle);
          job.sendStatus(1, 2);
          await released;
          job.sendStatus(2, 2);
          return 'held';
        })
        .register(F.throws, (job) => {
          throw new Error(job.data.toString());
        })
        .register(F.rejects, async (job) => {
          await sleep(1);
          return Promise.reject(new RangeError(`async ${job.data.toString()}`));
        })
        .register(F.badResult, () => 42)
        .register(F.meta, (job) => JSON.stringify({ handle: job.handle, unique: job.unique, function: job.function }))
        .register(F.timed, async () => 'in time', { timeout: 5000 });
      working = worker.work();
      client = new pg.Client({ servers: [server.addr], clientId: 'node-api-client' });
      // The worker registers asynchronously: wait until it serves jobs.
      await eventually(async () => (await client.submit(F.echo, 'ready', { timeout: 1000 }).catch(() => null)) !== null,
        10000, 'the worker to serve');
    });

    after(async () => {
      releaseHolds();
      if (client) await client.close();
      if (worker) await worker.stop();
      if (working) await working;
      if (server) await server.stop();
    });

    it('submit resolves with a Buffer for Buffer, Uint8Array and string payloads', async () => {
      const a = await client.submit(F.rev, Buffer.from('hello'));
      assert.ok(Buffer.isBuffer(a));
      assert.equal(a.toString(), 'olleh');
      const u8 = new Uint8Array([0, 1, 2, 255]);
      assert.deepEqual([...(await client.submit(F.rev, u8))], [255, 2, 1, 0]);
      const view = new Uint8Array(Buffer.from('xxabcxx').buffer).subarray(0, 0); // empty view
      assert.equal((await client.submit(F.echo, view)).length, 0);
      const sub = Buffer.from('__abc__').subarray(2, 5);
      assert.equal((await client.submit(F.echo, new Uint8Array(sub))).toString(), 'abc');
      assert.equal((await client.submit(F.echo, 'grüße ✓')).toString('utf8'), 'grüße ✓');
      assert.equal((await client.submit(F.sync, 'x')).toString(), 'sync:x');
      const bin = Buffer.from([0, 0, 10, 0, 13, 0]);
      assert.deepEqual(await client.submit(F.echo, bin), bin);
      const big = Buffer.alloc(1 << 20, 7);
      assert.deepEqual(await client.submit(F.echo, big), big);
    });

    it('keeps many jobs in flight from one client', async () => {
      const n = 300;
      const results = await Promise.all(Array.from({ length: n }, (_, i) => client.submit(F.rev, `job-${i}`)));
      results.forEach((r, i) => assert.equal(r.toString(), [...`job-${i}`].reverse().join('')));
    });

    it('passes unique, priority and handle to the worker', async () => {
      for (const priority of ['high', 'normal', 'low']) {
        const meta = JSON.parse((await client.submit(F.meta, 'x', { unique: `u-${priority}`, priority })).toString());
        assert.equal(meta.unique, `u-${priority}`);
        assert.equal(meta.function, F.meta);
        assert.match(meta.handle, /\S/);
      }
      const meta = JSON.parse((await client.submit(F.meta, 'x')).toString());
      assert.equal(meta.unique, '');
    });

    it('coalesces jobs with the same unique key', async () => {
      const unique = `same-${Date.now()}`;
      const [a, b] = await Promise.all([
        client.submit(F.slow, '300', { unique }),
        client.submit(F.slow, '300', { unique }),
      ]);
      assert.equal(a.toString(), 'slept');
      assert.equal(b.toString(), 'slept');
    });

    it('streams WORK_DATA / WARNING / STATUS through the async iterator', async () => {
      const job = await client.submitJob(F.events, 'go');
      assert.match(job.handle, /\S/);
      const events = [];
      for await (const ev of job) events.push(ev);
      assert.deepEqual(
        events.map((e) => e.type),
        ['status', 'data', 'warning', 'data', 'status', 'complete'],
      );
      assert.deepEqual(events[0], { type: 'status', numerator: 1, denominator: 3 });
      assert.equal(events[1].data.toString(), 'part1');
      assert.equal(events[2].data.toString(), 'w!');
      assert.equal(events[3].data.toString(), 'part2');
      assert.deepEqual(events[4], { type: 'status', numerator: 3, denominator: 3 });
      assert.equal(events[5].data.toString(), 'done');
      assert.equal((await job.result()).toString(), 'done');
    });

    it('emits job events to on() listeners and resolves result()', async () => {
      const job = await client.submitJob(F.events, 'go');
      const seen = [];
      job.on('data', (d) => seen.push(`data:${d}`));
      job.on('warning', (d) => seen.push(`warning:${d}`));
      job.on('status', (n, d) => seen.push(`status:${n}/${d}`));
      job.on('complete', (d) => seen.push(`complete:${d}`));
      assert.equal((await job.result()).toString(), 'done');
      assert.deepEqual(seen, ['status:1/3', 'data:part1', 'warning:w!', 'data:part2', 'status:3/3', 'complete:done']);
      await assert.rejects(async () => {
        for await (const ev of job) assert.fail(`unexpected ${ev.type}`);
      }, /listeners/);
    });

    it('reports a failing job to iterator and listeners', async () => {
      const job = await client.submitJob(F.throws, 'bad thing');
      const events = [];
      for await (const ev of job) events.push(ev);
      assert.equal(events.at(-1).type, 'exception');
      assert.equal(events.at(-1).message, 'bad thing');
      await assert.rejects(job.result(), { name: 'JobExceptionError', code: 'EJOBEXCEPTION', message: 'bad thing' });

      const job2 = await client.submitJob(F.throws, 'again');
      let exception = null;
      job2.on('exception', (m) => (exception = m));
      await assert.rejects(job2.result(), pg.JobExceptionError);
      assert.equal(exception, 'again');
    });

    it('turns a thrown error or rejected promise into a typed job error', async () => {
      await assert.rejects(client.submit(F.throws, 'sync boom'), (err) => {
        assert.ok(err instanceof pg.JobExceptionError);
        assert.ok(err instanceof pg.GearmanError);
        assert.ok(err instanceof Error);
        assert.equal(err.code, 'EJOBEXCEPTION');
        assert.equal(err.message, 'sync boom');
        assert.match(err.handle, /\S/);
        return true;
      });
      await assert.rejects(client.submit(F.rejects, 'boom'), { code: 'EJOBEXCEPTION', message: 'async boom' });
      await assert.rejects(client.submit(F.badResult, ''), { code: 'EJOBEXCEPTION', message: 'worker function returned number; return a Buffer, string or undefined (or register with {json: true})' });
      // the worker keeps serving afterwards
      assert.equal((await client.submit(F.rev, 'ok')).toString(), 'ko');
    });

    it('times out a job with ETIMEDOUT (per call and client default)', async () => {
      const t0 = Date.now();
      await assert.rejects(client.submit(F.slow, '3000', { timeout: 200 }), (err) => {
        assert.ok(err instanceof pg.TimeoutError);
        assert.equal(err.code, 'ETIMEDOUT');
        return true;
      });
      assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms`);
      const c2 = new pg.Client({ servers: server.addr, timeout: 200 });
      try {
        await assert.rejects(c2.submit(F.nobody, 'nobody serves this'), { name: 'TimeoutError', code: 'ETIMEDOUT' });
        assert.equal((await c2.submit(F.rev, 'ab', { timeout: 5000 })).toString(), 'ba');
      } finally {
        await c2.close();
      }
    });

    it('aborts submissions through an AbortSignal', async () => {
      const ac = new AbortController();
      const t0 = Date.now();
      setTimeout(() => ac.abort(new Error('user gave up')), 100);
      await assert.rejects(client.submit(F.slow, '3000', { signal: ac.signal }), (err) => {
        assert.ok(err instanceof pg.AbortError);
        assert.equal(err.name, 'AbortError');
        assert.equal(err.code, 'ABORT_ERR');
        assert.equal(err.cause.message, 'user gave up');
        return true;
      });
      assert.ok(Date.now() - t0 < 2500);
      await assert.rejects(client.submit(F.rev, 'x', { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' });
      await assert.rejects(client.submitBackground(F.rev, 'x', { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' });
      await assert.rejects(client.submit(F.slow, '3000', { signal: AbortSignal.timeout(100) }), { code: 'ABORT_ERR' });
      // an iterated job
      const ac2 = new AbortController();
      const job = await client.submitJob(F.slow, '3000', { signal: ac2.signal });
      setTimeout(() => ac2.abort(), 100);
      await assert.rejects(async () => {
        for await (const ev of job) assert.fail(`unexpected ${ev.type}`);
      }, { code: 'ABORT_ERR' });
      // an untriggered signal changes nothing
      assert.equal((await client.submit(F.rev, 'abc', { signal: new AbortController().signal })).toString(), 'cba');
    });

    it('submits background jobs and reports their status', async () => {
      const handle = await client.submitBackground(F.hold, 'bg', { priority: 'high' });
      assert.equal(typeof handle, 'string');
      assert.match(handle, /\S/);
      const st = await eventually(async () => {
        const s = await client.status(handle);
        return s.running && s.numerator === 1 ? s : null;
      }, 10000, 'the background job to run');
      assert.deepEqual(st, { handle, known: true, running: true, numerator: 1, denominator: 2 });
      const unknown = await client.status('H:nowhere:1');
      assert.equal(unknown.known, false);
      assert.equal(unknown.running, false);
      releaseHolds();
      await eventually(async () => !(await client.status(handle)).known, 10000, 'the background job to end');
      assert.ok(holds.includes(handle));
    });

    it('answers status by unique key', async () => {
      const unique = `bgu-${Date.now()}`;
      const handle = await client.submitBackground(F.slow, '400', { unique });
      assert.match(handle, /\S/);
      const s = await client.statusUnique(unique);
      assert.equal(typeof s.known, 'boolean');
      assert.equal(typeof s.running, 'boolean');
      const none = await client.statusUnique(`never-${Date.now()}`);
      assert.equal(none.known, false);
    });

    it('runs epoch (scheduled) background jobs', async () => {
      const handle = await client.submitBackground(F.echo, 'later', { epoch: new Date(Date.now() + 1000) });
      assert.match(handle, /\S/);
    });

    it('echoes through the server', async () => {
      assert.equal((await client.echo('ping')).toString(), 'ping');
      assert.deepEqual(await client.echo(new Uint8Array([1, 2, 3])), Buffer.from([1, 2, 3]));
    });

    it('runs functions registered with a timeout', async () => {
      assert.equal((await client.submit(F.timed, '')).toString(), 'in time');
    });

    it('administers the server', async () => {
      const admin = new pg.Admin({ server: server.addr, timeout: 5000 });
      try {
        const status = await admin.status();
        const rev = status.find((s) => s.function === F.rev);
        assert.ok(rev, 'status lists the registered function');
        assert.ok(rev.workers >= 1);
        assert.equal(typeof rev.total, 'number');
        const prio = await admin.priorityStatus();
        assert.ok(prio.some((p) => p.function === F.rev && p.workers >= 1));
        const workers = await admin.workers();
        const me = workers.find((w) => w.clientId === 'node-api-worker');
        assert.ok(me, `workers lists our worker: ${JSON.stringify(workers)}`);
        assert.ok(me.functions.includes(F.rev));
        assert.match(await admin.version(), /\d/);
        const pid = await admin.getpid();
        assert.ok(Number.isInteger(pid) && pid > 0);
        if (kind.name.startsWith('embedded')) assert.equal(pid, process.pid);
        assert.equal(typeof (await admin.verbose()), 'string');
        assert.ok(Array.isArray(await admin.showJobs()));
        assert.ok(Array.isArray(await admin.showUniqueJobs()));
        const q = fname('queue');
        await admin.maxqueue(q, 5);
        await admin.maxqueue(q, [1, 2, 3]);
        await admin.maxqueue(q);
        await assert.rejects(admin.cancelJob('H:nonexistent:42'), pg.ServerError);
        assert.match(await admin.raw('version'), /\d/);
        await assert.rejects(admin.maxqueue(q, [1, 2]), TypeError);
      } finally {
        await admin.close();
      }
    });
  });
}
