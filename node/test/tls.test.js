'use strict';
// TLS: Client, Worker and Admin against the embedded Server with `tls`.
// Certificates are made with the openssl CLI (scripts/make-test-certs.sh) in
// a temporary folder: a CA, a server certificate for 127.0.0.1/localhost, a
// client certificate, another CA's client certificate and an expired server
// certificate.

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, describe, it } = require('node:test');

const { pg, fname } = require('./helpers');

const REPO = path.resolve(__dirname, '..', '..');

let dir;
const file = (name) => path.join(dir, name);
const trust = (client, ca = 'ca') =>
  client
    ? { caFile: file(`${ca}.pem`), certFile: file(`${client}.pem`), keyFile: file(`${client}.key`) }
    : { caFile: file(`${ca}.pem`) };

async function tlsServer({ cert = 'server', verifyClients = false } = {}) {
  const tls = { certFile: file(`${cert}.pem`), keyFile: file(`${cert}.key`) };
  if (verifyClients) Object.assign(tls, { caFile: file('ca.pem'), verifyClients: true });
  return pg.Server.start({ tls });
}

/** A worker reversing `name`'s payloads over `tls`; returns a stop function. */
function reverser(server, name, tls) {
  const worker = new pg.Worker({ servers: server.address, tls });
  worker.register(name, (job) => Buffer.from(job.data).reverse());
  const working = worker.work();
  return async () => {
    await worker.stop();
    await working;
  };
}

describe('TLS', { timeout: 60000 }, () => {
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-node-tls-'));
    execFileSync(path.join(REPO, 'scripts', 'make-test-certs.sh'), [dir], { stdio: 'inherit' });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs a job round trip and admin calls over TLS', async () => {
    const server = await tlsServer();
    const f = fname('tls');
    const stop = reverser(server, f, trust());
    const client = new pg.Client({ servers: server.address, timeout: 20000, tls: trust() });
    try {
      assert.equal((await client.submit(f, 'over TLS')).toString(), 'SLT revo');
      const big = Buffer.alloc(1 << 20, 7);
      big[0] = 1;
      assert.deepEqual(await client.submit(f, big), Buffer.from(big).reverse());
      const named = new pg.Client({ servers: server.address, tls: { ...trust(), serverName: 'localhost' } });
      assert.equal((await named.submit(f, 'abc')).toString(), 'cba');
      await named.close();
      const admin = new pg.Admin({ server: server.address, tls: trust() });
      const status = await admin.status();
      assert.ok(status.some((s) => s.function === f && s.workers >= 1), JSON.stringify(status));
      await admin.close();
    } finally {
      await client.close();
      await stop();
      await server.stop();
    }
  });

  it('tls: true reads libgearman\'s variables (mutual TLS)', async () => {
    const saved = { ...process.env };
    process.env.GEARMAND_CA_CERTIFICATE = file('ca.pem');
    process.env.GEARMAN_CLIENT_PEM = file('client.pem');
    process.env.GEARMAN_CLIENT_KEY = file('client.key');
    const server = await tlsServer({ verifyClients: true });
    const f = fname('env');
    try {
      const stop = reverser(server, f, true);
      const client = new pg.Client({ servers: server.address, timeout: 20000, tls: true });
      assert.equal((await client.submit(f, 'env')).toString(), 'vne');
      await client.close();
      await stop();
    } finally {
      for (const k of ['GEARMAND_CA_CERTIFICATE', 'GEARMAN_CLIENT_PEM', 'GEARMAN_CLIENT_KEY']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
      await server.stop();
    }
  });

  it('mutual TLS: a client certificate from the CA works, none or another CA\'s is refused', async () => {
    const server = await tlsServer({ verifyClients: true });
    const f = fname('mtls');
    try {
      const stop = reverser(server, f, trust('client'));
      const client = new pg.Client({ servers: server.address, timeout: 20000, tls: trust('client') });
      assert.equal((await client.submit(f, 'mtls')).toString(), 'sltm');
      await client.close();
      await stop();
      for (const tls of [trust(), trust('stranger')]) {
        const admin = new pg.Admin({ server: server.address, tls });
        await assert.rejects(admin.status(), (e) => e instanceof pg.ConnectionError && /certificate/.test(e.message));
        await admin.close();
        const c = new pg.Client({ servers: server.address, connectTimeout: 5000, timeout: 10000, tls });
        await assert.rejects(c.submit(f, 'x'), (e) => e instanceof pg.ConnectionError && /certificate/.test(e.message));
        await c.close();
      }
    } finally {
      await server.stop();
    }
  });

  it('refuses untrusted, misnamed and expired server certificates', async () => {
    const server = await tlsServer();
    const expired = await tlsServer({ cert: 'expired' });
    try {
      const cases = [
        [server, trust(undefined, 'other-ca'), /TLS handshake failed.*UnknownIssuer/],
        [server, { ...trust(), serverName: 'gearman.example' }, /not valid for name/],
        [expired, trust(), /certificate expired/],
      ];
      for (const [s, tls, reason] of cases) {
        const admin = new pg.Admin({ server: s.address, tls });
        await assert.rejects(admin.version(), (e) => e instanceof pg.ConnectionError && reason.test(e.message));
        await admin.close();
        const c = new pg.Client({ servers: s.address, connectTimeout: 5000, timeout: 10000, tls });
        await assert.rejects(c.submit('f', 'x'), (e) => e instanceof pg.ConnectionError && reason.test(e.message));
        await c.close();
      }
    } finally {
      await server.stop();
      await expired.stop();
    }
  });

  it('a plain client on the TLS port fails quickly', async () => {
    const server = await tlsServer();
    try {
      const started = Date.now();
      const c = new pg.Client({ servers: server.address, connectTimeout: 5000, timeout: 10000 });
      await assert.rejects(c.submit('f', 'x'), (e) => e instanceof pg.GearmanError && /TLS/.test(e.message));
      assert.ok(Date.now() - started < 10000);
      await c.close();
    } finally {
      await server.stop();
    }
  });

  it('names a missing file (InvalidArgumentError) when the object is made', () => {
    const missing = file('nope.pem');
    const makers = [
      () => new pg.Client({ servers: '127.0.0.1:1', tls: { caFile: missing } }),
      () => new pg.Worker({ servers: '127.0.0.1:1', tls: { caFile: missing } }),
      () => new pg.Admin({ server: '127.0.0.1:1', tls: { caFile: missing } }),
      () => new pg.Client({ tls: { caFile: file('ca.pem'), certFile: missing, keyFile: file('client.key') } }),
    ];
    for (const make of makers) {
      assert.throws(make, (e) => e instanceof pg.InvalidArgumentError && e.code === 'EINVAL' && e.message.includes(missing));
    }
  });

  it('names a missing server file (InvalidArgumentError) when the server starts', async () => {
    const missing = file('nope.pem');
    await assert.rejects(
      pg.Server.start({ tls: { certFile: missing, keyFile: file('server.key') } }),
      (e) => e instanceof pg.InvalidArgumentError && e.message.includes(missing),
    );
  });

  it('checks the tls option', async () => {
    assert.throws(() => new pg.Client({ tls: 'yes' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => new pg.Client({ tls: { cafile: 'x' } }), { name: 'TypeError', message: /Unknown option "options.tls.cafile"/ });
    assert.throws(() => new pg.Worker({ tls: { certFile: 'c.pem' } }), /certFile and options.tls.keyFile/);
    assert.throws(() => new pg.Admin({ tls: { caFile: '' } }), RangeError);
    assert.throws(() => new pg.Server({ tls: { certFile: 'c.pem' } }), TypeError);
    assert.throws(() => new pg.Server({ tls: { certFile: 'c', keyFile: 'k', verify: true } }), /Unknown option "options.tls.verify"/);
    await new pg.Client({ tls: false }).close();
  });
});
