import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LmStudioDouble } from '../../fixtures/lmstudio-double.js';
import { cleanupsAfterEach, fileTree } from '../../helpers/cleanup.js';
import { collectAll } from '../../helpers/collect.js';
import { connectInMemory, jobIdOf, makeTempDir, testConfig, type Connected } from '../../helpers/client.js';
import {
  type LlamaServer,
  llamaAvailable,
  llamaMetric,
  llamaMissing,
  type RecordingProxy,
  recordingProxy,
  startLlama,
} from '../../helpers/llama.js';

if (!llamaAvailable) console.warn(`SKIPPED: ${llamaMissing}.`);

const SLOTS = 6;
/** ~1,550 tokens of the tiny model's tokenizer: a prompt with it fits a 2,048-token slot. */
const moduleText = (name: string): string =>
  Array.from({ length: 65 }, (_, i) => `line ${i}: const ${name}${i} = compute(${i});`).join('\n');
const TEMPLATE = 'Question {{n}}: {{q}}\nAnswer about {{path}}:\n{{content}}';
const questions = Array.from({ length: 8 }, (_, i) => ({ n: i + 1, q: `What does line ${i * 7} compute?` }));

describe.skipIf(!llamaAvailable)('prefix reuse against the real llama-server (--parallel 6, --metrics)', () => {
  let llama: LlamaServer | undefined;
  let proxy: RecordingProxy | undefined;
  let root = '';
  let c: Connected;

  beforeAll(async () => {
    llama = await startLlama(SLOTS, 60_000, { context: SLOTS * 2048, metrics: true });
    proxy = await recordingProxy(llama.url);
    root = await makeTempDir('monitor-prefix-');
    await writeFile(path.join(root, 'alpha.ts'), moduleText('alpha'));
    await writeFile(path.join(root, 'beta.ts'), moduleText('beta'));
    const url = proxy.url;
    const config = await testConfig((cfg) => {
      cfg.llm.endpoints = [{ name: 'llama', url, concurrency: SLOTS, models: [], flavor: 'openai' }];
      cfg.allowedRoots = [root];
    });
    c = await connectInMemory(config);
  }, 90_000);

  afterAll(async () => {
    await c?.close();
    await proxy?.close();
    await llama?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  }, 20_000);

  /** Submits 8 questions over `file`; the results once all are in. */
  async function ask(file: string): Promise<{ jobId: string; tokensIn: number }> {
    const submitted = await c.call('lmstudio_complete', {
      template: TEMPLATE,
      files: [file],
      items: questions,
      max_tokens: 8,
      temperature: 0,
    });
    expect(submitted.isError, JSON.stringify(submitted.content)).toBeFalsy();
    const jobId = jobIdOf(submitted);
    const { results } = await collectAll(c, jobId, { waitSeconds: 30, timeoutMs: 100_000 });
    expect(results).toHaveLength(8);
    let tokensIn = 0;
    for (const result of results) {
      expect(result.state, JSON.stringify(result.error)).toBe('succeeded');
      tokensIn += Number(result.value?.tokens_in ?? 0);
    }
    return { jobId, tokensIn };
  }

  /** The id_slot of each chat request that carried `marker` in its prompt. */
  function slotsOf(marker: string): number[] {
    return (proxy?.chats ?? [])
      .filter((body) => JSON.stringify(body.messages).includes(marker))
      .map((body) => {
        expect(body.cache_prompt).toBe(true);
        return Number(body.id_slot);
      });
  }

  it('evaluates at most 1/3 of 8 prompts over one file, the file first, on two of the six slots', async () => {
    const url = llama?.url ?? '';
    const before = await llamaMetric(url, 'prompt_tokens_total');
    const { tokensIn } = await ask('alpha.ts');
    const evaluated = (await llamaMetric(url, 'prompt_tokens_total')) - before;
    console.info(
      `prefix reuse: ${evaluated} of ${tokensIn} prompt tokens evaluated (${(evaluated / tokensIn).toFixed(2)})`,
    );
    expect(tokensIn).toBeGreaterThan(8 * 1400);
    expect(evaluated / tokensIn).toBeLessThanOrEqual(1 / 3);

    const prompt = JSON.stringify(proxy?.chats[0]?.messages);
    // The file comes first: every prompt starts with the same ~1,500 tokens.
    expect(prompt).toMatch(/^\[\{"role":"user","content":"### alpha\.ts\\nline 0:/);
    const used = slotsOf('alpha0 =');
    expect(used).toHaveLength(8);
    expect(new Set(used).size).toBe(2);
    for (const slot of used) expect(slot >= 0 && slot < SLOTS).toBe(true);
  }, 120_000);

  it('runs two files side by side on slots of their own', async () => {
    const started = proxy?.chats.length ?? 0;
    const [alpha, beta] = await Promise.all([ask('alpha.ts'), ask('beta.ts')]);
    expect(alpha.tokensIn + beta.tokensIn).toBeGreaterThan(16 * 1400);
    const recent = (marker: string): Set<number> =>
      new Set(
        (proxy?.chats ?? [])
          .slice(started)
          .filter((body) => JSON.stringify(body.messages).includes(marker))
          .map((body) => Number(body.id_slot)),
      );
    const a = recent('alpha0 =');
    const b = recent('beta0 =');
    expect(a.size).toBeLessThanOrEqual(2);
    expect(b.size).toBeLessThanOrEqual(2);
    expect([...a].filter((slot) => b.has(slot))).toEqual([]);
    // alpha's prompts went back to the slots that held alpha from the first test.
    expect([...a].sort()).toEqual([...new Set(slotsOf('alpha0 ='))].sort());
  }, 120_000);
});

describe('prefix reuse on other servers', () => {
  const cleanups = cleanupsAfterEach();

  it('puts the file first for LM Studio too, without llama-server fields, and holds no request back', async () => {
    const double = await LmStudioDouble.start({ slots: 4, latencyMs: 50 });
    cleanups.push(() => double.close());
    const root = await fileTree({ 'alpha.ts': moduleText('alpha') }, cleanups, 'prefix-lms-');
    const config = await testConfig((cfg) => {
      cfg.llm.endpoints = [{ name: 'lms', url: double.url, concurrency: 4, models: [], flavor: 'lmstudio' }];
      cfg.allowedRoots = [root];
    });
    const c = await connectInMemory(config);
    cleanups.push(() => c.close());
    const submitted = await c.call('lmstudio_complete', { template: TEMPLATE, files: ['alpha.ts'], items: questions });
    expect(submitted.isError, JSON.stringify(submitted.content)).toBeFalsy();
    const { results } = await collectAll(c, jobIdOf(submitted));
    expect(results.map((r) => r.state)).toEqual(Array(8).fill('succeeded'));
    expect(double.chatRequests).toHaveLength(8);
    for (const request of double.chatRequests) {
      expect(request.prompt?.startsWith('### alpha.ts\nline 0:')).toBe(true);
      expect(request.body).not.toHaveProperty('cache_prompt');
      expect(request.body).not.toHaveProperty('id_slot');
    }
    // Its own cache decides: all four slots in use at once.
    expect(double.peakInFlight).toBe(4);
  });
});
