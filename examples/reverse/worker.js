// Node worker for `reverse`, the "hello world" of the Gearman talks.
//
// The job's data is UTF-8 text; the result is the same text backwards
// (by characters, not bytes, so "ünï" comes back as "ïnü").
//
// Run: node worker.js HOST:PORT     (Ctrl-C to stop)
'use strict';

const { Worker } = require('polygear');

const server = process.argv[2] || '127.0.0.1:4730';
const worker = new Worker({ servers: [server] });

worker.register('reverse', (job) => {
  const text = job.data.toString('utf8');
  console.log(`  [node worker] reversing ${JSON.stringify(text)}`);
  return Array.from(text).reverse().join(''); // Array.from splits by code point
});

// Stop gracefully on Ctrl-C / kill: the running job finishes first.
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => worker.stop());

console.log(`  [node worker] ready on ${server}`);
worker.work().catch((e) => {
  console.error(`  [node worker] ${e.code || 'error'}: ${e.message}`);
  process.exit(1);
});
