import { execFileSync } from 'node:child_process';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expandBraces, expandFiles, segmentRegExp } from '../../../src/pools/llm/glob.js';
import { makeTempDir } from '../../helpers/client.js';

let root: string;
let outside: string;

beforeAll(async () => {
  root = await makeTempDir('glob-root-');
  outside = await makeTempDir('glob-outside-');
  const files = [
    'a.ts',
    'b.js',
    '.hidden.ts',
    'src/x.ts',
    'src/y.py',
    'src/deep/z.ts',
    'src/deep/deeper/w.ts',
    'node_modules/m/index.ts',
    '.git/config.ts',
    'docs/readme.md',
  ];
  for (const file of files) {
    await mkdir(path.dirname(path.join(root, file)), { recursive: true });
    await writeFile(path.join(root, file), file);
  }
  await writeFile(path.join(outside, 'secret.ts'), 'secret');
  await symlink(path.join(outside, 'secret.ts'), path.join(root, 'src', 'link.ts'));
  await symlink(outside, path.join(root, 'src', 'outlink'));
});

const rel = (files: string[]): string[] => files.map((f) => path.relative(root, f));

describe('expandFiles', () => {
  it('matches *, **, ? and braces, skipping dot files, node_modules and escaping symlinks', async () => {
    expect(rel(await expandFiles(['*.ts'], { roots: [root], maxFiles: 100 }))).toEqual(['a.ts']);
    expect(rel(await expandFiles(['**/*.ts'], { roots: [root], maxFiles: 100 }))).toEqual([
      'a.ts',
      'src/deep/deeper/w.ts',
      'src/deep/z.ts',
      'src/x.ts',
    ]);
    expect(rel(await expandFiles(['src/**'], { roots: [root], maxFiles: 100 }))).toEqual([
      'src/deep/deeper/w.ts',
      'src/deep/z.ts',
      'src/x.ts',
      'src/y.py',
    ]);
    expect(rel(await expandFiles(['src/?.{ts,py}'], { roots: [root], maxFiles: 100 }))).toEqual([
      'src/x.ts',
      'src/y.py',
    ]);
    expect(rel(await expandFiles(['node_modules/**/*.ts', '.*.ts'], { roots: [root], maxFiles: 100 }))).toEqual([
      'node_modules/m/index.ts',
      '.hidden.ts',
    ]);
  });

  it('takes plain paths, dedupes across patterns, and keeps their order', async () => {
    expect(
      rel(await expandFiles(['b.js', '*.{js,ts}', path.join(root, 'a.ts')], { roots: [root], maxFiles: 100 })),
    ).toEqual(['b.js', 'a.ts']);
  });

  it('explains a pattern that matches nothing, a folder, a path outside the roots, and too many matches', async () => {
    await expect(expandFiles(['**/*.rs'], { roots: [root], maxFiles: 100 })).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: expect.stringContaining('No file matches'),
    });
    await expect(expandFiles(['src'], { roots: [root], maxFiles: 100 })).rejects.toThrow(/is a folder/);
    await expect(expandFiles([path.join(outside, '*.ts')], { roots: [root], maxFiles: 100 })).rejects.toMatchObject({
      code: 'PATH_OUTSIDE_ROOT',
    });
    await expect(expandFiles(['src/link.ts'], { roots: [root], maxFiles: 100 })).rejects.toMatchObject({
      code: 'PATH_OUTSIDE_ROOT',
    });
    await expect(expandFiles(['../*'], { roots: [root], maxFiles: 100 })).rejects.toMatchObject({
      code: 'PATH_OUTSIDE_ROOT',
    });
    await expect(expandFiles(['**/*'], { roots: [root], maxFiles: 3 })).rejects.toThrow(/more than 3 files/);
  });

  it.skipIf(process.platform === 'win32')(
    'says what a path that is not a regular file really is: a FIFO, a socket, a device',
    async () => {
      const dir = await makeTempDir('glob-special-');
      const fifo = path.join(dir, 'pipe');
      execFileSync('mkfifo', [fifo]);
      const socketPath = path.join(dir, 'sock');
      const listening = createServer();
      await new Promise<void>((resolve) => listening.listen(socketPath, resolve));
      try {
        const options = { roots: [dir, '/dev'], maxFiles: 10 };
        await expect(expandFiles([fifo], options)).rejects.toMatchObject({
          code: 'INVALID_INPUT',
          message: expect.stringMatching(/"[^"]*pipe" is a named pipe \(FIFO\), not a regular file/),
          hint: expect.stringMatching(/would block/),
        });
        await expect(expandFiles([socketPath], options)).rejects.toMatchObject({
          message: expect.stringMatching(/is a socket, not a regular file/),
        });
        await expect(expandFiles(['/dev/null'], options)).rejects.toMatchObject({
          message: expect.stringMatching(/is a character device, not a regular file/),
        });
      } finally {
        await new Promise<void>((resolve) => listening.close(() => resolve()));
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it('compiles segments and braces correctly', () => {
    expect(segmentRegExp('*.ts').test('.x.ts')).toBe(false);
    expect(segmentRegExp('[!a]?.md').test('bx.md')).toBe(true);
    expect(segmentRegExp('[!a]?.md').test('ax.md')).toBe(false);
    expect(segmentRegExp('a+b(1).txt').test('a+b(1).txt')).toBe(true);
    expect(expandBraces('{a,b{c,d}}.x')).toEqual(['a.x', 'bc.x', 'bd.x']);
    expect(expandBraces('{single}.x')).toEqual(['{single}.x']);
  });
});
