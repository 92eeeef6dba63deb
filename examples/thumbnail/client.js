// Node client for `thumbnail`: sends an image to the Python worker and writes
// the PNG thumbnail it gets back.
//
//   node client.js HOST:PORT OUT.png [IN]
//
// Without IN it draws a 640x480 picture itself and encodes it as a PNG (plain
// Node: zlib for the pixels, a CRC-32 per chunk), so the example needs no files.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');
const { Client } = require('polygear');

// CRC-32 (the one PNG and zip use), table-driven.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One PNG chunk: length, type, data, CRC of type + data. */
function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** An RGB PNG of a colour gradient with a circle in the middle. */
function drawPng(width, height) {
  const rows = Buffer.alloc(height * (1 + 3 * width)); // each row: filter byte 0, then RGB
  for (let y = 0; y < height; y++) {
    const row = y * (1 + 3 * width);
    for (let x = 0; x < width; x++) {
      const inCircle = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 3) ** 2;
      const i = row + 1 + 3 * x;
      rows[i] = inCircle ? 255 : Math.round((255 * x) / width);
      rows[i + 1] = inCircle ? 200 : Math.round((255 * y) / height);
      rows[i + 2] = inCircle ? 0 : 160;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits per channel, colour type 2 (RGB), no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), // the PNG signature
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

async function main() {
  const [server, out, input] = process.argv.slice(2);
  if (!server || !out) throw new Error('usage: node client.js HOST:PORT OUT.png [IN]');
  const image = input ? fs.readFileSync(input) : drawPng(640, 480);
  console.log(`  [node client] sending ${input ? path.basename(input) : 'a 640x480 PNG'} (${image.length} bytes)`);

  const client = new Client({ servers: [server], timeout: 30_000 });
  try {
    const job = await client.submitJob('thumbnail', image);
    job.on('status', (n, d) => console.log(`  [node client] progress ${n}/${d}`));
    const thumb = await job.result(); // rejects with JobExceptionError if the worker raised
    fs.writeFileSync(out, thumb);
    console.log(`  [node client] wrote ${out} (${thumb.length} bytes)`);
  } finally {
    await client.close();
  }
}

main().catch((e) => {
  console.error(`  [node client] ${e.code || 'error'}: ${e.message}`);
  process.exit(1);
});
