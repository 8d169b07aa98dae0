import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TaskContext } from '../../../src/engine/types.js';
import type { ProcessControl } from '../../../src/processes.js';
import { makeTempDir, repoRoot, testProcesses } from '../../helpers/client.js';
import { alive, eventually, killQuietly, readPids, scriptConfig, scriptPool, until } from '../../helpers/scripts.js';
import { usePoolFixture, valueOf } from './pool-runs.js';

/** Cold runs (cold.ts): one process per task, its input, exit, output, timeout and cancel, its whole group and what escapes it. */

const fixture = usePoolFixture();
const run = fixture.run;

describe('cold runs', () => {
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
      MONITOR_OUTPUT_DIR: fixture.outputDir,
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
  it('kills the whole process group on timeout, even processes that ignore SIGTERM', async () => {
    const pidFile = path.join(fixture.outputDir, `stubborn-timeout-${Date.now()}`);
    const pending = run('stubborn.py', { args: [pidFile] }, { options: { timeout_seconds: 1 } });
    const [parent = 0, child = 0] = await readPids(pidFile);
    try {
      expect(alive(parent) && alive(child)).toBe(true);
      const result = await pending;
      expect(result.ok).toBe(false);
      expect(result.error?.code).toBe('TIMEOUT');
      expect(result.error?.hint).toContain('timeout_seconds');
      expect(valueOf(result)).toMatchObject({ timed_out: true, signal: 'SIGKILL' });
      // How soon after the 1 s timeout: npm run bench stops.
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
        outputDir: fixture.outputDir,
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
    const pidFile = path.join(fixture.outputDir, `stubborn-cancel-${Date.now()}`);
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
    const pidFile = path.join(fixture.outputDir, `left-${Date.now()}`);
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
    const pidFile = path.join(fixture.outputDir, `escaped-${Date.now()}`);
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
      const pidFile = path.join(fixture.outputDir, `escaped-${how}-${Date.now()}`);
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
  it('does not wait for pipes a stray holds once the worker is gone (a 1 s timeout stays about 1 s)', async () => {
    for (const how of ['exit', 'timeout'] as const) {
      const pidFile = path.join(fixture.outputDir, `stray-pipes-${how}-${Date.now()}`);
      const began = Date.now();
      let ended = 0;
      const running = run(
        'escape_group.py',
        { args: how === 'exit' ? [pidFile] : [pidFile, '60'] },
        { options: { timeout_seconds: 1 } },
      ).finally(() => (ended = Date.now()));
      // Written just before the worker prints its last line and exits (or sleeps into its timeout).
      const [child = 0] = await readPids(pidFile);
      const written = Date.now();
      const result = await running;
      try {
        expect(result.error?.code).toBe(how === 'exit' ? undefined : 'TIMEOUT');
        // What the worker wrote before it went is kept.
        expect(valueOf(result).text).toBe('parent done');
        // Before: the 2 s drain was paid waiting for the stray's end of the pipes (≥ 3 s after a 1 s timeout).
        if (how === 'exit') expect(ended - written).toBeLessThan(1000);
        else expect(ended - began).toBeLessThan(2500);
      } finally {
        killQuietly(child);
      }
    }
  }, 30_000);
  it('ends the daemons a worker starts even when they leave its group and clear their environment', async () => {
    const pidFile = path.join(fixture.outputDir, `scatter-${Date.now()}`);
    const result = await run('scatter.py', { args: [pidFile, '48'] });
    const daemons = await readPids(pidFile);
    try {
      expect(result.ok).toBe(true);
      expect(daemons).toHaveLength(48);
      // Before: 48 of 48 lived on (no token to find them by, no group to reach them through).
      await until(() => daemons.every((pid) => !alive(pid)), 'the daemons to be ended with their task', 10_000);
    } finally {
      for (const pid of daemons) killQuietly(pid);
    }
  }, 30_000);
  it('stops before starting when the task is already cancelled', async () => {
    const controller = new AbortController();
    controller.abort(new Error('cancelled before start'));
    await expect(run('echo.py', {}, { signal: controller.signal })).rejects.toThrow('cancelled before start');
  });
  it('reports a task that cannot start (its cwd vanished after the job was planned) as SPAWN_FAILED', async () => {
    const cwd = await makeTempDir('monitor-vanishing-');
    const task = (index: number): TaskContext => ({
      jobId: 'job_vanishing',
      index,
      input: {},
      options: { worker: 'echo.py', cwd, timeout_seconds: 5 },
      outputDir: fixture.outputDir,
      attempt: 1,
      signal: new AbortController().signal,
    });
    expect((await fixture.pool.run(task(0))).ok).toBe(true);
    await rm(cwd, { recursive: true, force: true });
    const result = await fixture.pool.run(task(1));
    expect(result.ok).toBe(false);
    expect(result.error).toMatchObject({
      code: 'SPAWN_FAILED',
      message: expect.stringContaining('Could not start echo.py'),
      hint: expect.stringContaining('cwd'),
    });
  });
});
