import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { type Browser, chromium, type Frame } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOBS_VIEW_URI } from '../../src/tools/ui.js';
import { LmStudioDouble } from '../fixtures/lmstudio-double.js';
import { type AppsHost, startAppsHost } from '../helpers/apps-host.js';
import { connectInMemory, type Connected, jobIdOf, repoRoot, testConfig } from '../helpers/client.js';
import { chromiumPath } from '../helpers/dashboard.js';
import { e2eWorkers, fixtureWorkers } from '../helpers/scripts.js';

if (!chromiumPath)
  console.warn(
    "SKIPPED: the jobs view's browser tests need chromium (apt install chromium, or CHROMIUM_PATH); .ci/run installs it.",
  );

const PAYLOAD = '<img src=x onerror="window.__pwned=1">';

/** The view's "N/M done" chip, as numbers. */
async function doneOf(frame: Frame): Promise<{ done: number; total: number }> {
  const text =
    (await frame
      .locator('#counts .chip.total')
      .textContent({ timeout: 1000 })
      .catch(() => '')) ?? '';
  const match = /^(\d+)\/(\d+) done$/.exec(text);
  return { done: Number(match?.[1] ?? -1), total: Number(match?.[2] ?? -1) };
}

/** Each failure row of the view: its code, its count, the text of its examples. */
async function failureRows(frame: Frame): Promise<Array<{ code: string; count: string; examples: string[] }>> {
  return frame.locator('#failures tr').evaluateAll((rows) =>
    rows.map((row) => ({
      code: row.getAttribute('data-code') ?? '',
      count: row.querySelector('.count')?.textContent ?? '',
      examples: [...row.querySelectorAll('.example')].map((e) => e.textContent ?? ''),
    })),
  );
}

describe.skipIf(!chromiumPath)('the jobs view (MCP App) in a sandboxed iframe of a real host page', () => {
  let double: LmStudioDouble;
  let connected: Connected;
  let browser: Browser;
  let host: AppsHost;
  let html = '';
  const call = (name: string, args: Record<string, unknown>): Promise<CallToolResult> => connected.call(name, args);

  beforeAll(async () => {
    double = await LmStudioDouble.start({
      latencyMs: 900,
      slots: 4,
      models: [{ id: 'qwen3-coder-30b', contextLength: 16384 }],
    });
    const config = await testConfig(
      (c) => {
        c.workersDirs = [...c.workersDirs, fixtureWorkers, e2eWorkers];
        c.script.searchPath = process.env.PATH ?? '/usr/bin:/bin';
        c.script.nodePath = process.execPath;
        c.script.killGraceSeconds = 0.5;
      },
      ['--endpoint', `gpu-box=${double.url}@4`],
    );
    connected = await connectInMemory(config, { env: { PATH: process.env.PATH } });
    const read = await connected.client.readResource({ uri: JOBS_VIEW_URI });
    const content = read.contents[0];
    html = content && 'text' in content ? content.text : '';
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--disable-gpu'] });
    // The view's tools/call go to the real server through a real MCP client, as a host forwards them.
    host = await startAppsHost(browser, async (params) => (await connected.client.callTool(params)) as CallToolResult);
  }, 60_000);

  afterAll(async () => {
    await host?.close();
    await browser?.close();
    await connected?.close();
    await double?.close();
  }, 30_000);

  it('follows a running script job through the host: counts advance, failures grouped by code, labels stay text, nothing leaves the machine', async () => {
    // Ten tasks two at a time: four exit 1 (one of them labelled with markup), one outlives its timeout.
    const input = {
      worker: 'emit.py',
      inputs: Array.from({ length: 10 }, (_, i) => ({
        args: [
          i === 2 ? PAYLOAD : `src/module${i}.ts`,
          [1, 2, 4, 7].includes(i) ? '1' : '0',
          '0',
          i === 5 ? '30' : '0.4',
        ],
      })),
      concurrency: 2,
      timeout_seconds: 3,
      label: PAYLOAD,
    };
    const result = await call('run_script_batch', input);
    const jobId = jobIdOf(result);
    const frame = await host.open({ html, toolName: 'run_script_batch', input, result });

    await expect.poll(async () => frame.locator('#title').textContent(), { timeout: 20_000 }).toBe(PAYLOAD);
    expect(await frame.locator('#subtitle').textContent()).toBe(`${jobId} · script`);
    // It updates as the job progresses, while the status says it is live.
    await expect.poll(async () => (await doneOf(frame)).done, { timeout: 30_000 }).toBeGreaterThan(0);
    const seen = (await doneOf(frame)).done;
    expect(await frame.locator('#status').getAttribute('class')).toContain('live');
    await expect.poll(async () => (await doneOf(frame)).done, { timeout: 30_000 }).toBeGreaterThan(seen);

    await expect.poll(async () => frame.locator('#status').textContent(), { timeout: 40_000 }).toBe('failed');
    expect(await doneOf(frame)).toEqual({ done: 10, total: 10 });
    expect(await frame.locator('#counts .chip.succeeded b').textContent()).toBe('5');
    expect(await frame.locator('#counts .chip.failed b').textContent()).toBe('5');
    const rows = await failureRows(frame);
    expect(rows.map((row) => [row.code, row.count])).toEqual([
      ['NON_ZERO_EXIT', '×4'],
      ['TIMEOUT', '×1'],
    ]);
    // A few examples each, the task's label first: the markup shows as its own characters.
    expect(rows[0]?.examples.length).toBe(3);
    expect(rows[0]?.examples.some((text) => text.startsWith(PAYLOAD))).toBe(true);
    expect(rows[1]?.examples[0]).toMatch(/^src\/module5\.ts/);
    expect(await frame.locator('img, script:not([type])').count()).toBe(0);
    expect(await frame.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined();

    // It asked the server through the host, never waiting in a call, and stopped once the job finished.
    const asked = host.calls.filter((c) => c.name === 'collect_results');
    expect(asked.length).toBeGreaterThan(2);
    for (const c of asked) expect(c.arguments).toMatchObject({ job_ids: [jobId], wait_seconds: 0, filter: 'failed' });
    expect(await frame.locator('#status').getAttribute('class')).not.toContain('live');
    const calls = host.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 3500));
    expect(host.calls.length).toBe(calls);

    // Offline: every request was to the host page's own server, none was refused.
    expect(host.blocked).toEqual([]);
    expect(host.requests.every((url) => url.startsWith(`${host.origin}/`))).toBe(true);
    expect(host.errors).toEqual([]);
  }, 90_000);

  it('opened from list_jobs, lists the jobs and follows the one clicked', async () => {
    const input = { limit: 5 };
    const result = await call('list_jobs', input);
    const frame = await host.open({ html, toolName: 'list_jobs', input, result });
    const row = frame.locator('#jobs tr').first();
    await row.waitFor({ timeout: 20_000 });
    expect(await frame.locator('#title').textContent()).toBe('Jobs');
    expect(await row.locator('.label').textContent()).toBe(PAYLOAD);
    expect(await row.locator('.done').textContent()).toBe('10/10');
    await row.click();
    await expect.poll(async () => frame.locator('#title').textContent(), { timeout: 20_000 }).toBe(PAYLOAD);
    await expect.poll(async () => (await failureRows(frame)).length, { timeout: 20_000 }).toBe(2);
    await frame.locator('footer button').click();
    await expect.poll(async () => frame.locator('#title').textContent(), { timeout: 20_000 }).toBe('Jobs');
    expect(host.calls.some((c) => c.name === 'list_jobs' && c.arguments?.limit === 5)).toBe(true);
    expect(host.blocked).toEqual([]);
  }, 60_000);

  it("shows an LLM job's endpoint slots from lmstudio_models while it runs (and the README screenshot)", async () => {
    const prompts = Array.from({ length: 24 }, (_, i) => ({
      id: `src/${['engine', 'store', 'pools', 'tools'][i % 4]}/part${i}.ts`,
      prompt:
        i % 9 === 4
          ? `summarise part ${i} #fault:context`
          : i % 11 === 7
            ? `part ${i} #fault:crash`
            : `summarise part ${i}`,
    }));
    const input = { prompts, label: 'summarise src/ (24 parts)' };
    const result = await call('lmstudio_complete', input);
    const frame = await host.open({ html, toolName: 'lmstudio_complete', input, result });
    const card = frame.locator('.endpoint[data-endpoint="gpu-box"]');
    await card.waitFor({ timeout: 20_000 });
    await expect.poll(async () => card.locator('.slots span').count(), { timeout: 20_000 }).toBe(4);
    await expect.poll(async () => card.locator('.slots span.busy').count(), { timeout: 20_000 }).toBeGreaterThan(0);
    expect(await card.locator('.slots-text').textContent()).toMatch(/^[0-4]\/4 slots busy$/);
    expect(await card.locator('.facts-line').textContent()).toMatch(
      /^limit 4 \(config\) · (peak \d · )?qwen3-coder-30b \(context 16384\)$/,
    );
    // Mid-run, with failures shown: the README's picture.
    await expect.poll(async () => (await failureRows(frame)).length, { timeout: 30_000 }).toBeGreaterThan(0);
    await expect.poll(async () => (await doneOf(frame)).done, { timeout: 30_000 }).toBeGreaterThanOrEqual(8);
    if (process.env.JOBS_VIEW_SCREENSHOT) {
      const docs = path.join(repoRoot, 'docs', 'img');
      await mkdir(docs, { recursive: true });
      await host.page.locator('#view').screenshot({ path: path.join(docs, 'jobs-view.png') });
    }
    await expect
      .poll(async () => frame.locator('#status').textContent(), { timeout: 40_000 })
      .toMatch(/^(failed|succeeded)$/);
    expect(host.calls.some((c) => c.name === 'lmstudio_models')).toBe(true);
    expect(host.blocked).toEqual([]);
    expect(host.errors).toEqual([]);
  }, 90_000);
});
