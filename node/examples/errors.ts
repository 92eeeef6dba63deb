// Typed errors, timeouts, AbortSignal and background jobs.
import {
  AbortError,
  Client,
  ConnectionError,
  GearmanError,
  JobExceptionError,
  JobStatus,
  TimeoutError,
  Worker,
} from 'polygear';

const servers = (process.env.GEARMAN_SERVERS ?? '127.0.0.1:4730').split(',');

async function main(): Promise<void> {
  const worker = new Worker({ servers, concurrency: 2 });
  worker.register('divide', (job) => {
    const [a, b] = job.data.toString().split('/').map(Number);
    if (b === 0) throw new Error('division by zero');
    return String(a / b);
  });
  const working = worker.work();
  const client = new Client({ servers, timeout: 10_000, connectTimeout: 2_000 });

  try {
    console.log((await client.submit('divide', '10/4')).toString());
    await client.submit('divide', '1/0');
  } catch (err) {
    if (err instanceof JobExceptionError) console.log(`worker raised: ${err.message} (${err.code}, ${err.handle})`);
    else if (err instanceof ConnectionError) console.log(`server down: ${err.code}`);
    else throw err;
  }

  const ac = new AbortController();
  setTimeout(() => ac.abort(), 100);
  try {
    await client.submit('nobody-serves-this', '', { signal: ac.signal, timeout: 5_000 });
  } catch (err) {
    if (err instanceof AbortError || err instanceof TimeoutError) console.log(err.code);
    else if (err instanceof GearmanError) console.log(`other: ${err.code}`);
  }

  const handle: string = await client.submitBackground('divide', '9/3', { priority: 'low', epoch: new Date() });
  const status: JobStatus = await client.status(handle);
  console.log(handle, status.known, status.running, `${status.numerator}/${status.denominator}`);

  await client.close();
  await worker.stop();
  await working;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
