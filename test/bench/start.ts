import { type ChildProcess, spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LmStudioDouble } from '../fixtures/lmstudio-double.js';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { type BenchRow, type BenchServer, median, ms, startServer, waitDone } from './common.js';
import { seedOldJobs } from './responsiveness.js';

/** Starts of each server, interleaved (ours, minimal, ours, …); `npm run bench start` with START_RUNS=N for more. */
const RUNS = Number(process.env.START_RUNS ?? 10);
/** START_CLI=/path/to/other/dist/src/cli.js measures another build (an older commit's, say) against the same minimal server. */
const cli = process.env.START_CLI ?? path.join(repoRoot, 'dist', 'src', 'cli.js');
const minimal = path.join(repoRoot, 'dist', 'test', 'fixtures', 'minimal-server.js');

interface Handshake {
  /** From spawn to the initialize response, and to the tools/list response sent right after it. */
  initializeMs: number;
  toolsMs: number;
}

const line = (message: Record<string, unknown>): string => `${JSON.stringify({ jsonrpc: '2.0', ...message })}\n`;

/**
 * Spawns `args` and speaks to it as a client does: initialize at once, then (on its answer)
 * notifications/initialized and tools/list. Times both answers from the spawn, then ends it.
 */
async function handshake(args: string[]): Promise<Handshake> {
  const started = performance.now();
  const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    return await new Promise<Handshake>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer from ${args[0] ?? ''} in 30 s`)), 30_000);
      child.on('error', reject);
      let buffered = '';
      let initializeMs = 0;
      child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        buffered += chunk;
        for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
          const { id } = JSON.parse(buffered.slice(0, end)) as { id?: number };
          buffered = buffered.slice(end + 1);
          if (id === 1) {
            initializeMs = performance.now() - started;
            child.stdin?.write(line({ method: 'notifications/initialized' }) + line({ id: 2, method: 'tools/list' }));
          } else if (id === 2) {
            clearTimeout(timer);
            resolve({ initializeMs, toolsMs: performance.now() - started });
          }
        }
      });
      child.stdin?.write(
        line({
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '0' } },
        }),
      );
    });
  } finally {
    await end(child);
  }
}

/** Closes its stdin (how a client ends a stdio server), then kills it if it is still there after 5 s. */
async function end(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

const spread = (values: number[]): string =>
  `${ms(median(values))} (${Math.round(Math.min(...values))}–${Math.round(Math.max(...values))})`;

/** The built server (a fresh state directory each start, or `stateDir`) and the minimal SDK server, started in turn. */
async function handshakes(stateDir?: string): Promise<{ ours: Handshake[]; theirs: Handshake[] }> {
  const ours: Handshake[] = [];
  const theirs: Handshake[] = [];
  for (let i = 0; i < RUNS; i++) {
    const dir = stateDir ?? (await makeTempDir('monitor-bench-start-'));
    try {
      ours.push(await handshake([cli, '--state-dir', dir, '--log-level', 'warn']));
    } finally {
      if (stateDir === undefined) await rm(dir, { recursive: true, force: true });
    }
    theirs.push(await handshake([minimal]));
  }
  return { ours, theirs };
}

async function handshakeRows(): Promise<BenchRow[]> {
  const { ours, theirs } = await handshakes();
  const ratio = median(ours.map((h) => h.initializeMs)) / median(theirs.map((h) => h.initializeMs));
  const toolsRatio = median(ours.map((h) => h.toolsMs)) / median(theirs.map((h) => h.toolsMs));
  // A state directory with a heavy week of jobs: its recovery runs after the handshake.
  const seeded = await makeTempDir('monitor-bench-start-');
  await seedOldJobs(seeded);
  const withJobs = (await handshakes(seeded)).ours;
  await rm(seeded, { recursive: true, force: true });
  return [
    {
      name: `initialize, monitor-mcp (median of ${RUNS} starts, min–max)`,
      value: spread(ours.map((h) => h.initializeMs)),
    },
    {
      name: `initialize, minimal server on the same SDK (one tool)`,
      value: spread(theirs.map((h) => h.initializeMs)),
    },
    { name: 'initialize, monitor-mcp / minimal', value: `${ratio.toFixed(2)}×`, goal: '≤ 1.3×', ok: ratio <= 1.3 },
    {
      name: 'tools/list answered (from spawn), monitor-mcp vs minimal',
      value: `${spread(ours.map((h) => h.toolsMs))} vs ${spread(theirs.map((h) => h.toolsMs))}: ${toolsRatio.toFixed(2)}×`,
    },
    {
      name: 'initialize, monitor-mcp over 1,000 earlier jobs',
      value: spread(withJobs.map((h) => h.initializeMs)),
    },
  ];
}

interface Dispatch {
  tool: string;
  args: Record<string, unknown>;
}

/** Times `tool` calls on one fresh server: the first of its life (sent `pauseMs` after connect), then `later` more. */
async function dispatchTimes(
  server: BenchServer,
  dispatch: Dispatch,
  pauseMs: number,
  later: number,
): Promise<{ first: number; later: number[] }> {
  await sleep(pauseMs);
  const times: number[] = [];
  for (let i = 0; i <= later; i++) {
    const started = performance.now();
    const reply = await server.call(dispatch.tool, dispatch.args);
    times.push(performance.now() - started);
    // Each job ends before the next call: the next dispatch is timed alone, not beside a running job.
    await waitDone(server, jobIdOf(reply));
  }
  return { first: times[0] ?? Number.NaN, later: times.slice(1) };
}

async function dispatchRows(name: string, args: string[], dispatch: Dispatch): Promise<BenchRow[]> {
  const firsts: number[] = [];
  const atOnce: number[] = [];
  const laters: number[] = [];
  for (let i = 0; i < 3; i++) {
    for (const pauseMs of [1000, 0]) {
      const stateDir = await makeTempDir('monitor-bench-dispatch-');
      const server = await startServer(['--state-dir', stateDir, '--root', repoRoot, ...args], {}, cli);
      try {
        const { first, later } = await dispatchTimes(server, dispatch, pauseMs, pauseMs > 0 ? 5 : 0);
        (pauseMs > 0 ? firsts : atOnce).push(first);
        laters.push(...later);
      } finally {
        await server.close();
        await rm(stateDir, { recursive: true, force: true });
      }
    }
  }
  const ratio = median(firsts) / median(laters);
  return [
    {
      name: `${name}: first dispatch of a server's life (1 s after connect; 3 servers) vs later ones`,
      value: `${spread(firsts)} vs ${spread(laters)}: ${ratio.toFixed(1)}×`,
      goal: '≤ 3×',
      ok: ratio <= 3,
    },
    { name: `${name}: first dispatch sent right after initialize (it waits for the recovery)`, value: spread(atOnce) },
  ];
}

/**
 * How fast the server is there for a client that starts it: initialize and tools/list beside a
 * minimal server on the same SDK, then how long the first dispatch of a server's life takes to
 * return its job handle against later ones (a bundled worker, and the LM Studio double).
 */
export async function benchStart(): Promise<BenchRow[]> {
  const rows = await handshakeRows();
  rows.push(
    ...(await dispatchRows('run_script_batch (code_stats.py, warm)', [], {
      tool: 'run_script_batch',
      args: { worker: 'code_stats.py', inputs: [{ args: ['src/cli.ts'] }] },
    })),
  );
  const double = await LmStudioDouble.start();
  try {
    rows.push(
      ...(await dispatchRows('lmstudio_complete (LM Studio double)', ['--endpoint', `lmstudio=${double.url}`], {
        tool: 'lmstudio_complete',
        args: { prompts: [{ id: 'p', prompt: 'Say hi.' }], max_tokens: 5 },
      })),
    );
  } finally {
    await double.close();
  }
  return rows;
}
