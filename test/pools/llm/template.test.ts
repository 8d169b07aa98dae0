import { execFileSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MonitorError } from '../../../src/errors.js';
import {
  checkPlaceholders,
  chunkRanges,
  placeholdersOf,
  readFileForPrompt,
  renderTemplate,
} from '../../../src/pools/llm/template.js';
import { makeTempDir } from '../../helpers/client.js';

describe('templates', () => {
  it('finds placeholders and fills them in one pass', () => {
    expect(placeholdersOf('{{a}} and {{ b }} and {{a}}')).toEqual(['a', 'b']);
    // A value containing {{b}} is not expanded again.
    expect(renderTemplate('{{a}} / {{b}}', { a: 'x {{b}}', b: 'y' })).toBe('x {{b}} / y');
  });

  it('refuses placeholders nothing fills, naming them and what is available', () => {
    expect(() => checkPlaceholders('Hi {{name}} {{content}}', new Set(['name']), 'every item')).toThrow(
      /\{\{content\}\}/,
    );
    expect(() => checkPlaceholders('no placeholders', new Set(['x']), 'every item')).toThrow(MonitorError);
    expect(() => checkPlaceholders('{{x}}', new Set(['x']), 'every item')).not.toThrow();
  });
});

describe('chunkRanges', () => {
  it('covers the whole buffer, cuts at line breaks and never inside a UTF-8 character', () => {
    const text = Array.from({ length: 200 }, (_, i) => `line ${i} ünïcödé`).join('\n');
    const buffer = Buffer.from(text);
    const ranges = chunkRanges(buffer, 256);
    expect(ranges[0]?.start).toBe(0);
    expect(ranges.at(-1)?.end).toBe(buffer.length);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]?.start).toBe(ranges[i - 1]?.end);
    for (const r of ranges.slice(0, -1)) {
      expect(r.end - r.start).toBeLessThanOrEqual(256);
      expect(buffer[r.end - 1]).toBe(0x0a);
    }
    expect(Buffer.concat(ranges.map((r) => buffer.subarray(r.start, r.end))).toString()).toBe(text);
  });

  it('cuts a line-less text at character boundaries', () => {
    const buffer = Buffer.from('é'.repeat(100));
    for (const r of chunkRanges(buffer, 33))
      expect(() => new TextDecoder('utf-8', { fatal: true }).decode(buffer.subarray(r.start, r.end))).not.toThrow();
  });
});

describe('readFileForPrompt', () => {
  it('reads a chunk by its byte range, and refuses a file that changed size or is binary', async () => {
    const dir = await makeTempDir();
    const file = path.join(dir, 'a.txt');
    await writeFile(file, 'hello\nworld\n');
    expect(
      await readFileForPrompt({ path: file, display: 'a.txt', chunk: 2, chunks: 2, start: 6, end: 12, size: 12 }, 1000),
    ).toBe('world\n');
    await expect(
      readFileForPrompt({ path: file, display: 'a.txt', chunk: 2, chunks: 2, start: 6, end: 12, size: 99 }, 1000),
    ).rejects.toThrow(/changed size/);
    await writeFile(path.join(dir, 'b.bin'), Buffer.from([1, 0, 2]));
    await expect(readFileForPrompt({ path: path.join(dir, 'b.bin'), display: 'b.bin' }, 1000)).rejects.toThrow(
      /binary/,
    );
    await expect(readFileForPrompt({ path: file, display: 'a.txt' }, 4)).rejects.toMatchObject({
      code: 'CONTEXT_OVERFLOW',
    });
  });

  it.skipIf(process.platform === 'win32')(
    'refuses a file that became a FIFO since submit instead of waiting for a writer forever',
    async () => {
      const dir = await makeTempDir();
      const fifo = path.join(dir, 'notes.md');
      execFileSync('mkfifo', [fifo]);
      try {
        await expect(readFileForPrompt({ path: fifo, display: 'notes.md' }, 1000)).rejects.toMatchObject({
          code: 'INVALID_INPUT',
          message: '"notes.md" is a named pipe (FIFO), not a regular file.',
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
