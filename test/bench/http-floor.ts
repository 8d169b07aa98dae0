// The floor for `npm run bench memory`: a bare undici client reading the same capped body to a
// file, with nothing else in its process. Prints its peak RSS growth in MB.
// Usage: node http-floor.js URL CAP_BYTES FILE
import { readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Agent } from 'undici';

const [url = '', capText = '0', file = ''] = process.argv.slice(2);
const cap = Number(capText);
const kb = (field: string): number =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 'NaN');

const agent = new Agent();
writeFileSync('/proc/self/clear_refs', '5');
const before = kb('VmRSS');
const target = new URL(url);
const response = await agent.request({ origin: target.origin, path: target.pathname, method: 'GET' });
const out = await open(file, 'w');
let read = 0;
for await (const chunk of response.body) {
  const piece = chunk.subarray(0, Math.min(chunk.length, cap - read));
  read += piece.length;
  await out.write(piece);
  if (read >= cap) {
    response.body.destroy();
    break;
  }
}
await out.close();
process.stdout.write(`${((kb('VmHWM') - before) / 1024).toFixed(1)}\n`);
await agent.destroy();
