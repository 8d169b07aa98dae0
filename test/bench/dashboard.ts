import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { dashboardAssets } from '../../src/dashboard/assets.js';
import { LivePublisher } from '../../src/live/publisher.js';
import { silentLogger } from '../../src/log.js';
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

export async function benchDashboard(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
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
