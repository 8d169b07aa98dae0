import { execFileSync } from 'node:child_process';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readStateFile, readStateRange, readStateRangeAsync } from '../../src/store/safe-read.js';
import { makeTempDir } from '../helpers/client.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function folder(): Promise<string> {
  const dir = await makeTempDir();
  dirs.push(dir);
  return dir;
}

describe('reading the state directory (untrusted input)', () => {
  it('refuses a FIFO at once instead of waiting for a writer, sync and async', async () => {
    const fifo = path.join(await folder(), 'job.json');
    execFileSync('mkfifo', [fifo]);
    const started = Date.now();
    await expect(readStateFile(fifo, 1024)).rejects.toThrow(/job\.json is damaged: it is a FIFO, not a regular file/);
    expect(() => readStateRange(fifo, 0, 10)).toThrow(/is a FIFO/);
    await expect(readStateRangeAsync(fifo, 0, 10)).rejects.toThrow(/is a FIFO/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('does not follow a symlink planted in place of a file (to /dev/zero, or outside)', async () => {
    const dir = await folder();
    await writeFile(path.join(dir, 'secret'), 'outside');
    await symlink('/dev/zero', path.join(dir, 'zero'));
    await symlink(path.join(dir, 'secret'), path.join(dir, 'link'));
    await expect(readStateFile(path.join(dir, 'zero'), 1024)).rejects.toThrow(/it is a symlink/);
    await expect(readStateFile(path.join(dir, 'link'), 1024)).rejects.toThrow(/it is a symlink/);
    expect(() => readStateRange(path.join(dir, 'link'), 0, 10)).toThrow(/it is a symlink/);
  });

  it('refuses a folder in place of a file, and a file over its cap, naming the size', async () => {
    const dir = await folder();
    await mkdir(path.join(dir, 'results.jsonl'));
    await writeFile(path.join(dir, 'job.json'), 'x'.repeat(2000));
    await expect(readStateFile(path.join(dir, 'results.jsonl'), 1024)).rejects.toThrow(/it is a directory/);
    await expect(readStateFile(path.join(dir, 'job.json'), 1024)).rejects.toThrow(/2000 bytes, over the 1024/);
    expect(await readStateFile(path.join(dir, 'job.json'), 4096)).toHaveLength(2000);
  });

  it('keeps ENOENT for a file that is not there', async () => {
    await expect(readStateFile(path.join(await folder(), 'none'), 10)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
