'use strict';
// Workers that report trouble (issue #13): work() without functions, handler
// errors logged and hooked, the result rule, Job.signal on the registered
// timeout, stop({ timeout }), SIGINT/SIGTERM, gearmanode aliases.

const assert = require('node:assert/strict');
const path = require('node:path');
const { describe, it } = require('node:test');

const { pg, SERVER_KINDS, runNode, eventually, sleep, fname } = require('./helpers');

const PKG = path.resolve(__dirname, '..');

/** A logger recording every line by level. */
function recorder() {
  const lines = { debug: [], info: [], warn: [], error: [] };
  const logger = {};
  for (const level of Object.keys(lines)) logger[level] = (m) => lines[level].push(m);
  return { logger, lines };
}

/** Starts a worker and waits until it serves a probe function; resolves with `{ working }`. */
async function serving(server, worker, client) {
  const probe = fname('probe');
  worker.register(probe, () => 'ready');
  const working = worker.work({ handleSignals: false });
  await eventually(async () => (await client.submit(probe, '', { timeout: 1000 }).catch(() => null)) !== null,
    10000, 'the worker to serve');
  return { working }; // not the promise itself: an async function would wait for it
}

describe('work() without a registered function', () => {
  it('rejects with InvalidArgumentError instead of waiting forever', async () => {
    const worker = new pg.Worker({ servers: '127.0.0.1:1' });
    await assert.rejects(worker.work(), {
      name: 'InvalidArgumentError',
      code: 'EINVAL',
      message: 'no function registered; use worker.register(name, handler) before work()',
    });
    worker.register('f', () => 'x').unregister('f');
    await assert.rejects(worker.work(), { name: 'InvalidArgumentError' });
    await worker.stop();
  });
});

describe('logger and logLevel options', () => {
  it('refuses a logger without the four methods and an unknown level', () => {
    assert.throws(() => new pg.Worker({ logger: { warn() {} } }), { name: 'TypeError', message: /options\.logger\.debug/ });
    assert.throws(() => new pg.Worker({ logger: 'console' }), { name: 'TypeError' });
    assert.throws(() => new pg.Worker({ logLevel: 'verbose' }), { name: 'RangeError', message: /'debug', 'info', 'warn', 'error', 'silent'/ });
    assert.throws(() => new pg.Worker({ onError: 'log' }), { name: 'TypeError', message: /options\.onError/ });
  });
});

for (const kind of SERVER_KINDS) {
  describe(`worker trouble on the ${kind.name}`, { timeout: 60000 }, () => {
    it('a handler that throws is logged with its stack, emitted as jobError and passed to onError', async () => {
      const server = await kind.start();
      const { logger, lines } = recorder();
      const hooked = [];
      const emitted = [];
      const worker = new pg.Worker({ servers: server.addr, logger, onError: (err, job) => hooked.push([err, job]) });
      worker.on('jobError', (err, job) => emitted.push([err, job]));
      const f = fname('throws');
      worker.register(f, function failingHandler() {
        throw new RangeError('boom');
      });
      const client = new pg.Client({ servers: server.addr, timeout: 10000 });
      let working;
      try {
        ({ working } = await serving(server, worker, client));
        await assert.rejects(client.submit(f, 'x'), { name: 'JobExceptionError', message: 'boom' });
        await eventually(() => hooked.length === 1 && emitted.length === 1, 5000, 'the hook and the event');
        const [err, job] = hooked[0];
        assert.ok(err instanceof RangeError);
        assert.equal(job.function, f);
        assert.equal(emitted[0][0], err);
        assert.equal(lines.error.length, 1, lines.error.join('\n'));
        assert.match(lines.error[0], new RegExp(`job ${job.handle.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(function '${f}'\\) failed: RangeError: boom`));
        assert.match(lines.error[0], /\n\s+at .*failingHandler/, 'the stack is logged');
      } finally {
        await worker.stop();
        if (working) await working;
        await client.close();
        await server.stop();
      }
    });

    it('a rejecting async handler and a throwing onError hook are both reported, and the worker keeps serving', async () => {
      const server = await kind.start();
      const { logger, lines } = recorder();
      const worker = new pg.Worker({
        servers: server.addr,
        logger,
        logLevel: 'warn',
        onError: () => {
          throw new Error('hook broke');
        },
      });
      const f = fname('rejects');
      worker.register(f, async () => Promise.reject(new TypeError('async boom')));
      const client = new pg.Client({ servers: server.addr, timeout: 10000 });
      let working;
      try {
        ({ working } = await serving(server, worker, client));
        await assert.rejects(client.submit(f, 'x'), { message: 'async boom' });
        await eventually(() => lines.warn.some((l) => /options\.onError threw: hook broke/.test(l)), 5000, 'the hook warning');
        assert.match(lines.error[0], /TypeError: async boom/);
        assert.equal(lines.debug.length, 0, 'logLevel warn drops debug lines');
        await assert.rejects(client.submit(f, 'again'), { message: 'async boom' });
      } finally {
        await worker.stop();
        if (working) await working;
        await client.close();
        await server.stop();
      }
    });

    it('result rule: Buffer/Uint8Array/string pass, undefined/null are empty, anything else names its type', async () => {
      const server = await kind.start();
      const { logger, lines } = recorder();
      const worker = new pg.Worker({ servers: server.addr, logger, concurrency: 4 });
      const results = {
        buffer: Buffer.from('b'),
        uint8: new Uint8Array([117]),
        string: 's',
        undef: undefined,
        nul: null,
        object: { w: 1 },
        array: [1],
        number: 7,
        map: new Map(),
        boolean: true,
      };
      const F = {};
      for (const [k, v] of Object.entries(results)) {
        F[k] = fname(k);
        worker.register(F[k], async () => v);
      }
      const client = new pg.Client({ servers: server.addr, timeout: 10000 });
      let working;
      try {
        ({ working } = await serving(server, worker, client));
        assert.equal(String(await client.submit(F.buffer, '')), 'b');
        assert.equal(String(await client.submit(F.uint8, '')), 'u');
        assert.equal(String(await client.submit(F.string, '')), 's');
        assert.equal((await client.submit(F.undef, '')).length, 0);
        assert.equal((await client.submit(F.nul, '')).length, 0);
        for (const [k, type] of [['object', 'object'], ['array', 'array'], ['number', 'number'], ['map', 'Map'], ['boolean', 'boolean']]) {
          await assert.rejects(client.submit(F[k], ''), {
            name: 'JobExceptionError',
            message: `worker function returned ${type}; return a Buffer, string or undefined (or register with {json: true})`,
          });
        }
        assert.equal(lines.error.length, 5, 'each bad result is logged');
      } finally {
        await worker.stop();
        if (working) await working;
        await client.close();
        await server.stop();
      }
    });

    it('job.signal aborts on the registered timeout and frees the slot of a handler that never settles', async () => {
      const server = await kind.start();
      const { logger, lines } = recorder();
      const worker = new pg.Worker({ servers: server.addr, logger, concurrency: 1 });
      const stuck = fname('stuck');
      const quick = fname('quick');
      const reasons = [];
      let late = null;
      worker.register(stuck, (job) => new Promise((resolve) => {
        job.signal.addEventListener('abort', () => {
          reasons.push(job.signal.reason);
          setTimeout(() => {
            late = 'returned after the abort';
            resolve('too late');
          }, 50);
        });
      }), { timeout: 300 });
      worker.register(quick, () => 'quick');
      const client = new pg.Client({ servers: server.addr, timeout: 15000 });
      let working;
      try {
        ({ working } = await serving(server, worker, client));
        const t0 = Date.now();
        await assert.rejects(client.submit(stuck, 'x'), { name: 'JobFailedError' });
        // the only slot is free again: the next job runs
        assert.equal(String(await client.submit(quick, 'y')), 'quick');
        assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
        assert.equal(reasons.length, 1);
        assert.ok(reasons[0] instanceof pg.TimeoutError);
        assert.match(reasons[0].message, /did not finish within its 300 ms timeout \(timeout is in milliseconds\)/);
        assert.ok(lines.warn.some((l) => /300 ms timeout/.test(l)), lines.warn.join('\n'));
        await eventually(() => late !== null, 5000, 'the late result');
        await sleep(50);
        assert.equal(String(await client.submit(quick, 'z')), 'quick', 'the late result broke nothing');
        assert.equal(lines.error.length, 0, 'a late result is not an error');
      } finally {
        await worker.stop();
        if (working) await working;
        await client.close();
        await server.stop();
      }
    });

    it('stop({ timeout }) aborts the signals of the jobs it gives up on', async () => {
      const server = await kind.start();
      const { logger } = recorder();
      const worker = new pg.Worker({ servers: server.addr, logger });
      const f = fname('never');
      let signal = null;
      worker.register(f, (job) => {
        signal = job.signal;
        return new Promise(() => {});
      });
      const client = new pg.Client({ servers: server.addr, timeout: 15000 });
      try {
        const { working } = await serving(server, worker, client);
        const job = client.submit(f, 'x');
        job.catch(() => {});
        await eventually(() => signal !== null, 10000, 'the job to start');
        assert.equal(signal.aborted, false);
        await worker.stop({ timeout: 200 });
        await working;
        assert.equal(signal.aborted, true);
        assert.ok(signal.reason instanceof pg.ClosedError);
      } finally {
        await client.close();
        await server.stop();
      }
    });
  });
}

describe('a registered timeout of 1 s or more on the embedded server', { timeout: 30000 }, () => {
  it('the job is abandoned (polygeard fails it to the client) and the slot is free at once', async () => {
    const server = await pg.Server.start({ port: 0 });
    const worker = new pg.Worker({ servers: server.address, concurrency: 1, logLevel: 'silent' });
    const stuck = fname('stuck1s');
    const quick = fname('quick1s');
    let reason = null;
    worker.register(stuck, (job) => new Promise(() => {
      job.signal.addEventListener('abort', () => (reason = job.signal.reason));
    }), { timeout: 1000 });
    worker.register(quick, () => 'quick');
    const client = new pg.Client({ servers: server.address, timeout: 15000 });
    let working;
    try {
      ({ working } = await serving(server, worker, client));
      const t0 = Date.now();
      await assert.rejects(client.submit(stuck, 'x'), { name: 'JobFailedError', reason: 'the worker exceeded its 1 s timeout' });
      assert.ok(Date.now() - t0 >= 900, `failed after ${Date.now() - t0} ms`);
      // the server's timer ran first; the worker's (started at dispatch) follows
      await eventually(() => reason !== null, 5000, 'the abort');
      assert.ok(reason instanceof pg.TimeoutError);
      assert.equal(String(await client.submit(quick, 'y')), 'quick');
    } finally {
      await worker.stop();
      if (working) await working;
      await client.close();
      await server.stop();
    }
  });
});

describe('SIGINT and SIGTERM while work() runs', { timeout: 60000 }, () => {
  const script = (sig) => `
    const pg = require(${JSON.stringify(PKG)});
    (async () => {
      const server = await pg.Server.start({ port: 0 });
      const worker = new pg.Worker({ servers: server.address });
      worker.register('slow', async () => {
        process.stdout.write('started\\n');
        await new Promise((r) => setTimeout(r, 700));
        return 'finished';
      });
      const working = worker.work();
      const client = new pg.Client({ servers: server.address, timeout: 10000 });
      const result = client.submit('slow', 'x');
      await working;
      process.stdout.write('work resolved\\n');
      process.stdout.write('result ' + (await result) + '\\n');
      process.stdout.write('listeners ' + process.listenerCount(${JSON.stringify(sig)}) + '\\n');
      await client.close();
      await server.stop();
    })().catch((e) => { console.error(e); process.exit(3); });
  `;

  for (const sig of ['SIGTERM', 'SIGINT']) {
    it(`${sig} finishes the running job, then work() resolves and the process exits 0`, async () => {
      const { spawn } = require('node:child_process');
      const child = spawn(process.execPath, ['-e', script(sig)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout === 'started\n') child.kill(sig);
      });
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
      const [code, signal] = await new Promise((resolve) => child.on('close', (c, s) => resolve([c, s])));
      clearTimeout(timer);
      assert.equal(signal, null, `killed by ${signal}; stdout: ${stdout}; stderr: ${stderr}`);
      assert.equal(code, 0, stderr);
      assert.equal(stdout, 'started\nwork resolved\nresult finished\nlisteners 0\n');
      assert.match(stderr, new RegExp(`polygear: ${sig}: finishing the running jobs, taking no new ones`));
    });
  }

  it('a second SIGTERM while the running job finishes exits at once', async () => {
    const { spawn } = require('node:child_process');
    const src = `
      const pg = require(${JSON.stringify(PKG)});
      (async () => {
        const server = await pg.Server.start({ port: 0 });
        const worker = new pg.Worker({ servers: server.address });
        worker.register('forever', () => { process.stdout.write('started\\n'); return new Promise(() => {}); });
        const working = worker.work();
        const client = new pg.Client({ servers: server.address });
        client.submit('forever', 'x').catch(() => {});
        await working;
        process.stdout.write('work resolved\\n');
      })();
    `;
    const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout === 'started\n') {
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGTERM'), 300);
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    const [code, signal] = await new Promise((resolve) => child.on('close', (c, s) => resolve([c, s])));
    clearTimeout(timer);
    assert.equal(signal, 'SIGTERM', `exit code ${code}; stderr: ${stderr}`);
    assert.equal(stdout, 'started\n');
    assert.match(stderr, /polygear: SIGTERM again: exiting without waiting for the running jobs/);
  });

  it('handleSignals: false leaves the signals alone; listeners are removed after work()', async () => {
    const before = process.listenerCount('SIGTERM');
    const worker = new pg.Worker({ servers: '127.0.0.1:1', logLevel: 'silent' });
    worker.register('f', () => 'x');
    const working = worker.work();
    assert.equal(process.listenerCount('SIGTERM'), before + 1);
    assert.equal(process.listenerCount('SIGINT'), before + 1);
    await worker.stop();
    await working.catch(() => {});
    assert.equal(process.listenerCount('SIGTERM'), before);
    const many = [1, 2, 3].map(() => new pg.Worker({ servers: '127.0.0.1:1', logLevel: 'silent' }).register('f', () => 'x'));
    const manyWorking = many.map((w) => w.work());
    assert.equal(process.listenerCount('SIGTERM'), before + 1, 'one shared listener for every working worker');
    await Promise.all(many.map((w) => w.stop()));
    await Promise.all(manyWorking.map((p) => p.catch(() => {})));
    assert.equal(process.listenerCount('SIGTERM'), before);
    const quiet = new pg.Worker({ servers: '127.0.0.1:1' });
    quiet.register('f', () => 'x');
    const quietWorking = quiet.work({ handleSignals: false });
    assert.equal(process.listenerCount('SIGTERM'), before);
    await quiet.stop();
    await quietWorking.catch(() => {});
    await assert.rejects(new pg.Worker().work({ handleSignal: true }), /unknown option 'handleSignal' \(did you mean 'handleSignals'\?\)/);
  });
});

describe('gearmanode names that behave the same', () => {
  it('removeFunction, resetAbilities, job.payload, reportStatus, reportWarning', async () => {
    const server = await pg.Server.start({ port: 0 });
    const worker = new pg.Worker({ servers: server.address });
    const f = fname('gm');
    worker.register(f, (job) => {
      job.reportStatus(1, 2);
      job.reportWarning('careful');
      return Buffer.concat([job.payload, Buffer.from('!')]);
    });
    const client = new pg.Client({ servers: server.address, timeout: 10000 });
    let working;
    try {
      ({ working } = await serving(server, worker, client));
      const running = await client.submitJob(f, 'hi');
      const events = [];
      for await (const ev of running) events.push(ev.type);
      assert.deepEqual(events, ['status', 'warning', 'complete']);
      assert.equal(String(await running.result()), 'hi!');
      worker.removeFunction(f);
      assert.deepEqual([...worker._handlers.keys()].filter((n) => n === f), []);
      worker.resetAbilities();
      assert.equal(worker._handlers.size, 0);
      await assert.rejects(client.submit(f, 'x', { timeout: 500 }), { name: 'TimeoutError' });
    } finally {
      await worker.stop();
      if (working) await working;
      await client.close();
      await server.stop();
    }
  });
});
