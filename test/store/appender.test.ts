import { readdirSync, readlinkSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appender } from '../../src/store/appender.js';
import { makeTempDir } from '../helpers/client.js';
import { eventually } from '../helpers/scripts.js';

let dir: string;

beforeAll(async () => {
  dir = await makeTempDir('monitor-appender-');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The files under `dir` this process has open now (Linux: /proc/self/fd). */
function openFiles(): string[] {
  const open: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir)) open.push(target);
    } catch {
      // closed while listing
    }
  }
  return open;
}

describe('Appender', () => {
  it('appends in order, lines of concurrent calls batched, with or without keeping the file open', async () => {
    const appender = new Appender();
    for (const keepOpen of [false, true]) {
      const file = path.join(dir, `order-${String(keepOpen)}.log`);
      await Promise.all(Array.from({ length: 200 }, (_, i) => appender.append(file, [String(i)], keepOpen)));
      await appender.append(file, ['last'], keepOpen);
      expect(await readFile(file, 'utf8')).toBe(
        [...Array.from({ length: 200 }, (_, i) => String(i)), 'last', ''].join('\n'),
      );
    }
    appender.release();
  });

  it('keeps a file open between appends, closes it when idle, on release, and past maxOpen', async () => {
    const appender = new Appender({ keepOpenMs: 200, maxOpen: 2 });
    const a = path.join(dir, 'keep', 'a.log');
    const b = path.join(dir, 'keep', 'b.log');
    const c = path.join(dir, 'other', 'c.log');
    await mkdir(path.dirname(a), { recursive: true });
    await mkdir(path.dirname(c), { recursive: true });

    await appender.append(a, ['1'], true);
    expect(openFiles()).toEqual([a]);
    // Idle past keepOpenMs: closed; the next append opens it again.
    expect(await eventually(() => openFiles().length === 0, 10_000)).toBe(true);
    await appender.append(a, ['2'], true);
    await appender.append(b, ['1'], true);
    await appender.append(c, ['1'], true);
    // At most two open: the least recently used (a) went first.
    expect(openFiles().sort()).toEqual([b, c].sort());
    appender.release(path.dirname(b) + path.sep);
    expect(openFiles()).toEqual([c]);
    appender.release();
    expect(openFiles()).toEqual([]);
    expect(await readFile(a, 'utf8')).toBe('1\n2\n');
  });

  it('fails an append to a folder that is gone, and the next one once it is back works', async () => {
    const appender = new Appender();
    const file = path.join(dir, 'gone', 'x.log');
    await expect(appender.append(file, ['1'], true)).rejects.toMatchObject({ code: 'ENOENT' });
    await mkdir(path.dirname(file), { recursive: true });
    await appender.append(file, ['2'], true);
    expect(await readFile(file, 'utf8')).toBe('2\n');
    appender.release();
  });
});
