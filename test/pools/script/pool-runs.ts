import { rm } from 'node:fs/promises';
import { afterAll, beforeAll } from 'vitest';
import type { Config } from '../../../src/registry.js';
import type { TaskContext, TaskResult } from '../../../src/engine/types.js';
import type { ScriptJobOptions } from '../../../src/pools/script/job-options.js';
import type { ScriptPool } from '../../../src/pools/script/pool.js';
import { makeTempDir, repoRoot, testProcesses } from '../../helpers/client.js';
import { scriptConfig, scriptPool } from '../../helpers/scripts.js';

/** What the tests of single script tasks share: a pool over the fixture workers, and one task through it. */

export interface RunOptions {
  options?: Partial<ScriptJobOptions>;
  signal?: AbortSignal;
  index?: number;
}

export type Value = Record<string, unknown>;
export const valueOf = (result: TaskResult): Value => result.value ?? {};

export interface PoolFixture {
  readonly config: Config;
  readonly pool: ScriptPool;
  /** The tasks' output folder. */
  readonly outputDir: string;
  /** One task straight through the pool (a fresh job id each time, like separate jobs). */
  run(worker: string, input: unknown, options?: RunOptions): Promise<TaskResult>;
}

/** Registers the file's beforeAll/afterAll; the fields are there once beforeAll ran. */
export function usePoolFixture(): PoolFixture {
  let config: Config | undefined;
  let pool: ScriptPool | undefined;
  let outputDir = '';
  let jobCounter = 0;
  beforeAll(async () => {
    config = await scriptConfig((c) => {
      c.allowedRoots = [repoRoot, '/tmp'];
    });
    pool = scriptPool(config, process.env, testProcesses);
    outputDir = await makeTempDir('monitor-pool-out-');
  });
  afterAll(async () => {
    await pool?.close();
    await rm(outputDir, { recursive: true, force: true });
    if (config) await rm(config.stateDir, { recursive: true, force: true });
  });
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the pool fixture is used before its beforeAll ran');
    return value;
  };
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
    run(worker, input, { options = {}, signal = new AbortController().signal, index = 0 } = {}) {
      const task: TaskContext = {
        jobId: `job_test${++jobCounter}`,
        index,
        input,
        options: { worker, cwd: repoRoot, timeout_seconds: 30, ...options },
        outputDir,
        attempt: 1,
        signal,
      };
      return ready(pool).run(task);
    },
  };
}
