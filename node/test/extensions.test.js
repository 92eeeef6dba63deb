'use strict';
// Issue #19's polygeard extensions from Node: retries and the dead set,
// retained results, cancellation (client.cancel, AbortSignal, job.cancelled()),
// pause and drain, unique windows, periodic jobs; against gearmand, the
// clear ServerError each of them gives.

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');

const { pg, startEmbedded, startGearmand, eventually, sleep, fname } = require('./helpers');

/** Starts a worker with `register(worker)` done; returns { worker, stop }. */
function startWorker(server, register, options = {}) {
  const worker = new pg.Worker({ servers: [server.addr], concurrency: 4, ...options });
  register(worker);
  const working = worker.work();
  return {
    worker,
    async stop() {
      await worker.stop({ timeout: 2000 });
      await working;
    },
  };
}

/** The `status` row of `f` (or zeros). */
async function statusOf(admin, f) {
  const row = (await admin.status()).find((s) => s.function === f);
  return row || { function: f, total: 0, running: 0, workers: 0 };
}

describe('polygeard extensions (embedded server)', { timeout: 120000 }, () => {
  let server;
  let client;
  let admin;

  before(async () => {
    server = await startEmbedded();
    client = new pg.Client({ servers: [server.addr] });
    admin = new pg.Admin({ server: server.addr });
  });
  after(async () => {
    await client.close();
    await admin.close();
    await server.stop();
  });

  it('a retry policy runs a failing background job again until it completes', async () => {
    const f = fname('retry_ok');
    await admin.setRetryPolicy(f, 3, 10);
    const policies = await admin.retryPolicies();
    assert.deepEqual(policies.find((p) => p.function === f), { function: f, maxAttempts: 3, backoff: 10, maxDelay: 3600000 });
    let runs = 0;
    const w = startWorker(server, (worker) =>
      worker.register(f, () => {
        runs += 1;
        if (runs < 3) throw new Error(`attempt ${runs} failed`);
        return `ok after ${runs}`;
      }),
    );
    try {
      const handle = await client.submitBackground(f, 'x', { retain: 60000 });
      const result = await eventually(() => client.result(handle), 10000, 'the retried result');
      assert.equal(result.toString(), 'ok after 3');
      assert.equal(runs, 3);
      assert.deepEqual(await admin.deadJobs(f), []);
      assert.deepEqual(await client.resultState(handle), { state: 'complete', data: Buffer.from('ok after 3') });
    } finally {
      await w.stop();
    }
    await admin.setRetryPolicy(f, 0, 0); // removes it
    assert.equal((await admin.retryPolicies()).find((p) => p.function === f), undefined);
  });

  it('exhausted attempts go to the dead set; retryDead and deleteDead', async () => {
    const f = fname('retry_dead');
    await admin.setRetryPolicy(f, 2, 5, 50);
    let runs = 0;
    const w = startWorker(server, (worker) =>
      worker.register(f, () => {
        runs += 1;
        throw new Error(`boom ${runs}`);
      }),
    );
    try {
      const t0 = Math.floor(Date.now() / 1000);
      const handle = await client.submitBackground(f, 'payload', { unique: 'dead-key' });
      const [dead] = await eventually(async () => {
        const rows = await admin.deadJobs(f);
        return rows.length ? rows : null;
      }, 10000, 'the dead record');
      assert.equal(dead.handle, handle);
      assert.equal(dead.function, f);
      assert.deepEqual(dead.unique, Buffer.from('dead-key'));
      assert.deepEqual(dead.data, Buffer.from('payload'));
      assert.equal(dead.attempts, 2);
      assert.equal(dead.error, 'boom 2');
      assert.ok(dead.submitted instanceof Date && dead.failedAt instanceof Date);
      assert.ok(dead.submitted.getTime() / 1000 >= t0 - 1 && dead.failedAt >= dead.submitted);
      assert.ok((await admin.deadJobs()).some((j) => j.handle === handle), 'deadJobs() lists every function');
      assert.equal(runs, 2);

      assert.equal(await admin.retryDead(f), 1);
      await eventually(async () => runs === 4 && (await admin.deadJobs(f)).length === 1, 10000, 'the second death');
      assert.equal((await admin.deadJobs(f))[0].error, 'boom 4');
      assert.equal(await admin.deleteDead(f), 1);
      assert.deepEqual(await admin.deadJobs(f), []);
      assert.equal(await admin.retryDeadJob('H:nowhere:1'), false);
      assert.equal(await admin.deleteDeadJob('H:nowhere:1'), false);
      assert.equal(typeof (await admin.retryAllDead()), 'number');
      assert.equal(typeof (await admin.deleteAllDead()), 'number');
    } finally {
      await w.stop();
    }
  });

  it('retained results: null until the job completed, then the bytes; a raising job rejects', async () => {
    const f = fname('retain');
    const g = fname('retain_raise');
    const handle = await client.submitBackground(f, 'abc', { retain: 60000 });
    assert.equal(await client.result(handle), null, 'queued: null');
    assert.equal((await client.resultState(handle)).state, 'queued');
    const raised = await client.submitBackground(g, 'x', { retain: 1 });
    const w = startWorker(server, (worker) =>
      worker.register(f, (job) => Buffer.from(job.data).reverse()).register(g, () => {
        throw new Error('no good');
      }),
    );
    try {
      const result = await eventually(() => client.result(handle), 5000, 'the result');
      assert.deepEqual(result, Buffer.from('cba'));
      await eventually(async () => (await client.resultState(raised)).state === 'exception', 5000, 'the exception');
      await assert.rejects(client.result(raised), (err) => err instanceof pg.JobExceptionError && err.message === 'no good');
      assert.equal(await client.result('H:nowhere:424242'), null, 'unknown: null');
      await assert.rejects(client.submitBackground(f, 'x', { retain: 0 }), RangeError);
      await assert.rejects(client.submit(f, 'x', { retain: 1000 }), TypeError);
    } finally {
      await w.stop();
    }
  });

  it('cancel of a queued job: true, and its waiting client gets JobCancelledError; unknown handle: false', async () => {
    const f = fname('cancel_queued');
    const job = await client.submitJob(f, 'x');
    const other = new pg.Client({ servers: [server.addr] });
    try {
      assert.equal(await other.cancel(job.handle), true);
      await assert.rejects(job.result(), (err) => {
        assert.ok(err instanceof pg.JobCancelledError);
        assert.ok(err instanceof pg.JobFailedError);
        assert.equal(err.code, 'ECANCELED');
        assert.equal(err.handle, job.handle);
        assert.match(err.reason, /^cancelled/);
        return true;
      });
      assert.equal(await other.cancel(job.handle), false);
      assert.equal(await other.cancel('H:nowhere:987654'), false);
      assert.equal((await client.status(job.handle)).known, false);
      assert.equal((await admin.showJobs()).find((j) => j.handle === job.handle).ignore, true);
    } finally {
      await other.close();
    }
  });

  it('cancel of a running job: submit() rejects with JobCancelledError and job.cancelled() turns true', async () => {
    const f = fname('cancel_running');
    let started;
    const handleSeen = new Promise((resolve) => (started = resolve));
    const checks = [];
    const w = startWorker(server, (worker) =>
      worker.register(f, async (job) => {
        checks.push(await job.cancelled());
        started(job.handle);
        while (!(await job.cancelled())) await sleep(20);
        checks.push(true);
        return 'too late';
      }),
    );
    try {
      const submitted = client.submit(f, 'x');
      submitted.catch(() => {}); // it may reject before cancel() resolves; asserted below
      const handle = await handleSeen;
      assert.deepEqual(checks, [false]);
      assert.equal(await client.cancel(handle), true);
      await assert.rejects(submitted, (err) => {
        assert.ok(err instanceof pg.JobCancelledError, err.stack);
        assert.equal(err.code, 'ECANCELED');
        assert.equal(err.handle, handle);
        return true;
      });
      await eventually(() => checks.length === 2, 5000, 'job.cancelled() to turn true');
    } finally {
      await w.stop();
    }
  });

  it('an aborted signal rejects with AbortError and cancels the job on the server', async () => {
    const f = fname('abort_running');
    const queued = fname('abort_queued');
    let started;
    const running = new Promise((resolve) => (started = resolve));
    let sawCancel = false;
    const w = startWorker(server, (worker) =>
      worker.register(f, async (job) => {
        started();
        while (!(await job.cancelled())) await sleep(20);
        sawCancel = true;
        return 'x';
      }),
    );
    try {
      // a running foreground job
      const ac = new AbortController();
      const p = client.submit(f, 'x', { signal: ac.signal });
      await running;
      ac.abort(new Error('enough'));
      await assert.rejects(p, (err) => err instanceof pg.AbortError && err.cause.message === 'enough');
      await eventually(() => sawCancel, 5000, 'the worker to see the cancel');

      // aborted before the handle came back: cancelled once it arrives
      const jobCounts = async () => {
        const jobs = await admin.showJobs();
        return { all: jobs.length, live: jobs.filter((j) => !j.ignore).length };
      };
      const before = await jobCounts();
      const ac2 = new AbortController();
      const p2 = client.submitBackground(queued, 'x', { signal: ac2.signal });
      ac2.abort();
      await assert.rejects(p2, pg.AbortError);
      // a queued foreground job through submitJob
      const ac3 = new AbortController();
      const job = await client.submitJob(queued, 'y', { signal: ac3.signal });
      assert.equal((await client.status(job.handle)).known, true);
      ac3.abort();
      await assert.rejects(job.result(), pg.AbortError);
      await eventually(async () => !(await client.status(job.handle)).known, 5000, 'the submitJob job cancelled');
      // Both jobs reached the server and were cancelled there (polygeard
      // keeps a cancelled queued job listed, marked ignore, until a worker
      // asks for its function).
      await eventually(async () => {
        const now = await jobCounts();
        return now.all === before.all + 2 && now.live === before.live;
      }, 5000, 'the background job cancelled');
    } finally {
      await w.stop();
    }
  });

  it('pause holds a function\'s jobs, resume hands them out', async () => {
    const f = fname('paused');
    await admin.pause(f);
    assert.ok((await admin.paused()).includes(f));
    let runs = 0;
    const w = startWorker(server, (worker) =>
      worker.register(f, () => {
        runs += 1;
        return 'ran';
      }),
    );
    try {
      const handle = await client.submitBackground(f, 'x', { retain: 60000 });
      await eventually(async () => (await statusOf(admin, f)).workers === 1, 5000, 'the worker');
      await sleep(200); // a worker that could grab it would have by now
      assert.equal(runs, 0);
      assert.equal(await client.result(handle), null);
      assert.deepEqual(await statusOf(admin, f), { function: f, total: 1, running: 0, workers: 1 });
      await admin.resume(f);
      assert.ok(!(await admin.paused()).includes(f));
      assert.deepEqual(await eventually(() => client.result(handle), 5000, 'the result'), Buffer.from('ran'));
      assert.equal(runs, 1);
    } finally {
      await w.stop();
    }
  });

  it('drainWorker: a drained worker gets no new jobs', async () => {
    const f = fname('drain');
    const id = `drain-${process.pid}`;
    const ran = [];
    const a = startWorker(server, (worker) => worker.register(f, () => (ran.push('a'), 'a')), { clientId: id });
    let b;
    try {
      await eventually(async () => (await statusOf(admin, f)).workers === 1, 5000, 'worker a');
      assert.equal(await admin.drainWorker(id), 1);
      assert.ok((await admin.draining()).some((d) => d.clientId === id && typeof d.fd === 'number'));
      const handle = await client.submitBackground(f, 'x', { retain: 60000 });
      await sleep(200);
      assert.deepEqual(ran, []);
      b = startWorker(server, (worker) => worker.register(f, () => (ran.push('b'), 'b')));
      assert.deepEqual(await eventually(() => client.result(handle), 5000, 'worker b'), Buffer.from('b'));
      assert.deepEqual(ran, ['b']);
      await assert.rejects(admin.drainWorker('no-such-worker'), (err) => err instanceof pg.ServerError && err.serverCode === 'UNKNOWN_WORKER');
      const fd = (await admin.workers()).find((x) => x.clientId === id).fd;
      assert.equal(await admin.drainWorker(fd), 1, 'by fd number');
    } finally {
      await a.stop();
      if (b) await b.stop();
    }
  });

  it('a unique window answers a repeated submission with the kept result', async () => {
    const f = fname('window');
    await admin.setUniqueWindow(f, 60000);
    assert.deepEqual((await admin.uniqueWindows()).find((r) => r.function === f), { function: f, window: 60000 });
    await admin.setRetention(f, 30000);
    assert.deepEqual((await admin.retention()).find((r) => r.function === f), { function: f, retain: 30000 });
    let runs = 0;
    const w = startWorker(server, (worker) => worker.register(f, () => `run ${++runs}`));
    try {
      assert.equal((await client.submit(f, 'x', { unique: 'k' })).toString(), 'run 1');
      assert.equal((await client.submit(f, 'x', { unique: 'k' })).toString(), 'run 1');
      assert.equal(runs, 1);
      assert.equal((await client.submit(f, 'x', { unique: 'other' })).toString(), 'run 2');
    } finally {
      await w.stop();
      await admin.setUniqueWindow(f, 0);
      await admin.setRetention(f, 0);
    }
    assert.equal((await admin.uniqueWindows()).find((r) => r.function === f), undefined);
  });

  it('a periodic job: scheduleAdd, schedules, a per-second firing reaches the worker, scheduleDelete', async () => {
    const f = fname('tick');
    const name = `sched-${process.pid}`;
    const got = [];
    const w = startWorker(server, (worker) => worker.register(f, (job) => (got.push({ unique: job.unique, data: job.data.toString() }), '')));
    try {
      await admin.scheduleAdd(name, '* * * * * *', f, 'tick');
      const row = (await admin.schedules()).find((s) => s.name === name);
      assert.equal(row.function, f);
      assert.equal(row.cron, '* * * * * *');
      assert.equal(row.data, 'tick');
      assert.ok(row.next instanceof Date);
      await eventually(() => got.length > 0, 5000, 'a firing');
      assert.equal(got[0].data, 'tick');
      assert.match(got[0].unique, new RegExp(`^${name}@\\d+$`));
      await eventually(async () => (await admin.schedules()).find((s) => s.name === name).lastFired instanceof Date, 5000, 'lastFired');
    } finally {
      await admin.scheduleDelete(name);
      await w.stop();
    }
    assert.equal((await admin.schedules()).find((s) => s.name === name), undefined);
    await assert.rejects(admin.scheduleDelete(name), (err) => err instanceof pg.ServerError && err.serverCode === 'UNKNOWN_SCHEDULE');
  });

  it('argument checks', async () => {
    await assert.rejects(admin.setRetryPolicy('f', -1, 10), RangeError);
    await assert.rejects(admin.setRetryPolicy('f', 2), TypeError);
    await assert.rejects(admin.setRetryPolicy('f', 2, -5), RangeError);
    await assert.rejects(admin.drainWorker({}), TypeError);
    await assert.rejects(client.cancel(''), RangeError);
    await assert.rejects(client.result(42), TypeError);
  });
});

describe('the embedded Server\'s extension options', { timeout: 60000 }, () => {
  it('retry, retain, uniqueWindow and schedules are in force from the start', async () => {
    const f = fname('opt');
    const server = await pg.Server.start({
      port: 0,
      retry: { [f]: { maxAttempts: 4, backoff: 20, maxDelay: 500 }, other: 2 },
      retain: { [f]: 1500 },
      uniqueWindow: { [f]: 60000 },
      schedules: [{ name: 'opt-tick', cron: '* * * * * *', function: f, data: 'from options' }],
    });
    const admin = new pg.Admin({ server: server.address });
    const got = [];
    const w = startWorker({ addr: server.address }, (worker) => worker.register(f, (job) => (got.push(job.data.toString()), 'ok')));
    try {
      const policies = await admin.retryPolicies();
      assert.deepEqual(policies.find((p) => p.function === f), { function: f, maxAttempts: 4, backoff: 20, maxDelay: 500 });
      assert.equal(policies.find((p) => p.function === 'other').maxAttempts, 2);
      assert.deepEqual((await admin.retention()).find((r) => r.function === f), { function: f, retain: 2000 });
      assert.deepEqual((await admin.uniqueWindows()).find((r) => r.function === f), { function: f, window: 60000 });
      assert.equal((await admin.schedules())[0].name, 'opt-tick');
      await eventually(() => got.includes('from options'), 5000, 'the scheduled job');
    } finally {
      await w.stop();
      await admin.close();
      await server.stop();
    }
    assert.throws(() => new pg.Server({ retain: { [f]: -1 } }), RangeError);
    assert.throws(() => new pg.Server({ schedules: [{ name: 'x', cron: '* * * * *' }] }), TypeError);
    assert.throws(() => new pg.Server({ retry: { [f]: { attempts: 2 } } }), TypeError);
  });
});

describe('polygeard extensions against gearmand', { timeout: 60000 }, () => {
  let server;
  let client;
  let admin;
  before(async () => {
    server = await startGearmand();
    client = new pg.Client({ servers: [server.addr] });
    admin = new pg.Admin({ server: server.addr });
  });
  after(async () => {
    await client.close();
    await admin.close();
    await server.stop();
  });

  it('retain and result() reject with a ServerError saying it is a polygeard extension', async () => {
    const f = fname('gd_retain');
    await assert.rejects(client.submitBackground(f, 'x', { retain: 1000 }), (err) => {
      assert.ok(err instanceof pg.ServerError, err.stack);
      assert.match(err.message, /does not support retained results \(a polygeard extension\)/);
      return true;
    });
    const handle = await client.submitBackground(f, 'x');
    await assert.rejects(client.result(handle), (err) => err instanceof pg.ServerError && /polygeard extension/.test(err.message));
    assert.equal(await client.cancel(handle), true, 'gearmand cancels a queued job');
  });

  it('admin extensions reject with ServerError UNKNOWN_COMMAND', async () => {
    for (const call of [() => admin.setRetryPolicy('f', 2, 10), () => admin.deadJobs(), () => admin.pause('f'), () => admin.schedules()]) {
      await assert.rejects(call(), (err) => err instanceof pg.ServerError && err.serverCode === 'UNKNOWN_COMMAND');
    }
  });
});
