import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sleep } from '../../src/pools/retry.js';
import { sendJson, startHttpServer } from '../fixtures/http-server.js';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { collectAll } from '../helpers/collect.js';
import { type BenchRow, type BenchServer, ms, startServer } from './common.js';

/**
 * How fast work stops: cancel_job on running tasks, timeout_seconds on tasks that resist, an HTTP
 * Retry-After too long to wait for. The tests assert that these stop (states, kills, hang-ups);
 * how fast is measured here, through the built server over stdio.
 */

const e2eWorkers = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
const workers = path.join(repoRoot, 'test', 'fixtures', 'workers');
const warmWorkers = path.join(repoRoot, 'test', 'fixtures', 'warm-workers');

interface JobView {
  state: string;
  counts: Record<string, number>;
}

/** Polls (every 20 ms, at most `timeoutMs`) until `check` holds. */
async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`bench: ${what} did not happen within ${timeoutMs} ms`);
}

async function jobView(server: BenchServer, jobId: string): Promise<JobView> {
  const reply = await server.call('collect_results', { job_ids: [jobId], wait_seconds: 0, budget_tokens: 200 });
  const job = (reply.structuredContent as { jobs: JobView[] }).jobs[0];
  if (!job) throw new Error(`bench: no job ${jobId}`);
  return job;
}

/** Submits, waits until `ready` holds for the job, then times cancel_job → collect_results showing it cancelled. */
async function timeCancel(
  server: BenchServer,
  tool: string,
  args: Record<string, unknown>,
  ready: (job: JobView) => boolean,
): Promise<number> {
  const reply = await server.call(tool, args);
  if (reply.isError) throw new Error(JSON.stringify(reply.content));
  const jobId = jobIdOf(reply);
  await until(async () => ready(await jobView(server, jobId)), `${tool}'s tasks to run`);
  const start = performance.now();
  await server.call('cancel_job', { job_id: jobId });
  const { job } = await collectAll(server, jobId, { waitSeconds: 30, budgetTokens: 200 });
  const took = performance.now() - start;
  if (job.state !== 'cancelled') throw new Error(`bench: ${jobId} ended ${job.state}, not cancelled`);
  return took;
}

/** Submit → the job done; throws unless its one task failed with `code`. */
async function timeFailure(
  server: BenchServer,
  tool: string,
  args: Record<string, unknown>,
  code: string,
): Promise<number> {
  const start = performance.now();
  const reply = await server.call(tool, args);
  if (reply.isError) throw new Error(JSON.stringify(reply.content));
  const { results } = await collectAll(server, jobIdOf(reply), { waitSeconds: 30, budgetTokens: 2000 });
  const took = performance.now() - start;
  const codes = results.map((r) => r.error?.code ?? r.state);
  if (!codes.includes(code)) throw new Error(`bench: expected ${code}, got ${codes.join(', ')}`);
  return took;
}

const row = (name: string, took: number, goalMs: number): BenchRow => ({
  name,
  value: ms(took),
  goal: `under ${ms(goalMs)}`,
  ok: took < goalMs,
});

export async function benchStops(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  // Answers nothing (/hang), or headers and a first chunk, then nothing (/slow-body); counts the hang-ups.
  let hungUp = 0;
  const http = await startHttpServer((req, res) => {
    res.on('close', () => {
      if (!res.writableFinished) hungUp++;
    });
    if (req.url === '/forever') return sendJson(res, 429, { error: 'come back later' }, { 'retry-after': '3600' });
    if (req.url?.startsWith('/slow-body')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
    }
  });
  const dir = await makeTempDir('monitor-bench-stops-');
  const configFile = path.join(dir, 'config.json');
  await writeFile(
    configFile,
    JSON.stringify({ http: { allowHosts: [http.hostEntry], allowPrivateAddresses: true, timeoutSeconds: 120 } }),
  );
  const server = await startServer([
    '--config',
    configFile,
    '--state-dir',
    path.join(dir, 'state'),
    '--workers-dir',
    e2eWorkers,
    '--workers-dir',
    workers,
    '--workers-dir',
    warmWorkers,
  ]);
  try {
    rows.push(
      row(
        'cancel_job: 2 running script tasks (60 s sleeps) and 2 queued → job cancelled',
        await timeCancel(
          server,
          'run_script_batch',
          {
            worker: 'emit.py',
            inputs: Array.from({ length: 4 }, (_, i) => ({ args: [`s${i}`, '0', '0', '60'] })),
            concurrency: 2,
          },
          (job) => job.counts.running === 2,
        ),
        1000,
      ),
    );
    const hangUpsBefore = hungUp;
    const httpCancel = await timeCancel(
      server,
      'http_batch',
      { requests: ['/hang/1', '/hang/2', '/slow-body/1', '/slow-body/2'].map((p) => ({ url: `${http.origin}${p}` })) },
      () => http.inFlight === 4,
    );
    await until(() => hungUp - hangUpsBefore === 4, 'the 4 requests to be hung up', 10_000);
    rows.push(
      row('cancel_job: 4 HTTP requests in flight (2 before headers, 2 mid-body) → job cancelled', httpCancel, 500),
    );

    const pidFile = path.join(dir, 'stubborn.pids');
    rows.push(
      row(
        'timeout_seconds 1: a script ignoring SIGTERM, with a child that does too → TIMEOUT after the 2 s kill grace (submit → result)',
        await timeFailure(
          server,
          'run_script_batch',
          { worker: 'stubborn.py', inputs: [{ args: [pidFile] }], timeout_seconds: 1 },
          'TIMEOUT',
        ),
        4000,
      ),
    );
    rows.push(
      row(
        "timeout_seconds 1: a warm worker's 60 s task → TIMEOUT (submit → result)",
        await timeFailure(
          server,
          'run_script_batch',
          { worker: 'warm_probe.py', inputs: [{ args: ['sleep', '60'] }], timeout_seconds: 1 },
          'TIMEOUT',
        ),
        2500,
      ),
    );
    rows.push(
      row(
        'timeout_seconds 0.5 on a pack of 2 (one sleeps): the pack killed at 1 s, the sleeper alone at 0.5 s',
        await timeFailure(
          server,
          'run_script_batch',
          {
            worker: 'pack_probe.py',
            inputs: [{ args: ['a'] }, { args: ['sleep'] }],
            timeout_seconds: 0.5,
            pack: 2,
            concurrency: 1,
          },
          'TIMEOUT',
        ),
        3000,
      ),
    );
    rows.push(
      row(
        'HTTP 429 with Retry-After: 3600 (over the 60 s the server waits) → failed at once',
        await timeFailure(server, 'http_batch', { requests: [{ url: `${http.origin}/forever` }] }, 'HTTP_ERROR'),
        500,
      ),
    );
    // The retry wait itself, in this process: an abort ends a 10 s sleep.
    const controller = new AbortController();
    const start = performance.now();
    const waiting = sleep(10_000, controller.signal).catch(() => undefined);
    controller.abort(new Error('stop'));
    await waiting;
    rows.push(row('a retry wait (10 s) aborted → ended', performance.now() - start, 50));
  } finally {
    await server.close();
    await http.close();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
