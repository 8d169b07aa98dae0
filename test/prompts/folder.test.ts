import { symlink } from 'node:fs/promises';
import path from 'node:path';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { LINUX_PATHS } from '../../src/paths.js';
import { describeCount, listFolder } from '../../src/prompts/folder.js';
import { cleanupsAfterEach, fileTree } from '../helpers/cleanup.js';

const cleanups = cleanupsAfterEach();

async function project(
  files: Record<string, string>,
): Promise<{ root: string; ctx: { roots: string[]; rules: typeof LINUX_PATHS } }> {
  const root = await fileTree(files, cleanups, 'folder-');
  return { root, ctx: { roots: [root], rules: LINUX_PATHS } };
}

describe('listFolder', () => {
  it('lists files in path order as the tools take them, skipping dot-names and node_modules like **', async () => {
    const { ctx } = await project({
      'm/b.ts': '',
      'm/a/z.py': '',
      'm/a/y.md': '',
      'm/.env': '',
      'm/.git/x': '',
      'm/node_modules/p/index.js': '',
    });
    const listing = await listFolder('m/', ctx);
    expect(listing).toMatchObject({
      given: 'm',
      isFolder: true,
      files: ['m/a/y.md', 'm/a/z.py', 'm/b.ts'],
      total: 3,
      partial: false,
      textGlob: 'm/**',
      binary: 0,
    });
    expect(describeCount(listing)).toBe('3 files');
    expect((await listFolder('.', ctx)).files).toEqual(['m/a/y.md', 'm/a/z.py', 'm/b.ts']);
  });

  it('names at most the given number of files, and says when it stopped looking', async () => {
    const files = Object.fromEntries(
      Array.from({ length: 30 }, (_, i) => [`m/f${String(i).padStart(2, '0')}.txt`, '']),
    );
    const { ctx } = await project(files);
    const cut = await listFolder('m', ctx, { files: 5, entries: 1000 });
    expect(cut.files).toEqual(['m/f00.txt', 'm/f01.txt', 'm/f02.txt', 'm/f03.txt', 'm/f04.txt']);
    expect(describeCount(cut)).toBe('the first 5 of 30 files');
    const partial = await listFolder('m', ctx, { files: 5, entries: 10 });
    expect(partial).toMatchObject({ total: 10, partial: true });
    expect(describeCount(partial)).toBe('the first 5 of at least 10 files');
  });

  it('leaves binary files out of the text glob by extension', async () => {
    const { ctx } = await project({ 'm/a.ts': '', 'm/b.md': '', 'm/c.PNG': '', 'm/LICENSE': '' });
    expect(await listFolder('m', ctx)).toMatchObject({ total: 4, binary: 1, textGlob: 'm/**/*.{md,ts}' });
    const one = await project({ 'm/a.ts': '', 'm/b.zip': '' });
    expect((await listFolder('m', one.ctx)).textGlob).toBe('m/**/*.ts');
    expect(await listFolder('m/a.ts', one.ctx)).toMatchObject({
      isFolder: false,
      files: ['m/a.ts'],
      textGlob: 'm/a.ts',
    });
  });

  it('does not follow a symlinked folder, and refuses a path outside the allowed folders', async () => {
    const { root, ctx } = await project({ 'm/a.ts': '', 'other/secret.ts': '' });
    await symlink(path.join(root, 'other'), path.join(root, 'm', 'link'));
    expect((await listFolder('m', ctx)).files).toEqual(['m/a.ts']);
    const outside = { roots: [path.join(root, 'm')], rules: LINUX_PATHS };
    const error = await listFolder('../other', outside).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).message).toMatch(/resolves outside the allowed folders\. Next: Use a path inside /);
  });
});
