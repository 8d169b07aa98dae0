import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TaskContext } from '../../../src/engine/types.js';
import { makeTempDir, repoRoot, testProcesses } from '../../helpers/client.js';
import { scriptConfig, scriptPool, until } from '../../helpers/scripts.js';
import { usePoolFixture, valueOf } from './pool-runs.js';

/** The script pool (pool.ts): a job's plan and environment, stored options and inputs, how its workers start. */

const fixture = usePoolFixture();
const run = fixture.run;

describe('ScriptPool', () => {
  it('shows runs in hand on its live card, and finished tasks in its rate', async () => {
    const { pool } = fixture;
    const controller = new AbortController();
    const pending = run('sleep.py', { args: ['60'] }, { signal: controller.signal });
    try {
      await until(() => pool.liveCards()[0]?.busy === 1, 'the running task on the card');
      expect(pool.liveCards()).toMatchObject([{ name: 'scripts', limit: fixture.config.script.maxConcurrency }]);
    } finally {
      controller.abort();
      // A cancelled run may reject (the engine records it as cancelled): either way it ended.
      await pending.catch(() => undefined);
    }
    const [card] = pool.liveCards();
    expect(card?.busy).toBe(0);
    expect(card?.rate?.unit).toBe('tasks/s');
    expect(card?.rate?.series.reduce((sum, [, perSecond]) => sum + perSecond, 0)).toBeGreaterThan(0);
  });
  it('adds the job env to every task', async () => {
    const result = await run('echo.py', {}, { options: { env: { FIXTURE_COLOUR: 'blue' } } });
    expect(valueOf(result).json).toMatchObject({ env: { FIXTURE_COLOUR: 'blue' } });
  });
  it('runs .mjs with the configured node, .sh with bash, and executables directly', async () => {
    const node = await run('echo.mjs', { args: ['a'] });
    expect(valueOf(node).json).toMatchObject({ args: ['a'], execPath: process.execPath });
    const bash = await run('no_header.sh', { args: ['there'] });
    expect(valueOf(bash).text).toBe('hello from bash there');
    const direct = await run('direct', { args: ['x', 'y'] });
    expect(valueOf(direct).text).toBe('direct x y');
  });
  it('fails tasks of a job whose worker cannot be resolved any more, with the catalog error', async () => {
    await expect(run('../../etc/passwd', {})).rejects.toMatchObject({ code: 'PATH_OUTSIDE_ROOT' });
    await expect(run('gone.py', {})).rejects.toMatchObject({ code: 'WORKER_NOT_FOUND' });
    await expect(run('echo.py', {}, { options: { cwd: '/etc' } })).rejects.toMatchObject({ code: 'PATH_OUTSIDE_ROOT' });
  });
  it("keeps the server's secret variables from workers, and tells them the allowed folders", async () => {
    const withSecrets = await scriptConfig((c) => {
      c.allowedRoots = [repoRoot, '/tmp'];
      c.http.secretEnv = ['FIXTURE_HTTP_TOKEN'];
      c.llm.endpoints = [
        {
          name: 'lmstudio',
          url: 'http://127.0.0.1:1234',
          concurrency: 4,
          models: [],
          flavor: 'lmstudio',
          apiKeyEnv: 'FIXTURE_LM_KEY',
        },
      ];
    });
    const env = {
      ...process.env,
      FIXTURE_HTTP_TOKEN: 'http-secret',
      FIXTURE_LM_KEY: 'lm-secret',
      FIXTURE_PLAIN: 'plain',
    };
    const secretPool = scriptPool(withSecrets, env, testProcesses);
    try {
      const task: TaskContext = {
        jobId: 'job_secrets',
        index: 0,
        input: {},
        options: { worker: 'echo.py', cwd: repoRoot, timeout_seconds: 10 },
        outputDir: fixture.outputDir,
        attempt: 1,
        signal: new AbortController().signal,
      };
      const json = valueOf(await secretPool.run(task)).json as { env: Record<string, string> };
      expect(json.env.FIXTURE_PLAIN).toBe('plain');
      expect(json.env).not.toHaveProperty('FIXTURE_HTTP_TOKEN');
      expect(json.env).not.toHaveProperty('FIXTURE_LM_KEY');
      expect(json.env.MONITOR_ALLOWED_ROOTS).toBe([repoRoot, '/tmp'].join(path.delimiter));
    } finally {
      await rm(withSecrets.stateDir, { recursive: true, force: true });
    }
  });
  it('starts the bundled Python workers so that neither PYTHON* variables nor user site-packages load code into them', async () => {
    const trap = await makeTempDir('monitor-pytrap-');
    try {
      const version = execFileSync(
        'python3',
        ['-c', 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")'],
        { encoding: 'utf8' },
      ).trim();
      const userSite = path.join(trap, '.local', 'lib', version, 'site-packages');
      await mkdir(userSite, { recursive: true });
      // Each writes a marker file when Python loads it at start-up.
      await writeFile(
        path.join(trap, 'sitecustomize.py'),
        `open(${JSON.stringify(path.join(trap, 'from-pythonpath'))}, "w").close()\n`,
      );
      await writeFile(
        path.join(userSite, 'evil.pth'),
        `import os; open(${JSON.stringify(path.join(trap, 'from-user-site'))}, "w").close()\n`,
      );
      const trapped = scriptPool(
        fixture.config,
        { ...process.env, PYTHONPATH: trap, HOME: trap, PYTHONNOUSERSITE: '' },
        testProcesses,
      );
      const task = (worker: string, index: number): TaskContext => ({
        jobId: `job_pytrap_${worker}`,
        index,
        input: { args: ['workers/outline.py'] },
        options: { worker, cwd: repoRoot, timeout_seconds: 30 },
        outputDir: fixture.outputDir,
        attempt: 1,
        signal: new AbortController().signal,
      });
      const bundled = await trapped.run(task('outline.py', 0));
      expect(bundled.ok).toBe(true);
      expect(existsSync(path.join(trap, 'from-pythonpath'))).toBe(false);
      expect(existsSync(path.join(trap, 'from-user-site'))).toBe(false);
      // The trap is real: a worker that does not declare itself isolated loads both.
      expect((await trapped.run(task('echo.py', 1))).ok).toBe(true);
      expect(existsSync(path.join(trap, 'from-pythonpath'))).toBe(true);
      expect(existsSync(path.join(trap, 'from-user-site'))).toBe(true);
    } finally {
      await rm(trap, { recursive: true, force: true });
    }
  });
  it('does not keep a failed plan, and checks a resumed task (a later attempt) again', async () => {
    const workers = await makeTempDir('monitor-replan-');
    const elsewhere = await makeTempDir('monitor-elsewhere-');
    const replanConfig = await scriptConfig((c) => {
      c.workersDirs = [...c.workersDirs, workers];
      c.allowedRoots = [repoRoot];
    });
    const replanPool = scriptPool(replanConfig, process.env, testProcesses);
    const task = (index: number, attempt: number): TaskContext => ({
      jobId: 'job_replan',
      index,
      input: {},
      options: { worker: 'late.py', cwd: repoRoot, timeout_seconds: 10 },
      outputDir: fixture.outputDir,
      attempt,
      signal: new AbortController().signal,
    });
    try {
      // Not there yet: the plan fails...
      await expect(replanPool.run(task(0, 1))).rejects.toMatchObject({ code: 'WORKER_NOT_FOUND' });
      // ...and is not kept: once the worker exists, the next task of the same job runs.
      await writeFile(path.join(workers, 'late.py'), 'print("late ran")\n');
      expect(valueOf(await replanPool.run(task(1, 1))).text).toBe('late ran');
      // The worker is swapped for a symlink out of its folder: a resumed task is checked again, and refused.
      await rm(path.join(workers, 'late.py'));
      await writeFile(path.join(elsewhere, 'evil.py'), 'print("outside ran")\n');
      await symlink(path.join(elsewhere, 'evil.py'), path.join(workers, 'late.py'));
      await expect(replanPool.run(task(0, 2))).rejects.toMatchObject({ code: 'PATH_OUTSIDE_ROOT' });
    } finally {
      await rm(workers, { recursive: true, force: true });
      await rm(elsewhere, { recursive: true, force: true });
      await rm(replanConfig.stateDir, { recursive: true, force: true });
    }
  });
  it('refuses a malformed task input with INVALID_INPUT', async () => {
    await expect(run('echo.py', { args: 'not-an-array' })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(run('echo.py', { stdin: 'a', json: {} })).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });
  it('reports an interpreter that cannot start as SPAWN_FAILED with a hint', async () => {
    const broken = await scriptConfig((c) => {
      c.script.interpreters = { ...c.script.interpreters, '.py': '/nonexistent/python9' };
    });
    const brokenPool = scriptPool(broken, process.env, testProcesses);
    const task: TaskContext = {
      jobId: 'job_broken',
      index: 0,
      input: {},
      options: { worker: 'echo.py', cwd: repoRoot, timeout_seconds: 5 },
      outputDir: fixture.outputDir,
      attempt: 1,
      signal: new AbortController().signal,
    };
    await expect(brokenPool.run(task)).rejects.toMatchObject({
      code: 'SPAWN_FAILED',
      hint: expect.stringContaining('interpreters'),
    });
    await rm(broken.stateDir, { recursive: true, force: true });
  });
});
