import { mkdir, mkdtemp, open, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { elidedStub } from '../../../../src/pools/llm/agent/format.js';
import { AgentScope } from '../../../../src/pools/llm/agent/scope.js';
import { Toolbox, type ToolOutcome } from '../../../../src/pools/llm/agent/toolbox.js';
import { pythonExecutable } from '../../../helpers/warm-harness.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
let root: string;
let outside: string;
const signal = new AbortController().signal;

const numbered = (n: number): string => Array.from({ length: n }, (_, i) => `line ${i + 1}`).join('\n') + '\n';

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'toolbox-root-'));
  outside = await mkdtemp(path.join(tmpdir(), 'toolbox-outside-'));
  const files: Record<string, string> = {
    'README.md': '# demo\n',
    'src/a.ts':
      'export class Foo {\n  bar(x: number): number {\n    return x;\n  }\n}\nexport function baz(): void {}\n',
    'src/util.py': 'class Thing:\n    """A thing."""\n\n    def run(self, n):\n        return n\n',
    'src/long.txt': numbered(1532),
    'src/deep/z.ts': 'const z = 1;\n',
    'src/.hidden/h.ts': 'hidden\n',
    'node_modules/m/index.ts': 'module\n',
    'lib/x.py': 'x = 1\n',
    'empty.txt': '',
  };
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), content);
  }
  await writeFile(path.join(root, 'blob.bin'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 1, 2]));
  await writeFile(path.join(outside, 'secret.txt'), 'secret\n');
  await symlink(path.join(outside, 'secret.txt'), path.join(root, 'src', 'link-out.txt'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(outside, { recursive: true, force: true });
});

const toolbox = (paths?: string[]): Toolbox => new Toolbox({ scope: new AgentScope({ allowedRoots: [root], paths }) });

async function ok(box: Toolbox, name: string, args: Record<string, unknown>): Promise<ToolOutcome> {
  const outcome = await box.run(name, args, signal);
  expect(outcome.ok, outcome.text).toBe(true);
  return outcome;
}

describe('list_files', () => {
  it('lists a folder sorted, folders with /, paths relative to the root', async () => {
    const outcome = await ok(toolbox(), 'list_files', { path: 'src' });
    expect(outcome.text.split('\n')).toEqual([
      'src/ (5 entries):',
      'src/.hidden/',
      'src/a.ts',
      'src/deep/',
      'src/long.txt',
      'src/util.py',
    ]);
    // The symlink leading out is not listed.
    expect(outcome.text).not.toContain('link-out');
    expect(outcome.summary).toBe('list_files src (5)');
    expect(outcome.digest).toMatch(/^[0-9a-f]{16}$/);
  });

  it('walks with a glob, skipping node_modules and dot-folders unless the glob names them', async () => {
    const outcome = await ok(toolbox(), 'list_files', { path: '.', glob: '*.ts' });
    expect(outcome.text.split('\n')).toEqual(['./ (2 files matching *.ts):', 'src/a.ts', 'src/deep/z.ts']);
    const named = await ok(toolbox(), 'list_files', { path: '.', glob: 'node_modules/**/*.ts' });
    expect(named.text).toContain('node_modules/m/index.ts');
  });

  it("shows only what the task's paths allow", async () => {
    const outcome = await ok(toolbox(['src/deep/**']), 'list_files', { path: '.' });
    expect(outcome.text.split('\n')).toEqual(['./ (1 entries):', 'src/']);
    const refused = await toolbox(['src/deep/**']).run('list_files', { path: 'lib' }, signal);
    expect(refused).toMatchObject({
      ok: false,
      text: `"lib" is outside this task's paths. You may look at: src/deep/**.`,
    });
  });

  it('cuts a long listing with a note on how to see the rest', async () => {
    const big = await mkdtemp(path.join(tmpdir(), 'toolbox-big-'));
    try {
      for (let i = 0; i < 260; i++) await writeFile(path.join(big, `f${String(i).padStart(3, '0')}.txt`), '');
      const outcome = await ok(new Toolbox({ scope: new AgentScope({ allowedRoots: [big] }) }), 'list_files', {
        path: '.',
      });
      expect(outcome.text).toContain('f199.txt');
      expect(outcome.text).not.toContain('f200.txt');
      expect(outcome.text).toMatch(/\[60 more entries not shown: list a deeper path, or use glob\]$/);
    } finally {
      await rm(big, { recursive: true, force: true });
    }
  });
});

describe('read_file', () => {
  it('numbers the first 200 lines and says how to ask for the rest', async () => {
    const outcome = await ok(toolbox(), 'read_file', { path: 'src/long.txt' });
    const lines = outcome.text.split('\n');
    expect(lines[0]).toBe('src/long.txt lines 1–200 of 1,532:');
    expect(lines[1]).toBe('1| line 1');
    expect(lines[200]).toBe('200| line 200');
    expect(lines.at(-1)).toBe('[lines 201–1,532 not shown: read_file with start_line 201]');
    expect(outcome.summary).toBe('read_file src/long.txt 1–200');
    expect(elidedStub(outcome.summary, outcome.text)).toBe('[read_file src/long.txt 1–200: 2.7 KB, elided]');
    expect(outcome.bytesRead).toBe(Buffer.byteLength(numbered(200)));
  });

  it('reads a window, takes numeric strings, and refuses hostile line numbers briefly', async () => {
    const box = toolbox();
    const window = await ok(box, 'read_file', { path: 'src/long.txt', start_line: '1530', end_line: 9_999_999 });
    expect(window.text.split('\n')).toEqual([
      'src/long.txt lines 1,530–1,532 of 1,532:',
      '1530| line 1530',
      '1531| line 1531',
      '1532| line 1532',
    ]);
    const refusals: Array<[Record<string, unknown>, RegExp]> = [
      [{ path: 'src/long.txt', start_line: -3 }, /^start_line must be 1 or more/],
      [{ path: 'src/long.txt', start_line: 1.5 }, /^start_line must be a whole number/],
      [{ path: 'src/long.txt', start_line: { a: 1 } }, /^start_line must be a whole number/],
      [{ path: 'src/long.txt', start_line: 1e300 }, /too large/],
      [{ path: 'src/long.txt', start_line: 20, end_line: 10 }, /^end_line 10 is before start_line 20/],
      [{ path: 'src/long.txt', start_line: 2000 }, /^src\/long.txt has 1,532 lines: start_line 2,000 is past its end/],
      [{ path: 42 }, /^The path must be a string/],
      [{}, /^The path must be a string/],
      [{ path: 'src' }, /is a folder: use list_files/],
      [{ path: 'blob.bin' }, /^blob.bin is a binary file/],
      [{ path: 'empty.txt' }, /^empty.txt is empty/],
      [{ path: '../../etc/passwd' }, /is outside the allowed folders/],
      [{ path: '/etc/passwd' }, /is outside the allowed folders/],
      [{ path: 'src/link-out.txt' }, /is outside the allowed folders/],
    ];
    for (const [args, text] of refusals) {
      const outcome = await box.run('read_file', args, signal);
      expect(outcome.ok, JSON.stringify(args)).toBe(false);
      expect(outcome.text).toMatch(text);
      expect(outcome.text.length).toBeLessThan(200);
      expect(outcome.bytesRead).toBe(0);
    }
  });

  it('streams a window out of a 10 MB file and cuts a 10 MB line', { timeout: 60_000 }, async () => {
    const big = path.join(root, 'big.log');
    const handle = await open(big, 'w');
    const block = numbered(1000).replace(/line/g, 'entry of the log, padded to about a hundred bytes'.padEnd(90, '.'));
    let written = 0;
    while (written < 10 * 1024 * 1024) written += (await handle.write(block)).bytesWritten;
    await handle.close();
    const oneLine = path.join(root, 'bundle.min.js');
    await writeFile(oneLine, 'x'.repeat(10 * 1024 * 1024));
    try {
      const window = await ok(toolbox(), 'read_file', { path: 'big.log', start_line: 100_001, end_line: 100_003 });
      const lines = window.text.split('\n');
      expect(lines[0]).toMatch(/^big\.log lines 100,001–100,003 of 1\d\d,\d\d\d:$/);
      expect(lines[1]).toMatch(/^100001\| entry of the log.*\.\.\. 1$/);
      // Exactly the lines asked for: no note.
      expect(lines).toHaveLength(4);
      expect(window.bytesRead).toBeLessThan(1000);
      const onward = await ok(toolbox(), 'read_file', { path: 'big.log', start_line: 100_001 });
      expect(onward.text.split('\n').at(-1)).toMatch(
        /^\[lines 100,\d\d\d–1\d\d,\d\d\d not shown: read_file with start_line 100\d\d\d\]$/,
      );
      expect(Buffer.byteLength(onward.text)).toBeLessThanOrEqual(8000);
      const cut = await ok(toolbox(), 'read_file', { path: 'bundle.min.js' });
      expect(cut.text).toMatch(/^bundle\.min\.js lines 1–1 of 1:\n1\| x{500}…\[\+10\.5 MB\]$/);
    } finally {
      await rm(big, { force: true });
      await rm(oneLine, { force: true });
    }
  });

  it('keeps every result within the byte budget, saying where to go on', async () => {
    const wide = path.join(root, 'wide.txt');
    await writeFile(wide, Array.from({ length: 100 }, (_, i) => `${i + 1} ${'w'.repeat(300)}`).join('\n'));
    try {
      const box = new Toolbox({ scope: new AgentScope({ allowedRoots: [root] }), budget: { bytes: 2000 } });
      const outcome = await ok(box, 'read_file', { path: 'wide.txt' });
      expect(Buffer.byteLength(outcome.text)).toBeLessThanOrEqual(2000);
      const last = /\n(\d+)\| [^\n]*\n\[lines (\d+)–100 not shown: read_file with start_line (\d+)\]$/.exec(
        outcome.text,
      );
      expect(last, outcome.text).not.toBeNull();
      expect(Number(last?.[2])).toBe(Number(last?.[1]) + 1);
      expect(last?.[3]).toBe(last?.[2]);
    } finally {
      await rm(wide, { force: true });
    }
  });
});

describe('outline', () => {
  const runOutline = async (files: string[]): Promise<unknown> => {
    const python = await pythonExecutable();
    const { stdout } = await execa(python, [path.join(repoRoot, 'workers', 'outline.py'), ...files]);
    return JSON.parse(stdout) as unknown;
  };

  it('formats the real outline worker’s answer compactly', { timeout: 30_000 }, async () => {
    const box = new Toolbox({ scope: new AgentScope({ allowedRoots: [root] }), outline: runOutline });
    const ts = await ok(box, 'outline', { path: 'src/a.ts' });
    expect(ts.text.split('\n')).toEqual([
      'src/a.ts (typescript, 6 lines):',
      'L1 export class Foo',
      'L2   method bar(x: number): number',
      'L6 export function baz(): void {}',
    ]);
    expect(ts.summary).toBe('outline src/a.ts');
    const py = await ok(box, 'outline', { path: 'src/util.py' });
    expect(py.text.split('\n')).toEqual([
      'src/util.py (python, 5 lines):',
      'L1 class Thing — A thing.',
      'L4   method run(self, n)',
    ]);
    const folder = await ok(box, 'outline', { path: 'src' });
    expect(folder.text).toContain('src/a.ts (typescript');
    expect(folder.text).toContain('src/util.py (python');
    expect((await box.run('outline', { path: '../../etc/passwd' }, signal)).ok).toBe(false);
  });

  it('is refused when no outline runner is wired', async () => {
    expect(await toolbox().run('outline', { path: 'src/a.ts' }, signal)).toMatchObject({
      ok: false,
      text: 'outline is not available.',
    });
  });
});

describe('the toolbox', () => {
  it('refuses an unknown tool and odd argument shapes without throwing', async () => {
    const unknown = await toolbox().run('write_file', { path: 'x' }, signal);
    expect(unknown).toMatchObject({ ok: false, summary: '"write_file" (unknown tool)' });
    expect(unknown.text).toBe(
      'There is no tool "write_file". The tools are list_files, read_file, grep, outline and finish.',
    );
    const odd = await toolbox().run('read_file', null as unknown as Record<string, unknown>, signal);
    expect(odd.ok).toBe(false);
  });

  it('throws when the signal is aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('cancelled'));
    await expect(toolbox().run('list_files', { path: '.' }, controller.signal)).rejects.toThrow('cancelled');
  });
});
