import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../src/log.js';
import type { JobMeta, TaskRecord } from '../../src/store/records.js';
import { JobStore } from '../../src/store/store.js';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { type BenchRow, type BenchServer, startServer } from './common.js';

const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
const OLD_JOBS = 1000;

/** A heavy week at the default retention: finished jobs of 3 tasks each, written as a server would. */
export async function seedOldJobs(stateDir: string): Promise<void> {
  const store = new JobStore(stateDir, silentLogger);
  await store.init();
  const day = 86_400_000;
  for (let i = 0; i < OLD_JOBS; i++) {
    const created = new Date(Date.now() - day * (i / OLD_JOBS) * 5).toISOString();
    const meta: JobMeta = {
      id: JobStore.newJobId(),
      kind: 'script',
      label: `old ${i}`,
      createdAt: created,
      finishedAt: created,
      taskCount: 3,
      concurrency: 3,
      options: { worker: 'noop.sh', cwd: repoRoot, timeout_seconds: 60 },
      peakRunning: 3,
    };
    await store.createJob(meta, [{}, {}, {}]);
    const records: TaskRecord[] = [0, 1, 2].map((index) => ({
      index,
      state: 'succeeded',
      attempt: 1,
      finishedAt: created,
      durationMs: 5,
      value: { exit_code: 0, json: {} },
    }));
    await store.appendResults(meta.id, records);
  }
  await store.flush();
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/**
 * Is the server responsive while it works hard? A 64-wide, 5,000-task job runs, a second server
 * works on the same state directory, and 1,000 older finished jobs sit there: list_jobs and
 * collect_results (wait 0) must stay fast, and the event loop free.
 */
export async function benchResponsiveness(): Promise<BenchRow[]> {
  const dir = await makeTempDir('monitor-bench-resp-');
  const stateDir = path.join(dir, 'state');
  const statsFile = path.join(dir, 'loop.json');
  const servers: BenchServer[] = [];
  const rows: BenchRow[] = [];
  try {
    const seedStart = performance.now();
    await seedOldJobs(stateDir);
    const seedMs = performance.now() - seedStart;
    const args = ['--state-dir', stateDir, '--workers-dir', fixtures, '--max-concurrency', '64'];
    const startA = performance.now();
    const a = await startServer(args, { MONITOR_EVENT_LOOP_STATS: statsFile });
    servers.push(a);
    const startupMs = performance.now() - startA;
    const b = await startServer(args);
    servers.push(b);
    const big = jobIdOf(
      await a.call('run_script_batch', {
        worker: 'noop.sh',
        inputs: Array.from({ length: 5000 }, () => ({})),
        concurrency: 64,
      }),
    );
    jobIdOf(
      await b.call('run_script_batch', {
        worker: 'noop.sh',
        inputs: Array.from({ length: 1000 }, () => ({})),
        concurrency: 16,
      }),
    );

    const lists: number[] = [];
    const collects: number[] = [];
    const pings: number[] = [];
    const deadline = Date.now() + 300_000;
    for (;;) {
      lists.push(await timed(() => a.call('list_jobs', {})));
      collects.push(
        await timed(() => a.call('collect_results', { job_ids: [big], wait_seconds: 0, budget_tokens: 500 })),
      );
      pings.push(await timed(() => a.client.ping()));
      const page = await a.call('collect_results', { job_ids: [big], wait_seconds: 0, budget_tokens: 200 });
      if ((page.structuredContent as { done?: boolean }).done || Date.now() > deadline) break;
      await sleep(100);
    }
    for (const server of servers.splice(0)) await server.close();
    // The server writes its event-loop figures as it exits.
    let loop: { p50: number; p99: number; max: number } | undefined;
    for (let i = 0; i < 100 && !loop; i++) {
      loop = await readFile(statsFile, 'utf8').then(
        (t) => JSON.parse(t) as { p50: number; p99: number; max: number },
        () => undefined,
      );
      if (!loop) await sleep(100);
    }

    const label = `while a 64-wide 5,000-task job runs, a second server works and ${OLD_JOBS} old jobs sit there`;
    const row = (name: string, samples: number[]): BenchRow => {
      const p99 = percentile(samples, 99);
      return {
        name: `${name} ${label}: p50 / p99`,
        value: `${Math.round(percentile(samples, 50))} / ${Math.round(p99)} ms (${samples.length} calls)`,
        goal: 'p99 under 100 ms',
        ok: p99 < 100,
      };
    };
    rows.push(row('list_jobs', lists));
    rows.push(row('collect_results (wait 0)', collects));
    rows.push({
      name: `MCP ping round trip ${label}: p50 / p99`,
      value: `${Math.round(percentile(pings, 50))} / ${Math.round(percentile(pings, 99))} ms`,
    });
    rows.push({
      name: 'event-loop delay of that server over the run (monitorEventLoopDelay): p50 / p99 / max',
      value: loop ? `${loop.p50} / ${loop.p99} / ${loop.max} ms` : 'not written',
    });
    rows.push({
      name: `server start with ${OLD_JOBS} old jobs in the state directory (to its first reply)`,
      value: `${Math.round(startupMs)} ms (seeding them took ${Math.round(seedMs)} ms)`,
    });
  } finally {
    for (const server of servers) await server.close();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
