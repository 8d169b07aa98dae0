import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseWorkerHeader } from '../../src/pools/script/header.js';
import { repoRoot } from '../helpers/client.js';
import { bundledWorkers } from '../helpers/scripts.js';

const run = promisify(execFile);

/** The bundled workers and whether their header declares `pack: files`. */
async function packDeclarations(): Promise<Map<string, boolean>> {
  const names = (await readdir(bundledWorkers)).filter((name) => name.endsWith('.py') && !name.startsWith('_'));
  const declared = new Map<string, boolean>();
  for (const name of names)
    declared.set(name, parseWorkerHeader(await readFile(path.join(bundledWorkers, name), 'utf8')).pack === 'files');
  return declared;
}

/** The worker run by hand over `args`: its `files`, or its exit code when it fails. */
async function filesOf(worker: string, args: readonly string[]): Promise<unknown[] | number> {
  try {
    const { stdout } = await run('python3', ['-s', '-E', path.join(bundledWorkers, worker), ...args], {
      cwd: repoRoot,
      maxBuffer: 64 * 1024 * 1024,
    });
    return (JSON.parse(stdout) as { files: unknown[] }).files;
  } catch (error) {
    return (error as { code?: number }).code ?? -1;
  }
}

/** Real files of several languages, and arguments that are no file at all (missing, empty, option-like, a folder). */
async function mixedArgs(): Promise<string[]> {
  const sources = (await readdir(path.join(repoRoot, 'src', 'pools', 'script'))).map(
    (name) => `src/pools/script/${name}`,
  );
  const workers = (await readdir(bundledWorkers))
    .filter((name) => !name.startsWith('.'))
    .map((name) => `workers/${name}`);
  return [
    ...sources.slice(0, 4),
    'no/such/file.py',
    '',
    '-x',
    'src',
    'README.md',
    ...workers.slice(0, 4),
    'workers/code_stats.py',
  ];
}

describe('workers that declare pack: files', () => {
  it('are code_stats, outline and analyze_dependencies (grep_context takes a pattern first, and folders)', async () => {
    const declared = await packDeclarations();
    expect(
      [...declared]
        .filter(([, packs]) => packs)
        .map(([name]) => name)
        .sort(),
    ).toEqual(['analyze_dependencies.py', 'code_stats.py', 'outline.py']);
  });

  it(
    'print, for any arguments one after another, one "files" entry per argument in order: each what a run of it alone prints',
    { timeout: 120_000 },
    async () => {
      const args = await mixedArgs();
      for (const [worker, packs] of await packDeclarations()) {
        if (!packs) continue;
        const packed = await filesOf(worker, args);
        const alone: Array<unknown[] | number> = [];
        // Two at a time: a process each is the slow part.
        for (let at = 0; at < args.length; at += 2)
          alone.push(...(await Promise.all(args.slice(at, at + 2).map((arg) => filesOf(worker, [arg])))));
        for (const [at, single] of alone.entries())
          expect(single, `${worker} ${JSON.stringify(args[at])} alone`).toHaveLength(1);
        expect(packed, worker).toEqual(alone.flatMap((single) => (Array.isArray(single) ? single : [])));
      }
    },
  );

  it('grep_context does not: its output cannot be split per argument', async () => {
    const packed = await filesOf('grep_context.py', ['src/errors.ts', 'src/paths.ts']);
    // The first argument is its pattern: two arguments give one entry (or none), not two.
    expect(Array.isArray(packed) ? packed.length : packed).not.toBe(2);
  });
});
