import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectInMemory, makeTempDir, repoRoot, testConfig, textOf } from '../helpers/client.js';
import { bundledWorkers, fixtureWorkers, scriptConfig } from '../helpers/scripts.js';

interface WorkerView {
  name: string;
  description: string;
  interpreter: string;
  input: { args?: string; stdin?: string; json?: string };
  output?: string;
  path: string;
  warm: boolean;
  pack?: string;
  shadows?: string[];
}

let userDir: string;

beforeAll(async () => {
  userDir = await makeTempDir('monitor-list-workers-');
  await writeFile(path.join(userDir, 'mine.py'), 'import sys\nprint(sys.argv)\n');
  await writeFile(path.join(userDir, 'README.md'), '# not a worker\n');
});

afterAll(async () => {
  await rm(userDir, { recursive: true, force: true });
});

describe('list_workers', () => {
  it('lists bundled and user workers with description, interpreter and input form', async () => {
    const conn = await connectInMemory(await scriptConfig((c) => c.workersDirs.push(userDir)));
    try {
      const reply = await conn.call('list_workers', {});
      expect(reply.isError).toBeFalsy();
      const structured = reply.structuredContent as {
        workers: WorkerView[];
        dirs: Array<{ path: string; role: string; exists: boolean; workers: number }>;
        commands: string[];
      };
      const byName = new Map(structured.workers.map((w) => [w.name, w]));

      const deps = byName.get('analyze_dependencies.py');
      expect(deps).toMatchObject({
        interpreter: 'python3',
        path: path.join(bundledWorkers, 'analyze_dependencies.py'),
        output: expect.stringMatching(/^json/),
      });
      expect(deps?.description).toContain('internal');
      expect(deps?.input.args).toContain('FILE...');
      expect(deps?.input.json).toContain('"files"');
      for (const name of ['check_patch.py', 'code_stats.py', 'grep_context.py', 'outline.py']) {
        expect(byName.get(name)?.description).not.toBe('no description');
      }
      expect(byName.get('mine.py')).toMatchObject({ interpreter: 'python3', description: 'no description', input: {} });
      expect(byName.get('echo.mjs')?.interpreter).toBe('node');
      expect(byName.get('direct')?.interpreter).toBe('executable');
      expect(byName.has('README.md')).toBe(false);
      expect(structured.dirs.map((d) => [d.path, d.role, d.exists])).toEqual([
        [bundledWorkers, 'bundled', true],
        [conn.config.userWorkersDir, 'user', false],
        [fixtureWorkers, 'added', true],
        [userDir, 'added', true],
      ]);
      expect(structured.dirs.find((d) => d.path === userDir)?.workers).toBe(1);
      expect(structured.commands).toEqual([]);

      const text = textOf(reply);
      expect(text).toContain('analyze_dependencies.py (python3): The imports each source file makes');
      expect(text).toMatch(/mine\.py \(python3\): no description\n {2}input: not declared/);
      expect(text).toContain('Arbitrary commands are off');
    } finally {
      await conn.close();
    }
  });

  it("lists the user workers folder from the config's env, its workers, and where new ones go", async () => {
    const configHome = await makeTempDir('monitor-config-home-');
    const config = await testConfig(() => {}, [], { XDG_CONFIG_HOME: configHome });
    const userWorkers = path.join(configHome, 'monitor-mcp', 'workers');
    const conn = await connectInMemory(config);
    try {
      // Missing is fine: listed as not there yet, with where a first worker goes.
      const before = await conn.call('list_workers', {});
      expect(before.isError).toBeFalsy();
      const first = before.structuredContent as { dirs: Array<Record<string, unknown>>; new_workers: string };
      expect(first.dirs[1]).toEqual({ path: userWorkers, role: 'user', exists: false, workers: 0 });
      expect(first.new_workers).toContain(`the user workers folder ${userWorkers} (created by its first worker)`);
      expect(first.new_workers).toContain('monitor-mcp new-worker NAME');
      expect(textOf(before)).toContain(`${userWorkers} (user, not created yet)`);

      await mkdir(userWorkers, { recursive: true });
      await writeFile(path.join(userWorkers, 'tally.py'), '# monitor: description: Mine.\nprint(1)\n');
      // A bundled name in the user folder loses to the bundled worker, and says so.
      await writeFile(path.join(userWorkers, 'outline.py'), 'print(2)\n');
      const after = await conn.call('list_workers', {});
      const second = after.structuredContent as { workers: WorkerView[]; dirs: Array<Record<string, unknown>> };
      expect(second.dirs[1]).toEqual({ path: userWorkers, role: 'user', exists: true, workers: 2 });
      expect(second.workers.find((w) => w.name === 'tally.py')).toMatchObject({
        description: 'Mine.',
        path: path.join(userWorkers, 'tally.py'),
      });
      expect(second.workers.find((w) => w.name === 'outline.py')).toMatchObject({
        path: path.join(bundledWorkers, 'outline.py'),
        shadows: [path.join(userWorkers, 'outline.py')],
      });
    } finally {
      await conn.close();
      await rm(configHome, { recursive: true, force: true });
    }
  });

  it('says which workers run warm', async () => {
    const warmWorkers = path.join(repoRoot, 'test', 'fixtures', 'warm-workers');
    const conn = await connectInMemory(await scriptConfig((c) => c.workersDirs.push(warmWorkers)));
    try {
      const reply = await conn.call('list_workers', {});
      const byName = new Map((reply.structuredContent as { workers: WorkerView[] }).workers.map((w) => [w.name, w]));
      expect(byName.get('warm_probe.py')?.warm).toBe(true);
      expect(byName.get('echo.py')?.warm).toBe(false);
      expect(textOf(reply)).toMatch(
        /warm_probe\.py \(python3\): Test fixture \(warm\)[^\n]*\n(  .*\n)*  warm: yes \(one process serves many tasks\)/,
      );
      expect(textOf(reply)).not.toMatch(/echo\.py \(python3\)[^\n]*\n(  .*\n)*  warm: yes/);
    } finally {
      await conn.close();
    }
  });

  it('says which workers pack several inputs per process', async () => {
    const conn = await connectInMemory(await scriptConfig());
    try {
      const reply = await conn.call('list_workers', {});
      const byName = new Map((reply.structuredContent as { workers: WorkerView[] }).workers.map((w) => [w.name, w]));
      for (const name of ['code_stats.py', 'outline.py', 'analyze_dependencies.py', 'pack_probe.py'])
        expect(byName.get(name)?.pack, name).toBe('files');
      for (const name of ['grep_context.py', 'echo.py']) expect(byName.get(name)?.pack, name).toBeUndefined();
      expect(textOf(reply)).toMatch(
        /code_stats\.py \(python3\): [^\n]*\n(  .*\n)*  pack: files \(run_script_batch "pack" runs several inputs in one process\)/,
      );
      expect(textOf(reply)).not.toMatch(/grep_context\.py \(python3\)[^\n]*\n(  .*\n)*  pack: /);
    } finally {
      await conn.close();
    }
  });

  it('names the allowed commands when the user enabled some', async () => {
    const conn = await connectInMemory(await scriptConfig((c) => (c.allowCommands = ['rg', '/usr/bin/git'])));
    try {
      const reply = await conn.call('list_workers', {});
      expect(textOf(reply)).toContain('Commands allowed as run_script_batch "command": rg, /usr/bin/git');
      expect((reply.structuredContent as { commands: string[] }).commands).toEqual(['rg', '/usr/bin/git']);
    } finally {
      await conn.close();
    }
  });

  it('says how to add workers when no folder has any', async () => {
    const empty = await makeTempDir('monitor-no-workers-');
    const conn = await connectInMemory(await scriptConfig((c) => (c.workersDirs = [empty])));
    try {
      const reply = await conn.call('list_workers', {});
      expect(reply.isError).toBeFalsy();
      expect(textOf(reply)).toContain('No worker scripts found');
      expect(textOf(reply)).toContain('--workers-dir');
    } finally {
      await conn.close();
      await rm(empty, { recursive: true, force: true });
    }
  });
});
