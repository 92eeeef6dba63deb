#!/usr/bin/env node
'use strict';
// Node client + Node worker throughput on one gearmand, same run:
//   polygear (this repo)  vs  npm `gearman` 2.1.0 (TCP_NODELAY forced on its sockets)
// and the raw Rust pair (`loadgen pair`, polygear Client + Worker) as the reference.
//
// Scenarios: `serial` = one job at a time; `window16` = 16 jobs in flight from
// one client, the worker side has 16 job slots (polygear: concurrency 16;
// npm gearman: 16 worker connections, since it runs one job per connection).
// Each pair = one client process + one worker process, 16-byte payloads, a
// warm-up before timing. Prints a table and the ratios against the targets.
//
// Usage: node bench.js [--n 5000] [--n16 20000] [--rounds 3] [--gearmand /usr/sbin/gearmand]
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
const LOADGEN = path.join(TARGET, 'release', 'loadgen');
const PAYLOAD = Buffer.from('0123456789abcdef');
const WARMUP = 300;

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

// ------------------------------------------------------------------ npm gearman

function forceNoDelay() {
  // npm gearman never sets TCP_NODELAY (≈ 40 ms Nagle/delayed-ACK stalls per job);
  // its socket is private, so set it on every socket this process creates.
  const orig = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function connect(...args) {
    this.setNoDelay(true);
    return orig.apply(this, args);
  };
}

function npmConnect(addr) {
  const gearman = require('gearman');
  const [host, port] = addr.split(':');
  const g = gearman(host, Number(port));
  return new Promise((resolve) => g.connect(() => resolve(g)));
}

async function npmWorker(addr, func, slots, loop) {
  forceNoDelay();
  for (let i = 0; i < slots; i++) {
    const w = await npmConnect(addr);
    if (loop === 'readme') {
      // the loop of the package README: PRE_SLEEP after every job, GRAB on NOOP
      w.on('JOB_ASSIGN', (job) => {
        w.sendWorkComplete(job.handle, job.payload);
        w.preSleep();
      });
      w.on('NOOP', () => w.grabJob());
      w.addFunction(func);
      w.preSleep();
    } else {
      // tuned loop: after a job, grab the next one directly; sleep only on NO_JOB
      w.on('JOB_ASSIGN', (job) => {
        w.sendWorkComplete(job.handle, job.payload);
        w.grabJob();
      });
      w.on('NO_JOB', () => w.preSleep());
      w.on('NOOP', () => w.grabJob());
      w.addFunction(func);
      w.grabJob();
    }
  }
  console.log('ready');
}

async function npmClient(addr, func, n, window) {
  forceNoDelay();
  const c = await npmConnect(addr);
  const created = []; // resolvers waiting for JOB_CREATED, in submission order
  const running = new Map(); // handle → resolver
  c.on('JOB_CREATED', (handle) => {
    const done = created.shift();
    running.set(handle, done);
  });
  c.on('WORK_COMPLETE', (job) => {
    const done = running.get(job.handle);
    running.delete(job.handle);
    done(job.payload);
  });
  const submit = () => new Promise((resolve) => {
    created.push(resolve);
    c.submitJob(func, PAYLOAD);
  });
  const rate = await drive(submit, n, window);
  c.close();
  return rate;
}

// --------------------------------------------------------------------- polygear

async function pgWorker(addr, func, slots) {
  const pg = require('polygear');
  const w = new pg.Worker({ servers: addr, concurrency: slots });
  w.register(func, (job) => job.data);
  w.work();
  console.log('ready');
}

async function pgClient(addr, func, n, window) {
  const pg = require('polygear');
  const c = new pg.Client({ servers: addr });
  const rate = await drive(() => c.submit(func, PAYLOAD), n, window);
  await c.close();
  return rate;
}

// ----------------------------------------------------------------------- common

/** Runs `n` jobs with at most `window` in flight (after a warm-up); returns jobs/s. */
async function drive(submit, n, window) {
  const run = async (count) => {
    let started = 0;
    const lane = async () => {
      while (started < count) {
        started++;
        const r = await submit();
        if (r.length !== PAYLOAD.length) throw new Error('bad result');
      }
    };
    await Promise.all(Array.from({ length: Math.min(window, count) }, lane));
  };
  await run(WARMUP);
  const t0 = process.hrtime.bigint();
  await run(n);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return n / secs;
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitPort(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gearmand did not start on ${port}`);
}

function child(args) {
  return spawn(process.execPath, [__filename, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function pair(lib, addr, n, window, loop = 'tuned') {
  const func = `bench_${lib}_${window}_${Date.now()}`;
  const worker = child(['--role', 'worker', '--lib', lib, '--addr', addr, '--func', func, '--slots', String(window),
    '--loop', loop]);
  await new Promise((resolve, reject) => {
    worker.stdout.once('data', resolve);
    worker.once('exit', (code) => reject(new Error(`${lib} worker exited with ${code}`)));
  });
  const client = child(['--role', 'client', '--lib', lib, '--addr', addr, '--func', func, '--n', String(n),
    '--window', String(window)]);
  let out = '';
  client.stdout.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => client.once('exit', resolve));
  worker.kill('SIGKILL');
  if (code !== 0) throw new Error(`${lib} client exited with ${code}`);
  return JSON.parse(out).rate;
}

function rustPair(addr, n, window, scenario = 'pair') {
  if (!fs.existsSync(LOADGEN)) return null;
  const out = execFileSync(LOADGEN, [scenario, '--addr', addr, '--window', String(window), '--n', String(n)],
    { encoding: 'utf8', timeout: 300000 });
  const m = /rate=([\d.]+)/.exec(out);
  return m ? Number(m[1]) : null;
}

async function main() {
  const role = arg('role');
  if (role) {
    const [addr, func] = [arg('addr'), arg('func')];
    const lib = arg('lib');
    if (role === 'worker') {
      await (lib === 'npm' ? npmWorker : pgWorker)(addr, func, Number(arg('slots')), arg('loop'));
      return;
    }
    const rate = await (lib === 'npm' ? npmClient : pgClient)(addr, func, Number(arg('n')), Number(arg('window')));
    console.log(JSON.stringify({ rate }));
    return;
  }

  const { BUILD_PROFILE } = require('polygear');
  if (BUILD_PROFILE !== 'release') {
    console.error(`bench: the polygear addon is a ${BUILD_PROFILE} build; run bench/node/run.sh (release build)`);
    process.exit(2);
  }
  const n = Number(arg('n', '5000'));
  const n16 = Number(arg('n16', '20000'));
  const gearmandPath = arg('gearmand', '/usr/sbin/gearmand');
  const port = await freePort();
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-bench-'));
  const gearmand = spawn(gearmandPath, ['--port', String(port), '--listen', '127.0.0.1', '--threads', '2',
    '--log-file', path.join(logDir, 'log'), '--pid-file', path.join(logDir, 'pid')], { stdio: 'ignore' });
  const addr = `127.0.0.1:${port}`;
  try {
    await waitPort(port);
    console.log(`gearmand ${execFileSync(gearmandPath, ['--version'], { encoding: 'utf8' }).trim().split('\n')[0]} on ${addr}; ` +
      `node ${process.version}; ${os.cpus().length} cores; 16-byte jobs`);
    // Interleaved rounds, best of each: the machine may be shared, and the
    // best round is the least disturbed one for every contender alike.
    const rounds = Number(arg('rounds', '3'));
    const rows = [];
    for (const [name, window, count] of [['serial (1 in flight)', 1, n], ['window16 (16 in flight)', 16, n16]]) {
      const best = { polygear: 0, npmReadme: 0, npmTuned: 0, rust: null, floor: null };
      for (let round = 0; round < rounds; round++) {
        best.polygear = Math.max(best.polygear, await pair('polygear', addr, count, window));
        best.npmReadme = Math.max(best.npmReadme, await pair('npm', addr, count, window, 'readme'));
        best.npmTuned = Math.max(best.npmTuned, await pair('npm', addr, count, window, 'tuned'));
        const rust = rustPair(addr, count, window);
        if (rust != null) best.rust = Math.max(best.rust || 0, rust);
        const floor = window === 1 ? rustPair(addr, count, 1, 'floor') : null;
        if (floor != null) best.floor = Math.max(best.floor || 0, floor);
      }
      rows.push({ name, ...best });
    }
    const f = (x) => (x == null ? '—' : `${Math.round(x)}`);
    const vs = (a, b, target, better) => {
      if (a == null || b == null) return '—';
      const r = a / b;
      return `${r.toFixed(2)}× ${(better ? r >= target : r <= target) ? 'ok' : 'missed'}`;
    };
    console.log(`\njobs/s, best of ${rounds} interleaved rounds (higher is better); npm gearman 2.1.0 with TCP_NODELAY forced, README worker loop / tuned loop`);
    console.log('| scenario | polygear | npm (README loop) | npm (tuned loop) | Rust pair | polygear / npm README (≥ 3×) | polygear / npm tuned (≥ 3×) | Rust / polygear (≤ 1.5×) |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(`| ${r.name} | ${f(r.polygear)} | ${f(r.npmReadme)} | ${f(r.npmTuned)} | ${f(r.rust)} | ` +
        `${vs(r.polygear, r.npmReadme, 3, true)} | ${vs(r.polygear, r.npmTuned, 3, true)} | ${vs(r.rust, r.polygear, 1.5, false)} |`);
    }
    for (const r of rows.filter((row) => row.floor != null)) {
      console.log(`\n${r.name}: floor (loadgen floor, a hand-written blocking pair, no library) ${f(r.floor)} jobs/s = ` +
        `${(r.floor / r.npmTuned).toFixed(2)}× npm tuned: the most any one-at-a-time pair can reach on this server.`);
    }
  } finally {
    gearmand.kill('SIGKILL');
    fs.rmSync(logDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
