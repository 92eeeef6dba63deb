// Node client of the word-count demo.
//
//   node client.js wordcount HOST:PORT FILE   map (count_words) + reduce (merge)
//   node client.js digests   HOST:PORT N      queue N background `send_digest` jobs
//
// The map step submits one foreground job per paragraph, all at once on one
// connection, and draws a progress bar from the workers' WORK_STATUS packets.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { Client } = require('polygear');

const tty = process.stdout.isTTY;

/** A progress bar that redraws in place on a terminal and prints quarters otherwise. */
function progressBar(total) {
  const done = new Map(); // handle -> fraction of that piece
  let printed = -1;
  return {
    update(handle, fraction) {
      done.set(handle, fraction);
      const sum = [...done.values()].reduce((a, b) => a + b, 0);
      const pct = Math.floor((100 * sum) / total);
      const width = 40;
      const full = Math.round((width * pct) / 100);
      const bar = `  [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${String(pct).padStart(3)}%`;
      if (tty) process.stdout.write(`\r${bar}`);
      else if (pct >= printed + 25 || (pct === 100 && printed < 100)) {
        printed = pct - (pct % 25);
        console.log(bar);
      }
    },
    end() {
      if (tty) process.stdout.write('\n');
    },
  };
}

async function wordcount(client, file) {
  const pieces = fs
    .readFileSync(file, 'utf8')
    .split(/\n\s*\n/)
    .map((p) => p.trim())
    .filter(Boolean);
  console.log(`  [node] split ${path.basename(file)} into ${pieces.length} pieces; submitting them all at once`);
  const bar = progressBar(pieces.length);
  const jobs = await Promise.all(pieces.map((p) => client.submitJob('count_words', p.replace(/\. /g, '.\n'))));
  const results = await Promise.all(
    jobs.map((job) => {
      job.on('status', (n, d) => bar.update(job.handle, d ? n / d : 0));
      return job.result();
    }),
  );
  bar.end();

  const byLanguage = {};
  for (const r of results) {
    const lang = /counted by (\w+)/.exec(r.toString())?.[1] ?? '?';
    byLanguage[lang] = (byLanguage[lang] || 0) + 1;
  }
  const who = Object.entries(byLanguage)
    .map(([lang, n]) => `${lang} ${n}`)
    .join(', ');
  console.log(`  [node] all ${pieces.length} pieces counted (${who})`);

  const top = await client.submit('merge', Buffer.concat(results));
  console.log('  [node] the shell worker merged the counts; the top words are:');
  for (const line of top.toString().trim().split('\n')) {
    const [count, word] = line.trim().split(/\s+/);
    console.log(`           ${word.padEnd(10)} ${'*'.repeat(Number(count))} ${count}`);
  }
}

async function digests(client, n) {
  const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy'];
  for (let i = 0; i < n; i++) {
    const user = users[i % users.length];
    const note = JSON.stringify({ user, items: 3 + ((i * 7) % 11) });
    const handle = await client.submitBackground('send_digest', note, {
      unique: `digest:${user}:${i}`,
      priority: i === 0 ? 'high' : 'normal',
    });
    const st = await client.status(handle);
    console.log(`  [node] queued the digest for ${user.padEnd(6)} as ${handle} (known: ${st.known})`);
  }
}

async function main() {
  const [mode, server, arg] = process.argv.slice(2);
  const client = new Client({ servers: [server], timeout: 60_000 });
  try {
    if (mode === 'wordcount') await wordcount(client, arg);
    else if (mode === 'digests') await digests(client, Number(arg || 8));
    else throw new Error(`unknown mode ${mode}`);
  } finally {
    await client.close();
  }
}

main().catch((e) => {
  console.error(`  [node] ${e.code || 'error'}: ${e.message}`);
  process.exit(1);
});
