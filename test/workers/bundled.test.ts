import { execFile } from 'node:child_process';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectInMemory, makeTempDir, repoRoot, type Connected } from '../helpers/client.js';
import { collectAll, scriptConfig, submitScripts } from '../helpers/scripts.js';

/** The bundled workers, run by run_script_batch over this repository's own files (and code_stats.py's samples). */
let conn: Connected;
let sampleDir = '';
const samples = { ts: '', py: '' };

/** What code_stats.py must tell apart: functions defined from callbacks passed, notes from mentions of a tag. */
// Interpolated, so that this file's own source holds no note (the demo counts this repository's).
const [TODO, FIXME] = ['TODO', 'FIXME'];
const SAMPLE_TS = `// ${TODO}: a real note
/* ${FIXME}(me): another */
const pattern = /TODO|FIXME/; // a pattern, no note
// the tags TODO/FIXME are mentioned here, no note
export function named(a: number): number {
  return [a].map((x) => x * 2).filter(function (y) { return y > 0; })[0] ?? 0;
}
export const arrow = async (a: string): Promise<string> => a;
const short = (x: number) => x + 1;
class Thing {
  private field = (e: string) => e;
  constructor(readonly n: number) {}
  get size(): number { return this.n; }
  method({ a }: { a: number } = { a: 1 }) { return a; }
}
setTimeout(() => {}, 0);
promise.then((x) => x, (e) => { throw e; });
`;
const SAMPLE_PY = `import re

# TODO: a real note
NOTE = re.compile(r"TODO|FIXME")  # FIXME: and this one
# mentions TODO/FIXME only


def f(x):
    """XXX docstring note"""
    return list(map(lambda y: y, [x]))


class C:
    def m(self):
        async def inner():
            pass
        return inner
`;

beforeAll(async () => {
  sampleDir = await makeTempDir('monitor-code-stats-');
  samples.ts = path.join(sampleDir, 'sample.ts');
  samples.py = path.join(sampleDir, 'sample.py');
  await writeFile(samples.ts, SAMPLE_TS);
  await writeFile(samples.py, SAMPLE_PY);
  conn = await connectInMemory(await scriptConfig((c) => c.allowedRoots.push(sampleDir)), {
    env: { PATH: process.env.PATH },
  });
});

afterAll(async () => {
  await conn.close();
  await rm(sampleDir, { recursive: true, force: true });
});

async function runOne(worker: string, input: Record<string, unknown>): Promise<Record<string, unknown>> {
  const jobId = await submitScripts(conn, { worker, inputs: [input] });
  const { results } = await collectAll(conn, jobId);
  const result = results[0];
  expect(result?.state, JSON.stringify(result)).toBe('succeeded');
  return (result?.value?.json ?? {}) as Record<string, unknown>;
}

interface DepEntry {
  specifier: string;
  path?: string | null;
  package?: string;
  line: number;
  via?: string;
}
interface DepFile {
  file: string;
  language?: string;
  internal?: DepEntry[];
  external?: DepEntry[];
  builtin?: DepEntry[];
  error?: string;
}

describe('analyze_dependencies.py', () => {
  it("splits a TypeScript file's imports into internal, external and builtin", async () => {
    const out = await runOne('analyze_dependencies.py', {
      args: [
        'src/paths.ts',
        'src/pools/script/job-options.ts',
        'workers/code_stats.py',
        'src/pools/script/interpreters.ts',
      ],
    });
    const [paths, jobOptions, stats, interpreters] = out.files as DepFile[];
    expect(paths?.language).toBe('typescript');
    expect(paths?.internal).toContainEqual(
      expect.objectContaining({ specifier: './errors.js', path: 'src/errors.ts' }),
    );
    expect(paths?.builtin).toContainEqual(expect.objectContaining({ specifier: 'node:path' }));
    expect(jobOptions?.external).toContainEqual(expect.objectContaining({ specifier: 'zod', package: 'zod' }));
    expect(jobOptions?.internal).toContainEqual(
      expect.objectContaining({ specifier: '../../errors.js', path: 'src/errors.ts' }),
    );
    expect(jobOptions?.external?.map((e) => e.package)).toEqual(['zod']);
    expect(interpreters?.external?.map((e) => e.package)).toEqual(expect.arrayContaining(['execa']));
    expect(jobOptions?.internal).toContainEqual(
      expect.objectContaining({ specifier: './catalog.js', path: 'src/pools/script/catalog.ts' }),
    );
    expect(stats?.language).toBe('python');
    expect(stats?.builtin?.map((e) => e.specifier)).toEqual(expect.arrayContaining(['os', 're', 'sys', 'ast']));
    expect(stats?.internal).toContainEqual(
      expect.objectContaining({ specifier: '_common', path: 'workers/_common.py' }),
    );
    expect(stats?.external).toEqual([]);
    expect(out.external_packages).toEqual(expect.arrayContaining(['execa', 'zod']));
  });

  it('does not take the word import inside a string for an import', async () => {
    // This very file passes { pattern: 'import', files: [...] } to grep_context.py below.
    const out = await runOne('analyze_dependencies.py', { args: ['test/workers/bundled.test.ts'] });
    expect(out.external_packages).toEqual(['vitest']);
  });

  it('takes {"files": [...]} as json and reports unreadable or unsupported files per file', async () => {
    const out = await runOne('analyze_dependencies.py', {
      json: { files: ['src/errors.ts', 'no/such/file.ts', 'package.json', 'test/fixtures/workers/direct'] },
    });
    const files = out.files as DepFile[];
    expect(files[0]?.error).toBeUndefined();
    expect(files[1]?.error).toMatch(/unreadable/);
    expect(files[2]?.error).toMatch(/not a Python, JavaScript or TypeScript file/);
    expect(files[3]?.error).toBeDefined();
  });
});

describe('code_stats.py', () => {
  it('counts lines, comments, functions and classes of real files', async () => {
    const out = await runOne('code_stats.py', {
      args: ['src/pools/script/catalog.ts', 'workers/grep_context.py', '/bin/sh'],
    });
    const [catalog, grep, binary] = out.files as Array<Record<string, unknown>>;
    expect(catalog).toMatchObject({ language: 'typescript', classes: 1 });
    expect(catalog?.functions).toBeGreaterThan(5);
    expect(Number(catalog?.lines)).toBe(Number(catalog?.blank) + Number(catalog?.comment) + Number(catalog?.code));
    expect(catalog?.comment).toBeGreaterThan(5);
    expect(grep).toMatchObject({ language: 'python', classes: 0 });
    expect(grep?.functions).toBeGreaterThanOrEqual(6);
    // Outside the allowed folders (the repository here): not read at all.
    expect(binary?.error).toMatch(/outside the allowed folders/);
    expect(out.totals).toMatchObject({ files: 3 });
  });

  it('finds TODO notes with their line numbers, not a mention of a tag nor a pattern for them', async () => {
    const out = await runOne('code_stats.py', { args: ['workers/code_stats.py', samples.ts, samples.py] });
    type Stats = { todos: Array<{ line: number; tag: string; text: string }>; functions: number };
    const [self, ts, py] = out.files as Stats[];
    // Its own header lists the tags and its code holds their pattern: neither is a note.
    expect(self?.todos).toEqual([]);
    expect(ts?.todos.map((t) => [t.line, t.tag, t.text])).toEqual([
      [1, 'TODO', 'a real note'],
      [2, 'FIXME', 'me): another'],
    ]);
    expect(py?.todos.map((t) => [t.line, t.tag])).toEqual([
      [3, 'TODO'],
      [4, 'FIXME'],
      [9, 'XXX'],
    ]);
  });

  it('counts the functions a file defines, not the callbacks it passes', async () => {
    const out = await runOne('code_stats.py', { args: [samples.ts, samples.py] });
    const [ts, py] = out.files as Array<{ functions: number; classes: number }>;
    // named, arrow, short, field, constructor, get size, method; none of the five callbacks.
    expect(ts).toMatchObject({ functions: 7, classes: 1 });
    // f, m and inner; not the lambda.
    expect(py).toMatchObject({ functions: 3, classes: 1 });
  });
});

describe('grep_context.py', () => {
  it('finds matches with context lines in files and folders', async () => {
    const out = await runOne('grep_context.py', {
      args: ['--context', '1', '--include', '*.ts', 'export class WorkerCatalog', 'src'],
    });
    expect(out.total_matches).toBe(1);
    const files = out.files as Array<{
      file: string;
      blocks: Array<{ start: number; lines: string[]; match_lines: number[] }>;
    }>;
    expect(files).toHaveLength(1);
    expect(files[0]?.file).toBe('src/pools/script/catalog.ts');
    const block = files[0]?.blocks[0];
    expect(block?.lines).toHaveLength(3);
    expect(block?.lines[1]).toContain('export class WorkerCatalog');
    expect(block?.match_lines).toEqual([(block?.start ?? 0) + 1]);
  });

  it('stops at max_matches and says so', async () => {
    const out = await runOne('grep_context.py', {
      json: { pattern: 'import', files: ['src'], context: 0, max_matches: 5 },
    });
    expect(out.total_matches).toBe(5);
    expect(out.truncated).toBe(true);
  });

  it('fails the task (exit 2) on an invalid regex', async () => {
    const jobId = await submitScripts(conn, { worker: 'grep_context.py', inputs: [{ args: ['(unclosed', 'src'] }] });
    const { results } = await collectAll(conn, jobId);
    expect(results[0]).toMatchObject({
      state: 'failed',
      error: { code: 'NON_ZERO_EXIT', message: expect.stringContaining('not a valid regular expression') },
      value: { exit_code: 2 },
    });
  });
});

describe('outline.py', () => {
  it('maps classes, methods and functions of TypeScript and Python files', async () => {
    const out = await runOne('outline.py', { args: ['src/pools/script/catalog.ts', 'workers/outline.py'] });
    const [ts, py] = out.files as Array<{
      symbols: Array<{ kind: string; name: string; line: number; members?: Array<{ name: string }> }>;
      doc?: string;
    }>;
    const catalog = ts?.symbols.find((s) => s.name === 'WorkerCatalog');
    expect(catalog?.kind).toBe('class');
    expect(catalog?.members?.map((m) => m.name)).toEqual(
      expect.arrayContaining(['list', 'resolveWorker', 'planWorker', 'planCommand']),
    );
    expect(ts?.symbols.find((s) => s.name === 'readHead')?.kind).toBe('function');
    expect(py?.symbols.map((s) => s.name)).toEqual(
      expect.arrayContaining(['python_symbols', 'js_symbols', 'outline', 'main']),
    );
    expect(py?.doc).toContain('Standard library only');
  });
});

describe('every bundled worker, on files it must not read', () => {
  let guarded: Connected;
  let project: string;
  let outside: string;

  beforeAll(async () => {
    project = await makeTempDir('monitor-project-');
    outside = await makeTempDir('monitor-outside-');
    await promisify(execFile)('mkfifo', [path.join(project, 'pipe.py')]);
    // Inside an allowed folder (/dev is allowed here) but a device: reading it would never end.
    await symlink('/dev/zero', path.join(project, 'zero.ts'));
    await mkdir(path.join(project, 'folder.py'));
    await writeFile(path.join(outside, 'private.py'), 'import secret_module  # TODO: private\n');
    await symlink(path.join(outside, 'private.py'), path.join(project, 'link_out.py'));
    await writeFile(path.join(project, 'fine.py'), 'import json  # TODO: fine\n');
    await writeFile(
      path.join(project, 'binary.py'),
      Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 0, 0, 0x54, 0x4f, 0x44, 0x4f]),
    );
    guarded = await connectInMemory(
      await scriptConfig((c) => {
        c.allowedRoots = [project, '/dev'];
      }),
      { env: { PATH: process.env.PATH } },
    );
  });

  afterAll(async () => {
    await guarded.close();
    await rm(project, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  const files = (): string[] => [
    'pipe.py',
    'zero.ts',
    'folder.py',
    'link_out.py',
    path.join(outside, 'private.py'),
    path.join(repoRoot, 'src', 'registry.ts'),
    'fine.py',
    'binary.py',
  ];
  const cases: Array<{ worker: string; args: () => string[] }> = [
    { worker: 'analyze_dependencies.py', args: files },
    { worker: 'code_stats.py', args: files },
    { worker: 'outline.py', args: files },
    { worker: 'grep_context.py', args: () => ['-F', 'TODO', ...files()] },
  ];
  for (const { worker, args } of cases) {
    it(`${worker} skips FIFOs, devices and folders, and files outside the allowed folders, per file`, async () => {
      // A FIFO or /dev/zero read without care would hold the task until its timeout.
      const jobId = await submitScripts(guarded, {
        worker,
        inputs: [{ args: args() }],
        cwd: project,
        timeout_seconds: 20,
      });
      const { results } = await collectAll(guarded, jobId);
      expect(results[0]?.state, JSON.stringify(results[0])).toBe('succeeded');
      const out = results[0]?.value?.json as { files: Array<{ file: string; error?: string }> };
      const byName = new Map(out.files.map((f) => [path.basename(f.file), f]));
      // grep_context searches a folder it is given (here an empty one); the others skip it.
      const specials = worker === 'grep_context.py' ? ['pipe.py', 'zero.ts'] : ['pipe.py', 'zero.ts', 'folder.py'];
      for (const special of specials) expect(byName.get(special)?.error, special).toMatch(/not a regular file/);
      for (const far of ['link_out.py', 'private.py', 'registry.ts'])
        expect(byName.get(far)?.error, far).toMatch(/outside the allowed folders/);
      expect(byName.get('fine.py')?.error).toBeUndefined();
      expect(byName.get('binary.py')?.error).toBe('binary file');
      expect(JSON.stringify(out)).not.toContain('secret_module');
    });
  }

  it('grep_context.py does not list a folder outside the allowed ones', async () => {
    const out = (await runOneOn(guarded, 'grep_context.py', { args: ['-F', 'TODO', outside, '.'] })) as {
      files: Array<{ file: string; error?: string; matches?: number }>;
    };
    expect(out.files).toContainEqual({ file: outside, error: expect.stringMatching(/outside the allowed folders/) });
    expect(out.files.find((f) => f.file === './fine.py')?.matches).toBe(1);
    expect(JSON.stringify(out)).not.toContain('secret_module');
  });
});

async function runOneOn(
  on: Connected,
  worker: string,
  input: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const jobId = await submitScripts(on, {
    worker,
    inputs: [input],
    cwd: on.config.allowedRoots[0],
    timeout_seconds: 20,
  });
  const { results } = await collectAll(on, jobId);
  expect(results[0]?.state, JSON.stringify(results[0])).toBe('succeeded');
  return (results[0]?.value?.json ?? {}) as Record<string, unknown>;
}
