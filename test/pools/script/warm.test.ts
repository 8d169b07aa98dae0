import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/log.js';
import { WorkerCatalog } from '../../../src/pools/script/catalog.js';
import { Descendants } from '../../../src/pools/script/descendants.js';
import { InterpreterResolver } from '../../../src/pools/script/interpreters.js';
import { GroupRecords } from '../../../src/pools/script/orphans.js';
import { ScriptPool } from '../../../src/pools/script/pool.js';
import { repoRoot, testProcesses } from '../../helpers/client.js';
import { alive, until } from '../../helpers/scripts.js';
import { probe, useWarmFixture, valueOf, warmProcessesOf, watchWarmProcesses } from './warm-runs.js';

/** The warm pool (warm.ts): processes per job, reused, retried after a crash, recycled, ended; the cap shared with cold tasks. */

const fixture = useWarmFixture();
const { firstPid, newJob, pidFile, pidOf, poolOf, run, runAll, warmConfig } = fixture;

describe('warm workers', () => {
  it("serves a task with a cold task's value shape, its input and per-task MONITOR_ variables, plus which process served it", async () => {
    const jobId = newJob();
    const result = await run(jobId, 7, { args: ['echo', 'a b', '$(id)'], json: { files: ['x.ts'] } });
    expect(result.ok).toBe(true);
    const value = valueOf(result);
    expect(value).toMatchObject({
      exit_code: 0,
      timed_out: false,
      warm: { process: expect.any(Number), task: 1 },
    });
    expect(value.cut).toBeUndefined();
    expect(value.stderr_cut).toBeUndefined();
    expect(value.stdout_bytes).toBe(Buffer.byteLength(`${JSON.stringify(value.json)}\n`));
    expect(value.json).toMatchObject({
      args: ['echo', 'a b', '$(id)'],
      json: { files: ['x.ts'] },
      stdin: null,
      cwd: repoRoot,
    });
    expect(value.json?.env).toMatchObject({
      MONITOR_TASK_INDEX: '7',
      MONITOR_ATTEMPT: '1',
      MONITOR_STDIN_FORMAT: 'json',
      MONITOR_WARM: '1',
      MONITOR_JOB_ID: jobId,
      MONITOR_OUTPUT_DIR: fixture.outputDir,
    });
    expect(result.files).toBeUndefined();

    const text = await run(jobId, 8, { args: ['echo'], stdin: 'line one\nline two' }, { attempt: 1 });
    expect(valueOf(text).json).toMatchObject({
      stdin: 'line one\nline two',
      env: { MONITOR_TASK_INDEX: '8', MONITOR_STDIN_FORMAT: 'text' },
    });
    // The same process served both.
    expect(valueOf(text).warm).toEqual({ process: value.warm?.process, task: 2 });
    expect(pidOf(text)).toBe(pidOf(result));

    // `output` counts as a cold worker's stdout: text, or JSON when it is an object.
    expect(valueOf(await run(jobId, 9, { args: ['output', 'plain', 'words'] }))).toMatchObject({
      text: 'plain words',
      stdout_bytes: 11,
    });
    expect(valueOf(await run(jobId, 10, { args: ['output', '{"a":', '1}'] })).json).toEqual({ a: 1 });
    fixture.pool.jobEnded(jobId);
  });

  it("spreads a job's tasks over at most as many processes as run at once, reusing idle ones", async () => {
    const jobId = newJob();
    const results = await runAll(
      jobId,
      Array.from({ length: 12 }, () => ({ args: ['pid'] })),
      2,
    );
    expect(results.every((r) => r.ok)).toBe(true);
    const processes = new Set(results.map((r) => valueOf(r).warm?.process));
    expect(processes.size).toBeLessThanOrEqual(2);
    expect(new Set(results.map(pidOf)).size).toBe(processes.size);
    // Each process counts its own tasks: 12 in all.
    const perProcess = new Map<number | undefined, number>();
    for (const r of results)
      perProcess.set(
        valueOf(r).warm?.process,
        Math.max(perProcess.get(valueOf(r).warm?.process) ?? 0, valueOf(r).warm?.task ?? 0),
      );
    expect([...perProcess.values()].reduce((a, b) => a + b, 0)).toBe(12);
    fixture.pool.jobEnded(jobId);
  });

  describe.skipIf(process.platform !== 'linux')('across attempts (processes counted from /proc: Linux)', () => {
    it("keeps a resumed job's processes to its concurrency: a later attempt's plan takes them over, earlier ones end at once", async () => {
      const jobId = newJob();
      const sleeps = (n: number): unknown[] => Array.from({ length: n }, () => ({ args: ['sleep', '0.2'] }));
      const first = (await runAll(jobId, sleeps(2), 2)).map(pidOf);
      expect(new Set(first).size).toBe(2);
      expect(warmProcessesOf(jobId)).toHaveLength(2);
      // A resume: tasks run again (attempt 2) beside tasks never run before (attempt 1), two at a time.
      const watch = watchWarmProcesses(jobId);
      const again = runAll(jobId, sleeps(4), 1, { attempt: 2 });
      const fresh = runAll(jobId, sleeps(4), 1, { attempt: 1 });
      const results = [...(await again), ...(await fresh)];
      const most = watch.stop();
      expect(results.every((r) => r.ok)).toBe(true);
      expect(most).toBeLessThanOrEqual(2);
      expect(fixture.pool.warmProcesses).toBeLessThanOrEqual(2);
      // The first attempt's processes ended when the second took over, not after the idle timeout.
      await until(() => first.every((pid) => !alive(pid)), "the first attempt's processes to end", 3_000);
      fixture.pool.jobEnded(jobId);
      await until(() => warmProcessesOf(jobId).length === 0, "the job's processes to end with it", 10_000);
    });
  });

  describe('failures', () => {
    it("fails a task whose reply says so with NON_ZERO_EXIT, like a cold worker's exit code, and keeps the process", async () => {
      const jobId = newJob();
      const result = await run(jobId, 0, { args: ['fail', '3', 'disk', 'on', 'fire'] });
      expect(result.ok).toBe(false);
      expect(result.error).toMatchObject({
        code: 'NON_ZERO_EXIT',
        message: expect.stringContaining('exited with code 3: fatal: disk on fire'),
      });
      expect(valueOf(result)).toMatchObject({
        exit_code: 3,
        text: 'partial output',
        stderr_tail: 'fatal: disk on fire\n',
      });
      expect(valueOf(await run(jobId, 1, { args: ['pid'] })).warm).toEqual({
        process: valueOf(result).warm?.process,
        task: 2,
      });
      fixture.pool.jobEnded(jobId);
    });

    it('runs a task whose process dies mid-task once more on a fresh process, and says so', async () => {
      const jobId = newJob();
      const marker = pidFile('crash-once');
      const warmUp = await run(jobId, 0, { args: ['pid'] });
      const result = await run(jobId, 1, { args: ['crash_once', marker] });
      const crashed = await firstPid(marker);
      expect(crashed).toBe(pidOf(warmUp));
      expect(result.ok).toBe(true);
      const value = valueOf(result);
      expect(value.json).toMatchObject({ second: true });
      expect(value.retried_after_crash).toEqual({ exit_code: 3, signal: null });
      expect(value.notes).toEqual([
        expect.stringMatching(/^Warm process \d+ exited with code 3 mid-task; the task ran again on a fresh process/),
      ]);
      expect(value.stderr_tail).toContain('first run crashes');
      expect(value.warm?.process).not.toBe(valueOf(warmUp).warm?.process);
      expect(value.warm?.task).toBe(1);
      expect(pidOf(result)).not.toBe(crashed);
      await until(() => !alive(crashed), 'the crashed process to be gone', 10_000);
      fixture.pool.jobEnded(jobId);
    });

    it("fails only the task whose process dies twice, with NON_ZERO_EXIT naming the crash; the job's other tasks go on", async () => {
      const jobId = newJob();
      const results = await runAll(
        jobId,
        [{ args: ['pid'] }, { args: ['crash', '5'] }, { args: ['pid'] }, { args: ['kill_self'] }, { args: ['pid'] }],
        2,
      );
      expect(results.map((r) => r.ok)).toEqual([true, false, true, false, true]);
      const crash = results[1];
      expect(crash?.error).toMatchObject({
        code: 'NON_ZERO_EXIT',
        message: expect.stringMatching(
          /warm_probe\.py: its warm process died mid-task \(exited with code 5\), on a fresh process too: about to crash with 5$/,
        ),
      });
      expect(valueOf(crash)).toMatchObject({ exit_code: 5, retried_after_crash: { exit_code: 5, signal: null } });
      expect(valueOf(crash).stderr_tail).toBe('about to crash with 5\nabout to crash with 5\n');
      expect(results[3]?.error?.message).toContain('(was killed by SIGKILL)');
      expect(valueOf(results[3])).toMatchObject({
        exit_code: null,
        signal: 'SIGKILL',
        retried_after_crash: { exit_code: null, signal: 'SIGKILL' },
      });
      fixture.pool.jobEnded(jobId);
    });

    it('kills a timed-out process with its group and replaces it; later tasks succeed', async () => {
      const jobId = newJob();
      const file = pidFile('warm-timeout');
      const pending = run(jobId, 0, { args: ['sleep', '60', file] }, { options: { timeout_seconds: 1 } });
      const pid = await firstPid(file);
      const result = await pending;
      expect(result.error).toMatchObject({ code: 'TIMEOUT', hint: expect.stringContaining('timeout_seconds') });
      expect(valueOf(result)).toMatchObject({ timed_out: true, exit_code: null, signal: 'SIGTERM' });
      await until(() => !alive(pid), 'the timed-out process to be gone', 10_000);
      const next = await run(jobId, 1, { args: ['pid'] }, { options: { timeout_seconds: 1 } });
      expect(next.ok).toBe(true);
      expect(pidOf(next)).not.toBe(pid);
      expect(valueOf(next).warm?.process).not.toBe(valueOf(result).warm?.process);
      fixture.pool.jobEnded(jobId);
    });

    it("kills the process of a cancelled task; the job's next task gets a new one", async () => {
      const jobId = newJob();
      const file = pidFile('warm-cancel');
      const controller = new AbortController();
      const pending = run(jobId, 0, { args: ['sleep', '60', file] }, { signal: controller.signal });
      const pid = await firstPid(file);
      controller.abort(new Error('cancelled'));
      const result = await pending;
      expect(result.error?.code).toBe('CANCELLED');
      await until(() => !alive(pid), 'the cancelled process to be gone', 10_000);
      const next = await run(jobId, 1, { args: ['pid'] });
      expect(next.ok).toBe(true);
      expect(pidOf(next)).not.toBe(pid);
      fixture.pool.jobEnded(jobId);
    });

    it('reports a process that cannot start as SPAWN_FAILED', async () => {
      const cwd = path.join(fixture.outputDir, `vanishing-${Date.now()}`);
      await mkdir(cwd);
      const jobId = newJob();
      expect((await run(jobId, 0, { args: ['pid'] }, { options: { cwd } })).ok).toBe(true);
      fixture.pool.jobEnded(jobId);
      await rm(cwd, { recursive: true, force: true });
      const result = await run(jobId, 1, { args: ['pid'] }, { options: { cwd } });
      expect(result.error).toMatchObject({
        code: 'SPAWN_FAILED',
        message: expect.stringContaining(`Could not start ${probe}`),
      });
      fixture.pool.jobEnded(jobId);
    });
  });

  describe('recycling', () => {
    it('replaces a process after script.warmMaxTasks tasks', async () => {
      const recycling = poolOf(await warmConfig((c) => (c.script.warmMaxTasks = 3)));
      const jobId = newJob();
      const results = await runAll(
        jobId,
        Array.from({ length: 7 }, () => ({ args: ['pid'] })),
        1,
        { on: recycling },
      );
      expect(results.map((r) => valueOf(r).warm?.task)).toEqual([1, 2, 3, 1, 2, 3, 1]);
      const pids = results.map(pidOf);
      expect(new Set(pids).size).toBe(3);
      await until(() => !alive(pids[0] ?? 0) && !alive(pids[3] ?? 0), 'the recycled processes to exit', 10_000);
      expect(alive(pids[6] ?? 0)).toBe(true);
      await recycling.close();
      await until(() => !alive(pids[6] ?? 0), 'the last process to end at close', 10_000);
    });

    it.skipIf(process.platform !== 'linux')(
      'replaces a process whose RSS is over script.warmMaxRssMB after a task (read from /proc: Linux only)',
      async () => {
        const recycling = poolOf(await warmConfig((c) => (c.script.warmMaxRssMB = 80)));
        const jobId = newJob();
        const results = await runAll(
          jobId,
          [{ args: ['pid'] }, { args: ['pid'] }, { args: ['grow', '100'] }, { args: ['pid'] }],
          1,
          { on: recycling },
        );
        expect(results.every((r) => r.ok)).toBe(true);
        const pids = results.map(pidOf);
        expect(pids[1]).toBe(pids[0]);
        expect(pids[2]).toBe(pids[0]);
        expect(pids[3]).not.toBe(pids[2]);
        await until(() => !alive(pids[2] ?? 0), 'the process over the RSS limit to exit', 10_000);
        await recycling.close();
      },
    );
  });

  describe('lifetime', () => {
    it("ends a job's processes when its run ends, and all of them at close", async () => {
      const own = poolOf(await warmConfig());
      const jobA = newJob();
      const jobB = newJob();
      const a = (
        await runAll(jobA, [{ args: ['pid'] }, { args: ['sleep', '0.3'] }, { args: ['pid'] }], 2, { on: own })
      ).map(pidOf);
      const b = (await runAll(jobB, [{ args: ['pid'] }, { args: ['sleep', '0.3'] }], 2, { on: own })).map(pidOf);
      const pidsA = [...new Set(a)];
      const pidsB = [...new Set(b)];
      expect(pidsA).toHaveLength(2);
      expect(own.warmProcesses).toBe(4);
      own.jobEnded(jobA);
      await until(() => pidsA.every((pid) => !alive(pid)), "job A's processes to exit", 10_000);
      expect(pidsB.every(alive)).toBe(true);
      expect(own.warmProcesses).toBe(2);
      await own.close();
      expect(pidsB.some(alive)).toBe(false);
      expect(own.warmProcesses).toBe(0);
    });

    it('kills a process that does not exit at EOF once the grace is over', async () => {
      const own = poolOf(await warmConfig());
      const jobId = newJob();
      const pid = pidOf(await run(jobId, 0, { args: ['linger'] }, { on: own }));
      own.jobEnded(jobId);
      // killGraceSeconds is 0.5 in tests: well within this.
      await until(() => !alive(pid), 'the lingering process to be killed', 10_000);
      await own.close();
    });

    it('ends an idle process after the idle timeout even without word that its job ended', async () => {
      const made = await warmConfig();
      const catalog = new WorkerCatalog({
        workersDirs: made.workersDirs,
        allowCommands: [],
        interpreters: made.script.interpreters,
        searchPath: made.script.searchPath,
        resolver: new InterpreterResolver({
          searchPath: made.script.searchPath,
          nodePath: made.script.nodePath,
          env: process.env,
          log: silentLogger,
        }),
        log: silentLogger,
      });
      const own = new ScriptPool({
        catalog,
        allowedRoots: made.allowedRoots,
        concurrency: 4,
        outputCapBytes: made.script.outputCapBytes,
        inlineBytes: made.script.inlineBytes,
        maxTaskOutputBytes: made.script.maxTaskOutputBytes,
        maxJobOutputBytes: made.script.maxJobOutputBytes,
        killGraceSeconds: 0.5,
        warmMaxTasks: 100,
        warmMaxRssMB: 1024,
        warmIdleMs: 200,
        baseEnv: process.env,
        searchPath: made.script.searchPath,
        log: silentLogger,
        processes: testProcesses,
        groupRecords: new GroupRecords({
          dir: path.join(made.stateDir, 'pids'),
          processes: testProcesses,
          killGraceMs: 500,
          log: silentLogger,
        }),
        descendants: new Descendants({
          stateDir: made.stateDir,
          processes: testProcesses,
          log: silentLogger,
          procDir: '/proc',
        }),
      });
      fixture.closeAfter(own);
      const pid = pidOf(await run(newJob(), 0, { args: ['pid'] }, { on: own }));
      await until(() => !alive(pid), 'the idle process to end', 10_000);
      expect(own.warmProcesses).toBe(0);
      await own.close();
    });

    it('counts idle warm processes against the cap it shares with cold tasks', async () => {
      const capped = poolOf(
        await warmConfig((c) => {
          c.script.maxConcurrency = 2;
          c.script.defaultConcurrency = 2;
        }),
      );
      const jobA = newJob();
      const pidsA = [
        ...new Set(
          (await runAll(jobA, [{ args: ['sleep', '0.3'] }, { args: ['sleep', '0.3'] }], 2, { on: capped })).map(pidOf),
        ),
      ];
      expect(pidsA).toHaveLength(2);
      expect(capped.warmProcesses).toBe(2);
      // A cold task of another job: one of job A's idle processes makes room for it.
      const cold = await run(newJob(), 0, { args: ['pid'] }, { on: capped, options: { warm: false } });
      expect(cold.ok).toBe(true);
      expect(valueOf(cold).warm).toBeUndefined();
      expect(capped.warmProcesses).toBe(1);
      await until(() => pidsA.filter(alive).length === 1, "one of job A's idle processes to end", 10_000);
      // A warm job B with job A's process still idle: the two fill the cap; a second of B's takes A's place.
      const jobB = newJob();
      const b = await runAll(jobB, [{ args: ['sleep', '0.3'] }, { args: ['sleep', '0.3'] }], 2, { on: capped });
      expect(b.every((r) => r.ok)).toBe(true);
      expect(capped.warmProcesses).toBe(2);
      await until(() => pidsA.every((pid) => !alive(pid)), "job A's last idle process to end", 10_000);
      await capped.close();
    });
  });

  it('runs cold with warm: false, and for a job stored before warm workers existed', async () => {
    const jobId = newJob();
    const cold = await runAll(jobId, [{ args: ['echo'] }, { args: ['echo'] }], 1, { options: { warm: false } });
    for (const result of cold) {
      expect(result.ok).toBe(true);
      expect(valueOf(result).warm).toBeUndefined();
      expect(valueOf(result).json?.env).not.toHaveProperty('MONITOR_WARM');
    }
    expect(pidOf(cold[0])).not.toBe(pidOf(cold[1]));
    const legacy = { worker: probe, cwd: repoRoot, timeout_seconds: 30 };
    const old = await fixture.pool.run({
      jobId: newJob(),
      index: 0,
      input: { args: ['echo'] },
      options: legacy,
      outputDir: fixture.outputDir,
      attempt: 1,
      signal: new AbortController().signal,
    });
    expect(valueOf(old).warm).toBeUndefined();
    // A worker that does not declare warm runs cold even when the stored options say warm (it was edited since).
    const undeclared = await fixture.pool.run({
      jobId: newJob(),
      index: 0,
      input: {},
      options: { worker: 'echo.py', cwd: repoRoot, timeout_seconds: 30, warm: true },
      outputDir: fixture.outputDir,
      attempt: 1,
      signal: new AbortController().signal,
    });
    expect(undeclared.ok).toBe(true);
    expect(valueOf(undeclared).warm).toBeUndefined();
  });
});
