import { describe, expect, it } from 'vitest';
import { DashboardData } from '../../../src/dashboard/data.js';
import type { Config } from '../../../src/registry.js';
import { LmStudioDouble, type DoubleOptions } from '../../fixtures/lmstudio-double.js';
import { cleanupsAfterEach } from '../../helpers/cleanup.js';
import { connectInMemory, jobIdOf, testConfig, textOf, type Connected } from '../../helpers/client.js';
import { collectAll, type CollectPage } from '../../helpers/collect.js';

const cleanups = cleanupsAfterEach();

async function double(options: DoubleOptions = {}): Promise<LmStudioDouble> {
  const d = await LmStudioDouble.start(options);
  cleanups.push(() => d.close());
  return d;
}

/** A server streaming answers to `doubles` (named a, b, …), with a stall limit of `stallSeconds`. */
async function connect(
  doubles: readonly LmStudioDouble[],
  stallSeconds: number,
  edit: (c: Config) => void = () => {},
): Promise<Connected> {
  const config = await testConfig((c) => {
    c.llm.endpoints = doubles.map((d, i) => ({
      name: String.fromCharCode(97 + i),
      url: d.url,
      concurrency: 2,
      models: [],
      flavor: 'lmstudio' as const,
      apiKeyEnv: 'LM_API_TOKEN',
    }));
    c.llm.stream = true;
    c.llm.stallSeconds = stallSeconds;
    edit(c);
  });
  const connected = await connectInMemory(config);
  cleanups.push(() => connected.close());
  return connected;
}

async function submit(c: Connected, prompt: string, extra: Record<string, unknown> = {}): Promise<string> {
  const reply = await c.call('lmstudio_complete', { prompts: [{ id: 'p', prompt }], model: 'test-model', ...extra });
  expect(reply.isError, textOf(reply)).toBeFalsy();
  return jobIdOf(reply);
}

const chats = (d: LmStudioDouble): Array<{ disconnected?: boolean }> =>
  d.requests.filter((r) => r.path === '/v1/chat/completions');

describe('a streamed answer that stalls', () => {
  it('is aborted after llm.stallSeconds of silence and sent once to another endpoint, whose answer is kept', async () => {
    // One count for both doubles: the first request anywhere stalls, the next answers.
    const faultCounts = new Map<string, number>();
    const [a, b] = [await double({ faultCounts }), await double({ faultCounts })];
    if (!a || !b) throw new Error('no doubles');
    const c = await connect([a, b], 1);
    const started = performance.now();
    const { results } = await collectAll(c, await submit(c, 'Say hi #fault:stall*1'));
    const [result] = results;
    expect(result?.state, JSON.stringify(result)).toBe('succeeded');
    const [stalled, answered] = chats(a)[0]?.disconnected ? [a, b] : [b, a];
    expect(chats(stalled)).toEqual([expect.objectContaining({ disconnected: true })]);
    expect(chats(answered)).toHaveLength(1);
    expect(chats(answered)[0]?.disconnected).toBeFalsy();
    expect(result?.value).toMatchObject({
      endpoint: answered === a ? 'a' : 'b',
      text: 'Answer to: Say hi #fault:stall*1',
      requests: 2,
    });
    // Aborted at the limit, not at the request timeout.
    expect(performance.now() - started).toBeLessThan(30_000);
  }, 60_000);

  it('fails STALLED, naming both endpoints and the seconds, when its retry stalls too', async () => {
    const [a, b] = [await double(), await double()];
    if (!a || !b) throw new Error('no doubles');
    const c = await connect([a, b], 1);
    const { results } = await collectAll(c, await submit(c, 'Say hi #fault:stall'));
    const [result] = results;
    expect(result?.state).toBe('failed');
    expect(result?.error?.code).toBe('STALLED');
    // One request on each endpoint: the retry went to the other one, and there was no third.
    expect(chats(a)).toHaveLength(1);
    expect(chats(b)).toHaveLength(1);
    const last = result?.value?.endpoint === 'a' ? 'a' : 'b';
    const first = last === 'a' ? 'b' : 'a';
    expect(result?.error?.message).toBe(
      `No token from endpoint ${last} for 1 s: the request was aborted. It was retried once after ${first} stalled the same way.`,
    );
    expect(result?.error?.hint).toMatch(/llm\.stallSeconds.*server log.*concurrency/);
  }, 60_000);

  it('is retried on the same endpoint when no other serves the model, apart from llm.maxRetries', async () => {
    const a = await double();
    const c = await connect([a], 1, (config) => {
      config.llm.maxRetries = 0;
    });
    const { results } = await collectAll(c, await submit(c, 'Say hi #fault:stall'));
    expect(results[0]?.error?.code).toBe('STALLED');
    expect(results[0]?.error?.message).toBe(
      'No token from endpoint a for 1 s: the request was aborted. It was retried once there.',
    );
    expect(chats(a)).toEqual([
      expect.objectContaining({ disconnected: true }),
      expect.objectContaining({ disconnected: true }),
    ]);
  }, 60_000);

  it('is not cut while tokens keep coming, however long the whole answer takes', async () => {
    // ~10 events 250 ms apart: 2.5 s in all against a 1 s limit.
    const a = await double({ tokenDelayMs: 250 });
    const c = await connect([a], 1);
    const { results } = await collectAll(c, await submit(c, 'Tell me about streams'));
    expect(results[0]?.state, JSON.stringify(results[0])).toBe('succeeded');
    expect(chats(a)).toHaveLength(1);
  }, 60_000);

  it('says "no tokens from <endpoint> for N s" in collect_results and on the dashboard while it waits', async () => {
    const a = await double();
    const c = await connect([a], 6);
    const jobId = await submit(c, 'Say hi #fault:stall');
    const dashboard = new DashboardData(c.config.stateDir, (pid) => pid === process.pid);
    const seen = { collect: '', text: '', card: '', job: '' };
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !(seen.collect && seen.card && seen.job)) {
      const reply = await c.call('collect_results', { job_ids: [jobId], wait_seconds: 0 });
      const notes = (reply.structuredContent as unknown as CollectPage).jobs[0]?.notes as string[] | undefined;
      if (notes?.[0]) {
        seen.collect = notes[0];
        seen.text = textOf(reply);
      }
      const state = await dashboard.snapshot(Date.now());
      const card = state.capacity.find((x) => x.kind === 'llm' && x.name === 'a');
      if (card?.detail?.includes('no tokens')) seen.card = card.detail;
      const job = state.jobs.find((x) => x.id === jobId);
      if (job?.progress?.latest.includes('no tokens')) seen.job = job.progress.latest;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(seen.collect).toMatch(/^task 0: no tokens from a for [3-6] s$/);
    expect(seen.text).toContain(`${jobId} now: task 0: no tokens from a for`);
    expect(seen.card).toMatch(/no tokens from a for [3-6] s/);
    expect(seen.job).toMatch(/^no tokens from a for [3-6] s$/);
    await c.call('cancel_job', { job_id: jobId });
    // Taken back once the request is over.
    const after = await c.call('collect_results', { job_ids: [jobId], wait_seconds: 10 });
    expect((after.structuredContent as unknown as CollectPage).jobs[0]?.notes).toBeUndefined();
  }, 60_000);

  it('leaves a non-streamed request to the request timeout: its silence cannot be told from a long generation', async () => {
    const a = await double();
    const c = await connect([a], 1, (config) => {
      config.llm.stream = false;
    });
    const { results } = await collectAll(c, await submit(c, 'Say hi #fault:stall', { timeout_seconds: 3 }));
    expect(results[0]?.error?.code).toBe('TIMEOUT');
  }, 60_000);
});
