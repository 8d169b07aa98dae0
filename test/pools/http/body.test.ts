import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBody } from '../../../src/pools/http/body.js';
import { Redactor } from '../../../src/pools/http/secrets.js';
import { makeTempDir } from '../../helpers/client.js';

const CHUNK = 64 * 1024;

/** A body of `total` bytes made on demand, counting what was pulled and whether it was destroyed. */
function lazyBody(total: number): AsyncIterable<Buffer> & { destroy(): void; pulled: number; destroyed: boolean } {
  const chunk = Buffer.alloc(CHUNK, 0x61);
  const body = {
    pulled: 0,
    destroyed: false,
    destroy() {
      body.destroyed = true;
    },
    async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
      for (let sent = 0; sent < total && !body.destroyed; sent += CHUNK) {
        body.pulled += Math.min(CHUNK, total - sent);
        yield chunk.subarray(0, Math.min(CHUNK, total - sent));
      }
    },
  };
  return body;
}

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir('monitor-body-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readBody', () => {
  it('stops at the cap, writes what it read to the file, and keeps only a bounded prefix in memory', async () => {
    const body = lazyBody(50 * 1024 * 1024);
    const file = path.join(dir, 'big.body');
    const limits = { inlineBytes: 4096, keepBytes: 4096, maxBytes: 20 * 1024 * 1024 };
    const read = await readBody(body, limits, file, new Redactor([]));
    expect(read.truncated).toBe(true);
    expect(read.complete).toBe(false);
    expect(read.bytes).toBe(limits.maxBytes);
    // Memory holds the kept prefix, never the body: 4 KiB of 20 MB.
    expect(read.kept.length).toBe(limits.keepBytes);
    expect(read.file).toBe(file);
    expect((await stat(file)).size).toBe(limits.maxBytes);
    // Reading stopped at the cap (one chunk past it tells there is more) and the stream was
    // destroyed, so the rest never arrives.
    expect(body.pulled).toBeLessThanOrEqual(limits.maxBytes + CHUNK);
    expect(body.destroyed).toBe(true);
  });

  it('keeps a small body whole in memory and writes no file', async () => {
    const read = await readBody(
      lazyBody(1000),
      { inlineBytes: 4096, keepBytes: 4096, maxBytes: 1 << 20 },
      path.join(dir, 'small.body'),
      new Redactor([]),
    );
    expect(read).toMatchObject({ bytes: 1000, truncated: false, complete: true });
    expect(read.kept.length).toBe(1000);
    expect(read.file).toBeUndefined();
  });
});
