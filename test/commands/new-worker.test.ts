import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type NewWorkerCommand,
  parseNewWorkerCommand,
  workerFileName,
  writeNewWorker,
} from '../../src/commands/new-worker.js';
import { errorText } from '../../src/errors.js';
import type { Config } from '../../src/registry.js';
import { connectInMemory, makeTempDir, repoRoot, testConfig } from '../helpers/client.js';
import { bundledWorkers, collectAll, submitScripts } from '../helpers/scripts.js';

const run = promisify(execFile);
let configHome: string;
let project: string;
let config: Config;

beforeAll(async () => {
  configHome = await makeTempDir('monitor-new-worker-');
  project = await makeTempDir('monitor-new-worker-project-');
  // Known counts: 3 lines, 7 words, 34 bytes.
  await writeFile(path.join(project, 'notes.txt'), 'one two three\nfour five\nsix seven\n');
  config = await testConfig(
    (c) => {
      c.script.searchPath = process.env.PATH ?? '/usr/bin:/bin';
      c.script.nodePath = process.execPath;
      c.script.killGraceSeconds = 0.5;
      c.allowedRoots = [project];
    },
    [],
    { XDG_CONFIG_HOME: configHome },
  );
});

afterAll(async () => {
  await rm(configHome, { recursive: true, force: true });
  await rm(project, { recursive: true, force: true });
  await rm(config.stateDir, { recursive: true, force: true });
});

function request(command: NewWorkerCommand): Parameters<typeof writeNewWorker>[0] {
  return {
    command,
    workersDirs: config.workersDirs,
    bundledDir: config.bundledWorkersDir,
    userDir: config.userWorkersDir,
    os: 'linux',
  };
}

function refusal(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    return errorText(error);
  }
  throw new Error('not refused');
}

describe('new-worker NAME', () => {
  it('refuses names that are paths, helpers, not identifiers, or that would hide a Python module', () => {
    for (const name of ['../evil', 'a/b', 'a\\b', '..', 'x..y'])
      expect(refusal(() => workerFileName(name, false))).toMatch(/is a path/);
    expect(refusal(() => workerFileName('_common', false))).toMatch(/helper modules/);
    expect(refusal(() => workerFileName('.hidden', false))).toMatch(/helper modules/);
    for (const name of ['9lives', 'my-worker', 'with space', '', 'x'.repeat(65), 'é'])
      expect(
        refusal(() => workerFileName(name, false)),
        name,
      ).toMatch(/is not a name/);
    expect(refusal(() => workerFileName('json', false))).toMatch(/hide Python's own json module/);
    expect(refusal(() => workerFileName('tally.py', true))).toMatch(/--node asks for a Node worker/);
    // A Node worker has no Python module to hide; extensions are optional.
    expect(workerFileName('json', true)).toBe('json.mjs');
    expect(workerFileName('tally.py', false)).toBe('tally.py');
    expect(workerFileName('Tally_2', false)).toBe('Tally_2.py');
    expect(parseNewWorkerCommand(['tally.mjs'], '/w')).toMatchObject({ fileName: 'tally.mjs', node: true });
    expect(parseNewWorkerCommand(['--node', 'tally', '--dir', 'sub', '--config=/c.json'], '/w')).toEqual({
      fileName: 'tally.mjs',
      node: true,
      dir: '/w/sub',
      configArgs: ['--config', '/c.json'],
    });
    expect(refusal(() => parseNewWorkerCommand(['a', 'b'], '/w'))).toMatch(/One NAME only/);
    expect(refusal(() => parseNewWorkerCommand(['--state-dir', 'x', 'a'], '/w'))).toMatch(/Unknown option --state-dir/);
    expect(refusal(() => parseNewWorkerCommand(['--node'], '/w'))).toMatch(/Name the worker/);
  });

  it('refuses to overwrite a file, or to take a name a workers folder already has', async () => {
    const command = parseNewWorkerCommand(['keep'], project);
    await mkdir(config.userWorkersDir, { recursive: true });
    await writeFile(path.join(config.userWorkersDir, 'keep.py'), 'mine\n');
    await expect(writeNewWorker(request(command))).rejects.toThrow(/keep\.py already exists; it was left as it is/);
    expect(await readFile(path.join(config.userWorkersDir, 'keep.py'), 'utf8')).toBe('mine\n');
    await expect(writeNewWorker(request(parseNewWorkerCommand(['outline'], project)))).rejects.toThrow(
      `A worker named outline.py is already in ${bundledWorkers}`,
    );
  });

  it('writes a warm Python and a warm Node worker that run through run_script_batch, cold and warm', async () => {
    const python = await writeNewWorker(request(parseNewWorkerCommand(['tally'], project)));
    const node = await writeNewWorker(request(parseNewWorkerCommand(['tally_js', '--node'], project)));
    expect(python.file).toBe(path.join(configHome, 'monitor-mcp', 'workers', 'tally.py'));
    expect(node.file).toBe(path.join(configHome, 'monitor-mcp', 'workers', 'tally_js.mjs'));
    expect(python.report).toContain(`Wrote ${python.file}: a warm Python worker`);
    expect(python.report).toContain('list_workers shows it at once');
    expect(python.report).toContain(`By hand: PYTHONPATH=${bundledWorkers} python3 ${python.file} README.md`);
    expect(node.report).toContain(`By hand: node ${node.file} README.md`);
    // The exact call the report prints.
    const printed = /run_script_batch (\{.*\})/.exec(python.report)?.[1];
    expect(JSON.parse(printed ?? 'null')).toEqual({
      worker: 'tally.py',
      inputs: [{ args: ['README.md'] }, { args: ['package.json'] }],
    });
    expect(await readFile(python.file, 'utf8')).toMatch(/^# monitor: warm: yes$/m);
    expect(await readFile(node.file, 'utf8')).toContain('await import(process.env.MONITOR_SERVE ??');

    const conn = await connectInMemory(config, { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
    try {
      const listed = (await conn.call('list_workers', {})).structuredContent as {
        workers: Array<{ name: string; warm: boolean; description: string }>;
      };
      for (const name of ['tally.py', 'tally_js.mjs'])
        expect(
          listed.workers.find((w) => w.name === name),
          name,
        ).toMatchObject({ warm: true });
      for (const worker of ['tally.py', 'tally_js.mjs']) {
        for (const warm of [true, false]) {
          const jobId = await submitScripts(conn, {
            worker,
            warm,
            inputs: [{ args: ['notes.txt', 'missing.txt'] }, { json: { files: ['notes.txt'] } }],
          });
          const { results, job } = await collectAll(conn, jobId);
          expect(job.state, `${worker} warm ${String(warm)}`).toBe('succeeded');
          const first = results[0]?.value?.json as { files: Array<Record<string, unknown>> };
          expect(first.files[0]).toEqual({ file: 'notes.txt', lines: 3, words: 7, bytes: 34 });
          expect(first.files[1]).toMatchObject({ file: 'missing.txt', error: expect.stringMatching(/unreadable/) });
          expect(results[1]?.value?.json).toEqual({ files: [{ file: 'notes.txt', lines: 3, words: 7, bytes: 34 }] });
        }
      }
      // A file outside the allowed folders is that file's error, as with the bundled workers.
      const outside = await submitScripts(conn, {
        worker: 'tally_js.mjs',
        inputs: [{ args: [path.join(repoRoot, 'package.json')] }],
      });
      const { results } = await collectAll(conn, outside);
      expect((results[0]?.value?.json as { files: Array<{ error?: string }> }).files[0]?.error).toMatch(
        /outside the allowed folders/,
      );
      const noInput = await submitScripts(conn, { worker: 'tally.py', inputs: [{}] });
      const failed = (await collectAll(conn, noInput)).results[0];
      expect(failed?.state).toBe('failed');
      expect(failed?.error?.message).toMatch(/tally: give file paths/);
    } finally {
      await conn.close();
    }
  }, 120_000);

  it('is a command of the built CLI, writing to the user workers folder of its env', async () => {
    const home = await makeTempDir('monitor-new-worker-cli-');
    try {
      const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
      const env = { ...process.env, XDG_CONFIG_HOME: home };
      const help = await run(process.execPath, [cli, '--help'], { env });
      expect(help.stdout).toContain('monitor-mcp new-worker NAME [--node]');
      const wrote = await run(process.execPath, [cli, 'new-worker', 'tally'], { env });
      const file = path.join(home, 'monitor-mcp', 'workers', 'tally.py');
      expect(wrote.stdout).toContain(`Wrote ${file}`);
      expect(wrote.stdout).toContain('run_script_batch {"worker":"tally.py"');
      const again = await run(process.execPath, [cli, 'new-worker', 'tally'], { env }).catch(
        (error: { code: number; stderr: string }) => error,
      );
      expect(again).toMatchObject({ code: 2, stderr: expect.stringContaining('already exists') });
      // Run by hand as the report says: the bundled _common through PYTHONPATH.
      const byHand = await run('python3', [file, path.join(repoRoot, 'package.json')], {
        env: { ...env, PYTHONPATH: bundledWorkers },
      });
      expect(JSON.parse(byHand.stdout)).toMatchObject({ files: [{ lines: expect.any(Number) }] });
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  }, 60_000);
});
