// Inspect a server: queues, workers, version.
import { Admin, FunctionStatus, WorkerInfo } from 'polygear';

async function main(): Promise<void> {
  const admin = new Admin({ server: process.env.GEARMAN_SERVER ?? '127.0.0.1:4730', timeout: 3_000 });
  try {
    console.log('version', await admin.version(), 'pid', await admin.getpid());
    const status: FunctionStatus[] = await admin.status();
    for (const s of status) console.log(`${s.function}\t${s.total}\t${s.running}\t${s.workers}`);
    const workers: WorkerInfo[] = await admin.workers();
    for (const w of workers) console.log(w.fd, w.ip, w.clientId, w.functions.join(' '));
    await admin.maxqueue('resize', [100, 1000, 10_000]);
    console.log(await admin.raw('prioritystatus'));
  } finally {
    await admin.close();
  }
}

void main();
