import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../../src/registry.js';
import type { TaskContext, TaskResult } from '../../../src/engine/types.js';
import type { ScriptJobOptions } from '../../../src/pools/script/job-options.js';
import type { ScriptPool } from '../../../src/pools/script/pool.js';
import { makeTempDir, repoRoot, testProcesses } from '../../helpers/client.js';
import { scriptConfig, scriptPool, until } from '../../helpers/scripts.js';

let config: Config;
let pool: ScriptPool;
let outputDir: string;
let tmp: string;
let jobCounter = 0;

beforeAll(async () => {
  tmp = await makeTempDir('monitor-pack-');
  config = await scriptConfig((c) => {
    c.allowedRoots = [repoRoot, tmp];
  });
  pool = scriptPool(config, process.env, testProcesses);
  outputDir = await makeTempDir('monitor-pack-out-');
});

afterAll(async () => {
  await pool.close();
  await rm(outputDir, { recursive: true, force: true });
  await rm(tmp, { recursive: true, force: true });
  await rm(config.stateDir, { recursive: true, force: true });
});

type Value = Record<string, unknown>;
const valueOf = (result: TaskResult | undefined): Value => (result?.value ?? {}) as Value;

/** The tasks of one batch of a fresh job, as the engine hands them over: one signal for all. */
function batch(
  worker: string,
  inputs: readonly unknown[],
  options: Partial<ScriptJobOptions> = {},
  signal = new AbortController().signal,
): TaskContext[] {
  const jobId = `job_pack${++jobCounter}`;
  return inputs.map((input, index) => ({
    jobId,
    index,
    input,
    options: { worker, cwd: repoRoot, timeout_seconds: 30, warm: false, pack: 8, ...options },
    outputDir,
    attempt: 1,
    signal,
  }));
}

/** What a cold run of one input alone gives. */
function alone(worker: string, input: unknown, options: Partial<ScriptJobOptions> = {}): Promise<TaskResult> {
  const [task] = batch(worker, [input], { ...options, pack: undefined });
  if (!task) throw new Error('no task');
  return pool.run(task);
}

/** The lines PACK_PROBE_LOG got: one per process, "<pid> <args...>". */
async function processes(log: string): Promise<string[][]> {
  const text = await readFile(log, 'utf8').catch(() => '');
  return text.trim() === ''
    ? []
    : text
        .trim()
        .split('\n')
        .map((line) => line.split(' ').slice(1));
}

const probeLog = (): string => path.join(tmp, `probe-${++jobCounter}.log`);

describe('ScriptPool packs', () => {
  it("splits a pack of code_stats over real files into per-input values equal to cold single runs' files entries", async () => {
    const inputs = [
      { args: ['src/pools/script/pack.ts'] },
      { args: ['workers/code_stats.py', 'workers/_common.py'] },
      { args: ['README.md'] },
      { args: ['no/such/file.ts'] },
      { args: ['src'] },
      { args: ['test/fixtures/workers/bad_utf8.py'] },
    ];
    const results = await pool.runBatch(batch('code_stats.py', inputs));
    expect(results).toHaveLength(inputs.length);
    for (const [position, input] of inputs.entries()) {
      const cold = valueOf(await alone('code_stats.py', input));
      const value = valueOf(results[position]);
      expect(results[position]?.ok).toBe(true);
      expect(value).toMatchObject({
        exit_code: 0,
        timed_out: false,
        packed: { with: inputs.length, position, dropped: ['totals'] },
      });
      // Each input's entries, exactly as a cold run of it alone prints them.
      expect(value.json).toEqual({ files: (cold.json as { files: unknown[] }).files });
      expect(value.stdout_bytes).toBe(Buffer.byteLength(`${JSON.stringify(value.json)}\n`));
    }
  });

  it('runs a pack in one process, and shares its log with every input', async () => {
    const log = probeLog();
    const results = await pool.runBatch(
      batch('pack_probe.py', [{ args: ['a'] }, { args: ['log', 'bb'] }, { args: ['ccc'] }], {
        env: { PACK_PROBE_LOG: log },
      }),
    );
    expect(await processes(log)).toEqual([['a', 'log', 'bb', 'ccc']]);
    expect(results.map((r) => valueOf(r).json)).toEqual([
      { files: [{ file: 'a', length: 1 }] },
      {
        files: [
          { file: 'log', length: 3 },
          { file: 'bb', length: 2 },
        ],
      },
      { files: [{ file: 'ccc', length: 3 }] },
    ]);
    for (const [position, result] of results.entries()) {
      expect(valueOf(result)).toMatchObject({
        packed: { with: 3, position, dropped: ['count', 'pid'] },
        stderr_tail: expect.stringMatching(/^log from process \d+\n$/),
      });
      expect(valueOf(result).notes).toEqual(['stderr_tail is the log of the whole pack of 3 inputs.']);
    }
  });

  it('when the pack fails as a whole, runs each input alone, so that a bad input fails only itself', async () => {
    const cases = [
      {
        bad: 'crash',
        problem: /its pack of 3 inputs exited with code 3: crash requested/,
        alone: { ok: false, code: 'NON_ZERO_EXIT' },
      },
      { bad: 'short', problem: /its pack of 3 inputs printed 3 "files" entries for 4 arguments/, alone: { ok: true } },
      {
        bad: 'swap',
        problem: /its pack of 3 inputs printed the entry of "c" where that of argument 1, "a", belongs/,
        alone: { ok: true },
      },
    ];
    for (const { bad, problem, alone: expected } of cases) {
      const log = probeLog();
      const results = await pool.runBatch(
        batch('pack_probe.py', [{ args: ['a'] }, { args: [bad] }, { args: ['b', 'c'] }], {
          env: { PACK_PROBE_LOG: log },
        }),
      );
      // The pack, then each input on its own.
      expect(await processes(log), bad).toEqual([['a', bad, 'b', 'c'], ['a'], [bad], ['b', 'c']]);
      const [first, middle, last] = results;
      expect(first?.ok, bad).toBe(true);
      // A run alone is a cold run, whole: its other keys are its own.
      expect(valueOf(first).json).toMatchObject({ files: [{ file: 'a', length: 1 }], count: 1 });
      expect(valueOf(last).json).toMatchObject({
        files: [
          { file: 'b', length: 1 },
          { file: 'c', length: 1 },
        ],
        count: 2,
      });
      expect(middle?.ok, bad).toBe(expected.ok);
      if (expected.code) expect(middle?.error?.code).toBe(expected.code);
      for (const [position, result] of results.entries()) {
        expect(valueOf(result).packed).toEqual({ with: 3, position, ran_alone: true });
        expect(String(valueOf(result).notes)).toMatch(problem);
      }
    }
  });

  it('gives a pack the per-task timeout times its inputs, and runs them alone after it', async () => {
    const log = probeLog();
    const results = await pool.runBatch(
      batch('pack_probe.py', [{ args: ['a'] }, { args: ['sleep'] }], {
        env: { PACK_PROBE_LOG: log },
        timeout_seconds: 0.5,
      }),
    );
    expect(await processes(log)).toEqual([['a', 'sleep'], ['a'], ['sleep']]);
    expect(results[0]?.ok).toBe(true);
    expect(results[1]?.error?.code).toBe('TIMEOUT');
    expect(String(valueOf(results[0]).notes)).toMatch(
      /its pack of 2 inputs ran longer than its 1 s \(timeout_seconds × its inputs\) and was killed/,
    );
    // How soon they stop: npm run bench stops.
  });

  it('stops the whole pack on cancel, and runs nothing again', async () => {
    const log = probeLog();
    const controller = new AbortController();
    const running = pool.runBatch(
      batch(
        'pack_probe.py',
        [{ args: ['a'] }, { args: ['sleep'] }, { args: ['b'] }],
        { env: { PACK_PROBE_LOG: log } },
        controller.signal,
      ),
    );
    await until(async () => (await processes(log)).length === 1, 'the pack to start');
    controller.abort(new Error('cancelled'));
    const results = await running;
    expect(results.map((r) => r.error?.code)).toEqual(['CANCELLED', 'CANCELLED', 'CANCELLED']);
    expect(results.map((r) => valueOf(r).packed)).toEqual([0, 1, 2].map((position) => ({ with: 3, position })));
    expect(await processes(log)).toEqual([['a', 'sleep', 'b']]);
  });

  it('runs a bad code_stats input alone when it crashes the pack; the other inputs keep their results', async () => {
    // Deep enough for Python's ast to give up: code_stats exits 1 on it (a RecursionError) in the Pythons seen so far.
    const deep = path.join(tmp, 'deep.py');
    await writeFile(deep, `x = ${'-'.repeat(5000)}1\n`);
    const inputs = [{ args: ['workers/outline.py'] }, { args: [deep] }, { args: ['src/pools/script/pack.ts'] }];
    const results = await pool.runBatch(batch('code_stats.py', inputs));
    const deepAlone = await alone('code_stats.py', inputs[1]);
    expect(results[1]?.ok).toBe(deepAlone.ok);
    for (const at of [0, 2]) {
      expect(results[at]?.ok).toBe(true);
      const files = (json: unknown): unknown => (json as { files: unknown }).files;
      expect(files(valueOf(results[at]).json)).toEqual(files(valueOf(await alone('code_stats.py', inputs[at])).json));
    }
    if (!deepAlone.ok) {
      expect(results[1]?.error?.code).toBe('NON_ZERO_EXIT');
      expect(String(valueOf(results[0]).notes)).toMatch(
        /Ran alone: its pack of 3 inputs exited with code 1: RecursionError/,
      );
    }
  });

  it('runs each task alone when the worker does not declare pack: files (edited since the job was planned)', async () => {
    const results = await pool.runBatch(batch('echo.py', [{ args: ['a'] }, { args: ['b'] }]));
    expect(results.map((r) => (valueOf(r).json as { args: string[] }).args)).toEqual([['a'], ['b']]);
    expect(results.every((r) => valueOf(r).packed === undefined)).toBe(true);
  });

  it('runs a batch of one input as a plain cold task: nothing to split, and nothing to run twice', async () => {
    const log = probeLog();
    const [result] = await pool.runBatch(
      batch('pack_probe.py', [{ args: ['crash'] }], { env: { PACK_PROBE_LOG: log } }),
    );
    expect(result?.error?.code).toBe('NON_ZERO_EXIT');
    expect(valueOf(result).packed).toBeUndefined();
    expect(await processes(log)).toEqual([['crash']]);
    const [whole] = await pool.runBatch(batch('code_stats.py', [{ args: ['README.md'] }]));
    expect(valueOf(whole).json).toMatchObject({ files: [{ file: 'README.md' }], totals: { files: 1 } });
  });

  it('packs cold runs only', () => {
    expect(pool.batchSize({ pack: 8, warm: false })).toBe(8);
    expect(pool.batchSize({ pack: 8, warm: true })).toBe(1);
    expect(pool.batchSize({ warm: false })).toBe(1);
    expect(pool.batchSize(undefined)).toBe(1);
  });
});
