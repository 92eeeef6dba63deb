'use strict';
// Node side of the cross-language test matrix (see tests/matrix/README.md).
//   node matrix.js worker <server> <gate-dir> <lang>
//   node matrix.js client <server> <gate-dir> <lang> main <w1,w2,..>
//   node matrix.js client <server> <gate-dir> <lang> coal <unique:worker,..>
const fs = require('node:fs');
const { isDeepStrictEqual } = require('node:util');
const path = require('node:path');
const pg = require(process.env.POLYGEAR_NODE || 'polygear');

const TEXT = 'héllo wörld — 日本語 🎉 ∑ Ω';
// The json check's value (the same in every language's script and run.py).
const JSON_VALUE = {
  text: TEXT,
  n: 42,
  f: 1.5,
  neg: -7,
  list: [1, 'two', null, true, false],
  nested: { empty: [], obj: {} },
};
const GATE_WAIT = 30_000;
const JOB_TIMEOUT = 60_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFile(p) {
  const deadline = Date.now() + GATE_WAIT;
  while (Date.now() < deadline) {
    if (fs.existsSync(p)) return true;
    await sleep(20);
  }
  return false;
}

const isToken = (s) => /^[A-Za-z0-9_-]+$/.test(s);
const reverseText = (s) => [...s].reverse().join('');

async function worker(server, gate, lang) {
  const w = new pg.Worker({ servers: [server], concurrency: 6, clientId: `matrix-${lang}` });
  let counter = 0;
  w.register(`${lang}.echo`, (job) => job.data);
  w.register(`${lang}.text`, (job) => reverseText(new TextDecoder('utf-8', { fatal: true }).decode(job.data)));
  w.register(`${lang}.stream`, (job) => {
    const n = Number(job.data.toString());
    for (let i = 0; i < n; i++) {
      job.sendData(`chunk-${i}`);
      job.sendStatus(i + 1, n);
    }
    return 'done';
  });
  w.register(`${lang}.raise`, (job) => {
    throw new Error(job.data.toString('utf8'));
  });
  w.register(`${lang}.bg`, async (job) => {
    const token = job.data.toString('latin1');
    job.sendStatus(1, 2);
    if (!isToken(token) || !(await waitFile(path.join(gate, token)))) {
      throw new Error(`gate file ${token} never appeared`);
    }
    return 'bg-done';
  });
  w.register(`${lang}.json`, (value) => ({
    worker: lang,
    echo: value,
    map: value !== null && typeof value === 'object' && !Array.isArray(value),
  }), { json: true });
  w.register(`${lang}.slow`, async (job) => {
    if (!(await waitFile(path.join(gate, 'release')))) throw new Error('release file never appeared');
    const nonce = `|${lang}-${process.pid}-${counter++}-${process.hrtime.bigint()}`;
    return Buffer.concat([job.data, Buffer.from(nonce)]);
  });
  const stop = () => { w.stop().catch(() => {}); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await w.work();
}

function binaryPayload() {
  const a = [];
  for (let i = 0; i < 256; i++) a.push(i);
  return Buffer.concat([Buffer.from(a), Buffer.from('\x00\x00mid\x00', 'latin1'),
    Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0x00])]);
}

function bigPayload() {
  const n = 16 * 1024 * 1024;
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

async function report(client, w, check, fn) {
  let status = 'pass';
  let detail = '';
  try {
    await fn();
  } catch (e) {
    status = 'fail';
    detail = `${e && e.constructor ? e.constructor.name : 'Error'}: ${e && e.message}`;
  }
  detail = detail.replace(/[\t\n]/g, ' ').slice(0, 300);
  process.stdout.write(`R\t${client}\t${w}\t${check}\t${status}\t${detail}\n`);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function clientMain(c, lang, gate, workers) {
  const echo = async (w, payload) => {
    const got = await c.submit(`${w}.echo`, payload);
    if (!Buffer.isBuffer(got) || !got.equals(payload)) {
      let at = -1;
      for (let i = 0; i < Math.min(got.length, payload.length); i++) if (got[i] !== payload[i]) { at = i; break; }
      throw new Error(`sent ${payload.length} bytes, got ${got.length} (first diff at ${at})`);
    }
  };
  const unicode = async (w) => {
    const got = (await c.submit(`${w}.text`, TEXT)).toString('utf8');
    check(got === reverseText(TEXT), `got ${JSON.stringify(got)}, want ${JSON.stringify(reverseText(TEXT))}`);
  };
  const stream = async (w) => {
    const n = 4;
    const job = await c.submitJob(`${w}.stream`, String(n));
    const events = [];
    for await (const ev of job) {
      if (ev.type === 'status') events.push(`status ${ev.numerator}/${ev.denominator}`);
      else if (ev.type === 'data' || ev.type === 'complete') events.push(`${ev.type} ${ev.data.toString('latin1')}`);
      else events.push(ev.type);
      if (ev.type === 'complete' || ev.type === 'fail' || ev.type === 'exception') break;
    }
    const want = [];
    for (let i = 0; i < n; i++) {
      if (w === 'c') {
        // gearman -w -N: each line as WORK_DATA holding all output so far (documented
        // libgearman quirk); it cannot send WORK_STATUS.
        want.push(`data ${Array.from({ length: i + 1 }, (_, j) => `chunk-${j}`).join('\n')}`);
      } else {
        want.push(`data chunk-${i}`);
        want.push(`status ${i + 1}/${n}`);
      }
    }
    if (w !== 'c') {
      want.push('complete done');
      check(JSON.stringify(events) === JSON.stringify(want), `events ${JSON.stringify(events)}, want ${JSON.stringify(want)}`);
    } else {
      check(JSON.stringify(events.slice(0, -1)) === JSON.stringify(want) && events[events.length - 1].startsWith('complete'),
        `events ${JSON.stringify(events)}, want ${JSON.stringify(want)}`);
    }
  };
  const exception = async (w) => {
    const msg = `matrix boom ${lang}->${w} ✗ ünï`;
    let got;
    try {
      got = await c.submit(`${w}.raise`, msg);
    } catch (e) {
      check(e instanceof pg.JobExceptionError, `wrong error ${e && e.constructor && e.constructor.name}: ${e && e.message}`);
      check(e.code === 'EJOBEXCEPTION', `code ${e.code}`);
      check(e.message.includes(msg), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(msg)}`);
      return;
    }
    throw new Error(`no error, result ${got}`);
  };
  const background = async (w) => {
    const token = `bg-${lang}-${w}-${process.pid}-${Date.now()}`;
    const handle = await c.submitBackground(`${w}.bg`, token);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const st = await c.status(handle);
      const reported = w === 'c' || (st.numerator === 1 && st.denominator === 2);
      if (st.known && st.running && reported) break;
      check(Date.now() < deadline, `never running 1/2: last ${JSON.stringify(st)}`);
      await sleep(30);
    }
    fs.writeFileSync(path.join(gate, token), '');
    while ((await c.status(handle)).known) {
      check(Date.now() < deadline, 'job never finished');
      await sleep(30);
    }
  };
  const jsonCheck = async (w) => {
    const got = await c.submitJson(`${w}.json`, JSON_VALUE);
    const want = { worker: w, echo: JSON_VALUE, map: true };
    check(isDeepStrictEqual(got, want), `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  };
  const binary = binaryPayload();
  const big = bigPayload();
  for (const w of workers) {
    await report(lang, w, 'binary', () => echo(w, binary));
    // `gearman -w` cannot take 16 MiB in reasonable time (see run.py).
    if (w !== 'c') await report(lang, w, 'big', () => echo(w, big));
    await report(lang, w, 'unicode', () => unicode(w));
    await report(lang, w, 'stream', () => stream(w));
    if (w !== 'c') await report(lang, w, 'exception', () => exception(w));
    await report(lang, w, 'background', () => background(w));
    if (w !== 'c') await report(lang, w, 'json', () => jsonCheck(w));
  }
}

async function clientCoal(c, lang, items) {
  await Promise.all(items.map(async (item) => {
    const [unique, w] = item.split(':');
    let line;
    try {
      const r = await c.submit(`${w}.slow`, 'coal', { unique });
      line = `C\t${lang}\t${unique}\tok\t${r.toString('hex')}`;
    } catch (e) {
      line = `C\t${lang}\t${unique}\terr\t${e.constructor.name}: ${e.message}`.replace(/\n/g, ' ');
    }
    process.stdout.write(line + '\n');
  }));
}

async function main(argv) {
  if (argv.length === 5 && argv[1] === 'worker') return worker(argv[2], argv[3], argv[4]);
  if (argv.length === 7 && argv[1] === 'client') {
    const [, , server, gate, lang, mode, list] = argv;
    const c = new pg.Client({ servers: [server], timeout: JOB_TIMEOUT, clientId: `matrix-client-${lang}` });
    try {
      const items = list.split(',').filter(Boolean);
      if (mode === 'main') await clientMain(c, lang, gate, items);
      else await clientCoal(c, lang, items);
    } finally {
      await c.close();
    }
    return undefined;
  }
  throw new Error('usage: matrix.js worker|client ...');
}

main(process.argv.slice(1)).catch((e) => {
  console.error(`matrix.js: ${e && e.stack}`);
  process.exit(2);
});
