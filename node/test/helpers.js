'use strict';
// Test helpers: real job servers on free loopback ports (the embedded
// polygear Server and the C gearmand), child processes, small utilities.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const pg = require('..');

const REPO = path.resolve(__dirname, '..', '..');
const GEARMAND = process.env.GEARMAND || '/usr/sbin/gearmand';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on `port`, or rejects after `ms`. */
async function waitForPort(port, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
    await sleep(50);
  }
}

/** Starts the C gearmand on a free port; `stop()` kills it. */
async function startGearmand() {
  if (!fs.existsSync(GEARMAND)) throw new Error(`${GEARMAND} not found (apt-get install gearman-job-server)`);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-gearmand-'));
    const child = spawn(GEARMAND, ['--port', String(port), '--listen', '127.0.0.1', '--log-file', path.join(dir, 'log'),
      '--pid-file', path.join(dir, 'pid'),
      '--threads', '2', '--verbose', 'ERROR'], { stdio: 'ignore' });
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    try {
      await waitForPort(port, 10000);
    } catch (err) {
      child.kill('SIGKILL');
      if (attempt < 2) continue; // port raced away; try another
      throw err;
    }
    if (exited) {
      if (attempt < 2) continue;
      throw new Error('gearmand exited at start');
    }
    return {
      kind: 'gearmand',
      port,
      addr: `127.0.0.1:${port}`,
      async stop() {
        if (exited) return;
        const gone = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await gone;
        clearTimeout(timer);
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}

/** Starts the embedded polygear Server on a free port. */
async function startEmbedded() {
  const server = await pg.Server.start({ host: '127.0.0.1', port: 0 });
  return {
    kind: 'embedded',
    port: server.port,
    addr: `127.0.0.1:${server.port}`,
    stop: () => server.stop(),
    server,
  };
}

/** The server kinds every API test runs against (POLYGEAR_NODE_SERVERS=embedded,gearmand selects). */
const SERVER_KINDS = [
  { id: 'embedded', name: 'embedded polygear Server', start: startEmbedded },
  { id: 'gearmand', name: 'C gearmand', start: startGearmand },
].filter((k) => !process.env.POLYGEAR_NODE_SERVERS || process.env.POLYGEAR_NODE_SERVERS.split(',').includes(k.id));

/** Runs a node script in a child process; resolves with { code, signal, stdout, stderr, ms }. */
function runNode(args, { timeout = 20000, env } = {}) {
  return runProcess(process.execPath, args, { timeout, env });
}

function runProcess(cmd, args, { timeout = 20000, env, input } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeout);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, ms: Date.now() - t0 });
    });
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/** Resolves when `pred()` is truthy (polling), or rejects after `ms`. */
async function eventually(pred, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

let seq = 0;
/** A function name unique to this process and call. */
function fname(prefix = 'f') {
  seq += 1;
  return `${prefix}_${process.pid}_${seq}`;
}

module.exports = {
  pg,
  REPO,
  SERVER_KINDS,
  startGearmand,
  startEmbedded,
  freePort,
  waitForPort,
  runNode,
  runProcess,
  eventually,
  sleep,
  fname,
};
