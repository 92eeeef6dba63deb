'use strict';
// Node side of the cross-language failure table (see tests/failures/run.py).
//   node failures.js worker <server>        serves node.* until SIGTERM
//   node failures.js client <config-json>   runs every scenario, one JSON line each
const pg = require(process.env.POLYGEAR_NODE || 'polygear');

const LANG = 'node';
// Timeouts in the language's unit: milliseconds.
const SHORT = 300;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function worker(server) {
  const w = new pg.Worker({ servers: [server], concurrency: 4, clientId: 'failures-node' });
  w.register(`${LANG}.sleep`, async (job) => {
    await sleep(Number(job.data.toString()) * 1000);
    return 'slept';
  });
  w.register(`${LANG}.raise`, () => {
    throw new Error(`boom from ${LANG}`);
  });
  w.register(`${LANG}.badresult`, () => ({ w: 1 }));
  w.register(`${LANG}.timeout`, async () => {
    await sleep(3000);
    return 'too late';
  }, { timeout: 1000 });
  await w.work(); // SIGTERM stops it gracefully
}

/** The row of the shared error table `err` belongs to. */
function category(err) {
  const order = [
    [pg.JobExceptionError, 'jobexception'],
    [pg.JobFailedError, 'jobfailed'],
    [pg.ConnectionError, 'connection'],
    [pg.TimeoutError, 'timeout'],
    [pg.ProtocolError, 'protocol'],
    [pg.ServerError, 'server'],
    [pg.ClosedError, 'closed'],
    [pg.InvalidArgumentError, 'invalid'],
    [RangeError, 'invalid'],
    [TypeError, 'type'],
  ];
  for (const [cls, name] of order) if (err instanceof cls) return name;
  return 'other';
}

async function run(scenario, fn) {
  const row = { scenario };
  try {
    await fn();
    Object.assign(row, { category: 'none', class: '-', code: null, message: 'no error raised' });
  } catch (err) {
    Object.assign(row, {
      category: category(err),
      class: err && err.constructor ? err.constructor.name : typeof err,
      code: (err && err.code) || null,
      message: err && err.message !== undefined ? String(err.message) : String(err),
    });
  }
  process.stdout.write(JSON.stringify(row) + '\n');
}

async function client(config) {
  const { server, http, dead } = config;
  const c = new pg.Client({ servers: [server] });
  const fresh = (s) => new pg.Client({ servers: [s] });
  await run('connect_refused', () => fresh(dead).submit('x', ''));
  await run('host_not_found', () => fresh('nosuch.invalid:4730').submit('x', ''));
  await run('not_gearman', () => fresh(http).submit('x', ''));
  await run('worker_fail_fast', async () => {
    const w = new pg.Worker({ servers: [dead], failFast: true });
    w.register('x', () => '');
    await w.work();
  });
  await run('empty_function', () => c.submit('', 'x'));
  await run('zero_timeout', () => c.submit(`${LANG}.sleep`, '0', { timeout: 0 }));
  await run('no_worker', () => c.submit(`${LANG}.nobody`, '', { timeout: SHORT }));
  await run('slow_job', () => c.submit(`${LANG}.sleep`, '1', { timeout: SHORT }));
  await run('job_exception', () => c.submit(`${LANG}.raise`, ''));
  await run('bad_result', () => c.submit(`${LANG}.badresult`, ''));
  await run('worker_timeout', () => c.submit(`${LANG}.timeout`, ''));
  await run('busy_port', async () => {
    const s = await pg.Server.start({ port: config.busy_port });
    await s.stop();
  });
  await run('bad_port', async () => {
    const s = await pg.Server.start({ port: 99999 });
    await s.stop();
  });
  await c.close();
}

const [mode, arg] = process.argv.slice(2);
(mode === 'worker' ? worker(arg) : client(JSON.parse(arg))).then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
