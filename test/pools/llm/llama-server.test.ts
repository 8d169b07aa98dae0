import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EndpointClient } from '../../../src/pools/llm/client.js';
import {
  connectInMemory,
  jobIdOf,
  makeTempDir,
  repoRoot,
  testConfig,
  textOf,
  type Connected,
} from '../../helpers/client.js';
import { type LlamaServer, llamaAvailable, llamaMissing, startLlama } from '../../helpers/llama.js';

if (!llamaAvailable) console.warn(`SKIPPED: ${llamaMissing}.`);

interface Result {
  index: number;
  state: string;
  value?: {
    text?: string;
    model?: string;
    endpoint?: string;
    finish_reason?: string;
    tokens_out?: number;
    ttft_ms?: number;
    duration_ms?: number;
  };
}

describe.skipIf(!llamaAvailable)('LLM pool against the real llama-server (tiny model, --parallel 4)', () => {
  let llama: LlamaServer | undefined;
  let c: Connected;
  let url = '';

  beforeAll(async () => {
    llama = await startLlama(4);
    url = llama.url;
    const config = await testConfig((cfg) => {
      cfg.llm.endpoints = [{ name: 'llama', url, concurrency: 4, models: [], flavor: 'openai' }];
    });
    c = await connectInMemory(config);
  }, 90_000);

  afterAll(async () => {
    await c?.close();
    await llama?.stop();
  }, 20_000);

  it('answers 16 prompts with the real model, up to 4 at once', async () => {
    const models = await c.call('lmstudio_models');
    expect(textOf(models)).toMatch(
      /llama \(llama-server, \S+, 4 slot\(s\), 0 busy, 4 at once \[config\].*reachable, 1 model\(s\)[\s\S]*tiny \(loaded, context 2048 per slot \[server\]/,
    );

    const submitted = await c.call('lmstudio_complete', {
      prompts: Array.from({ length: 16 }, (_, i) => ({ prompt: `Write a story about the number ${i}.` })),
      max_tokens: 256,
      temperature: 0,
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    expect(textOf(submitted)).toContain('Model tiny on llama');
    const jobId = jobIdOf(submitted);
    // The server's own view: how many of its slots decode at the same moment. Stops when the job is
    // done, when the test is over (finally) or at its own deadline, whichever comes first.
    const watching = new AbortController();
    const watchDeadline = Date.now() + 110_000;
    const slotWatch = (async (): Promise<number> => {
      let most = 0;
      while (!c.app.engine.isDone(jobId) && !watching.signal.aborted && Date.now() < watchDeadline) {
        const slots: unknown = await fetch(`${url}/slots`, { signal: AbortSignal.timeout(2000) })
          .then((r) => r.json())
          .catch(() => []);
        const busy = Array.isArray(slots)
          ? slots.filter(
              (slot: unknown) =>
                typeof slot === 'object' && slot !== null && 'is_processing' in slot && slot.is_processing === true,
            ).length
          : 0;
        most = Math.max(most, busy);
        await sleep(20);
      }
      return most;
    })();
    try {
      const results: Result[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 20; page++) {
        const reply = await c.call('collect_results', {
          job_ids: [jobId],
          wait_seconds: 45,
          ...(cursor ? { cursor } : {}),
        });
        const structured = reply.structuredContent as {
          jobs: Array<{ state: string }>;
          results: Result[];
          next_cursor?: string | null;
        };
        results.push(...structured.results);
        cursor = structured.next_cursor ?? undefined;
        if (!cursor && structured.jobs[0]?.state !== 'running' && structured.jobs[0]?.state !== 'queued') break;
      }
      expect(results).toHaveLength(16);
      for (const result of results) {
        expect(result.state).toBe('succeeded');
        expect(result.value?.model).toBe('tiny');
        expect(result.value?.endpoint).toBe('llama');
        // tiny never emits end-of-sequence: every answer runs to max_tokens.
        expect(result.value?.finish_reason).toBe('length');
        expect(result.value?.tokens_out).toBe(256);
        expect(result.value?.text?.length).toBeGreaterThan(0);
      }

      const busiest = await slotWatch;
      const models = await c.call('lmstudio_models', {});
      const sent = (
        models.structuredContent as { endpoints: Array<{ name: string; peak_in_flight: number }> }
      ).endpoints.find((e) => e.name === 'llama')?.peak_in_flight;
      console.info(
        `llama-server: at most ${busiest} slots processing at once; at most ${sent} requests in flight (limit 4)`,
      );
      expect(sent).toBe(4);
      expect(busiest).toBeGreaterThanOrEqual(2);
      expect(busiest).toBeLessThanOrEqual(4);
    } finally {
      watching.abort();
      await slotWatch;
    }
  }, 120_000);

  it("reads the real server's streamed answers (SSE) and JSON answers alike", async () => {
    for (const stream of [true, false]) {
      const client = new EndpointClient({
        endpoint: { name: 'llama', url, concurrency: 4, models: [], flavor: 'openai' },
        requestTimeoutMs: 30_000,
        stream,
      });
      try {
        const answer = await client.chat(
          { model: 'tiny', messages: [{ role: 'user', content: 'Hello' }], maxTokens: 32 },
          { signal: AbortSignal.timeout(30_000) },
        );
        expect(answer.model).toBe('tiny');
        expect(answer.finishReason).toBe('length');
        expect(answer.completionTokens).toBe(32);
        expect(answer.content.length).toBeGreaterThan(0);
        if (stream) expect(answer.ttftMs).toBeGreaterThan(0);
      } finally {
        await client.close();
      }
    }
  }, 60_000);
  it("counts tokens with the server's own tokenizer, so chunks of files fit the 2048-token slot (none overflows)", async () => {
    const client = new EndpointClient({
      endpoint: { name: 'llama', url, concurrency: 4, models: [], flavor: 'openai' },
      requestTimeoutMs: 30_000,
      stream: false,
    });
    try {
      // tiny's small vocabulary makes ~1.6 bytes a token: far more tokens than the usual estimate.
      const text = 'export function add(a: number, b: number): number {\n  return a + b;\n}\n';
      const tokens = await client.countTokens(text, 'tiny', AbortSignal.timeout(10_000));
      expect(tokens).toBeGreaterThan(text.length / 3);
    } finally {
      await client.close();
    }

    const submitted = await c.call('lmstudio_complete', {
      template: 'Summarise part {{chunk}} of {{chunks}} of {{path}}:\n{{content}}',
      files: ['src/pools/llm/*.ts'],
      chunk: true,
      max_tokens: 8,
      temperature: 0,
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    expect(textOf(submitted)).toMatch(
      /chunks of about \d+ tokens \(\d\.\d\d bytes a token, counted with llama's tokenizer/,
    );
    const jobId = jobIdOf(submitted);
    const failed: string[] = [];
    let total = 0;
    let cursor: string | undefined;
    for (const deadline = Date.now() + 240_000; Date.now() < deadline;) {
      const reply = await c.call('collect_results', {
        job_ids: [jobId],
        wait_seconds: 30,
        ...(cursor ? { cursor } : {}),
      });
      expect(reply.isError, textOf(reply)).toBeFalsy();
      const structured = reply.structuredContent as {
        done?: boolean;
        results: Array<{ state: string; label?: string; error?: { code?: string } }>;
        next_cursor?: string | null;
      };
      total += structured.results.length;
      for (const r of structured.results)
        if (r.state !== 'succeeded') failed.push(`${r.label ?? '?'}: ${r.error?.code ?? r.state}`);
      cursor = structured.next_cursor ?? cursor;
      if (structured.done && !structured.next_cursor) break;
    }
    expect(failed, failed.join('\n')).toEqual([]);
    expect(total).toBeGreaterThan(20);
  }, 300_000);
  it('analyses a module by map → reduce on the real model: packs that fit the slot, then one merged answer', async () => {
    const submitted = await c.call('lmstudio_complete', {
      template: 'List the main parts of this code:\n{{content}}',
      files: ['src/store/*.ts'],
      group: 'all',
      reduce: { prompt: 'Combine these notes into one short overview of the store module.', max_tokens: 24 },
      max_tokens: 12,
      temperature: 0,
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    const structured = submitted.structuredContent as { job_id: string; notes: string[]; runs_on: { job_id: string } };
    expect(structured.notes.join(' ')).toMatch(
      /file\(s\) packed into \d+ prompt\(s\) .* counted with llama's tokenizer/,
    );
    let page: {
      done: boolean;
      results: Array<{
        state: string;
        value?: { text?: string; inputs?: number; levels?: number; failed_inputs?: string[] };
        error?: unknown;
      }>;
      upstream?: Array<{ counts: { total: number; succeeded: number } }>;
    } = { done: false, results: [] };
    for (const deadline = Date.now() + 240_000; !page.done && Date.now() < deadline;) {
      const reply = await c.call('collect_results', { job_ids: [structured.job_id], wait_seconds: 30 });
      expect(reply.isError, textOf(reply)).toBeFalsy();
      page = reply.structuredContent as typeof page;
    }
    const merged = page.results[0];
    expect(merged?.state, JSON.stringify(merged)).toBe('succeeded');
    // Every pack fitted the 2048-token slot: no map answer failed, so none is missing from the merge.
    const map = page.upstream?.[0];
    expect(map?.counts.succeeded).toBe(map?.counts.total);
    expect(merged?.value?.inputs).toBe(map?.counts.total);
    expect(merged?.value?.failed_inputs).toEqual([]);
    expect(merged?.value?.text?.length).toBeGreaterThan(0);
    // Packed to the edge of the 2048-token slot, by llama's own count of each prompt.
    const mapPage = (
      await c.call('collect_results', { job_ids: [structured.runs_on.job_id], wait_seconds: 0, budget_tokens: 12_000 })
    ).structuredContent as { results: Array<{ value?: { tokens_in?: number } }> };
    const sizes = mapPage.results.map((r) => r.value?.tokens_in ?? 0);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(2048);
    expect(Math.max(...sizes)).toBeGreaterThan(2048 * 0.6);
  }, 300_000);
  it('checks answers of the real model: agreement samples, citations, a re-ask, the verdict and its cost', async () => {
    const submitted = await c.call('lmstudio_complete', {
      prompts: Array.from({ length: 4 }, (_, i) => ({ prompt: `Where is job state ${i} derived? Cite path:line.` })),
      max_tokens: 16,
      temperature: 0.8,
      checks: { agree: 3, citations: true },
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    let page: {
      done: boolean;
      jobs: Array<Record<string, unknown>>;
      results: Array<{ state: string; value?: Record<string, unknown> }>;
    } = { done: false, jobs: [], results: [] };
    const results: typeof page.results = [];
    let cursor: string | undefined;
    for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
      const reply = await c.call('collect_results', {
        job_ids: [jobIdOf(submitted)],
        wait_seconds: 30,
        ...(cursor ? { cursor } : {}),
      });
      page = reply.structuredContent as typeof page;
      results.push(...page.results);
      cursor = (page as { next_cursor?: string }).next_cursor;
      if (page.done && cursor === undefined) break;
    }
    expect(results).toHaveLength(4);
    // The tiny model writes gibberish: no sample cites a line that exists, so no answer is verified,
    // and each was sampled 3 times, then re-asked with the reasons (3 samples more), never dropped.
    for (const result of results) {
      expect(result.state, JSON.stringify(result)).toBe('succeeded');
      expect(result.value).toMatchObject({ verified: false, attempts: 2, extra_requests: { agree: 2, reask: 3 } });
      const checks = result.value?.checks as Array<{ name: string; ok: boolean }>;
      expect(checks.map((check) => check.name)).toEqual(['agree', 'citations']);
      expect(checks[1]?.ok).toBe(false);
    }
    expect(page.jobs[0]?.verification).toEqual({
      verified: 0,
      unverified: 4,
      extra_requests: { agree: 8, reask: 12, escalate: 0 },
    });
  }, 150_000);

  it('runs investigations with `tools` in the request; the tiny model never calls one, so its text is the answer', async () => {
    const submitted = await c.call('lmstudio_investigate', {
      tasks: Array.from({ length: 4 }, (_, i) => ({
        task: `Where is job state ${i} derived?`,
        paths: ['src/store/**'],
      })),
      max_tokens: 24,
      temperature: 0,
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    let page: {
      done: boolean;
      results: Array<{ state: string; value?: Record<string, unknown>; files?: Record<string, string> }>;
    } = { done: false, results: [] };
    for (const deadline = Date.now() + 120_000; !page.done && Date.now() < deadline;) {
      const reply = await c.call('collect_results', { job_ids: [jobIdOf(submitted)], wait_seconds: 30 });
      page = reply.structuredContent as typeof page;
    }
    expect(page.results).toHaveLength(4);
    for (const result of page.results) {
      expect(result.state, JSON.stringify(result)).toBe('succeeded');
      expect(result.value).toMatchObject({ steps: 1, answered_without_tools: true, model: 'tiny' });
      expect(result.value?.notes, 'llama-server took `tools`').toBeUndefined();
      expect(String(result.value?.text).length).toBeGreaterThan(0);
      expect(Number(result.value?.tokens_in)).toBeGreaterThan(0);
      expect(result.files?.transcript).toMatch(/\.transcript\.jsonl$/);
    }
  }, 150_000);

  it('splits a file the real server refuses as too long for its slot, and asks again in two halves', async () => {
    // ~5 KB of TypeScript: over 2,048 tokens for tiny (its slot); not chunked.
    const submitted = await c.call('lmstudio_complete', {
      template: 'Summarise {{path}}:\n{{content}}',
      files: ['test/fixtures/llm/long-module.ts'],
      max_tokens: 8,
      temperature: 0,
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    let page: {
      done: boolean;
      results: Array<{
        state: string;
        value?: { split_for_context?: number; text?: string; tokens_in?: number };
        error?: unknown;
      }>;
    } = { done: false, results: [] };
    for (const deadline = Date.now() + 120_000; !page.done && Date.now() < deadline;) {
      page = (await c.call('collect_results', { job_ids: [jobIdOf(submitted)], wait_seconds: 30 }))
        .structuredContent as typeof page;
    }
    const result = page.results[0];
    expect(result?.state, JSON.stringify(result)).toBe('succeeded');
    expect(result?.value?.split_for_context).toBe(2);
    expect(result?.value?.text).toMatch(
      /^\[part 1 of 2: test\/fixtures\/llm\/long-module\.ts \[part 1\/2\]\]\n[\s\S]*\[part 2 of 2: /,
    );
  }, 180_000);

  it("a prompt over the slot's context fails with llama-server's own remedy (-c, --parallel), and so does a file or chunk too large even in eighths", async () => {
    const root = await makeTempDir('llama-overflow-');
    // ~80 KB: an eighth (~10 KB; 5 KB of a 40,000-token chunk) is still over tiny's 2,048-token slot,
    // yet small enough to be sent.
    const text = (await readFile(path.join(repoRoot, 'test/fixtures/llm/long-module.ts'), 'utf8')).repeat(16);
    await writeFile(path.join(root, 'huge.ts'), text);
    const m = await connectInMemory(
      await testConfig((cfg) => {
        cfg.llm.endpoints = [{ name: 'llama', url, concurrency: 4, models: [], flavor: 'openai' }];
        cfg.allowedRoots = [root];
      }),
    );
    type Failed = {
      state: string;
      error?: { code: string; message: string; hint?: string };
      value?: Record<string, unknown>;
    };
    const failures = async (args: Record<string, unknown>): Promise<Failed[]> => {
      const submitted = await m.call('lmstudio_complete', { max_tokens: 4, temperature: 0, ...args });
      expect(submitted.isError, textOf(submitted)).toBeFalsy();
      let page: { done: boolean; results: Failed[] } = { done: false, results: [] };
      const results: Failed[] = [];
      let cursor: string | undefined;
      for (const deadline = Date.now() + 120_000; !page.done && Date.now() < deadline;) {
        const reply = await m.call('collect_results', {
          job_ids: [jobIdOf(submitted)],
          wait_seconds: 30,
          ...(cursor ? { cursor } : {}),
        });
        page = reply.structuredContent as typeof page;
        results.push(...page.results);
        cursor = (reply.structuredContent as { next_cursor?: string }).next_cursor;
      }
      expect(page.done).toBe(true);
      return results.filter((r) => r.state === 'failed');
    };
    const llamaRemedy =
      /give each slot more context: llama-server splits its total context -c evenly across its --parallel slots \(this slot holds 2048 tokens\), so restart it with a larger -c or a smaller --parallel/;
    try {
      const [prompt] = await failures({ prompts: [{ id: 'long', prompt: `Summarise: ${text.slice(0, 12_000)}` }] });
      expect(prompt?.error?.code, JSON.stringify(prompt)).toBe('CONTEXT_OVERFLOW');
      expect(prompt?.error?.message).toMatch(/does not fit the model's context on endpoint llama/);
      expect(prompt?.error?.hint).toMatch(llamaRemedy);
      expect(prompt?.error?.hint).not.toMatch(/load the model/);

      const [file] = await failures({ template: 'Summarise {{path}}:\n{{content}}', files: ['huge.ts'] });
      expect(file?.error?.code, JSON.stringify(file)).toBe('CONTEXT_OVERFLOW');
      expect(file?.value?.split_for_context).toBe(4);
      expect(file?.error?.message).toMatch(
        /^Split into 4 parts to fit the model's context \(halved 3 times over\); huge\.ts \[part 1\/8\] failed: /,
      );
      expect(file?.error?.hint).toMatch(llamaRemedy);

      // A chunk's hint is the pool's (smaller chunks), still with llama-server's way to a larger context.
      const chunks = await failures({ template: '{{content}}', files: ['huge.ts'], chunk_tokens: 40_000 });
      expect(chunks.length).toBeGreaterThan(0);
      for (const chunk of chunks) {
        expect(chunk.error?.code, JSON.stringify(chunk)).toBe('CONTEXT_OVERFLOW');
        expect(chunk.error?.hint).toMatch(
          /^This chunk was still too large for the model's context: .*smaller chunk_tokens/,
        );
        expect(chunk.error?.hint).toMatch(llamaRemedy);
        expect(chunk.error?.hint).not.toMatch(/load the model/);
      }
    } finally {
      await m.close();
      await rm(root, { recursive: true, force: true });
    }
  }, 240_000);
});
