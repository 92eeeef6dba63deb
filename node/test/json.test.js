'use strict';
// JSON mode (issue #13): client.submitJson and register(name, fn, { json: true }).

const assert = require('node:assert/strict');
const { describe, it, before, after } = require('node:test');

const { pg, SERVER_KINDS, eventually, fname } = require('./helpers');

for (const kind of SERVER_KINDS) {
  describe(`JSON payloads on the ${kind.name}`, { timeout: 60000 }, () => {
    let server;
    let worker;
    let working;
    let client;
    const errors = [];
    const F = { echo: fname('jecho'), nothing: fname('jnothing'), bigint: fname('jbig'), plain: fname('plain'), text: fname('text') };

    before(async () => {
      server = await kind.start();
      worker = new pg.Worker({ servers: server.addr, onError: (err) => errors.push(err), logLevel: 'silent' });
      worker
        .register(F.echo, (value, job) => ({ got: value, handle: job.handle.length > 0, fn: job.function }), { json: true })
        .register(F.nothing, () => undefined, { json: true })
        .register(F.bigint, () => 10n, { json: true })
        .register(F.plain, (job) => JSON.stringify({ decoded: job.json() }))
        .register(F.text, () => 'not json');
      working = worker.work({ handleSignals: false });
      client = new pg.Client({ servers: server.addr, timeout: 10000 });
      await eventually(async () => (await client.submit(F.text, '', { timeout: 1000 }).catch(() => null)) !== null,
        10000, 'the worker to serve');
    });

    after(async () => {
      await client.close();
      await worker.stop();
      await working;
      await server.stop();
    });

    it('a value goes to a { json: true } handler decoded and comes back decoded', async () => {
      const value = { name: 'ünïcode ✓', list: [1, 2.5, null, true], nested: { a: 'b' } };
      assert.deepEqual(await client.submitJson(F.echo, value), { got: value, handle: true, fn: F.echo });
      assert.deepEqual(await client.submitJson(F.echo, [1, 'two']), { got: [1, 'two'], handle: true, fn: F.echo });
      assert.deepEqual(await client.submitJson(F.echo, 'just a string'), { got: 'just a string', handle: true, fn: F.echo });
      assert.deepEqual(await client.submitJson(F.echo, undefined), { got: null, handle: true, fn: F.echo });
    });

    it('the payload on the wire is UTF-8 JSON', async () => {
      const raw = await client.submit(F.echo, Buffer.from('{"k":"é"}', 'utf8'));
      assert.equal(raw.toString('utf8'), `{"got":{"k":"é"},"handle":true,"fn":"${F.echo}"}`);
      assert.deepEqual(JSON.parse(String(await client.submit(F.plain, '{"x":[1]}'))), { decoded: { x: [1] } });
    });

    it('a handler returning undefined sends null', async () => {
      assert.equal(await client.submitJson(F.nothing, {}), null);
      assert.equal(String(await client.submit(F.nothing, '1')), 'null');
    });

    it('a workload that is not JSON is a job exception naming the function', async () => {
      await assert.rejects(client.submit(F.echo, 'not json'), {
        name: 'JobExceptionError',
        message: new RegExp(`^the workload of job \\S+ for function '${F.echo}' is not valid JSON: `),
      });
      assert.ok(errors.some((e) => e instanceof TypeError && /not valid JSON/.test(e.message)));
    });

    it('a result JSON cannot hold is a job exception', async () => {
      await assert.rejects(client.submitJson(F.bigint, {}), {
        name: 'JobExceptionError',
        message: new RegExp(`^the result of function '${F.bigint}' cannot be encoded as JSON`),
      });
    });

    it('submitJson of a result that is not JSON rejects with code EJSON', async () => {
      await assert.rejects(client.submitJson(F.text, {}), (err) => {
        assert.ok(err instanceof pg.GearmanError);
        assert.equal(err.code, 'EJSON');
        assert.match(err.message, new RegExp(`the result of function '${F.text}' is not valid JSON .*registered with \\{json: true\\}`));
        assert.ok(err.cause instanceof SyntaxError);
        return true;
      });
    });

    it('submitJson refuses a value JSON cannot hold before sending', async () => {
      const cyclic = {};
      cyclic.self = cyclic;
      await assert.rejects(client.submitJson(F.echo, cyclic), { name: 'TypeError', message: /the value cannot be encoded as JSON/ });
      await assert.rejects(client.submitJson(F.echo, () => 1), { name: 'TypeError', message: /it is a function/ });
      assert.throws(() => worker.register(F.echo, () => 1, { json: 'yes' }), { name: 'TypeError', message: /options\.json/ });
    });
  });
}
