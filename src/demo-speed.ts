import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { formatDuration } from './tools/format.js';

const run = promisify(execFile);

/** A job the demo submits: a worker over some inputs, so many at once. */
export interface DemoJob {
  worker: string;
  inputs: ReadonlyArray<{ args: string[] }>;
  concurrency: number;
  label: string;
}

export interface SpeedOptions {
  /** Submits the jobs at once through the server; resolves once every result of each was collected. */
  runJobs(jobs: readonly DemoJob[]): Promise<void>;
  /** Each worker's tasks, as the demo's jobs ran them, and its file (run by `python` for the cold way). */
  workers: ReadonlyArray<{ name: string; file: string; inputs: ReadonlyArray<{ args: string[] }> }>;
  python: string;
  cpus: number;
  cwd: string;
  write(text: string): void;
}

/** Rounds: each runs the sample once each way, in turn, so a busy moment of the machine falls on all three. */
export const ROUNDS = 3;
/** Tasks of each worker in the sample: the cold way costs ~0.1 s a task, and the demo is the README's first command. */
export const SAMPLE_TASKS = 12;

/** A process per task one after another (no server); warm processes one task at a time; warm and parallel. */
const WAYS = ['cold', 'warm', 'parallel'] as const;
type Way = (typeof WAYS)[number];
export type RoundTimes = Record<Way, number>;

/** `count` items spread over the whole list (the files are sorted by folder: every part of the tree). */
function spread<T>(items: readonly T[], count: number): T[] {
  if (items.length <= count) return [...items];
  return Array.from({ length: count }, (_, i) => items[Math.floor((i * items.length) / count)] as T);
}

/**
 * Where the demo's speed-up comes from, measured: a sample of its tasks run three ways, ROUNDS
 * times, the ways taking turns; prints each way's median time with its spread and what each step
 * gains (warm processes over a process per task, then running in parallel).
 */
export async function measureSpeedup(options: SpeedOptions): Promise<RoundTimes[]> {
  const sample = options.workers.map((w) => ({ ...w, inputs: spread(w.inputs, SAMPLE_TASKS) }));
  const tasks = sample.reduce((n, w) => n + w.inputs.length, 0);
  options.write(
    `\nWhere the speed-up comes from: ${tasks} of those tasks (${SAMPLE_TASKS} a worker), run each of three ways ${ROUNDS} times, the ways taking turns:\n`,
  );
  const rounds: RoundTimes[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const times: Partial<RoundTimes> = {};
    // Each round starts with another way, so none is always first (or last) after the others.
    for (let k = 0; k < WAYS.length; k++) {
      const way = WAYS[(round + k) % WAYS.length] ?? 'cold';
      const started = performance.now();
      await runWay(way, sample, options, round + 1);
      times[way] = performance.now() - started;
    }
    rounds.push({ cold: times.cold ?? 0, warm: times.warm ?? 0, parallel: times.parallel ?? 0 });
  }
  options.write(speedReport(rounds, parallelism(options), options.cpus));
  return rounds;
}

async function runWay(way: Way, sample: SpeedOptions['workers'], options: SpeedOptions, round: number): Promise<void> {
  if (way === 'cold') {
    for (const worker of sample)
      for (const input of worker.inputs)
        await run(options.python, [worker.file, ...input.args], { cwd: options.cwd, maxBuffer: 64 * 1024 * 1024 });
    return;
  }
  const job = (worker: SpeedOptions['workers'][number], concurrency: number): DemoJob => ({
    worker: worker.name,
    inputs: worker.inputs,
    concurrency,
    label: `demo: speed-up round ${round}, ${way === 'warm' ? 'one at a time' : 'parallel'}: ${worker.name}`,
  });
  if (way === 'warm') for (const worker of sample) await options.runJobs([job(worker, 1)]);
  else await options.runJobs(sample.map((worker) => job(worker, parallelism(options))));
}

/**
 * Tasks at once for each job the parallel way: the jobs together use every CPU, no more, so on two
 * CPUs it runs as many warm processes as the one-at-a-time way and the gain is the parallelism alone.
 */
function parallelism(options: SpeedOptions): number {
  return Math.max(1, Math.ceil(options.cpus / Math.max(1, options.workers.length)));
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spreadOf(values: readonly number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  const median =
    sorted.length % 2 === 1
      ? (sorted[Math.floor(middle)] ?? 0)
      : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
  return { median, min: sorted[0] ?? 0, max: sorted.at(-1) ?? 0 };
}

const times = (s: Spread): string =>
  `${formatDuration(s.median)} (${formatDuration(s.min)} – ${formatDuration(s.max)})`;
const factor = (s: Spread): string => `${s.median.toFixed(1)}× (${s.min.toFixed(1)}×–${s.max.toFixed(1)}×)`;

/** Each way's median time (min – max), and the gains as medians of the rounds' own ratios (min – max). */
export function speedReport(rounds: readonly RoundTimes[], concurrency: number, cpus: number): string {
  const of = (pick: (r: RoundTimes) => number): Spread => spreadOf(rounds.map(pick));
  const rows: Array<[string, string, string]> = [
    ['a new python3 process per task, one after another, no server', times(of((r) => r.cold)), ''],
    [
      'monitor-mcp, warm processes, one task at a time',
      times(of((r) => r.warm)),
      `${factor(of((r) => r.cold / r.warm))} from warm processes`,
    ],
    [
      `monitor-mcp, warm processes, both jobs at once, ${concurrency === 1 ? 'one task' : `${concurrency} tasks`} at a time each`,
      times(of((r) => r.parallel)),
      `${factor(of((r) => r.warm / r.parallel))} from running in parallel on ${cpus} CPU(s)`,
    ],
  ];
  const width = Math.max(...rows.map((row) => row[0].length));
  const timeWidth = Math.max(...rows.map((row) => row[1].length));
  const lines = rows.map(([way, time, gain]) => `  ${way.padEnd(width)}  ${time.padEnd(timeWidth)}  ${gain}`.trimEnd());
  return `${lines.join('\n')}\n  In all ${factor(of((r) => r.cold / r.parallel))} faster than a process per task one after another: medians of ${rounds.length} rounds (min – max).\n`;
}
