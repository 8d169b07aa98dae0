import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compilePattern, grepThreadsStarted } from '../../../../src/pools/llm/agent/grep.js';
import { AgentScope } from '../../../../src/pools/llm/agent/scope.js';
import { Toolbox, type ToolOutcome } from '../../../../src/pools/llm/agent/toolbox.js';

let root: string;
let outside: string;
const signal = new AbortController().signal;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'grep-root-'));
  outside = await mkdtemp(path.join(tmpdir(), 'grep-outside-'));
  const files: Record<string, string> = {
    'src/auth/login.ts': 'export function login(user: string) {\n  return checkPassword(user);\n}\n',
    'src/auth/token.ts': 'const TOKEN_TTL = 60;\nexport function refreshToken() {}\n',
    'src/other.ts': '// calls login() too\nlogin("x");\n',
    'src/.cache/login.ts': 'login cached\n',
    'node_modules/dep/login.js': 'login in a dependency\n',
    'docs/notes.md': 'How Login works.\n',
    'many.txt': Array.from({ length: 300 }, (_, i) => `hit ${i + 1}`).join('\n'),
    'evil.txt': `${'a'.repeat(5000)}!\n`,
  };
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), content);
  }
  await writeFile(path.join(root, 'src', 'image.png'), Buffer.from([0x89, 0x50, 0, 0, 0x6c, 0x6f, 0x67, 0x69, 0x6e]));
  await writeFile(path.join(root, 'huge.txt'), `login\n${'z'.repeat(3 * 1024 * 1024)}\n`);
  await writeFile(path.join(outside, 'secret.ts'), 'login secret\n');
  await symlink(path.join(outside, 'secret.ts'), path.join(root, 'src', 'link.ts'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

const toolbox = (paths?: string[]): Toolbox => new Toolbox({ scope: new AgentScope({ allowedRoots: [root], paths }) });

async function grep(box: Toolbox, args: Record<string, unknown>): Promise<ToolOutcome> {
  const outcome = await box.run('grep', args, signal);
  expect(outcome.ok, outcome.text).toBe(true);
  return outcome;
}

describe('grep', () => {
  it('shows matches as path:line: text, skipping dot-folders, node_modules, binaries, big files and links out', async () => {
    const outcome = await grep(toolbox(), { pattern: 'login\\(' });
    expect(outcome.text.split('\n')).toEqual([
      '3 matches for /login\\(/ in . (2 of 6 files searched):',
      '1 file over 2 MB skipped.',
      '1 binary file skipped.',
      'src/auth/login.ts:1: export function login(user: string) {',
      'src/other.ts:1: // calls login() too',
      'src/other.ts:2: login("x");',
    ]);
    expect(outcome.summary).toBe('grep /login\\(/ in . (3 matches)');
    expect(outcome.bytesRead).toBeGreaterThan(0);
  });

  it('is case-sensitive unless the pattern starts with (?i) or is written /…/i', async () => {
    expect((await grep(toolbox(), { pattern: 'login', path: 'docs' })).text).toMatch(
      /^No matches for \/login\/ in docs/,
    );
    expect((await grep(toolbox(), { pattern: '(?i)login', path: 'docs' })).text).toContain(
      'docs/notes.md:1: How Login',
    );
    expect((await grep(toolbox(), { pattern: '/LOGIN/i', path: 'docs' })).text).toContain('docs/notes.md:1:');
  });

  it('searches an invalid regular expression as literal text, and says so', async () => {
    const outcome = await grep(toolbox(), { pattern: 'login(user', path: 'src' });
    expect(outcome.text).toContain('src/auth/login.ts:1: export function login(user: string) {');
    expect(outcome.text).toMatch(/Not a valid regular expression \(.*\): searched as literal text\./);
    expect(compilePattern('a[b')).toMatchObject({ source: 'a\\[b', flags: '' });
  });

  it('takes a glob and a single file, and stays inside the task paths', async () => {
    const globbed = await grep(toolbox(), { pattern: 'export', path: 'src', glob: 'auth/*.ts' });
    expect(globbed.text).toMatch(/^2 matches .* \(2 of 2 files searched\):/);
    const one = await grep(toolbox(), { pattern: 'TTL', path: 'src/auth/token.ts' });
    expect(one.text).toContain('src/auth/token.ts:1: const TOKEN_TTL = 60;');
    const narrow = await grep(toolbox(['src/auth/**']), { pattern: 'login' });
    expect(narrow.text).not.toContain('src/other.ts');
    expect(narrow.text).toContain('src/auth/login.ts');
    for (const bad of ['../../etc', '/etc', 'src/link.ts']) {
      const refused = await toolbox().run('grep', { pattern: 'root', path: bad }, signal);
      expect(refused, bad).toMatchObject({ ok: false });
      expect(refused.text).toMatch(/outside the allowed folders/);
    }
    expect((await toolbox(['src/auth/**']).run('grep', { pattern: 'x', path: 'docs' }, signal)).text).toMatch(
      /outside this task's paths/,
    );
  });

  it('shows at most 50 matches and says how many there were', async () => {
    const outcome = await grep(toolbox(), { pattern: '^hit \\d+$', path: 'many.txt' });
    const lines = outcome.text.split('\n');
    expect(lines[0]).toBe('300 matches for /^hit \\d+$/ in many.txt (1 of 1 files searched):');
    expect(lines.filter((l) => l.startsWith('many.txt:'))).toHaveLength(50);
    expect(lines[1]).toBe('Showing the first 50 of 300 matches: narrow the pattern, path or glob.');
    expect(lines.at(-1)).toBe('many.txt:50: hit 50');
  });

  it('cuts its result to the byte budget, the notes kept, saying how to narrow it', async () => {
    const wide = path.join(root, 'wide.txt');
    await writeFile(wide, Array.from({ length: 80 }, (_, i) => `match ${i} ${'w'.repeat(400)}`).join('\n'));
    try {
      const outcome = await grep(toolbox(), { pattern: 'match', path: 'wide.txt' });
      expect(Buffer.byteLength(outcome.text)).toBeLessThanOrEqual(8000);
      expect(outcome.text).toContain('Showing the first 50 of 80 matches');
      // Long lines are shown as a window of 200 characters.
      expect(outcome.text).toMatch(/\nwide\.txt:1: match 0 w{190,}…\n/);
      expect(outcome.text).toMatch(/\n\[\d+ more lines \(\d+\.\d KB\) not shown: narrow the pattern, path or glob\]$/);
    } finally {
      await rm(wide, { force: true });
    }
  });

  it('refuses a missing or non-string pattern', async () => {
    expect(await toolbox().run('grep', {}, signal)).toMatchObject({ ok: false });
    expect((await toolbox().run('grep', { pattern: ['a'] }, signal)).text).toMatch(/^pattern must be a string/);
  });

  it(
    'stops a catastrophically backtracking pattern at its time limit while the server stays responsive',
    { timeout: 60_000 },
    async () => {
      // The main thread's timers keep firing while the worker thread is stuck in the regex.
      let ticks = 0;
      let worstGap = 0;
      let last = Date.now();
      const timer = setInterval(() => {
        ticks++;
        worstGap = Math.max(worstGap, Date.now() - last);
        last = Date.now();
      }, 50);
      const started = Date.now();
      try {
        const outcome = await grep(toolbox(), { pattern: '(a+)+$', path: 'evil.txt' });
        expect(Date.now() - started).toBeLessThan(15_000);
        expect(outcome.text).toMatch(/^No matches for \/\(a\+\)\+\$\/ in evil\.txt \(0 files searched\)\./);
        expect(outcome.text).toMatch(
          /The search was stopped after 2 s, 0 of 1 files searched: the pattern may backtrack catastrophically/,
        );
      } finally {
        clearInterval(timer);
      }
      expect(ticks).toBeGreaterThan(5);
      expect(worstGap).toBeLessThan(1500);
    },
  );

  it('ends the search when the signal aborts', { timeout: 30_000 }, async () => {
    const controller = new AbortController();
    const pending = toolbox().run('grep', { pattern: '(a+)+$', path: 'evil.txt' }, controller.signal);
    setTimeout(() => controller.abort(new Error('cancelled')), 100);
    await expect(pending).rejects.toThrow('cancelled');
  });

  it(
    'keeps finished threads warm for the next searches, and never reuses one it stopped',
    { timeout: 60_000 },
    async () => {
      await grep(toolbox(), { pattern: 'login' });
      const before = grepThreadsStarted();
      for (let i = 0; i < 5; i++) await grep(toolbox(), { pattern: 'login' });
      expect(grepThreadsStarted()).toBe(before);
      // A stopped search's thread is ended, not put back: the next search after it still finds matches.
      await grep(toolbox(), { pattern: '(a+)+$', path: 'evil.txt' });
      const outcome = await grep(toolbox(), { pattern: 'login\\(' });
      expect(outcome.text).toContain('src/auth/login.ts:1:');
    },
  );
});
