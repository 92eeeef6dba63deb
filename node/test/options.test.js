'use strict';
// Unknown option keys are refused with a TypeError naming the key and the
// option probably meant (issue #13: `{ server }` for `servers` was ignored).

const assert = require('node:assert/strict');
const { it } = require('node:test');

const { pg } = require('./helpers');

const typo = (key, near) => ({
  name: 'TypeError',
  code: 'ERR_INVALID_ARG_VALUE',
  message: `unknown option '${key}' (did you mean '${near}'?)`,
});

it('constructors refuse unknown options and suggest the near match', () => {
  assert.throws(() => new pg.Client({ server: '127.0.0.1:4730' }), typo('server', 'servers'));
  assert.throws(() => new pg.Client({ connectTimout: 5 }), typo('connectTimout', 'connectTimeout'));
  assert.throws(() => new pg.Worker({ server: '127.0.0.1:4730' }), typo('server', 'servers'));
  assert.throws(() => new pg.Worker({ concurency: 2 }), typo('concurency', 'concurrency'));
  assert.throws(() => new pg.Worker({ onerror: () => {} }), typo('onerror', 'onError'));
  assert.throws(() => new pg.Admin({ servers: '127.0.0.1:4730' }), typo('servers', 'server'));
  assert.throws(() => new pg.Server({ prot: 0 }), typo('prot', 'port'));
  assert.throws(() => new pg.Server({ queuefile: 'q.db' }), typo('queuefile', 'queueFile'));
});

it('without a near match the message lists what is accepted', () => {
  assert.throws(() => new pg.Client({ retries: 3 }), {
    name: 'TypeError',
    message: "unknown option 'retries'; new Client() accepts 'servers', 'timeout', 'connectTimeout', 'submitTimeout', 'clientId', 'tls'",
  });
});

it('per-call option objects are checked too', async () => {
  const client = new pg.Client({ servers: '127.0.0.1:1' });
  await assert.rejects(client.submit('f', 'x', { timeot: 5 }), typo('timeot', 'timeout'));
  await assert.rejects(client.submitJob('f', 'x', { priorty: 'high' }), typo('priorty', 'priority'));
  await assert.rejects(client.submitBackground('f', 'x', { uniqe: 'u' }), typo('uniqe', 'unique'));
  await assert.rejects(client.submitJson('f', {}, { sginal: undefined }), typo('sginal', 'signal'));
  await client.close();
  const worker = new pg.Worker({ servers: '127.0.0.1:1' });
  assert.throws(() => worker.register('f', () => 'x', { jsno: true }), typo('jsno', 'json'));
  assert.throws(() => worker.register('f', () => 'x', { timout: 5 }), typo('timout', 'timeout'));
  await assert.rejects(worker.stop({ timeuot: 5 }), typo('timeuot', 'timeout'));
  await worker.stop();
});

it('known options with undefined values are accepted as before', async () => {
  const client = new pg.Client({ servers: undefined, timeout: undefined, tls: undefined });
  await client.close();
  const worker = new pg.Worker({ servers: '127.0.0.1:1', onError: undefined, logger: undefined, logLevel: undefined });
  await worker.stop();
});
