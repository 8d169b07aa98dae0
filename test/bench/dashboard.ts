import { readFile, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { dashboardAssets } from '../../src/dashboard/assets.js';
import { LivePublisher } from '../../src/live/publisher.js';
import { silentLogger } from '../../src/log.js';
import { JobStore } from '../../src/store/store.js';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { chromiumPath, startDashboard } from '../helpers/dashboard.js';
import { type BenchRow, median, ms, startServer, waitDone } from './common.js';

const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');

/** CPU seconds (user + system) a process has used, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The 10,000-task job of the script bench, with the server's live figures on or off: wall time and the server's CPU. */
async function tenThousand(live: boolean): Promise<{ wallMs: number; cpuS: number }> {
  const stateDir = await makeTempDir('monitor-bench-live-');
  const server = await startServer(['--state-dir', stateDir, '--workers-dir', fixtures], {
    MONITOR_LIVE_FIGURES: live ? '1' : '0',
  });
  try {
    const start = performance.now();
    const cpuBefore = await cpuSeconds(server.pid);
    const jobId = jobIdOf(
      await server.call('run_script_batch', {
        worker: 'noop.sh',
        inputs: Array.from({ length: 10_000 }, () => ({})),
        concurrency: 8,
      }),
    );
    await waitDone(server, jobId);
    return { wallMs: performance.now() - start, cpuS: (await cpuSeconds(server.pid)) - cpuBefore };
  } finally {
    await server.close();
    await rm(stateDir, { recursive: true, force: true });
  }
}

/** A process's resident memory (MB), from /proc. */
async function rssMb(pid: number): Promise<number> {
  const kb = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

/** A client that asks for the event stream and never reads past the first chunk; its status. */
function stalledStream(port: number, token: string, sockets: Socket[]): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () =>
      socket.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nx-monitor-token: ${token}\r\n\r\n`),
    );
    sockets.push(socket);
    socket.on('error', () => resolve(0));
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(chunk.toString())?.[1] ?? 0));
    });
  });
}

/**
 * Issue 24: 40 jobs (a state of ~15 KB), one of them running and getting a result every 100 ms;
 * 300 clients open the event stream and never read. The dashboard's memory, and how many it took.
 * Then the bytes a reading page gets over 10 s while the job runs with nothing new.
 */
export async function benchDashboardStreams(): Promise<BenchRow[]> {
  const stateDir = await makeTempDir('monitor-bench-streams-');
  const store = new JobStore(stateDir, silentLogger);
  await store.init();
  const createdAt = new Date().toISOString();
  for (let i = 0; i < 39; i++)
    await store.createJob(
      { id: JobStore.newJobId(), kind: 'script', label: `job ${i}`, createdAt, taskCount: 10, concurrency: 2 },
      Array.from({ length: 10 }, (_, k) => k),
    );
  const running = JobStore.newJobId();
  await store.createJob(
    { id: running, kind: 'script', createdAt, taskCount: 1000, concurrency: 8, ownerPid: process.pid },
    Array.from({ length: 1000 }, (_, k) => k),
  );
  const dashboard = await startDashboard(stateDir);
  const pid = dashboard.process.pid ?? 0;
  const port = Number(new URL(dashboard.base).port);
  const sockets: Socket[] = [];
  const rows: BenchRow[] = [];
  try {
    const before = await rssMb(pid);
    const statuses = await Promise.all(
      Array.from({ length: 300 }, () => stalledStream(port, dashboard.token, sockets)),
    );
    let peak = before;
    for (let index = 0; index < 300; index++) {
      await store.appendResult(running, {
        index,
        state: 'succeeded',
        attempt: 1,
        finishedAt: new Date().toISOString(),
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (index % 10 === 0) peak = Math.max(peak, await rssMb(pid));
    }
    const after = await rssMb(pid);
    rows.push({
      name: '300 event streams that never read, 30 s of a state changing 10 times a second: taken | refused (503)',
      value: `${statuses.filter((s) => s === 200).length} | ${statuses.filter((s) => s === 503).length}`,
      goal: '32 | 268',
      ok: statuses.filter((s) => s === 200).length === 32,
    });
    rows.push({
      name: "the same: the dashboard's RSS before → peak → after",
      value: `${before.toFixed(0)} → ${peak.toFixed(0)} → ${after.toFixed(0)} MB`,
      goal: 'under +40 MB',
      ok: peak - before < 40,
    });
    for (const socket of sockets) socket.destroy();
    // A page that reads, for 10 s, while the job runs with no new result.
    let bytes = 0;
    const page = connect(port, '127.0.0.1', () =>
      page.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nx-monitor-token: ${dashboard.token}\r\n\r\n`),
    );
    page.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const first = bytes;
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    page.destroy();
    rows.push({
      name: 'bytes sent to a page in 10 s while a job runs with no new result (after its first state)',
      value: `${bytes - first} B (first state ${first} B)`,
      goal: 'under 1 KB',
      ok: bytes - first < 1024,
    });
  } finally {
    for (const socket of sockets) socket.destroy();
    await dashboard.close();
    await rm(stateDir, { recursive: true, force: true });
  }
  return rows;
}

export async function benchDashboard(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [...(await benchDashboardStreams())];
  let weight = 0;
  for (const file of Object.values(dashboardAssets(repoRoot))) weight += (await stat(file)).size;
  rows.push({
    name: 'page weight (HTML, JS, CSS, uPlot; uncompressed, from the package)',
    value: `${(weight / 1024).toFixed(1)} KB`,
    goal: 'under 150 KB',
    ok: weight < 150 * 1024,
  });

  if (chromiumPath) {
    const stateDir = await makeTempDir('monitor-bench-dashboard-');
    const server = await startServer(['--state-dir', stateDir, '--workers-dir', fixtures]);
    const dashboard = await startDashboard(stateDir);
    const browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--disable-gpu'] });
    try {
      const page = await browser.newPage();
      await page.goto(dashboard.url);
      await page.waitForSelector('#connection.live');
      // Page code as strings: this file is compiled without the DOM's types.
      const paint = (await page.evaluate(
        "performance.getEntriesByType('paint').find((entry) => entry.name === 'first-contentful-paint')?.startTime ?? -1",
      )) as number;
      rows.push({
        name: 'first contentful paint (headless chromium, loopback)',
        value: ms(paint),
        goal: 'under 500 ms',
        ok: paint >= 0 && paint < 500,
      });

      // Update latency: each task's finish (its record's finishedAt) to the page showing the new count.
      const tasks = 20;
      const jobId = jobIdOf(
        await server.call('run_script_batch', {
          worker: 'emit.py',
          inputs: Array.from({ length: tasks }, (_, i) => ({ args: [`t${i}`, '0', '0', '0.4'] })),
          concurrency: 1,
        }),
      );
      await page.waitForSelector(`tr[data-job="${jobId}"]`);
      await page.evaluate(`(() => {
        const seen = [];
        globalThis.__seen = seen;
        new MutationObserver(() => {
          const text = document.querySelector('tr[data-job="${jobId}"] td.done')?.textContent ?? '';
          const done = Number(text.split('/')[0]);
          if (!seen.some(([count]) => count === done)) seen.push([done, Date.now()]);
        }).observe(document.querySelector('#jobs tbody'), { childList: true, subtree: true, characterData: true });
      })()`);
      await waitDone(server, jobId);
      await page.waitForFunction(
        (n) =>
          ((globalThis as unknown as { __seen: Array<[number, number]> }).__seen ?? []).some(([count]) => count === n),
        tasks,
        { timeout: 10_000 },
      );
      const seen = await page.evaluate(() => (globalThis as unknown as { __seen: Array<[number, number]> }).__seen);
      const finished = (await readFile(path.join(stateDir, 'jobs', jobId, 'results.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((line) => Date.parse((JSON.parse(line) as { finishedAt: string }).finishedAt))
        .sort((a, b) => a - b);
      const latencies = finished
        .map((at, k) => (seen.find(([count]) => count === k + 1)?.[1] ?? Number.NaN) - at)
        .filter((value) => Number.isFinite(value));
      rows.push({
        name: `update latency, task finished → shown (${latencies.length} of ${tasks} counts seen; the page may skip one when two land in one poll)`,
        value: `p50 ${ms(median(latencies))}, max ${ms(Math.max(...latencies))}`,
        goal: 'p50 under 500 ms',
        ok: median(latencies) < 500,
      });
    } finally {
      await browser.close();
      await dashboard.close();
      await server.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  } else {
    rows.push({ name: 'browser figures: skipped', value: 'no chromium (apt install chromium, or CHROMIUM_PATH)' });
  }

  // Interleaved, so the machine's drift falls on both sides alike.
  const on: Array<{ wallMs: number; cpuS: number }> = [];
  const off: Array<{ wallMs: number; cpuS: number }> = [];
  for (let round = 0; round < 2; round++) {
    off.push(await tenThousand(false));
    on.push(await tenThousand(true));
  }
  const range = (values: number[], unit: (n: number) => string): string =>
    `${unit(Math.min(...values))}–${unit(Math.max(...values))}`;
  const seconds = (n: number): string => `${(n / 1000).toFixed(1)} s`;
  const cpu = (n: number): string => `${n.toFixed(1)} s`;
  rows.push({
    name: '10,000-task job: wall, live figures off | on (min–max of 2 interleaved runs each)',
    value: `${range(
      off.map((r) => r.wallMs),
      seconds,
    )} | ${range(
      on.map((r) => r.wallMs),
      seconds,
    )}`,
  });
  rows.push({
    name: '10,000-task job: server CPU, live figures off | on',
    value: `${range(
      off.map((r) => r.cpuS),
      cpu,
    )} | ${range(
      on.map((r) => r.cpuS),
      cpu,
    )}`,
  });

  // The publisher's own cost, apart from the noise of a 70 s job on a shared machine: one beat.
  const beatDir = await makeTempDir('monitor-bench-beat-');
  const publisher = new LivePublisher({
    stateDir: beatDir,
    pid: 1,
    version: 'bench',
    log: silentLogger,
    intervalMs: 3_600_000,
    figures: () => ({
      llm: [
        {
          name: 'lmstudio',
          detail: 'qwen3-8b',
          busy: 3,
          limit: 4,
          waiting: 2,
          rate: { unit: 'tok/s', series: Array.from({ length: 30 }, (_, i) => [i * 10_000, 40]) },
        },
      ],
    }),
    handles: () => Promise.resolve(false),
    act: () => Promise.resolve({ ok: true, message: '', by_pid: 1 }),
  });
  await publisher.start();
  const beats = 2000;
  const before = process.cpuUsage();
  for (let i = 0; i < beats; i++) await (publisher as unknown as { beat(): Promise<void> }).beat();
  const used = process.cpuUsage(before);
  await publisher.close();
  await rm(beatDir, { recursive: true, force: true });
  const perBeatMs = (used.user + used.system) / 1000 / beats;
  rows.push({
    name: 'one heartbeat (live file written atomically, control/ looked at), once a second',
    value: `${perBeatMs.toFixed(2)} ms CPU = ${(perBeatMs / 10).toFixed(3)}% of a core`,
    goal: 'under 0.5% of a core',
    ok: perBeatMs / 10 < 0.5,
  });
  return rows;
}
