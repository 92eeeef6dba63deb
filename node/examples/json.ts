// JSON payloads: a worker registered with { json: true } and client.submitJson,
// the same encoding (UTF-8 JSON) as polygear's Python and Ruby packages.
// Also: a logger, the jobError event and job.signal.
import { Client, Job, Server, Worker } from 'polygear';

interface Order {
  id: number;
  items: string[];
}

async function main(): Promise<void> {
  const server = await Server.start();
  const worker = new Worker({ servers: server.address, logLevel: 'silent', failFast: true });
  worker.on('connectError', (ev) => console.log(`cannot reach ${ev.server}: ${ev.error}, retry in ${ev.retryIn} ms`));
  worker.on('jobError', (err: unknown, job: Job) => console.log(`${job.function} failed: ${(err as Error).message}`));
  worker.register('total', (order: Order, job: Job) => {
    if (job.signal.aborted) return undefined; // sent as null
    return { id: order.id, count: order.items.length };
  }, { json: true, timeout: 10_000 });
  const working = worker.work();
  const client = new Client({ servers: server.address });

  const summary = await client.submitJson<{ id: number; count: number }>('total', { id: 7, items: ['a', 'b'] });
  console.log(`order ${summary.id}: ${summary.count} items`);
  await client.submit('total', 'not json').catch((err: Error) => console.log(`client: ${err.name}`));

  await client.close();
  await worker.stop();
  await working;
  await server.stop();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
