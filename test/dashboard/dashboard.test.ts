import { appendFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LivePublisher } from '../../src/live/publisher.js';
import { silentLogger } from '../../src/log.js';
import type { LiveTaskProgress } from '../../src/store/records.js';
import { JobStore } from '../../src/store/store.js';
import { LmStudioDouble } from '../fixtures/lmstudio-double.js';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { chromiumPath, type RunningDashboard, startDashboard } from '../helpers/dashboard.js';

if (!chromiumPath)
  console.warn(
    "SKIPPED: the dashboard's browser tests need chromium (apt install chromium, or CHROMIUM_PATH); .ci/run installs it.",
  );

const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');

describe.skipIf(!chromiumPath)('the live dashboard in a real browser (headless chromium)', () => {
  let double: LmStudioDouble;
  let stateDir = '';
  let client: Client;
  let dashboard: RunningDashboard;
  let browser: Browser;
  let page: Page;
  const call = async (name: string, args: Record<string, unknown>): Promise<CallToolResult> =>
    (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as CallToolResult;

  beforeAll(async () => {
    double = await LmStudioDouble.start({ latencyMs: 2500 });
    stateDir = await makeTempDir('monitor-dashboard-');
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        cli,
        '--state-dir',
        stateDir,
        '--workers-dir',
        fixtures,
        '--endpoint',
        `lmstudio=${double.url}@4`,
        '--log-level',
        'warn',
      ],
      cwd: repoRoot,
      stderr: 'pipe',
    });
    client = new Client({ name: 'dashboard-test', version: '0' });
    await client.connect(transport);
    dashboard = await startDashboard(stateDir);
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--disable-gpu'] });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(dashboard.url);
    await page.waitForSelector('#connection.live', { timeout: 20_000 });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await client?.close();
    await double?.close();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  }, 30_000);

  // The token, Host and Origin checks and the headers are plain HTTP: test/dashboard/http.test.ts.
  it('moves the token out of the address bar into its cookie, and the page stays live on it', async () => {
    expect(new URL(page.url()).search).toBe('');
    expect((await page.context().cookies()).map((c) => [c.name, c.httpOnly, c.sameSite, c.path])).toEqual([
      [`monitor_dashboard_${new URL(dashboard.url).port}`, true, 'Strict', '/'],
    ]);
    await page.reload();
    await page.waitForSelector('#connection.live', { timeout: 20_000 });
  });

  it('keeps two dashboards on two ports working side by side in one browser (a cookie each)', async () => {
    const otherDir = await makeTempDir('monitor-dashboard-second-');
    const second = await startDashboard(otherDir);
    const context = await browser.newContext();
    try {
      const first = await context.newPage();
      await first.goto(dashboard.url);
      await first.waitForSelector('#connection.live', { timeout: 20_000 });
      const other = await context.newPage();
      await other.goto(second.url);
      await other.waitForSelector('#connection.live', { timeout: 20_000 });
      // Each page, reloaded without its token (the address bar no longer has it), is still its own dashboard's.
      for (const [tab, dir] of [
        [first, stateDir],
        [other, otherDir],
      ] as const) {
        await tab.reload();
        await tab.waitForSelector('#connection.live', { timeout: 20_000 });
        const status = await tab.evaluate("fetch('/api/jobs').then((r) => r.status)");
        expect(status).toBe(200);
        await expect.poll(async () => tab.locator('#footer').innerText(), { timeout: 20_000 }).toContain(dir);
      }
      expect((await context.cookies()).map((c) => c.name).sort()).toEqual(
        [`monitor_dashboard_${new URL(dashboard.url).port}`, `monitor_dashboard_${new URL(second.url).port}`].sort(),
      );
    } finally {
      await context.close();
      await second.close();
      await rm(otherDir, { recursive: true, force: true });
    }
  }, 60_000);

  it("counts a running job's elapsed time on in the page, with no new event from the server until a result", async () => {
    const quietDir = await makeTempDir('monitor-dashboard-quiet-');
    const quiet = await startDashboard(quietDir);
    const store = new JobStore(quietDir, silentLogger);
    const jobId = JobStore.newJobId();
    const createdAt = new Date(Date.now() - 65_000).toISOString();
    await store.createJob(
      { id: jobId, kind: 'script', createdAt, taskCount: 3, concurrency: 1, ownerPid: process.pid },
      [0, 1, 2],
    );
    const tab = await browser.newPage();
    try {
      // The events the page's EventSource receives, as the browser's network layer sees them.
      const cdp = await tab.context().newCDPSession(tab);
      const events: string[] = [];
      cdp.on('Network.eventSourceMessageReceived', (message) => events.push(message.eventName));
      await cdp.send('Network.enable');
      await tab.goto(quiet.url);
      const row = tab.locator(`tr[data-job="${jobId}"]`);
      await row.waitFor({ timeout: 20_000 });
      const elapsed = row.locator('td.elapsed');
      const seen = await elapsed.innerText();
      expect(seen).toMatch(/^1 min \d+ s$/);
      // It ticks in the page: two more seconds shown, while the server sent nothing new.
      const seconds = (text: string): number => Number(/(\d+) s$/.exec(text)?.[1]);
      await expect
        .poll(async () => seconds(await elapsed.innerText()), { timeout: 20_000 })
        .toBeGreaterThanOrEqual(seconds(seen) + 2);
      expect(events).toEqual(['state']);
      await store.appendResult(jobId, {
        index: 0,
        state: 'succeeded',
        attempt: 1,
        finishedAt: new Date().toISOString(),
      });
      await expect.poll(async () => row.locator('td.done').innerText(), { timeout: 20_000 }).toBe('1/3');
      expect(events).toEqual(['state', 'state']);
    } finally {
      await tab.close();
      await quiet.close();
      await rm(quietDir, { recursive: true, force: true });
    }
  }, 60_000);

  it("shows a running job's progress advancing, then its failures grouped by error code", async () => {
    // Eight tasks, two at a time, a failure every other one.
    const jobId = jobIdOf(
      await call('run_script_batch', {
        worker: 'emit.py',
        inputs: Array.from({ length: 8 }, (_, i) => ({ args: [`t${i}`, String(i % 2), '0', '0.6'] })),
        concurrency: 2,
        label: 'progress test',
      }),
    );
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.waitFor({ timeout: 20_000 });
    const done = async (): Promise<number> =>
      Number(((await row.locator('td.done').textContent()) ?? '0/8').split('/')[0]);
    await expect.poll(done, { timeout: 30_000 }).toBeGreaterThan(0);
    const seen = await done();
    await expect.poll(done, { timeout: 30_000 }).toBeGreaterThan(seen);
    await expect.poll(async () => row.locator('.state').textContent(), { timeout: 30_000 }).toBe('failed');
    await expect
      .poll(async () => (await row.locator('.failures').textContent()) ?? '', { timeout: 10_000 })
      .toMatch(/^NON_ZERO_EXIT ×4 emit\.py exited with code 1/);
  }, 90_000);

  it("shows an LLM endpoint's busy slots as its live card, from the server's live figures", async () => {
    await call('lmstudio_complete', {
      prompts: Array.from({ length: 6 }, (_, i) => ({ prompt: `slow ${i}` })),
      label: 'slots test',
    });
    const card = page.locator('.card[data-kind="llm"][data-card="lmstudio"]');
    await card.waitFor({ timeout: 20_000 });
    await expect.poll(async () => card.locator('.slots span.busy').count(), { timeout: 20_000 }).toBe(4);
    expect(await card.locator('.slots-text').textContent()).toMatch(/^4\/4 slots busy, \d+ waiting, \d+ tok\/s now/);
    // What the card's own probe read of the server, and how long ago.
    expect(await card.locator('.models').textContent()).toMatch(
      /^llm · lmstudio · 4 slots · test-model \(context 4096\) · checked \d+ s ago$/,
    );
    // Every kind draws its card the same way: the script pool's is there too, idle.
    const scripts = page.locator('.card[data-kind="script"][data-card="scripts"]');
    expect(await scripts.locator('.slots-text').textContent()).toMatch(/^\d+\/\d+ slots busy, \d+ tasks\/s now/);
  }, 60_000);

  it("renders an XSS payload in a worker's output as text, and stops a job with its Cancel button", async () => {
    const payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
    const jobId = jobIdOf(
      await call('run_script_batch', {
        worker: 'emit.py',
        inputs: [{ args: [payload] }, { args: ['long', '0', '0', '60'] }],
        concurrency: 2,
        label: '<b>label</b>',
      }),
    );
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.waitFor({ timeout: 20_000 });
    await row.click();
    await page
      .locator('#tasks tr[data-task="0"] pre.preview')
      .filter({ hasText: 'onerror' })
      .waitFor({ timeout: 20_000 });
    // The worker printed it inside JSON: there, as text, quotes escaped.
    expect(await page.locator('#tasks tr[data-task="0"] pre.preview').textContent()).toContain(
      '{"label":"<img src=x onerror=\\"window.__pwned=1\\"><script>window.__pwned=2</script>"',
    );
    expect(await page.locator('#tasks tr[data-task="0"] td.mono').first().textContent()).toBe(payload);
    expect(await row.locator('.label').first().textContent()).toBe('<b>label</b>');
    expect(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.locator('#tasks img, #jobs b').count()).toBe(0);

    await row.locator('button[data-action="cancel"]').click();
    await expect.poll(async () => row.locator('.state').textContent(), { timeout: 20_000 }).toBe('cancelled');
    const listed = (await call('list_jobs', {})).structuredContent as {
      jobs: Array<{ job_id: string; state: string }>;
    };
    expect(listed.jobs.find((job) => job.job_id === jobId)?.state).toBe('cancelled');
    await expect
      .poll(async () => page.locator('#message').textContent(), { timeout: 10_000 })
      .toMatch(new RegExp(`^Cancelled ${jobId}`));
  }, 90_000);

  it("shows a running task's progress, and opens its transcript whose hostile text stays text", async () => {
    // A job run by this test process (alive, so the job is running) that publishes its task's progress
    // in its own live file, as a server's engine does for an agent's steps.
    const store = new JobStore(stateDir, silentLogger);
    const jobId = JobStore.newJobId();
    const createdAt = new Date().toISOString();
    await store.createJob(
      { id: jobId, kind: 'llm', createdAt, taskCount: 2, concurrency: 2, ownerPid: process.pid },
      [1, 2],
    );
    const hostile = '<img src=x onerror="window.__pwned=3">';
    const transcript = path.join(store.outputDir(jobId), '0.transcript.jsonl');
    const line = (value: unknown): string => `${JSON.stringify(value)}\n`;
    await writeFile(transcript, line({ type: 'start', task: `find ${hostile}`, model: 'm', tools: ['grep'] }));
    let progress: LiveTaskProgress = {
      job_id: jobId,
      index: 0,
      summary: `step 1 · grep /${hostile}/ in src`,
      figures: { steps: 1, tokens_in: 812, last_tool: 'grep' },
      transcript,
      updated_at: new Date().toISOString(),
    };
    const live = new LivePublisher({
      stateDir,
      pid: process.pid,
      version: '0.0.0',
      log: silentLogger,
      intervalMs: 200,
      figures: () => ({}),
      tasks: () => [progress],
      handles: () => Promise.resolve(false),
      act: () => Promise.resolve({ ok: false, message: 'not here', by_pid: process.pid }),
    });
    await live.start();
    try {
      const row = page.locator(`tr[data-job="${jobId}"]`);
      await row.waitFor({ timeout: 20_000 });
      await expect
        .poll(async () => row.locator('.progress-line').textContent(), { timeout: 20_000 })
        .toBe(`1 reporting · #0: step 1 · grep /${hostile}/ in src`);
      await row.click();
      const task = page.locator('#tasks tr[data-task="0"]');
      await expect
        .poll(async () => task.locator('pre.progress').textContent(), { timeout: 20_000 })
        .toBe(`step 1 · grep /${hostile}/ in src\nsteps 1 · tokens_in 812 · last_tool grep`);
      expect(await task.locator('.state').textContent()).toBe('running');
      expect(await page.locator('#tasks tr[data-task="1"] button[data-action="transcript"]').count()).toBe(0);

      await task.locator('button[data-action="transcript"]').click();
      // The id as it is, not upper-cased like the section headings.
      await expect
        .poll(async () => page.locator('#transcript-title').innerText(), { timeout: 20_000 })
        .toBe(`Transcript of task 0 of ${jobId}`);
      const lines = page.locator('#transcript-lines li');
      await expect.poll(async () => lines.count(), { timeout: 20_000 }).toBe(1);
      expect(await lines.first().locator('.head').textContent()).toBe('start');
      expect(await lines.first().locator('.field').first().textContent()).toBe(`task: find ${hostile}`);

      // The agent goes on: its next step shows in the open transcript, which follows the running task.
      await appendFile(
        transcript,
        line({
          type: 'tool',
          step: 1,
          call_id: 'c1',
          name: 'grep',
          args: { pattern: hostile },
          ok: true,
          summary: hostile,
          preview: `<script>window.__pwned=4</script>`,
        }),
      );
      progress = {
        ...progress,
        summary: 'step 2 · finish',
        figures: { steps: 2 },
        updated_at: new Date().toISOString(),
      };
      await expect.poll(async () => lines.count(), { timeout: 20_000 }).toBe(2);
      const tool = lines.nth(1);
      expect(await tool.locator('.head').textContent()).toBe('step 1 · tool');
      expect(await tool.locator('.field').allTextContents()).toEqual([
        'name: grep',
        'ok: true',
        `summary: ${hostile}`,
        `args: {"pattern":${JSON.stringify(hostile)}}`,
        'call_id: c1',
        'preview: <script>window.__pwned=4</script>',
      ]);
      expect(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined();
      expect(await page.locator('#transcript img, #transcript script, #tasks img, #jobs img').count()).toBe(0);
    } finally {
      await live.close();
    }
  }, 90_000);

  it("shows a job's case-sensitive id as it is, and its few failures among 300 tasks alone (Failures only)", async () => {
    // A finished job written to the state directory as a server writes it; its id with lower-case letters.
    const store = new JobStore(stateDir, silentLogger);
    let jobId = JobStore.newJobId();
    while (!/[a-z]/.test(jobId.slice(4))) jobId = JobStore.newJobId();
    const createdAt = new Date(Date.now() - 90_000).toISOString();
    const inputs = Array.from({ length: 300 }, (_, i) => i);
    await store.createJob(
      {
        id: jobId,
        kind: 'script',
        label: 'many',
        createdAt,
        finishedAt: new Date().toISOString(),
        taskCount: 300,
        concurrency: 4,
        options: {},
      },
      inputs,
    );
    const failing = new Set([7, 250, 299]);
    await store.appendResults(
      jobId,
      inputs.map((index) => ({
        index,
        attempt: 1,
        finishedAt: new Date().toISOString(),
        durationMs: 89_400,
        ...(failing.has(index)
          ? { state: 'failed' as const, error: { code: 'NON_ZERO_EXIT', message: `task ${index} exited with code 1` } }
          : { state: 'succeeded' as const }),
      })),
    );
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.waitFor({ timeout: 20_000 });
    // What the eye sees (innerText applies CSS text-transform), not only the DOM's text.
    expect(await row.locator('.mono').first().innerText()).toBe(jobId);
    await row.click();
    const title = page.locator('#detail-title');
    await expect.poll(async () => title.innerText(), { timeout: 20_000 }).toBe(`${jobId} — many (script, failed)`);
    const rows = page.locator('#tasks tbody tr');
    await expect.poll(async () => rows.count(), { timeout: 20_000 }).toBe(200);
    // In index order only the first page's failure shows; the toggle names how many there are.
    expect(await page.locator('#tasks tbody tr .state.failed').count()).toBe(1);
    expect(await page.locator('#tasks tr[data-task="0"] td').nth(3).textContent()).toBe('1 min 29 s');
    const toggle = page.locator('#failed-only-box');
    expect(await toggle.isVisible()).toBe(true);
    expect((await toggle.innerText()).trim()).toBe('Failures only (3 of 300)');
    await page.locator('#failed-only').check();
    await expect
      .poll(async () => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-task'))), { timeout: 20_000 })
      .toEqual(['7', '250', '299']);
    expect(await page.locator('#detail-note').textContent()).toMatch(/^300\/300 done; its 3 failed task\(s\)/);
    expect(await page.locator('#tasks tr[data-task="250"] pre.preview').textContent()).toBe(
      'NON_ZERO_EXIT: task 250 exited with code 1',
    );
    await page.locator('#failed-only').uncheck();
    await expect.poll(async () => rows.count(), { timeout: 20_000 }).toBe(200);

    // From the job list: a click on a job's failures opens it with its failures alone.
    const otherId = JobStore.newJobId();
    await store.createJob({ id: otherId, kind: 'script', createdAt, taskCount: 1, concurrency: 1, options: {} }, [0]);
    await page.locator(`tr[data-job="${otherId}"]`).click();
    await expect.poll(async () => title.innerText(), { timeout: 20_000 }).not.toContain(jobId);
    await row.locator('.failures').click();
    await expect
      .poll(async () => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-task'))), { timeout: 20_000 })
      .toEqual(['7', '250', '299']);
    expect(await page.locator('#failed-only').isChecked()).toBe(true);
  }, 60_000);

  it('says so when its state directory does not exist or is empty, rather than an empty table', async () => {
    const empty = await makeTempDir('monitor-dashboard-empty-');
    const missing = path.join(empty, 'typo');
    const other = await browser.newPage();
    const boards: RunningDashboard[] = [];
    try {
      for (const [dir, note] of [
        [missing, 'the folder does not exist'],
        [empty, 'the folder is empty'],
      ] as const) {
        const board = await startDashboard(dir);
        boards.push(board);
        await other.goto(board.url);
        await other.waitForSelector('#connection.live', { timeout: 20_000 });
        await expect
          .poll(async () => other.locator('#empty').innerText(), { timeout: 20_000 })
          .toBe(`No jobs in ${dir} (${note}).`);
        expect(await other.locator('#jobs tbody tr').count()).toBe(0);
      }
    } finally {
      await other.close();
      await Promise.all(boards.map((board) => board.close()));
      await rm(empty, { recursive: true, force: true });
    }
  }, 60_000);

  it('takes the README screenshot on a demo job', async () => {
    const jobId = jobIdOf(
      await call('run_script_batch', {
        worker: 'emit.py',
        inputs: Array.from({ length: 30 }, (_, i) => ({ args: [`file${i}.ts`, i % 7 === 3 ? '1' : '0', '0', '0.3'] })),
        concurrency: 3,
        label: 'analyse src/ (demo)',
      }),
    );
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.waitFor({ timeout: 20_000 });
    // Mid-run: some done, some failed, the rest still running.
    await expect
      .poll(async () => Number(((await row.locator('td.done').textContent()) ?? '0/30').split('/')[0]), {
        timeout: 30_000,
      })
      .toBeGreaterThanOrEqual(10);
    const docs = path.join(repoRoot, 'docs');
    await mkdir(docs, { recursive: true });
    if (process.env.DASHBOARD_SCREENSHOT)
      await page.screenshot({ path: path.join(docs, 'dashboard.png'), fullPage: false });
    expect(await page.locator(`tr[data-job="${jobId}"] .state`).textContent()).toMatch(/^(running|failed)$/);
  }, 60_000);
});
