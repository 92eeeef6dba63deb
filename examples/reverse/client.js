// Node client for `reverse`: sends each argument (or a greeting) and prints the answer.
// Any `reverse` worker will do, whatever its language.
//
// Run: node client.js HOST:PORT [TEXT ...]
'use strict';

const { Client } = require('polygear');

async function main() {
  const server = process.argv[2] || '127.0.0.1:4730';
  const texts = process.argv.length > 3 ? process.argv.slice(3) : ['Hello, Gearman!'];
  // timeout: give up on a job after 10 s instead of waiting for a worker forever
  const client = new Client({ servers: [server], timeout: 10_000 });
  try {
    for (const text of texts) {
      const answer = (await client.submit('reverse', text)).toString('utf8');
      console.log(`  [node client] reverse(${JSON.stringify(text)}) = ${JSON.stringify(answer)}`);
    }
  } finally {
    await client.close();
  }
}

main().catch((e) => {
  console.error(`  [node client] ${e.code || 'error'}: ${e.message}`);
  process.exit(1);
});
