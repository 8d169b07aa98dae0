import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentScope, matchSegments, type ScopeAnswer } from '../../../../src/pools/llm/agent/scope.js';

let root: string;
let outside: string;

// Not test/helpers/client's makeTempDir: that module loads the whole server, and the tools need none of it.
const makeTempDir = (prefix: string): Promise<string> => mkdtemp(path.join(tmpdir(), prefix));

beforeAll(async () => {
  root = await makeTempDir('scope-root-');
  outside = await makeTempDir('scope-outside-');
  for (const file of ['a.ts', 'src/auth/login.ts', 'src/auth/.env', 'src/other.ts', 'lib/x.py', 'lib/y.js']) {
    await mkdir(path.dirname(path.join(root, file)), { recursive: true });
    await writeFile(path.join(root, file), file);
  }
  await writeFile(path.join(outside, 'secret.txt'), 'secret');
  await symlink(path.join(outside, 'secret.txt'), path.join(root, 'link-out.txt'));
  await symlink(outside, path.join(root, 'dir-out'));
  await symlink(path.join(root, 'src', 'other.ts'), path.join(root, 'lib', 'in.py'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

const refusal = (answer: ScopeAnswer): string => ('refused' in answer ? answer.refused : `allowed ${answer.shown}`);

describe('AgentScope over the whole root', () => {
  const scope = (): AgentScope => new AgentScope({ allowedRoots: [root] });

  it('resolves relative and absolute paths inside the root, shown relative to it', async () => {
    expect(await scope().resolve('src/auth/login.ts', 'file')).toEqual({
      real: path.join(root, 'src/auth/login.ts'),
      shown: 'src/auth/login.ts',
    });
    expect(await scope().resolve(path.join(root, 'lib'), 'dir')).toMatchObject({ shown: 'lib' });
    expect(await scope().resolve('', 'dir')).toMatchObject({ shown: '.' });
    expect(await scope().resolve('src/../a.ts', 'any')).toMatchObject({ shown: 'a.ts' });
  });

  it('refuses ../.., absolute paths outside and symlinks leading out, in one short sentence naming what it may see', async () => {
    for (const hostile of ['../../etc/passwd', '/etc/passwd', 'link-out.txt', 'dir-out/secret.txt', 'dir-out']) {
      const answer = await scope().resolve(hostile, 'any');
      expect(answer, hostile).toMatchObject({ kind: 'outside' });
      expect(refusal(answer)).toMatch(/is outside the allowed folders\. You may look at any path inside the project/);
      expect(refusal(answer).length).toBeLessThan(200);
    }
    // Outside before missing: probing for files outside learns nothing.
    expect(await scope().resolve('/no/such/file', 'file')).toMatchObject({ kind: 'outside' });
  });

  it('says what is wrong with paths that are missing, of the wrong kind or not strings', async () => {
    expect(await scope().resolve('nope.ts', 'file')).toEqual({ refused: 'No such file: nope.ts', kind: 'missing' });
    expect(refusal(await scope().resolve('src', 'file'))).toBe('"src" is a folder: use list_files on it.');
    expect(refusal(await scope().resolve('a.ts', 'dir'))).toBe('"a.ts" is a file: use read_file on it.');
    expect(await scope().resolve(42, 'file')).toMatchObject({ kind: 'invalid' });
    expect(await scope().resolve({ path: 'a.ts' }, 'file')).toMatchObject({ kind: 'invalid' });
    expect(await scope().resolve('a\0b', 'file')).toMatchObject({ kind: 'invalid' });
    expect(await scope().resolve('x'.repeat(10_000), 'file')).toMatchObject({ kind: 'invalid' });
  });

  it('follows a symlink that stays inside the root to its real path', async () => {
    expect(await scope().resolve('lib/in.py', 'file')).toEqual({
      real: path.join(root, 'src/other.ts'),
      shown: 'src/other.ts',
    });
  });
});

describe("AgentScope narrowed to the task's paths", () => {
  it('allows files matching a glob and the folders that lead to them, nothing else', async () => {
    const s = new AgentScope({ allowedRoots: [root], paths: ['src/auth/**', 'lib/*.py'] });
    expect(await s.resolve('src/auth/login.ts', 'file')).toMatchObject({ shown: 'src/auth/login.ts' });
    expect(await s.resolve('lib/x.py', 'file')).toMatchObject({ shown: 'lib/x.py' });
    for (const dir of ['.', 'src', 'src/auth', 'lib']) expect(await s.resolve(dir, 'dir'), dir).toHaveProperty('real');
    const refused = await s.resolve('src/other.ts', 'file');
    expect(refusal(refused)).toBe(
      `"src/other.ts" is outside this task's paths. You may look at: src/auth/**, lib/*.py.`,
    );
    expect(await s.resolve('lib/y.js', 'file')).toMatchObject({ kind: 'outside' });
    // `**` skips dot names, as in the kind's file patterns.
    expect(await s.resolve('src/auth/.env', 'file')).toMatchObject({ kind: 'outside' });
    // A symlink inside the root to a file outside the task's paths is judged by its target.
    expect(await s.resolve('lib/in.py', 'file')).toMatchObject({ kind: 'outside' });
    expect(await s.allows(path.join(root, 'src/auth/login.ts'))).toBe(true);
    expect(await s.allows(path.join(root, 'src'), 'dir')).toBe(true);
    expect(await s.allows(path.join(root, 'src'), 'file')).toBe(false);
    expect(await s.allows('/etc/passwd')).toBe(false);
  });

  it('takes plain file and folder paths: a folder allows everything below it', async () => {
    const s = new AgentScope({ allowedRoots: [root], paths: ['src/auth', 'a.ts'] });
    expect(await s.resolve('src/auth/.env', 'file')).toHaveProperty('real');
    expect(await s.resolve('a.ts', 'file')).toHaveProperty('real');
    expect(await s.resolve('src/other.ts', 'file')).toMatchObject({ kind: 'outside' });
    expect(await s.resolve('lib', 'dir')).toMatchObject({ kind: 'outside' });
  });

  it('treats brace alternatives and absolute task paths like the kind does', async () => {
    const s = new AgentScope({ allowedRoots: [root], paths: [`${root}/lib/*.{py,js}`] });
    expect(await s.resolve('lib/y.js', 'file')).toHaveProperty('real');
    expect(await s.resolve('lib/x.py', 'file')).toHaveProperty('real');
    expect(await s.resolve('a.ts', 'file')).toMatchObject({ kind: 'outside' });
  });
});

describe('matchSegments', () => {
  it('matches `**` across folders but not into dot-folders, and open folders that may hold matches', () => {
    expect(matchSegments(['a', 'b', 'c.ts'], ['**', '*.ts'])).toBe(true);
    expect(matchSegments(['.git', 'c.ts'], ['**', '*.ts'])).toBe(false);
    expect(matchSegments(['a'], ['**', '*.ts'], { open: true })).toBe(true);
    expect(matchSegments(['a'], ['b', '*.ts'], { open: true })).toBe(false);
    // A matched folder holds its files, unless only exact matches count.
    expect(matchSegments(['sub', 'x.ts'], ['sub'])).toBe(true);
    expect(matchSegments(['sub', 'x.ts'], ['sub'], { exact: true })).toBe(false);
    expect(matchSegments(['A.TS'], ['*.ts'], { caseInsensitive: true })).toBe(true);
  });

  it('stays fast on a pattern of many `**`', () => {
    const started = Date.now();
    expect(matchSegments(Array(40).fill('d'), [...Array(30).fill('**'), 'x'])).toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
