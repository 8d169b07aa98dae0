import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config.js';
import type { TaskContext, TaskResult } from '../../../src/engine/types.js';
import { silentLogger } from '../../../src/log.js';
import { WorkerCatalog } from '../../../src/pools/script/catalog.js';
import { Descendants } from '../../../src/pools/script/descendants.js';
import { InterpreterResolver } from '../../../src/pools/script/interpreters.js';
import { GroupRecords } from '../../../src/pools/script/orphans.js';
import type { ScriptJobOptions } from '../../../src/pools/script/job-options.js';
import { ScriptPool } from '../../../src/pools/script/pool.js';
import { makeTempDir, repoRoot, testProcesses } from '../../helpers/client.js';
import { alive, killQuietly, readPids, scriptConfig, scriptPool, until } from '../../helpers/scripts.js';

const warmWorkers = path.join(repoRoot, 'test', 'fixtures', 'warm-workers');
const probe = 'warm_probe.py';

let config: Config;
let pool: ScriptPool;
let outputDir: string;
let jobCounter = 0;
const pools: ScriptPool[] = [];
const stateDirs: string[] = [];
/** Pids the tests saw, ended at the end whatever happened. */
const seenPids = new Set<number>();

async function warmConfig(edit: (config: Config) => void = () => {}): Promise<Config> {
  const made = await scriptConfig((c) => {
    c.workersDirs = [...c.workersDirs, warmWorkers];
    c.allowedRoots = [repoRoot, outputDir];
    edit(c);
  });
  stateDirs.push(made.stateDir);
  return made;
}

function poolOf(made: Config): ScriptPool {
  const built = scriptPool(made, process.env, testProcesses);
  pools.push(built);
  return built;
}

beforeAll(async () => {
  outputDir = await makeTempDir('monitor-warm-out-');
  config = await warmConfig();
  pool = poolOf(config);
});

afterAll(async () => {
  for (const each of pools) await each.close();
  for (const pid of seenPids) killQuietly(pid);
  await rm(outputDir, { recursive: true, force: true });
  await Promise.all(stateDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

const newJob = (): string => `job_warm${++jobCounter}`;

interface RunOptions {
  options?: Partial<ScriptJobOptions>;
  signal?: AbortSignal;
  attempt?: number;
  on?: ScriptPool;
}

/** One task of `jobId` straight through the pool. */
function run(
  jobId: string,
  index: number,
  input: unknown,
  { options = {}, signal = new AbortController().signal, attempt = 1, on = pool }: RunOptions = {},
): Promise<TaskResult> {
  const task: TaskContext = {
    jobId,
    index,
    input,
    options: { worker: probe, cwd: repoRoot, timeout_seconds: 30, warm: true, ...options },
    outputDir,
    attempt,
    signal,
  };
  return on.run(task);
}

/** Runs `inputs` as tasks 0..n-1 of one job, at most `concurrency` at once (as the engine would). */
async function runAll(
  jobId: string,
  inputs: unknown[],
  concurrency: number,
  options: RunOptions = {},
): Promise<TaskResult[]> {
  const results: TaskResult[] = new Array<TaskResult>(inputs.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < inputs.length) {
      const index = next++;
      results[index] = await run(jobId, index, inputs[index], options);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return results;
}

type Value = Record<string, unknown> & { warm?: { process: number; task: number }; json?: Record<string, unknown> };
const valueOf = (result: TaskResult | undefined): Value => (result?.value ?? {}) as Value;
const pidOf = (result: TaskResult | undefined): number => {
  const pid = Number(valueOf(result).json?.pid);
  if (pid > 0) seenPids.add(pid);
  return pid;
};
const pidFile = (name: string): string =>
  path.join(outputDir, `${name}-${Date.now()}-${Math.random().toString(36).slice(2)}`);

async function firstPid(file: string): Promise<number> {
  const [pid = 0] = await readPids(file);
  seenPids.add(pid);
  return pid;
}

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
      MONITOR_OUTPUT_DIR: outputDir,
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
    pool.jobEnded(jobId);
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
    pool.jobEnded(jobId);
  });

  describe('framing', () => {
    it('reads a reply written in pieces (cut inside a UTF-8 character)', async () => {
      const jobId = newJob();
      const result = await run(jobId, 0, { args: ['split'] });
      expect(result.ok).toBe(true);
      expect(valueOf(result).json).toEqual({ split: 'é'.repeat(100) });
      pool.jobEnded(jobId);
    });

    it('takes a 5 MB reply: a preview in the value (cut), all of it in files.output', async () => {
      const jobId = newJob();
      const size = 5 * 1024 * 1024;
      const result = await run(jobId, 3, { args: ['big', String(size)] });
      expect(result.ok).toBe(true);
      const value = valueOf(result);
      expect(value).toMatchObject({ stdout_bytes: size, cut: true });
      expect(value.stderr_cut).toBeUndefined();
      expect((value.text as string).length).toBeLessThanOrEqual(2048);
      expect(value.notes).toEqual([expect.stringContaining(`stdout is ${size} bytes`)]);
      expect((await stat(result.files?.output ?? '')).size).toBe(size);
      expect(JSON.stringify(value).length).toBeLessThan(8 * 1024);
      // The process is fine afterwards.
      expect(valueOf(await run(jobId, 4, { args: ['pid'] })).warm).toEqual({ process: value.warm?.process, task: 2 });
      pool.jobEnded(jobId);
    });

    it("keeps non-UTF-8 output on fd 1 and 2 as the task's log, decoded lossily with a note", async () => {
      const jobId = newJob();
      const result = await run(jobId, 21, { args: ['bad_utf8'] });
      expect(result.ok).toBe(true);
      const value = valueOf(result);
      expect(value.json).toEqual({ ok: true });
      expect(value.stderr_tail).toContain('café then bad: \uFFFD');
      expect(value.stderr_tail).toContain('err \uFFFD');
      expect(value.notes).toEqual([expect.stringContaining('stderr is not valid UTF-8')]);
      const bytes = await readFile(result.files?.stderr ?? '');
      expect(bytes.includes(Buffer.from([0xff, 0xfe]))).toBe(true);
      pool.jobEnded(jobId);
    });

    it('takes what a worker prints on stdout mid-task (even a line that looks like a reply) as its log, not as a reply', async () => {
      const jobId = newJob();
      const results = await runAll(jobId, [{ args: ['print'] }, { args: ['print'] }, { args: ['pid'] }], 1);
      for (const result of results.slice(0, 2)) {
        expect(result.ok).toBe(true);
        expect(valueOf(result).json).toEqual({ ok: true });
        expect(valueOf(result).stderr_tail).toContain('"result": "fake"');
        expect(valueOf(result).stderr_tail).toContain('plain line on stdout');
        expect(valueOf(result).stderr_tail).toContain('a line on stderr');
      }
      // Nothing of it leaked into the next task's log.
      expect(valueOf(results[2]).stderr_tail).toBeUndefined();
      expect(new Set(results.map((r) => valueOf(r).warm?.process)).size).toBe(1);
      pool.jobEnded(jobId);
    });

    it("puts what a process writes while idle into its next task's log", async () => {
      const jobId = newJob();
      const trigger = pidFile('stray-trigger');
      const done = pidFile('stray-done');
      const first = await run(jobId, 0, { args: ['stray_when', trigger, done] });
      expect(valueOf(first).stderr_tail).toBeUndefined();
      await writeFile(trigger, '');
      await readPids(done);
      const second = await run(jobId, 1, { args: ['join'] });
      expect(valueOf(second).warm?.task).toBe(2);
      expect(valueOf(second).stderr_tail).toBe('stray output while idle\n');
      pool.jobEnded(jobId);
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
      pool.jobEnded(jobId);
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
      pool.jobEnded(jobId);
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
      pool.jobEnded(jobId);
    });

    it('kills a timed-out process with its group and replaces it; later tasks succeed', async () => {
      const jobId = newJob();
      const file = pidFile('warm-timeout');
      const started = Date.now();
      const pending = run(jobId, 0, { args: ['sleep', '60', file] }, { options: { timeout_seconds: 1 } });
      const pid = await firstPid(file);
      const result = await pending;
      expect(result.error).toMatchObject({ code: 'TIMEOUT', hint: expect.stringContaining('timeout_seconds') });
      expect(valueOf(result)).toMatchObject({ timed_out: true, exit_code: null, signal: 'SIGTERM' });
      expect(Date.now() - started).toBeLessThan(15_000);
      await until(() => !alive(pid), 'the timed-out process to be gone', 10_000);
      const next = await run(jobId, 1, { args: ['pid'] }, { options: { timeout_seconds: 1 } });
      expect(next.ok).toBe(true);
      expect(pidOf(next)).not.toBe(pid);
      expect(valueOf(next).warm?.process).not.toBe(valueOf(result).warm?.process);
      pool.jobEnded(jobId);
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
      pool.jobEnded(jobId);
    });

    it('fails a task with WORKER_PROTOCOL on a reply that is not JSON or answers another request, and replaces the process', async () => {
      const jobId = newJob();
      const garbage = await run(jobId, 0, { args: ['garbage'] });
      expect(garbage.ok).toBe(false);
      expect(garbage.error?.code).toBe('WORKER_PROTOCOL');
      expect(garbage.error?.message).toMatch(
        /^warm_probe\.py \(warm process \d+\) sent a reply that is not (JSON|valid UTF-8): "this is not json \\u0000\uFFFD"; the process was killed/,
      );
      expect(garbage.error?.hint).toContain('fd 4');
      const wrongId = await run(jobId, 1, { args: ['wrong_id'] });
      expect(wrongId.error).toMatchObject({
        code: 'WORKER_PROTOCOL',
        message: expect.stringContaining('replied with id 1001 to request 1'),
      });
      expect(valueOf(wrongId).warm?.process).not.toBe(valueOf(garbage).warm?.process);
      const next = await run(jobId, 2, { args: ['pid'] });
      expect(next.ok).toBe(true);
      expect(valueOf(next).warm?.process).not.toBe(valueOf(wrongId).warm?.process);
      pool.jobEnded(jobId);
    });

    it('fails a reply longer than script.maxTaskOutputBytes with WORKER_PROTOCOL, without holding it', async () => {
      const small = poolOf(await warmConfig((c) => (c.script.maxTaskOutputBytes = 4096)));
      const jobId = newJob();
      const result = await run(jobId, 0, { args: ['big', String(1024 * 1024)] }, { on: small });
      expect(result.error).toMatchObject({
        code: 'WORKER_PROTOCOL',
        message: expect.stringContaining(
          'sent a reply longer than 4096 bytes (script.maxTaskOutputBytes): "{\\"id\\": 0',
        ),
      });
      expect((await run(jobId, 1, { args: ['pid'] }, { on: small })).ok).toBe(true);
      await small.close();
    });

    it('reports a process that cannot start as SPAWN_FAILED', async () => {
      const cwd = path.join(outputDir, `vanishing-${Date.now()}`);
      await mkdir(cwd);
      const jobId = newJob();
      expect((await run(jobId, 0, { args: ['pid'] }, { options: { cwd } })).ok).toBe(true);
      pool.jobEnded(jobId);
      await rm(cwd, { recursive: true, force: true });
      const result = await run(jobId, 1, { args: ['pid'] }, { options: { cwd } });
      expect(result.error).toMatchObject({
        code: 'SPAWN_FAILED',
        message: expect.stringContaining(`Could not start ${probe}`),
      });
      pool.jobEnded(jobId);
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
      pools.push(own);
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
    const old = await pool.run({
      jobId: newJob(),
      index: 0,
      input: { args: ['echo'] },
      options: legacy,
      outputDir,
      attempt: 1,
      signal: new AbortController().signal,
    });
    expect(valueOf(old).warm).toBeUndefined();
    // A worker that does not declare warm runs cold even when the stored options say warm (it was edited since).
    const undeclared = await pool.run({
      jobId: newJob(),
      index: 0,
      input: {},
      options: { worker: 'echo.py', cwd: repoRoot, timeout_seconds: 30, warm: true },
      outputDir,
      attempt: 1,
      signal: new AbortController().signal,
    });
    expect(undeclared.ok).toBe(true);
    expect(valueOf(undeclared).warm).toBeUndefined();
  });
});
