import { spawn } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { type BenchRow, type BenchServer, median, ms, realPython, startServer, waitDone } from './common.js';

const warmFixtures = path.join(repoRoot, 'test', 'fixtures', 'warm-workers');
const codeStats = path.join(repoRoot, 'workers', 'code_stats.py');
/** BENCH_QUICK=1: one round of a tenth of the tasks, to check the bench itself runs (numbers mean nothing). */
const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = QUICK ? 1 : 3;
/** (a) is short and its cold-vs-xargs gap is within the machine's noise: more rounds for its medians. */
const ROUNDS_A = QUICK ? 1 : 5;
const scaled = (n: number): number => (QUICK ? Math.ceil(n / 10) : n);
const CONCURRENCY = 2;
/** Python as the pool starts an isolated worker. */
const PY_FLAGS = ['-s', '-E'];

/** This repository's TypeScript sources, relative to its root: the per-file workload of issue 10. */
async function sourceFiles(): Promise<string[]> {
  const files: string[] = [];
  for (const top of ['src', 'test']) {
    const entries = await readdir(path.join(repoRoot, top), { recursive: true, withFileTypes: true });
    for (const entry of entries) {
      if (entry.isFile() && entry.name.endsWith('.ts'))
        files.push(path.relative(repoRoot, path.join(entry.parentPath, entry.name)));
    }
  }
  return files.sort();
}

/** Wall time of one command run to its end (exit 0), its stdout discarded. */
async function timeCommand(file: string, args: string[], stdin?: string): Promise<number> {
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: repoRoot,
      stdio: [stdin === undefined ? 'ignore' : 'pipe', 'ignore', 'inherit'],
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${path.basename(file)} exited ${String(code)}`)),
    );
    child.stdin?.end(stdin);
  });
  return performance.now() - start;
}

/** xargs -P2 -n1: one process per input line, the classic baseline. */
function timeXargs(python: string, script: string, inputs: readonly string[]): Promise<number> {
  return timeCommand(
    'xargs',
    ['-P', String(CONCURRENCY), '-n', '1', python, ...PY_FLAGS, script],
    `${inputs.join('\n')}\n`,
  );
}

/** Submit → every result collected; throws when the call is refused or a task failed (so a row never shows a fast failure). */
async function timeJob(server: BenchServer, args: Record<string, unknown>): Promise<number> {
  const start = performance.now();
  const reply = await server.call('run_script_batch', { concurrency: CONCURRENCY, ...args });
  if (reply.isError)
    throw new Error(
      reply.content
        .map((c) => (c.type === 'text' ? c.text : ''))
        .join(' ')
        .slice(0, 300),
    );
  const done = await waitDone(server, jobIdOf(reply));
  const wall = performance.now() - start;
  const jobs = (done.structuredContent as { jobs?: { counts?: { failed?: number; cancelled?: number } }[] } | undefined)
    ?.jobs;
  const counts = jobs?.[0]?.counts;
  const failed = (counts?.failed ?? 0) + (counts?.cancelled ?? 0);
  if (failed > 0) throw new Error(`${failed} task(s) failed`);
  return wall;
}

/** Several timings of one thing, or why it could not be measured (the warm pool may not have landed). */
class Series {
  readonly times: number[] = [];
  error: string | undefined;

  async measure(time: () => Promise<number>): Promise<void> {
    if (this.error !== undefined) return;
    try {
      this.times.push(await time());
    } catch (error) {
      this.error = error instanceof Error ? error.message : String(error);
    }
  }

  get median(): number {
    return this.error === undefined ? median(this.times) : Number.NaN;
  }

  get shown(): string {
    return this.error === undefined ? ms(this.median) : `failed: ${this.error.replace(/\s+/g, ' ').slice(0, 120)}`;
  }
}

const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(1)}×` : '?');
const percentOver = (ours: number, base: number): number => (ours / base - 1) * 100;
const signed = (n: number): string => `${n >= 0 ? '+' : ''}${n.toFixed(1)}%`;

async function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 'NaN');
}

/**
 * Issue 10's table: warm workers (one long-lived process per slot) against one process per task
 * (xargs, cold monitor-mcp) and against one plain process doing all the work. Interleaved rounds,
 * medians: a shared 2-core machine drifts between runs.
 */
export async function benchWarm(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const python = await realPython();
  const files = await sourceFiles();
  const stateDir = await makeTempDir('monitor-bench-warm-');
  const server = await startServer(['--state-dir', stateDir, '--workers-dir', warmFixtures, '--max-concurrency', '64']);
  try {
    // Warm the page cache and the server's interpreter resolution once (not measured).
    await timeJob(server, {
      worker: 'code_stats.py',
      inputs: [{ args: [files[0] ?? 'README.md'] }],
      warm: false,
    }).catch(() => 0);
    await timeJob(server, { worker: 'bench_noop.py', inputs: [{ args: ['w'] }], warm: false }).catch(() => 0);

    // (a) code_stats.py, one task per source file.
    const perFile = files.map((file) => ({ args: [file] }));
    const a = { plain: new Series(), xargs: new Series(), cold: new Series(), warm: new Series() };
    for (let round = 0; round < ROUNDS_A; round++) {
      await a.plain.measure(() => timeCommand(python, [...PY_FLAGS, codeStats, ...files]));
      await a.xargs.measure(() => timeXargs(python, codeStats, files));
      await a.cold.measure(() => timeJob(server, { worker: 'code_stats.py', inputs: perFile, warm: false }));
      await a.warm.measure(() => timeJob(server, { worker: 'code_stats.py', inputs: perFile }));
    }
    const n = files.length;
    rows.push({ name: `(a) code_stats.py, ${n} files: one plain process`, value: a.plain.shown });
    rows.push({ name: `(a) ${n} files, one process per file: xargs -P2 -n1`, value: a.xargs.shown });
    const coldOver = percentOver(a.cold.median, a.xargs.median);
    rows.push({
      name: `(a) ${n} files, one task per file @2: monitor-mcp cold`,
      value: a.cold.error === undefined ? `${a.cold.shown} (${signed(coldOver)} vs xargs)` : a.cold.shown,
      goal: 'within 5% of xargs',
      ok: coldOver <= 5,
    });
    rows.push({
      name: `(a) ${n} files, one task per file @2: monitor-mcp warm`,
      value:
        a.warm.error === undefined
          ? `${a.warm.shown} (${ratio(a.warm.median, a.plain.median)} the plain process)`
          : a.warm.shown,
      goal: 'within 3× of the plain process',
      ok: a.warm.median <= 3 * a.plain.median,
    });
    rows.push({
      name: '(a) warm speed-up over xargs -P2 -n1',
      value: ratio(a.xargs.median, a.warm.median),
      goal: 'at least 10×',
      ok: a.xargs.median >= 10 * a.warm.median,
    });

    // (b) 1,000 trivial Python tasks.
    const trivial = scaled(1000);
    const ids = Array.from({ length: trivial }, (_, i) => String(i));
    const inputs = ids.map((id) => ({ args: [id] }));
    const noop = path.join(warmFixtures, 'bench_noop.py');
    const b = { xargs: new Series(), cold: new Series(), warm: new Series() };
    for (let round = 0; round < ROUNDS; round++) {
      await b.xargs.measure(() => timeXargs(python, noop, ids));
      await b.cold.measure(() => timeJob(server, { worker: 'bench_noop.py', inputs, warm: false }));
      await b.warm.measure(() => timeJob(server, { worker: 'bench_noop.py', inputs }));
    }
    rows.push({ name: `(b) ${trivial} trivial Python tasks @2: xargs -P2`, value: b.xargs.shown });
    const trivialColdOver = percentOver(b.cold.median, b.xargs.median);
    rows.push({
      name: `(b) ${trivial} trivial tasks: monitor-mcp cold`,
      value: b.cold.error === undefined ? `${b.cold.shown} (${signed(trivialColdOver)} vs xargs)` : b.cold.shown,
      goal: 'within 5% of xargs',
      ok: trivialColdOver <= 5,
    });
    rows.push({
      name: `(b) ${trivial} trivial tasks: monitor-mcp warm`,
      value:
        b.warm.error === undefined
          ? `${b.warm.shown} (${ratio(b.xargs.median, b.warm.median)} faster than xargs)`
          : b.warm.shown,
      goal: 'at least 10× faster than xargs',
      ok: b.xargs.median >= 10 * b.warm.median,
    });

    // (c) A worker whose start costs 50 ms (a library import): paid per task cold, per process warm.
    const slow = scaled(300);
    const slowInputs = Array.from({ length: slow }, (_, i) => ({ args: [String(i)] }));
    const c = { cold: new Series(), warm: new Series() };
    for (let round = 0; round < ROUNDS; round++) {
      await c.cold.measure(() => timeJob(server, { worker: 'bench_slow_import.py', inputs: slowInputs, warm: false }));
      await c.warm.measure(() => timeJob(server, { worker: 'bench_slow_import.py', inputs: slowInputs }));
    }
    rows.push({ name: `(c) ${slow} tasks, 50 ms import @2: monitor-mcp cold`, value: c.cold.shown });
    rows.push({
      name: `(c) ${slow} tasks, 50 ms import @2: monitor-mcp warm`,
      value:
        c.warm.error === undefined
          ? `${c.warm.shown} (${ratio(c.cold.median, c.warm.median)} faster than cold)`
          : c.warm.shown,
    });

    // The server's memory through a large warm job: the kernel's high-water mark, reset first.
    const big = scaled(10_000);
    await writeFile(`/proc/${server.pid}/clear_refs`, '5');
    const bigRun = new Series();
    await bigRun.measure(() =>
      timeJob(server, {
        worker: 'bench_noop.py',
        inputs: Array.from({ length: big }, (_, i) => ({ args: [String(i)] })),
        concurrency: 8,
      }),
    );
    const peakMb = (await statusKb(server.pid, 'VmHWM')) / 1024;
    rows.push({
      name: `${big}-task warm job (@8): wall time`,
      value: bigRun.error === undefined ? `${(bigRun.median / 1000).toFixed(1)} s` : bigRun.shown,
    });
    rows.push({
      name: `${big}-task warm job: server peak RSS`,
      value: `${peakMb.toFixed(0)} MB`,
      goal: 'under 200 MB',
      ok: bigRun.error === undefined && peakMb < 200,
    });
  } finally {
    await server.close();
    await rm(stateDir, { recursive: true, force: true });
  }
  return rows;
}
