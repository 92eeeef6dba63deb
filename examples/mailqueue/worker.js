// Node worker of the mail queue: "sends" each mail by writing it to OUTBOX as
// an .eml file (a real one would talk to an SMTP server here).
//
// Run: node worker.js HOST:PORT OUTBOX     (Ctrl-C to stop)
//
// Sending is idempotent: the file is named after the job's unique key and never
// overwritten, so a mail that reaches the worker twice is still sent once.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');
const { Worker } = require('polygear');

const [server = '127.0.0.1:4730', outbox = 'outbox'] = process.argv.slice(2);
fs.mkdirSync(outbox, { recursive: true });

// One mail at a time, like a single SMTP connection.
const worker = new Worker({ servers: [server], concurrency: 1 });

worker.register('send_mail', async (job) => {
  const mail = JSON.parse(job.data.toString('utf8')); // bad JSON throws: the job fails with its message
  if (!mail.to || !mail.subject) throw new Error('a mail needs "to" and "subject"');
  const key = job.unique || job.handle;
  job.sendStatus(1, 2); // connected to the (pretend) mail server
  await sleep(300); // ... talking SMTP ...

  const file = path.join(outbox, `${key.replace(/[^\w.@-]/g, '_')}.eml`);
  const text = `To: ${mail.to}\nSubject: ${mail.subject}\nX-Gearman-Job: ${job.handle}\n\n${mail.body || ''}\n`;
  try {
    fs.writeFileSync(file, text, { flag: 'wx' }); // 'wx': fail if it exists
    console.log(`  [node worker] sent "${mail.subject}" to ${mail.to}`);
  } catch (e) {
    if (e.code !== 'EEXIST') throw e;
    console.log(`  [node worker] ${key} was sent before; not sending it twice`);
  }
  job.sendStatus(2, 2);
  return 'sent'; // nobody waits for it: background jobs have no client to tell
});

for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => worker.stop());

console.log(`  [node worker] sending mail from ${server} into ${outbox}/`);
worker.work().catch((e) => {
  console.error(`  [node worker] ${e.code || 'error'}: ${e.message}`);
  process.exit(1);
});
