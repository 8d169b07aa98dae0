import path from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll } from 'vitest';
import type { Config } from '../../../src/registry.js';
import type { TaskContext, TaskResult } from '../../../src/engine/types.js';
import type { ScriptJobOptions } from '../../../src/pools/script/job-options.js';
import type { ScriptPool } from '../../../src/pools/script/pool.js';
import { makeTempDir, repoRoot, testProcesses } from '../../helpers/client.js';
import { killQuietly, readPids, scriptConfig, scriptPool } from '../../helpers/scripts.js';

/** What the warm worker tests share: pools over the warm fixture workers, tasks through them, the pids they saw. */

export const warmWorkers = path.join(repoRoot, 'test', 'fixtures', 'warm-workers');
export const probe = 'warm_probe.py';

/** Live warm worker processes of `jobId` (read from /proc: Linux), whoever started them. */
export function warmProcessesOf(jobId: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let environ: string[];
    let stat: string;
    try {
      environ = readFileSync(`/proc/${name}/environ`, 'latin1').split('\0');
      stat = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue;
    }
    // A zombie is dead already; it only waits to be reaped.
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
    if (environ.includes(`MONITOR_JOB_ID=${jobId}`) && environ.includes('MONITOR_WARM=1')) found.push(Number(name));
  }
  return found;
}

/** Samples warmProcessesOf(jobId) every few ms until stopped; `stop()` gives the most seen at once. */
export function watchWarmProcesses(jobId: string, everyMs = 25): { stop(): number } {
  let most = warmProcessesOf(jobId).length;
  const timer = setInterval(() => {
    most = Math.max(most, warmProcessesOf(jobId).length);
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(most, warmProcessesOf(jobId).length);
    },
  };
}

export interface WarmRunOptions {
  options?: Partial<ScriptJobOptions>;
  signal?: AbortSignal;
  attempt?: number;
  on?: ScriptPool;
}

export type WarmValue = Record<string, unknown> & {
  warm?: { process: number; task: number };
  json?: Record<string, unknown>;
};
export const valueOf = (result: TaskResult | undefined): WarmValue => (result?.value ?? {}) as WarmValue;

export interface WarmFixture {
  readonly config: Config;
  /** The file's shared pool. */
  readonly pool: ScriptPool;
  readonly outputDir: string;
  /** A config over the warm fixture workers (removed after the file). */
  warmConfig(edit?: (config: Config) => void): Promise<Config>;
  /** A pool closed after the file. */
  poolOf(config: Config): ScriptPool;
  /** Closes `pool` after the file (when a test ends before it does). */
  closeAfter(pool: ScriptPool): void;
  newJob(): string;
  /** One task of `jobId` straight through the pool. */
  run(jobId: string, index: number, input: unknown, options?: WarmRunOptions): Promise<TaskResult>;
  /** Runs `inputs` as tasks 0..n-1 of one job, at most `concurrency` at once (as the engine would). */
  runAll(jobId: string, inputs: unknown[], concurrency: number, options?: WarmRunOptions): Promise<TaskResult[]>;
  /** The pid the probe reported (ended after the file). */
  pidOf(result: TaskResult | undefined): number;
  /** A fresh file name in the output folder. */
  pidFile(name: string): string;
  /** The first pid written to `file` (ended after the file). */
  firstPid(file: string): Promise<number>;
  /** Pids the tests saw, ended at the end whatever happened. */
  readonly seenPids: Set<number>;
}

/** Registers the file's beforeAll/afterAll; the fields are there once beforeAll ran. */
export function useWarmFixture(): WarmFixture {
  let config: Config | undefined;
  let pool: ScriptPool | undefined;
  let outputDir = '';
  let jobCounter = 0;
  const pools: ScriptPool[] = [];
  const stateDirs: string[] = [];
  const seenPids = new Set<number>();
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the warm fixture is used before its beforeAll ran');
    return value;
  };

  const warmConfig = async (edit: (config: Config) => void = () => {}): Promise<Config> => {
    const made = await scriptConfig((c) => {
      c.workersDirs = [...c.workersDirs, warmWorkers];
      c.allowedRoots = [repoRoot, outputDir];
      edit(c);
    });
    stateDirs.push(made.stateDir);
    return made;
  };
  const poolOf = (made: Config): ScriptPool => {
    const built = scriptPool(made, process.env, testProcesses);
    pools.push(built);
    return built;
  };
  const run: WarmFixture['run'] = (jobId, index, input, runOptions = {}) => {
    const { options = {}, signal = new AbortController().signal, attempt = 1, on = ready(pool) } = runOptions;
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
  };

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

  return {
    get config() {
      return ready(config);
    },
    get pool() {
      return ready(pool);
    },
    get outputDir() {
      return outputDir;
    },
    seenPids,
    warmConfig,
    poolOf,
    closeAfter: (built) => {
      pools.push(built);
    },
    newJob: () => `job_warm${++jobCounter}`,
    run,
    async runAll(jobId, inputs, concurrency, options = {}) {
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
    },
    pidOf(result) {
      const pid = Number(valueOf(result).json?.pid);
      if (pid > 0) seenPids.add(pid);
      return pid;
    },
    pidFile: (name) => path.join(outputDir, `${name}-${Date.now()}-${Math.random().toString(36).slice(2)}`),
    async firstPid(file) {
      const [pid = 0] = await readPids(file);
      seenPids.add(pid);
      return pid;
    },
  };
}
