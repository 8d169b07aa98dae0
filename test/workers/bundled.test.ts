import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectInMemory, type Connected } from '../helpers/client.js';
import { collectAll, scriptConfig, submitScripts } from '../helpers/scripts.js';

/** The bundled workers, run by run_script_batch over this repository's own files. */
let conn: Connected;

beforeAll(async () => {
  conn = await connectInMemory(await scriptConfig(), { env: { PATH: process.env.PATH } });
});

afterAll(async () => {
  await conn.close();
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
  it('splits src/config.ts imports into internal, external and builtin', async () => {
    const out = await runOne('analyze_dependencies.py', { args: ['src/config.ts', 'src/pools/script/pool.ts', 'workers/code_stats.py', 'src/pools/script/interpreters.ts'] });
    const [config, pool, stats, interpreters] = out.files as DepFile[];
    expect(config?.language).toBe('typescript');
    expect(config?.external).toContainEqual(expect.objectContaining({ specifier: 'zod', package: 'zod' }));
    expect(config?.internal).toContainEqual(expect.objectContaining({ specifier: './errors.js', path: 'src/errors.ts' }));
    expect(config?.builtin).toContainEqual(expect.objectContaining({ specifier: 'node:path' }));
    expect(pool?.external?.map((e) => e.package)).toEqual(['zod']);
    expect(interpreters?.external?.map((e) => e.package)).toEqual(expect.arrayContaining(['execa']));
    expect(pool?.internal).toContainEqual(expect.objectContaining({ specifier: './catalog.js', path: 'src/pools/script/catalog.ts' }));
    expect(stats?.language).toBe('python');
    expect(stats?.builtin?.map((e) => e.specifier)).toEqual(expect.arrayContaining(['json', 'os', 're', 'sys', 'ast']));
    expect(stats?.external).toEqual([]);
    expect(out.external_packages).toEqual(expect.arrayContaining(['execa', 'zod']));
  });

  it('takes {"files": [...]} as json and reports unreadable or unsupported files per file', async () => {
    const out = await runOne('analyze_dependencies.py', { json: { files: ['src/errors.ts', 'no/such/file.ts', 'package.json', 'test/fixtures/workers/direct'] } });
    const files = out.files as DepFile[];
    expect(files[0]?.error).toBeUndefined();
    expect(files[1]?.error).toMatch(/unreadable/);
    expect(files[2]?.error).toMatch(/not a Python, JavaScript or TypeScript file/);
    expect(files[3]?.error).toBeDefined();
  });
});

describe('code_stats.py', () => {
  it('counts lines, comments, functions and classes of real files', async () => {
    const out = await runOne('code_stats.py', { args: ['src/pools/script/catalog.ts', 'workers/grep_context.py', '/bin/sh'] });
    const [catalog, grep, binary] = out.files as Array<Record<string, unknown>>;
    expect(catalog).toMatchObject({ language: 'typescript', classes: 1 });
    expect(catalog?.functions).toBeGreaterThan(5);
    expect(Number(catalog?.lines)).toBe(Number(catalog?.blank) + Number(catalog?.comment) + Number(catalog?.code));
    expect(catalog?.comment).toBeGreaterThan(5);
    expect(grep).toMatchObject({ language: 'python', classes: 0 });
    expect(grep?.functions).toBeGreaterThanOrEqual(6);
    expect(binary?.error).toBe('binary file');
    expect(out.totals).toMatchObject({ files: 3 });
  });

  it('finds TODO notes with their line numbers', async () => {
    const out = await runOne('code_stats.py', { args: ['workers/code_stats.py'] });
    const [stats] = out.files as Array<{ todos: Array<{ line: number; tag: string }> }>;
    // Its header comment mentions TODO/FIXME on line 2; code that matches the word is not a note.
    expect(stats?.todos).toEqual([expect.objectContaining({ line: 2, tag: 'TODO' })]);
  });
});

describe('grep_context.py', () => {
  it('finds matches with context lines in files and folders', async () => {
    const out = await runOne('grep_context.py', { args: ['--context', '1', '--include', '*.ts', 'export class WorkerCatalog', 'src'] });
    expect(out.total_matches).toBe(1);
    const files = out.files as Array<{ file: string; blocks: Array<{ start: number; lines: string[]; match_lines: number[] }> }>;
    expect(files).toHaveLength(1);
    expect(files[0]?.file).toBe('src/pools/script/catalog.ts');
    const block = files[0]?.blocks[0];
    expect(block?.lines).toHaveLength(3);
    expect(block?.lines[1]).toContain('export class WorkerCatalog');
    expect(block?.match_lines).toEqual([(block?.start ?? 0) + 1]);
  });

  it('stops at max_matches and says so', async () => {
    const out = await runOne('grep_context.py', { json: { pattern: 'import', files: ['src'], context: 0, max_matches: 5 } });
    expect(out.total_matches).toBe(5);
    expect(out.truncated).toBe(true);
  });

  it('fails the task (exit 2) on an invalid regex', async () => {
    const jobId = await submitScripts(conn, { worker: 'grep_context.py', inputs: [{ args: ['(unclosed', 'src'] }] });
    const { results } = await collectAll(conn, jobId);
    expect(results[0]).toMatchObject({ state: 'failed', error: { code: 'NON_ZERO_EXIT', message: expect.stringContaining('not a valid regular expression') }, value: { exit_code: 2 } });
  });
});

describe('outline.py', () => {
  it('maps classes, methods and functions of TypeScript and Python files', async () => {
    const out = await runOne('outline.py', { args: ['src/pools/script/catalog.ts', 'workers/outline.py'] });
    const [ts, py] = out.files as Array<{ symbols: Array<{ kind: string; name: string; line: number; members?: Array<{ name: string }> }>; doc?: string }>;
    const catalog = ts?.symbols.find((s) => s.name === 'WorkerCatalog');
    expect(catalog?.kind).toBe('class');
    expect(catalog?.members?.map((m) => m.name)).toEqual(expect.arrayContaining(['list', 'resolveWorker', 'planWorker', 'planCommand']));
    expect(ts?.symbols.find((s) => s.name === 'readHead')?.kind).toBe('function');
    expect(py?.symbols.map((s) => s.name)).toEqual(expect.arrayContaining(['python_symbols', 'js_symbols', 'outline', 'main']));
    expect(py?.doc).toContain('Standard library only');
  });
});
