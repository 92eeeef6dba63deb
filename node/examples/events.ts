// Progress and partial results of a running job: listeners or an async iterator.
import { Client, JobEvent, Job, Server, Worker } from 'polygear';

async function resize(job: Job): Promise<string> {
  const steps = 3;
  for (let i = 1; i <= steps; i++) {
    job.sendStatus(i, steps);
    job.sendData(`chunk ${i}\n`);
  }
  job.sendWarning('low on disk');
  return `resized ${job.data.length} bytes`;
}

async function main(): Promise<void> {
  const server = await Server.start();
  const worker = new Worker({ servers: server.address }).register('resize', resize, { timeout: 60_000 });
  const working = worker.work();
  const client = new Client({ servers: server.address });

  // 1. listeners + result()
  const job = await client.submitJob('resize', Buffer.alloc(1024));
  job.on('status', (n: number, d: number) => console.log(`progress ${n}/${d}`));
  job.on('data', (chunk: Buffer) => process.stdout.write(chunk));
  job.on('warning', (w: Buffer) => console.warn(`warning: ${w}`));
  console.log((await job.result()).toString());

  // 2. async iterator
  const again = await client.submitJob('resize', new Uint8Array(10), { unique: 'img-10' });
  for await (const ev of again) {
    const e: JobEvent = ev;
    if (e.type === 'status') console.log(`progress ${e.numerator}/${e.denominator}`);
    else if (e.type === 'complete') console.log(`done: ${e.data}`);
    else if (e.type === 'exception') console.error(`failed: ${e.message}`);
  }

  await client.close();
  await worker.stop();
  await working;
  await server.stop();
}

void main();
