'use strict';
// Errors that say what to do (issue #13): bad timeouts and function names
// refused before anything is sent, messages naming units and causes.

const assert = require('node:assert/strict');
const { describe, it } = require('node:test');

const { pg } = require('./helpers');

const outOfRange = (name, received) => ({
  name: 'RangeError',
  code: 'ERR_OUT_OF_RANGE',
  message: `The value of "${name}" is out of range. It must be greater than 0 (milliseconds). Received ${received}`,
});

describe('arguments refused before anything is sent', () => {
  it('a timeout of 0 (or less) is refused, naming the unit', async () => {
    assert.throws(() => new pg.Client({ timeout: 0 }), outOfRange('options.timeout', 0));
    assert.throws(() => new pg.Client({ connectTimeout: 0 }), outOfRange('options.connectTimeout', 0));
    assert.throws(() => new pg.Client({ submitTimeout: -1 }), outOfRange('options.submitTimeout', -1));
    assert.throws(() => new pg.Worker({ connectTimeout: 0 }), outOfRange('options.connectTimeout', 0));
    assert.throws(() => new pg.Admin({ timeout: 0 }), outOfRange('options.timeout', 0));
    const worker = new pg.Worker({ servers: '127.0.0.1:1' });
    assert.throws(() => worker.register('f', () => 'x', { timeout: 0 }), outOfRange('options.timeout', 0));
    await worker.stop();
    const client = new pg.Client({ servers: '127.0.0.1:1' });
    for (const submit of [client.submit, client.submitJob, client.submitBackground, client.submitJson]) {
      await assert.rejects(submit.call(client, 'f', 'x', { timeout: 0 }), outOfRange('options.timeout', 0));
    }
    await client.close();
  });

  it('an empty function name is refused by every submit and by register', async () => {
    const empty = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: /"func" is out of range. It must be a non-empty string/ };
    const client = new pg.Client({ servers: '127.0.0.1:1' });
    for (const submit of [client.submit, client.submitJob, client.submitBackground, client.submitJson]) {
      await assert.rejects(submit.call(client, '', 'x'), empty);
    }
    await client.close();
    const worker = new pg.Worker({ servers: '127.0.0.1:1' });
    assert.throws(() => worker.register('', () => 'x'), { name: 'RangeError', message: /"name" is out of range/ });
    await worker.stop();
  });
});
