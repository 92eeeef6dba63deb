// Browser test of polygeard's dashboard: a real polygeard with an admin token,
// jobs queued for two functions with no worker, a worker running a third, the
// page loaded in headless chromium. Checks the queued counts the page shows,
// takes a screenshot, cancels one queued job through the page (first without
// the token: 403 shown, nothing cancelled; then with it) and checks with the
// admin protocol that it is gone.
//
// Run by scripts/test-dashboard.sh. Environment:
//   POLYGEAR_BIN_DIR   folder with polygeard and polygear (built binaries)
//   DASHBOARD_APP      app folder where playwright-core is installed
//   DASHBOARD_ARTIFACTS folder for the screenshots
//   CHROMIUM           browser executable (default /usr/bin/chromium)
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import fs from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);
const bin = process.env.POLYGEAR_BIN_DIR;
const app = process.env.DASHBOARD_APP;
const artifacts = process.env.DASHBOARD_ARTIFACTS;
assert.ok(bin && app && artifacts, 'POLYGEAR_BIN_DIR, DASHBOARD_APP and DASHBOARD_ARTIFACTS must be set');
const { chromium } = createRequire(path.join(app, 'package.json'))('playwright-core');
const TOKEN = 'dash-test-' + process.pid;
const log = (...a) => console.log('test-dashboard:', ...a);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const children = [];
function start(cmd, args, name) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  p.output = () => out;
  p.name = name;
  children.push(p);
  return p;
}

async function until(what, f, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('timed out waiting for ' + what + (last ? ': ' + last : ''));
}

const gport = await freePort();
const hport = await freePort();
const base = `http://127.0.0.1:${hport}`;
const cli = path.join(bin, 'polygear');
const server = start(path.join(bin, 'polygeard'),
  ['-q', 'builtin', '-L', '127.0.0.1', '-p', String(gport), '--http-port', String(hport), '--admin-token', TOKEN],
  'polygeard');
let browser;
let failed = false;
try {
  await until('polygeard HTTP', async () => (await fetch(base + '/api/status')).ok);
  const g = ['-h', '127.0.0.1', '-p', String(gport)];
  const submit = async (args) => (await run(cli, [...g, '-v', '-b', ...args])).stdout
    .split('\n').filter((l) => l.startsWith('Task created: ')).map((l) => l.slice('Task created: '.length).trim());
  const admin = async (...cmd) => (await run(cli, ['admin', ...g, ...cmd])).stdout;
  const statusOf = async (fn) => {
    const line = (await admin('status')).split('\n').find((l) => l.split('\t')[0] === fn);
    return line ? line.split('\t').slice(1).map(Number) : null;
  };

  // Two functions with queued jobs and no worker.
  const resize = [...await submit(['-f', 'resize', 'a', 'b', 'c']), ...await submit(['-I', '-f', 'resize', 'urgent'])];
  const email = await submit(['-L', '-f', 'email', 'x', 'y']);
  assert.equal(resize.length, 4);
  assert.equal(email.length, 2);
  // A worker running a third function, and jobs for it meanwhile (one fails).
  start(cli, ['-w', ...g, '-f', 'thumbnail', '--', 'sh', '-c', 'cat; sleep 0.05'], 'worker');
  start(cli, ['-w', ...g, '-f', 'flaky', '--', 'sh', '-c', 'echo broken >&2; exit 1'], 'flaky worker');
  await until('the workers', async () => (await statusOf('thumbnail'))?.[2] === 1 && (await statusOf('flaky'))?.[2] === 1);
  for (let i = 0; i < 5; i++) await run(cli, [...g, '-f', 'thumbnail', 'img' + i]);
  await run(cli, [...g, '-f', 'flaky', 'x']).catch(() => {});

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(base + '/');
  const cell = (fn, cls) => page.locator(`#functions tr[data-function="${fn}"] td.${cls}`);
  // The page polls every 2 s: wait for a refresh that shows the counts.
  await page.waitForFunction(() => document.querySelectorAll('#functions tbody tr').length >= 4, null, { timeout: 10000 });
  assert.equal(await cell('resize', 'q-normal').textContent(), '3');
  assert.equal(await cell('resize', 'q-high').textContent(), '1');
  assert.equal(await cell('email', 'q-low').textContent(), '2');
  assert.equal(await cell('email', 'q-normal').textContent(), '0');
  assert.equal(await cell('thumbnail', 'workers').textContent(), '1');
  assert.equal(await cell('thumbnail', 'completed').textContent(), '5');
  assert.match(await page.locator('#workers tbody').textContent(), /thumbnail/);
  assert.match(await page.locator('#failures tbody').textContent(), /flaky/);
  assert.equal(await page.locator('#actions-disabled').isHidden(), true, 'a token is configured');
  fs.mkdirSync(artifacts, { recursive: true });
  // Wait for two samples so the charts have a line (samples close every 5 s).
  await until('chart samples', async () => (await (await fetch(base + '/api/status')).json()).samples.length > 1, 17000);
  for (const chart of ['#chart-throughput', '#chart-latency']) {
    await page.waitForFunction((sel) => document.querySelector(sel + ' polyline')?.getAttribute('points').includes(' '), chart);
  }
  await page.waitForTimeout(2200);
  await page.screenshot({ path: path.join(artifacts, 'dashboard.png'), fullPage: true });
  log('screenshot', path.join(artifacts, 'dashboard.png'));

  // The queued jobs of resize, with cancel buttons.
  await page.locator('#functions tr[data-function="resize"] button.show-jobs').click();
  await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length === 4);
  const victim = resize[0];
  const row = page.locator(`#jobs tr[data-handle="${victim}"]`);
  assert.equal(await row.count(), 1, 'the job is listed');

  // Without the token: refused, 403 shown, nothing cancelled.
  await row.locator('button.cancel').click();
  await page.waitForFunction(() => /403/.test(document.getElementById('action-result').textContent));
  assert.match(await page.locator('#action-result').textContent(), /403 .*admin token/);
  assert.deepEqual((await statusOf('resize')).slice(0, 2), [4, 0]);
  // The API itself refuses a wrong token.
  const wrong = await fetch(base + '/api/cancel', {
    method: 'POST', headers: { Authorization: 'Bearer nope', 'Content-Type': 'application/json' },
    body: JSON.stringify({ handle: victim }),
  });
  assert.equal(wrong.status, 403);

  // With the token: cancelled, gone from the page and from the server.
  await page.fill('#token', TOKEN);
  await page.click('#token-save');
  await row.locator('button.cancel').click();
  await page.waitForFunction((h) => document.getElementById('action-result').textContent === 'cancelled ' + h, victim);
  await page.waitForFunction((h) => !document.querySelector(`#jobs tr[data-handle="${h}"]`), victim);
  assert.equal(await page.locator('#jobs tbody tr').count(), 3);
  assert.deepEqual((await statusOf('resize')).slice(0, 2), [3, 0]);
  assert.ok(!(await admin('show-jobs')).includes(victim + '\t'), 'the job is gone from show jobs');
  await until('the page shows 2 normal', async () => (await cell('resize', 'q-normal').textContent()) === '2');
  await page.screenshot({ path: path.join(artifacts, 'dashboard-after-cancel.png'), fullPage: true });
  assert.deepEqual(pageErrors, [], 'no script errors on the page');
  log('ok: queued counts shown, cancel refused without the token (403) and done with it');
} catch (e) {
  failed = true;
  console.error('test-dashboard: FAILED:', e);
  for (const c of children) console.error(`--- ${c.name} output:\n${c.output()}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const c of children) c.kill('SIGTERM');
}
process.exit(failed ? 1 : 0);
