import { mkdir, mkdtemp, open, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  citationsFromText,
  citationsVerified,
  parseCitations,
  verifyCitations,
} from '../../../../src/pools/llm/agent/citations.js';
import { AgentScope } from '../../../../src/pools/llm/agent/scope.js';

let root: string;
let outside: string;
const signal = new AbortController().signal;

const login = [
  'import { hash } from "./hash";',
  '',
  'export function login(user: string, password: string): boolean {',
  '  const expected   = store.get(user);',
  '  return expected === hash(password);',
  '}',
].join('\n');

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'cite-root-'));
  outside = await mkdtemp(path.join(tmpdir(), 'cite-outside-'));
  await mkdir(path.join(root, 'src', 'auth'), { recursive: true });
  await writeFile(path.join(root, 'src', 'auth', 'login.ts'), `${login}\n`);
  await writeFile(path.join(root, 'src', 'other.ts'), 'export const other = 1;\n');
  await writeFile(path.join(outside, 'secret.ts'), 'secret\n');
  await symlink(path.join(outside, 'secret.ts'), path.join(root, 'src', 'link.ts'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

describe('parseCitations', () => {
  it("keeps finish's well-formed citations and drops hostile shapes", () => {
    expect(
      parseCitations([
        { path: 'src/a.ts', start_line: 3, end_line: 5, quote: 'x' },
        { path: 'src/b.ts', start_line: '7', end_line: '9' },
        { path: 'src/c.ts', line: 4 },
        'src/d.ts:10-12',
        { path: 'src/e.ts', start_line: 9, end_line: 2 },
        { path: 42, start_line: 1, end_line: 1 },
        { path: 'src/f.ts', start_line: -1, end_line: 1 },
        { path: 'src/g.ts', start_line: 1.5, end_line: 2 },
        { path: '', start_line: 1, end_line: 1 },
        null,
        [1, 2],
        7,
      ]),
    ).toEqual([
      { path: 'src/a.ts', start_line: 3, end_line: 5, quote: 'x' },
      { path: 'src/b.ts', start_line: 7, end_line: 9 },
      { path: 'src/c.ts', start_line: 4, end_line: 4 },
      { path: 'src/d.ts', start_line: 10, end_line: 12 },
    ]);
    expect(parseCitations('nonsense')).toEqual([]);
    expect(parseCitations(undefined)).toEqual([]);
    expect(parseCitations({ path: 'x.ts', start_line: 1, end_line: 1 })).toHaveLength(1);
    expect(parseCitations(Array(80).fill({ path: 'x.ts', start_line: 1, end_line: 1 }))).toHaveLength(50);
  });
});

describe('citationsFromText', () => {
  it('finds path:line mentions in the forms models write', () => {
    const text = [
      'The check is in src/auth/login.ts:3 and the hash in `src/hash.ts:10-20`.',
      'See lib/x.py#L4-L8, also docs/README.md lines 12–20 and src/a.ts, line 7.',
      'Not a path: http://localhost:8080/x, 12:30, v1:2. Again src/auth/login.ts:3.',
    ].join('\n');
    expect(citationsFromText(text)).toEqual([
      { path: 'src/auth/login.ts', start_line: 3, end_line: 3 },
      { path: 'src/hash.ts', start_line: 10, end_line: 20 },
      { path: 'lib/x.py', start_line: 4, end_line: 8 },
      { path: 'docs/README.md', start_line: 12, end_line: 20 },
      { path: 'src/a.ts', start_line: 7, end_line: 7 },
    ]);
  });
});

describe('verifyCitations', () => {
  const scope = (paths?: string[]): AgentScope => new AgentScope({ allowedRoots: [root], paths });

  it('verifies lines that exist and quotes found in them, whitespace-normalised and with read_file numbering', async () => {
    const checked = await verifyCitations(
      [
        { path: 'src/auth/login.ts', start_line: 3, end_line: 6 },
        { path: 'src/auth/login.ts', start_line: 3, end_line: 5, quote: 'const expected = store.get(user);' },
        {
          path: 'src/auth/login.ts',
          start_line: 4,
          end_line: 5,
          quote: '4|   const expected   = store.get(user);\n5|   return',
        },
        {
          path: 'src/auth/login.ts',
          start_line: 3,
          end_line: 5,
          quote: 'export function login(...) ... hash(password)',
        },
      ],
      scope(),
      signal,
    );
    expect(checked.map((c) => [c.verified, c.reason])).toEqual([
      [true, 'ok'],
      [true, 'quote found'],
      [true, 'quote found'],
      [true, 'quote found'],
    ]);
    expect(citationsVerified(checked)).toBe('4/4');
  });

  it('marks bad lines, bad quotes, missing files and paths outside false, with a short reason', async () => {
    const checked = await verifyCitations(
      [
        { path: 'src/auth/login.ts', start_line: 5, end_line: 40 },
        { path: 'src/auth/login.ts', start_line: 90, end_line: 90 },
        { path: 'src/auth/login.ts', start_line: 1, end_line: 2, quote: 'return expected === hash(password);' },
        { path: 'src/auth/nope.ts', start_line: 1, end_line: 1 },
        { path: '../../etc/passwd', start_line: 1, end_line: 1 },
        { path: '/etc/passwd', start_line: 1, end_line: 1 },
        { path: 'src/link.ts', start_line: 1, end_line: 1 },
        { path: 'src', start_line: 1, end_line: 1 },
      ],
      scope(),
      signal,
    );
    expect(checked.map((c) => [c.verified, c.reason])).toEqual([
      [false, 'file has 6 lines'],
      [false, 'file has 6 lines'],
      [false, 'quote not in lines 1–2'],
      [false, 'no such file'],
      [false, 'outside the allowed folders'],
      [false, 'outside the allowed folders'],
      [false, 'outside the allowed folders'],
      [false, 'a folder, not a file'],
    ]);
    expect(citationsVerified(checked)).toBe('0/8');
    const narrowed = await verifyCitations(
      [{ path: 'src/other.ts', start_line: 1, end_line: 1 }],
      scope(['src/auth/**']),
      signal,
    );
    expect(narrowed[0]).toMatchObject({ verified: false, reason: 'outside the allowed folders' });
  });

  it('streams a big file to check a citation near its end', { timeout: 60_000 }, async () => {
    const big = path.join(root, 'big.txt');
    const handle = await open(big, 'w');
    for (let i = 1; i <= 200_000; i++)
      if (i % 10_000 === 0) await handle.write(`${'pad line\n'.repeat(9_999)}line ${i}\n`);
    await handle.close();
    try {
      const checked = await verifyCitations(
        [
          { path: 'big.txt', start_line: 200_000, end_line: 200_000, quote: 'line 200000' },
          { path: 'big.txt', start_line: 199_990, end_line: 200_001 },
          { path: 'big.txt', start_line: 1, end_line: 200_000, quote: 'line 200000' },
        ],
        scope(),
        signal,
      );
      expect(checked.map((c) => [c.verified, c.reason])).toEqual([
        [true, 'quote found'],
        [false, 'file has 200,000 lines'],
        [false, "quote not in lines 1–5,000 (only a range's first 5,000 are checked)"],
      ]);
    } finally {
      await rm(big, { force: true });
    }
  });
});
