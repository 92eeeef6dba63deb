// An embedded server, a worker and a client in one process.
// Run: npx tsc -p examples --noEmit false --outDir /tmp/ex && node /tmp/ex/quickstart.js
import { Client, Server, Worker } from 'polygear';

async function main(): Promise<void> {
  const server = await Server.start({ port: 0 });

  const worker = new Worker({ servers: [server.address], concurrency: 4 });
  worker.register('reverse', async (job) => Buffer.from(job.data).reverse());
  worker.register('shout', (job) => job.data.toString('utf8').toUpperCase());
  const working = worker.work();

  const client = new Client({ servers: [server.address], timeout: 5000 });
  const one: Buffer = await client.submit('reverse', 'hello');
  const many = await Promise.all(['a', 'b', 'c'].map((s) => client.submit('shout', s, { priority: 'high' })));
  console.log(one.toString(), many.map(String).join(' '));

  await client.close();
  await worker.stop();
  await working;
  await server.stop();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
