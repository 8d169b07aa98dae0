import { request } from 'node:http';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LmStudioDouble } from '../fixtures/lmstudio-double.js';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { chromiumPath, type RunningDashboard, startDashboard } from '../helpers/dashboard.js';
import { until } from '../helpers/scripts.js';

if (!chromiumPath)
  console.warn(
    "SKIPPED: the dashboard's browser tests need chromium (apt install chromium, or CHROMIUM_PATH); .ci/run installs it.",
  );

const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');

/** A raw request, so Host and Origin can be anything (fetch would set them itself). */
function raw(
  base: string,
  pathname: string,
  headers: Record<string, string>,
  method = 'GET',
): Promise<{ status: number; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: pathname, method, headers }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

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

  it('refuses a request without the token, from a foreign Host (DNS rebinding) or Origin (CSRF), and serves a strict CSP', async () => {
    const host = new URL(dashboard.base).host;
    expect((await raw(dashboard.base, '/api/jobs', { host })).status).toBe(401);
    expect((await raw(dashboard.base, `/api/jobs?token=${dashboard.token}x`, { host })).status).toBe(401);
    expect(
      (await raw(dashboard.base, `/api/jobs?token=${dashboard.token}`, { host: 'attacker.example:80' })).status,
    ).toBe(403);
    expect(
      (await raw(dashboard.base, `/api/jobs?token=${dashboard.token}`, { host, origin: 'http://attacker.example' }))
        .status,
    ).toBe(403);
    expect(
      (
        await raw(
          dashboard.base,
          `/api/jobs/job_AAAAAAAAAAAAAAAAAAAAAA/cancel?token=${dashboard.token}`,
          { host },
          'POST',
        )
      ).status,
    ).toBe(403);
    expect(
      (
        await raw(
          dashboard.base,
          `/api/jobs/job_AAAAAAAAAAAAAAAAAAAAAA/cancel?token=${dashboard.token}`,
          { host, origin: 'http://attacker.example' },
          'POST',
        )
      ).status,
    ).toBe(403);
    const ok = await raw(dashboard.base, `/api/jobs?token=${dashboard.token}`, { host });
    expect(ok.status).toBe(200);
    expect((JSON.parse(ok.body) as { state_dir: string }).state_dir).toBe(stateDir);
    // The page itself: the token left the address bar, and the CSP holds.
    expect(new URL(page.url()).search).toBe('');
    const response = await page.request.get(`${dashboard.base}/`);
    expect(response.headers()['content-security-policy']).toMatch(/default-src 'none'; script-src 'self'/);
  });

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

  it("shows an LLM endpoint's busy slots, from the server's live figures", async () => {
    await call('lmstudio_complete', {
      prompts: Array.from({ length: 6 }, (_, i) => ({ prompt: `slow ${i}` })),
      label: 'slots test',
    });
    const card = page.locator('.card[data-endpoint="lmstudio"]');
    await card.waitFor({ timeout: 20_000 });
    await expect.poll(async () => card.locator('.slots span.busy').count(), { timeout: 20_000 }).toBe(4);
    expect(await card.locator('.slots-text').textContent()).toMatch(/^4\/4 slots busy, \d+ waiting, \d+ tok\/s now/);
    expect(await card.locator('.models').textContent()).toBe('test-model');
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

describe("the dashboard's control path (no browser)", () => {
  it(
    "resumes a killed server's job through another running server, and says so when no server runs",
    { timeout: 120_000 },
    async () => {
      const stateDir = await makeTempDir('monitor-dashboard-control-');
      const dashboard = await startDashboard(stateDir);
      const host = new URL(dashboard.base).host;
      const post = (jobId: string, action: string): Promise<{ status: number; body: string }> =>
        raw(
          dashboard.base,
          `/api/jobs/${jobId}/${action}?token=${dashboard.token}`,
          { host, origin: `http://${host}` },
          'POST',
        );
      const servers: Array<{ client: Client; pid: number }> = [];
      const start = async (): Promise<{ client: Client; pid: number }> => {
        const transport = new StdioClientTransport({
          command: process.execPath,
          args: [cli, '--state-dir', stateDir, '--workers-dir', fixtures, '--log-level', 'warn'],
          cwd: repoRoot,
          stderr: 'pipe',
        });
        const client = new Client({ name: 'control-test', version: '0' });
        await client.connect(transport);
        const server = { client, pid: transport.pid ?? 0 };
        servers.push(server);
        return server;
      };
      try {
        const a = await start();
        const jobId = jobIdOf(
          (await a.client.callTool({
            name: 'run_script_batch',
            arguments: {
              worker: 'emit.py',
              inputs: [{ args: ['quick'] }, { args: ['slow', '0', '0', '0', '60'] }],
              concurrency: 2,
            },
          })) as CallToolResult,
        );
        // Killed once the slow task runs (its first attempt sleeps 60 s; a resumed one does not).
        await until(
          async () => {
            const jobs = (
              (await a.client.callTool({ name: 'list_jobs', arguments: {} })).structuredContent as {
                jobs: Array<{ counts: { succeeded: number; running: number } }>;
              }
            ).jobs;
            return (jobs[0]?.counts.succeeded ?? 0) === 1 && (jobs[0]?.counts.running ?? 0) === 1;
          },
          'the quick task done and the slow one running',
          30_000,
          100,
        );
        process.kill(a.pid, 'SIGKILL');
        // No server runs on the directory now: the request is withdrawn and the page told why.
        const nobody = await post(jobId, 'resume');
        expect(nobody.status).toBe(503);
        expect((JSON.parse(nobody.body) as { message: string }).message).toMatch(
          /^No running monitor-mcp server on .* took the resume within 5 s/,
        );
        const b = await start();
        const resumed = await post(jobId, 'resume');
        expect(resumed.status, resumed.body).toBe(200);
        expect(JSON.parse(resumed.body)).toMatchObject({
          ok: true,
          by_pid: b.pid,
          message: `Resumed ${jobId}: 1 task(s) queued again.`,
        });
        // B runs it now: its second attempt of the slow task is quick.
        const collected = (
          await b.client.callTool({ name: 'collect_results', arguments: { job_ids: [jobId], wait_seconds: 30 } })
        ).structuredContent as { jobs: Array<{ state: string }> };
        expect(collected.jobs[0]?.state).toBe('succeeded');
      } finally {
        for (const server of servers) {
          await server.client.close().catch(() => undefined);
          try {
            process.kill(server.pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
        await dashboard.close();
        await rm(stateDir, { recursive: true, force: true });
      }
    },
  );
});
