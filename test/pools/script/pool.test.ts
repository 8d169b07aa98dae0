import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config.js';
import type { TaskContext, TaskResult } from '../../../src/engine/types.js';
import type { ProcessControl } from '../../../src/processes.js';
import type { ScriptJobOptions } from '../../../src/pools/script/job-options.js';
import type { ScriptPool } from '../../../src/pools/script/pool.js';
import { makeTempDir, repoRoot, testProcesses } from '../../helpers/client.js';
import { alive, eventually, killQuietly, readPids, scriptConfig, scriptPool, until } from '../../helpers/scripts.js';

let config: Config;
let pool: ScriptPool;
let outputDir: string;
let jobCounter = 0;

beforeAll(async () => {
  config = await scriptConfig((c) => {
    c.allowedRoots = [repoRoot, '/tmp'];
  });
  pool = scriptPool(config, process.env, testProcesses);
  outputDir = await makeTempDir('monitor-pool-out-');
});

afterAll(async () => {
  await rm(outputDir, { recursive: true, force: true });
  await rm(config.stateDir, { recursive: true, force: true });
});

interface RunOptions {
  options?: Partial<ScriptJobOptions>;
  signal?: AbortSignal;
  index?: number;
}

/** One task straight through the pool (a fresh job id each time, like separate jobs). */
function run(
  worker: string,
  input: unknown,
  { options = {}, signal = new AbortController().signal, index = 0 }: RunOptions = {},
): Promise<TaskResult> {
  const task: TaskContext = {
    jobId: `job_test${++jobCounter}`,
    index,
    input,
    options: { worker, cwd: repoRoot, timeout_seconds: 30, ...options },
    outputDir,
    attempt: 1,
    signal,
  };
  return pool.run(task);
}

type Value = Record<string, unknown>;
const valueOf = (result: TaskResult): Value => (result.value ?? {}) as Value;

describe('ScriptPool', () => {
  it('passes args literally (no shell), parses JSON stdout and sets the MONITOR_ variables', async () => {
    const args = [
      '$(touch /tmp/pwned)',
      '; rm -rf /',
      '`id`',
      '*',
      'a b',
      "'quoted'",
      '"dq"',
      '|',
      '&&',
      '$HOME',
      '\\n',
    ];
    const result = await run('echo.py', { args }, { index: 7 });
    expect(result.ok).toBe(true);
    const value = valueOf(result);
    expect(value.exit_code).toBe(0);
    expect(value.timed_out).toBe(false);
    const json = value.json as { args: string[]; stdin: string; cwd: string; env: Record<string, string> };
    expect(json.args).toEqual(args);
    expect(json.stdin).toBe('');
    expect(json.cwd).toBe(repoRoot);
    expect(json.env).toMatchObject({
      MONITOR_TASK_INDEX: '7',
      MONITOR_ATTEMPT: '1',
      MONITOR_STDIN_FORMAT: 'none',
      MONITOR_OUTPUT_DIR: outputDir,
    });
    expect(json.env.MONITOR_JOB_ID).toMatch(/^job_test\d+$/);
    expect(result.files).toBeUndefined();
    await expect(stat('/tmp/pwned')).rejects.toThrow();
  });

  it('writes stdin text, or the json value as one JSON line, and says which in MONITOR_STDIN_FORMAT', async () => {
    const text = await run('echo.py', { stdin: 'line one\nline two' });
    expect(valueOf(text).json).toMatchObject({ stdin: 'line one\nline two', env: { MONITOR_STDIN_FORMAT: 'text' } });

    const json = await run('echo.py', { args: ['x'], json: { files: ['a.ts'], n: 2 } });
    expect(valueOf(json).json).toMatchObject({
      args: ['x'],
      stdin: '{"files":["a.ts"],"n":2}\n',
      env: { MONITOR_STDIN_FORMAT: 'json' },
    });
  });

  it('succeeds when a worker exits without reading a large stdin', async () => {
    const result = await run('fail.py', { args: ['0'], stdin: 'x'.repeat(4 * 1024 * 1024) });
    expect(result.ok).toBe(true);
    expect(valueOf(result)).toMatchObject({ exit_code: 0, text: 'partial output before failing' });
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

  it('reports a non-zero exit as NON_ZERO_EXIT and keeps the output', async () => {
    const result = await run('fail.py', { args: ['3', 'disk on fire'] });
    expect(result.ok).toBe(false);
    expect(result.error?.code).toBe('NON_ZERO_EXIT');
    expect(result.error?.message).toContain('exited with code 3: fatal: disk on fire');
    expect(result.error?.hint).toContain('stderr_tail');
    const value = valueOf(result);
    expect(value.exit_code).toBe(3);
    expect(value.text).toBe('partial output before failing');
    expect(value.stderr_tail).toBe('a warning first\nfatal: disk on fire\n');
  });

  // Its own timeout: 10 MB through a pipe takes seconds on a loaded machine. (The server's memory
  // meanwhile is a goal of `npm run bench memory`; output.test.ts checks what OutputCapture keeps.)
  it('streams 10 MB of stdout to a file, keeping only a preview in the value', { timeout: 30_000 }, async () => {
    const size = 10 * 1024 * 1024;
    const result = await run('big_output.py', { args: [String(size), '5000'] }, { index: 3 });
    expect(result.ok).toBe(true);
    const value = valueOf(result);
    expect(value.stdout_bytes).toBe(size);
    expect(value).toMatchObject({ cut: true, stderr_cut: true });
    expect(typeof value.text).toBe('string');
    expect((value.text as string).length).toBeLessThanOrEqual(2048);
    expect((value.text as string).startsWith('0123456789abc')).toBe(true);
    expect(value.notes).toEqual([expect.stringContaining(`stdout is ${size} bytes`)]);
    expect(result.files?.output).toBe(path.join(outputDir, '3.stdout'));
    expect((await stat(result.files?.output ?? '')).size).toBe(size);
    expect(value.stderr_bytes).toBe(5000);
    expect((value.stderr_tail as string).endsWith('eeeeEND\n')).toBe(true);
    expect((await readFile(result.files?.stderr ?? '', 'utf8')).length).toBe(5000);
    // The whole value stays small, whatever the worker printed.
    expect(JSON.stringify(value).length).toBeLessThan(8 * 1024);
  });

  it('writes no file for small output, and one for output between the inline limit and the memory cap', async () => {
    const small = await run('big_output.py', { args: ['100'] }, { index: 11 });
    expect(small.files).toBeUndefined();
    await expect(stat(path.join(outputDir, '11.stdout'))).rejects.toThrow();

    const middle = await run('big_output.py', { args: ['100000'] }, { index: 12 });
    expect(valueOf(middle)).toMatchObject({ cut: true });
    expect(valueOf(middle).stderr_cut).toBeUndefined();
    expect((await stat(middle.files?.output ?? '')).size).toBe(100000);
  });

  it('decodes invalid UTF-8 lossily and says so; the file keeps the exact bytes', async () => {
    const result = await run('bad_utf8.py', {}, { index: 21 });
    expect(result.ok).toBe(true);
    const value = valueOf(result);
    expect(value.text).toContain('café ok, then bad: \uFFFD');
    expect(value.text).toContain(' end');
    expect(value.stderr_tail).toBe('err \uFFFD\n');
    expect(value.notes).toEqual(
      expect.arrayContaining([
        expect.stringContaining('stdout is not valid UTF-8'),
        expect.stringContaining('stderr is not valid UTF-8'),
      ]),
    );
    expect(value.cut).toBeUndefined();
    const bytes = await readFile(result.files?.output ?? '');
    expect(bytes.includes(Buffer.from([0xff, 0xfe]))).toBe(true);
  });

  it('kills the whole process group on timeout, even processes that ignore SIGTERM', async () => {
    const pidFile = path.join(outputDir, `stubborn-timeout-${Date.now()}`);
    const started = Date.now();
    const pending = run('stubborn.py', { args: [pidFile] }, { options: { timeout_seconds: 1 } });
    const [parent = 0, child = 0] = await readPids(pidFile);
    try {
      expect(alive(parent) && alive(child)).toBe(true);
      const result = await pending;
      expect(result.ok).toBe(false);
      expect(result.error?.code).toBe('TIMEOUT');
      expect(result.error?.hint).toContain('timeout_seconds');
      expect(valueOf(result)).toMatchObject({ timed_out: true, signal: 'SIGKILL' });
      // 1 s timeout + 0.5 s grace, with room for a loaded machine.
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await eventually(() => !alive(parent) && !alive(child), 5000)).toBe(true);
    } finally {
      killQuietly(parent);
      killQuietly(child);
    }
  });

  it('signals process groups only through the ProcessControl it was given', async () => {
    const sent: Array<[number, string | number]> = [];
    const recording: ProcessControl = {
      ...testProcesses,
      signalTree(pgid, signal) {
        sent.push([pgid, signal]);
        return testProcesses.signalTree(pgid, signal);
      },
    };
    const recordingConfig = await scriptConfig((c) => {
      c.allowedRoots = [repoRoot];
    });
    const recordingPool = scriptPool(recordingConfig, process.env, recording);
    try {
      const task: TaskContext = {
        jobId: 'job_signals',
        index: 0,
        input: { args: ['30'] },
        options: { worker: 'sleep.py', cwd: repoRoot, timeout_seconds: 0.5 },
        outputDir,
        attempt: 1,
        signal: new AbortController().signal,
      };
      const result = await recordingPool.run(task);
      expect(result.error?.code).toBe('TIMEOUT');
      const groups = new Set(sent.map(([pgid]) => pgid));
      expect(groups.size).toBe(1);
      expect(sent.map(([, signal]) => signal)).toEqual(expect.arrayContaining(['SIGTERM', 'SIGKILL']));
      expect(sent[0]?.[1]).toBe('SIGTERM');
    } finally {
      await rm(recordingConfig.stateDir, { recursive: true, force: true });
    }
  });

  it('kills the whole process group when the task is cancelled', async () => {
    const pidFile = path.join(outputDir, `stubborn-cancel-${Date.now()}`);
    const controller = new AbortController();
    const pending = run('stubborn.py', { args: [pidFile] }, { signal: controller.signal });
    const [parent = 0, child = 0] = await readPids(pidFile);
    try {
      expect(alive(parent) && alive(child)).toBe(true);
      controller.abort();
      const result = await pending;
      expect(result.error?.code).toBe('CANCELLED');
      expect(await eventually(() => !alive(parent) && !alive(child), 5000)).toBe(true);
    } finally {
      killQuietly(parent);
      killQuietly(child);
    }
  });

  it('ends processes a worker leaves behind in its group when it exits', async () => {
    const pidFile = path.join(outputDir, `left-${Date.now()}`);
    const result = await run('leave_child.py', { args: [pidFile] });
    const [child = 0] = await readPids(pidFile);
    try {
      expect(result.ok).toBe(true);
      expect(await eventually(() => !alive(child), 5000)).toBe(true);
    } finally {
      killQuietly(child);
    }
  });

  it('does not hang when a descendant leaves the group holding stdout open, and ends that descendant after the task', async () => {
    const pidFile = path.join(outputDir, `escaped-${Date.now()}`);
    const result = await run('escape_group.py', { args: [pidFile] });
    const [child = 0] = await readPids(pidFile);
    try {
      expect(result.ok).toBe(true);
      expect(valueOf(result).text).toBe('parent done');
      // It called setsid, so the group kill missed it; the sweep after the task's end finds it by its run token.
      await until(() => !alive(child), 'the descendant that left the group to be ended', 20_000);
    } finally {
      killQuietly(child);
    }
  });

  it('ends a descendant that left the group at once when its task times out or is cancelled', async () => {
    for (const how of ['timeout', 'cancel'] as const) {
      const pidFile = path.join(outputDir, `escaped-${how}-${Date.now()}`);
      const controller = new AbortController();
      const running = run(
        'escape_group.py',
        { args: [pidFile, '60'] },
        { signal: controller.signal, options: { timeout_seconds: how === 'timeout' ? 2 : 60 } },
      );
      const [child = 0] = await readPids(pidFile);
      try {
        expect(alive(child)).toBe(true);
        if (how === 'cancel') controller.abort(new Error('cancelled'));
        const result = await running;
        expect(result.error?.code).toBe(how === 'timeout' ? 'TIMEOUT' : 'CANCELLED');
        await until(() => !alive(child), `the escaped descendant to be ended after the ${how}`, 10_000);
      } finally {
        killQuietly(child);
      }
    }
  });

  it('stops before starting when the task is already cancelled', async () => {
    const controller = new AbortController();
    controller.abort(new Error('cancelled before start'));
    await expect(run('echo.py', {}, { signal: controller.signal })).rejects.toThrow('cancelled before start');
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
        outputDir,
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

  it('cuts what a task, and all tasks of a job together, write to disk at their limits, with a note', async () => {
    const cappedPool = async (): Promise<ReturnType<typeof scriptPool>> =>
      scriptPool(
        await scriptConfig((c) => {
          c.allowedRoots = [repoRoot];
          c.script.outputCapBytes = 64 * 1024;
          c.script.inlineBytes = 16 * 1024;
          c.script.maxTaskOutputBytes = 3 * 1024 * 1024;
          c.script.maxJobOutputBytes = 5 * 1024 * 1024;
        }),
        process.env,
        testProcesses,
      );
    const capped = await cappedPool();
    const jobDir = await makeTempDir('monitor-capped-');
    try {
      const task = (index: number, bytes: number): TaskContext => ({
        jobId: 'job_capped',
        index,
        input: { args: [String(bytes), '100'] },
        options: { worker: 'big_output.py', cwd: repoRoot, timeout_seconds: 60 },
        outputDir: jobDir,
        attempt: 1,
        signal: new AbortController().signal,
      });
      // 8 MB from one task: its own limit (3 MB) cuts it.
      const first = await capped.run(task(0, 8 * 1024 * 1024));
      expect(first.ok).toBe(true);
      expect(valueOf(first)).toMatchObject({ stdout_bytes: 8 * 1024 * 1024, files_cut: true });
      expect((await stat(path.join(jobDir, '0.stdout'))).size).toBe(3 * 1024 * 1024);
      expect(String(valueOf(first).notes)).toMatch(
        /cut at the task's limit of 3145728 bytes \(script\.maxTaskOutputBytes\)/,
      );
      // The job has 2 MB left: the next task is cut there, by the job's limit; its stderr gets nothing.
      const second = await capped.run(task(1, 2.5 * 1024 * 1024));
      expect(valueOf(second)).toMatchObject({ files_cut: true });
      expect((await stat(path.join(jobDir, '1.stdout'))).size).toBe(2 * 1024 * 1024);
      expect(String(valueOf(second).notes)).toMatch(/its job's limit of 5242880 bytes \(script\.maxJobOutputBytes\)/);
      // Output that fits in memory is not cut and needs no file.
      const third = await capped.run(task(2, 100));
      expect(third.ok).toBe(true);
      expect(valueOf(third).files_cut).toBeUndefined();
      // A pool started later (a restart) counts what the job's folder already holds.
      const restarted = await cappedPool();
      const fourth = await restarted.run(task(3, 1024 * 1024));
      expect(valueOf(fourth)).toMatchObject({ files_cut: true, stdout_bytes: 1024 * 1024 });
    } finally {
      await rm(jobDir, { recursive: true, force: true });
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
        config,
        { ...process.env, PYTHONPATH: trap, HOME: trap, PYTHONNOUSERSITE: '' },
        testProcesses,
      );
      const task = (worker: string, index: number): TaskContext => ({
        jobId: `job_pytrap_${worker}`,
        index,
        input: { args: ['workers/outline.py'] },
        options: { worker, cwd: repoRoot, timeout_seconds: 30 },
        outputDir,
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
      outputDir,
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

  it('reports a task that cannot start (its cwd vanished after the job was planned) as SPAWN_FAILED', async () => {
    const cwd = await makeTempDir('monitor-vanishing-');
    const task = (index: number): TaskContext => ({
      jobId: 'job_vanishing',
      index,
      input: {},
      options: { worker: 'echo.py', cwd, timeout_seconds: 5 },
      outputDir,
      attempt: 1,
      signal: new AbortController().signal,
    });
    expect((await pool.run(task(0))).ok).toBe(true);
    await rm(cwd, { recursive: true, force: true });
    const result = await pool.run(task(1));
    expect(result.ok).toBe(false);
    expect(result.error).toMatchObject({
      code: 'SPAWN_FAILED',
      message: expect.stringContaining('Could not start echo.py'),
      hint: expect.stringContaining('cwd'),
    });
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
      outputDir,
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
