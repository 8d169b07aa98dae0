import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeUtf8, headUtf8, OutputCapture, tailUtf8 } from '../../../src/pools/script/output.js';
import { makeTempDir } from '../../helpers/client.js';

let dir: string;
beforeAll(async () => {
  dir = await makeTempDir('monitor-capture-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function feed(capture: OutputCapture, chunks: Buffer[]): Promise<void> {
  const stream = new PassThrough();
  capture.attach(stream);
  for (const chunk of chunks) stream.write(chunk);
  stream.end();
  await once(stream, 'end');
}

describe('OutputCapture', () => {
  it('keeps small output in memory and writes a file only when asked', async () => {
    const file = path.join(dir, 'small');
    const capture = new OutputCapture(file, 100, 10);
    await feed(capture, [Buffer.from('hello '), Buffer.from('world')]);
    expect(capture.whole()?.toString()).toBe('hello world');
    expect(capture.last().toString()).toBe('ello world');
    expect(await capture.finish(false)).toBeUndefined();
    await expect(readFile(file)).rejects.toThrow();
    expect(await capture.finish(true)).toBe(file);
    expect(await readFile(file, 'utf8')).toBe('hello world');
  });

  it('spills to the file past the cap, keeping only head and tail in memory', async () => {
    const file = path.join(dir, 'big');
    const capture = new OutputCapture(file, 1000, 16);
    const chunks = Array.from({ length: 50 }, (_, i) =>
      Buffer.from(`${String(i).padStart(3, '0')}:${'x'.repeat(95)}\n`),
    );
    await feed(capture, chunks);
    expect(capture.spilled).toBe(true);
    expect(capture.whole()).toBeUndefined();
    expect(capture.bytes).toBe(5000);
    expect(capture.first().toString()).toBe('000:xxxxxxxxxxxx');
    expect(capture.last().toString()).toBe('xxxxxxxxxxxxxxx\n');
    expect(await capture.finish(false)).toBe(file);
    expect(await readFile(file, 'utf8')).toBe(Buffer.concat(chunks).toString());
  });
});

describe('UTF-8 helpers', () => {
  it('decodes valid text strictly and invalid bytes lossily, saying so', () => {
    expect(decodeUtf8(Buffer.from('café'))).toEqual({ text: 'café', lossy: false });
    expect(decodeUtf8(Buffer.from([0x61, 0xff, 0x62]))).toEqual({ text: 'a\uFFFDb', lossy: true });
  });

  it('cuts heads and tails on character boundaries', () => {
    const bytes = Buffer.from('aé€b'); // 1 + 2 + 3 + 1 bytes
    expect(Buffer.from(headUtf8(bytes, 2)).toString()).toBe('a');
    expect(Buffer.from(headUtf8(bytes, 3)).toString()).toBe('aé');
    expect(Buffer.from(tailUtf8(bytes, 3)).toString()).toBe('b');
    expect(Buffer.from(tailUtf8(bytes, 4)).toString()).toBe('€b');
    expect(headUtf8(bytes, 100)).toBe(bytes);
  });
});
