import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/registry.js';
import type { ServerDeps } from '../../src/server.js';
import { LmStudioDouble, type DoubleOptions } from '../fixtures/lmstudio-double.js';
import { connectInMemory, jobIdOf, testConfig, textOf, type Connected } from '../helpers/client.js';
import { collectAll } from '../helpers/collect.js';
import { freePort } from '../helpers/net.js';
import { cleanupsAfterEach, fileTree } from '../helpers/cleanup.js';

const cleanups = cleanupsAfterEach();

async function startDouble(options: DoubleOptions = {}): Promise<LmStudioDouble> {
  const double = await LmStudioDouble.start(options);
  cleanups.push(() => double.close());
  return double;
}

async function connect(
  url: string,
  edit: (config: Config) => void = () => {},
  deps: ServerDeps = {},
): Promise<Connected> {
  const config = await testConfig((c) => {
    c.llm.endpoints = [
      { name: 'lmstudio', url, concurrency: 4, models: [], flavor: 'lmstudio', apiKeyEnv: 'LM_API_TOKEN' },
    ];
    edit(c);
  });
  const connected = await connectInMemory(config, deps);
  cleanups.push(() => connected.close());
  return connected;
}

function filesRoot(files: Record<string, string>): Promise<string> {
  return fileTree(files, cleanups, 'llm-files-');
}

describe('lmstudio_complete', () => {
  it('runs a batch of prompts and collect_results shows answers, models, tokens and job totals', async () => {
    const double = await startDouble({ latencyMs: 20 });
    const c = await connect(double.url);
    const submitted = await c.call('lmstudio_complete', {
      prompts: [
        { id: 'auth', prompt: 'Analyse the auth module' },
        { prompt: 'Second' },
        { messages: [{ role: 'user', content: 'Third' }] },
      ],
      system: 'Be brief.',
      temperature: 0.2,
      max_tokens: 100,
      seed: 7,
      stop: ['END'],
      label: 'three prompts',
    });
    expect(submitted.isError).toBeFalsy();
    expect(textOf(submitted)).toContain('Model test-model on lmstudio');
    const { results, job } = await collectAll(c, jobIdOf(submitted));
    expect(results.map((r) => r.state)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(results[0]?.id).toBe('auth');
    expect(results[0]?.value).toMatchObject({
      text: 'Answer to: Analyse the auth module',
      model: 'test-model',
      endpoint: 'lmstudio',
      finish_reason: 'stop',
      truncated: false,
    });
    expect(results[0]?.value?.tokens_in).toBeGreaterThan(0);
    expect(results[0]?.value?.tokens_out).toBe(6);
    expect(results[1]?.id).toBe('2');
    // Job totals are the sum over its items; the rate is what came out per second of wall time.
    const tokens = job.tokens as { prompt: number; completion: number; completion_per_second: number };
    expect(tokens.prompt).toBe(results.reduce((sum, r) => sum + Number(r.value?.tokens_in), 0));
    expect(tokens.completion).toBe(results.reduce((sum, r) => sum + Number(r.value?.tokens_out), 0));
    expect(tokens.completion_per_second).toBeGreaterThan(0);
    expect(tokens.completion_per_second).toBeLessThanOrEqual((tokens.completion * 1000) / Number(job.elapsed_ms) + 1);
    for (const r of results) expect(Number(r.value?.tokens_per_second)).toBeGreaterThan(0);
    const sent = double.chatRequests[0]?.body ?? {};
    expect(sent).toMatchObject({ model: 'test-model', temperature: 0.2, max_tokens: 100, seed: 7, stop: ['END'] });
    expect(sent.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Analyse the auth module' },
    ]);
  });

  it('fills a template from files it reads itself (globs inside the roots), crossed with items', async () => {
    const double = await startDouble();
    const root = await filesRoot({
      'src/a.py': 'print("a")',
      'src/b.py': 'print("b")',
      'src/skip.txt': 'no',
      'src/{{x}}.py': 'x = "{{content}}"',
    });
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
    });
    const submitted = await c.call('lmstudio_complete', {
      template: 'File {{path}} ({{name}}), focus on {{aspect}}:\n{{content}}',
      files: ['src/*.py'],
      items: [{ aspect: 'security' }, { aspect: 'style', id: 'sty' }],
    });
    expect(submitted.isError).toBeFalsy();
    const { results } = await collectAll(c, jobIdOf(submitted));
    expect(results).toHaveLength(6);
    expect(results.map((r) => r.id)).toEqual([
      'src/a.py | 1',
      'src/a.py | sty',
      'src/b.py | 1',
      'src/b.py | sty',
      'src/{{x}}.py | 1',
      'src/{{x}}.py | sty',
    ]);
    const prompts = double.chatRequests.map((r) => r.prompt).sort();
    // The file its items share goes first (llm.prefixReuse), the template after it as written.
    expect(prompts).toContain(
      '### src/a.py\nprint("a")\n\n---\n\nFile src/a.py (a.py), focus on security:\n(the file src/a.py above)',
    );
    // A file's own {{…}} text is not expanded again.
    expect(prompts).toContain(
      '### src/{{x}}.py\nx = "{{content}}"\n\n---\n\nFile src/{{x}}.py ({{x}}.py), focus on style:\n(the file src/{{x}}.py above)',
    );
    expect(results[0]?.value?.file).toBe('src/a.py');
  });

  it('splits files too large for the context into chunks when asked, and fails them clearly when not', async () => {
    const double = await startDouble({ models: [{ id: 'small', state: 'loaded', contextLength: 256 }] });
    const big = Array.from({ length: 400 }, (_, i) => `line ${i}: some text here`).join('\n');
    const root = await filesRoot({ 'big.txt': big, 'small.txt': 'tiny' });
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
    });

    const whole = await c.call('lmstudio_complete', {
      template: 'Summarise {{path}}: {{content}}',
      files: ['*.txt'],
      max_tokens: 50,
    });
    expect(textOf(whole)).toMatch(/1 file\(s\) look larger than the model's context/);
    const plain = await collectAll(c, jobIdOf(whole));
    // Too large even in eighths: it fails at its first eighth, cut into 4 parts by then (that eighth,
    // the next eighth, a quarter and a half), and the hint says to chunk it.
    expect(plain.results[0]?.error?.code).toBe('CONTEXT_OVERFLOW');
    expect(plain.results[0]?.value?.split_for_context).toBe(4);
    expect(plain.results[0]?.error?.hint).toMatch(/chunk: true/);
    expect(plain.results[1]?.state).toBe('succeeded');

    double.resetStats();
    const chunked = await c.call('lmstudio_complete', {
      template: 'Part {{chunk}}/{{chunks}} of {{path}}: {{content}}',
      files: ['big.txt'],
      chunk: true,
      max_tokens: 50,
    });
    expect(chunked.isError).toBeFalsy();
    // LM Studio's REST API cannot count tokens: the chunk size is estimated, and the note says so.
    expect(textOf(chunked)).toMatch(/chunks of about \d+ tokens \(3 bytes a token, estimated\)/);
    const parts = await collectAll(c, jobIdOf(chunked));
    expect(parts.results.length).toBeGreaterThan(5);
    expect(parts.results.every((r) => r.state === 'succeeded')).toBe(true);
    const n = parts.results.length;
    expect(parts.results[0]?.value?.chunk).toBe(`1/${n}`);
    const sentBodies = double.chatRequests.map((r) => r.prompt ?? '');
    expect(sentBodies.some((p) => p.startsWith(`Part 1/${n} of big.txt: line 0:`))).toBe(true);
    // Every line went out exactly once across the chunks.
    const lines = sentBodies
      .flatMap((p) => p.replace(/^Part \d+\/\d+ of big.txt: /, '').split('\n'))
      .filter((l) => l.length > 0);
    expect(lines.sort()).toEqual(big.split('\n').sort());

    // Chunks too large for the context are split in two and asked again, up to 8 parts each.
    const resplit = await collectAll(
      c,
      jobIdOf(
        await c.call('lmstudio_complete', {
          template: '{{content}}',
          files: ['big.txt'],
          chunk_tokens: 500,
          max_tokens: 50,
        }),
      ),
    );
    expect(resplit.results.every((r) => r.state === 'succeeded')).toBe(true);
    expect(resplit.results.filter((r) => r.value?.split_for_context === 2).length).toBeGreaterThan(0);

    // Chunks still too large after 3 splits (the server refuses them; or far too large, so they are
    // not sent): the hint asks for smaller chunks, not for chunking, which the caller already did.
    const tooBig = await c.call('lmstudio_complete', {
      template: '{{content}}',
      files: ['big.txt'],
      chunk_tokens: 3000,
      max_tokens: 50,
    });
    const refused = await collectAll(c, jobIdOf(tooBig));
    // The last chunk, a remainder, may be small enough.
    const failedChunks = refused.results.filter((r) => r.state === 'failed');
    expect(failedChunks.length).toBeGreaterThanOrEqual(refused.results.length - 1);
    expect(failedChunks.length).toBeGreaterThan(0);
    for (const result of failedChunks) {
      expect(result.error?.code).toBe('CONTEXT_OVERFLOW');
      expect(result.error?.message).toMatch(
        /^Split into \d parts to fit the model's context \(halved 3 times over\); big\.txt#1 \[part 1\/8\] failed: /,
      );
      expect(result.error?.hint).toMatch(/smaller chunk_tokens/);
      expect(result.error?.hint).not.toMatch(/chunk: true/);
    }
  });

  it('without a tokenizer to ask (LM Studio), chunks are sized from the token counts the server reported for earlier prompts', async () => {
    const double = await startDouble({ models: [{ id: 'small', state: 'loaded', contextLength: 256 }] });
    const big = Array.from({ length: 200 }, (_, i) => `line ${i}: some text here`).join('\n');
    const root = await filesRoot({ 'big.txt': big });
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
    });
    // Three answered prompts of ~100 tokens each: the double counts 4 characters a token.
    await collectAll(
      c,
      jobIdOf(
        await c.call('lmstudio_complete', {
          prompts: [1, 2, 3].map((i) => ({ prompt: `${i} ${'word '.repeat(80)}` })),
          max_tokens: 5,
        }),
      ),
    );
    const chunked = await c.call('lmstudio_complete', {
      template: '{{content}}',
      files: ['big.txt'],
      chunk: true,
      max_tokens: 20,
    });
    expect(textOf(chunked)).toMatch(
      /\(3\.[12]\d bytes a token, learned from the prompt token counts lmstudio reported for 3 earlier prompts less a margin\)/,
    );
    const parts = await collectAll(c, jobIdOf(chunked));
    expect(parts.results.every((r) => r.state === 'succeeded' && r.value?.split_for_context === undefined)).toBe(true);
  });

  it('refuses a file that would need more chunks than the task cap before reading it', async () => {
    const double = await startDouble();
    const root = await filesRoot({ 'huge.txt': 'x'.repeat(200_000) });
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
      cfg.llm.maxTasks = 100;
    });
    const reply = await c.call('lmstudio_complete', { template: '{{content}}', files: ['huge.txt'], chunk_tokens: 64 });
    expect(reply.isError).toBe(true);
    expect(textOf(reply)).toMatch(/more than 100 tasks: huge\.txt needs at least 1042 chunks of 192 bytes/);
    expect(double.chatRequests).toHaveLength(0);
  });

  it('returns validated JSON for json_schema, mergeable into one array', async () => {
    const double = await startDouble();
    const c = await connect(double.url);
    const schema = {
      type: 'object',
      properties: { summary: { type: 'string' }, risk: { type: 'integer', minimum: 2 } },
      required: ['summary', 'risk'],
    };
    const submitted = await c.call('lmstudio_complete', {
      prompts: [{ prompt: 'a' }, { prompt: 'b' }],
      json_schema: schema,
      wait_seconds: 20,
    });
    expect(submitted.isError).toBeFalsy();
    const merged = await c.call('collect_results', { job_ids: [jobIdOf(submitted)], merge: 'json', wait_seconds: 20 });
    expect(textOf(merged)).toContain('{"summary":"example","risk":2}');
    expect(double.chatRequests[0]?.body?.response_format).toMatchObject({ type: 'json_schema' });
  });

  it('refuses bad input before submitting anything, saying what to do', async () => {
    const double = await startDouble();
    const root = await filesRoot({ 'a.md': 'x' });
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
    });
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /Nothing to send/],
      [{ prompts: [{ prompt: 'a' }], template: '{{x}}', items: [{ x: 1 }] }, /either prompts or template/],
      [{ template: 'Hi {{who}}' }, /needs items and\/or files/],
      [{ template: 'Hi {{who}}', items: [{ name: 'x' }] }, /\{\{who\}\}/],
      [{ template: '{{content}}', files: ['*.rs'] }, /No file matches "\*\.rs"/],
      [{ template: '{{content}}', files: ['/etc/passwd'] }, /PATH_OUTSIDE_ROOT/],
      [{ prompts: [{ prompt: 'a' }], json_schema: { type: 'nonsense' } }, /json_schema is not a valid JSON schema/],
      [{ prompts: [{ prompt: 'a' }], model: 'o4-mini' }, /MODEL_NOT_FOUND.*o4-mini.*Available: test-model/s],
      [{ prompts: [{}] }, /exactly one of prompt or messages/],
      [
        {
          prompts: [
            {
              messages: [
                { role: 'system', content: 'Be terse.' },
                { role: 'user', content: 'hi' },
              ],
            },
          ],
          system: 'Be kind.',
        },
        /starts with its own system message, and `system` is given too/,
      ],
      // Over a limit is an error naming it, never silently lowered.
      [
        { prompts: [{ prompt: 'a' }], concurrency: 5 },
        /INVALID_INPUT: concurrency 5 is more than the endpoints serving test-model take at once \(4: lmstudio 4\)[\s\S]*Next: .*at most 4.*--lmstudio-concurrency/,
      ],
      [
        { template: '{{content}}', files: ['a.md'], chunk_tokens: 2_000_000 },
        /INVALID_INPUT: chunk_tokens 2000000 .* more than llm\.maxFileBytes \(4194304 bytes\)[\s\S]*Next: .*at most 1398101.*"maxFileBytes"/,
      ],
    ];
    for (const [args, expected] of cases) {
      const reply = await c.call('lmstudio_complete', args);
      expect(reply.isError, JSON.stringify(args)).toBe(true);
      expect(textOf(reply)).toMatch(expected);
    }
    expect(double.chatRequests).toHaveLength(0);
  });

  it('takes a concurrency up to what the endpoints take', async () => {
    const double = await startDouble();
    const c = await connect(double.url);
    const reply = await c.call('lmstudio_complete', { prompts: [{ prompt: 'a' }], concurrency: 4 });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    expect(textOf(reply)).toContain('up to 4 prompt(s) at once');
  });

  it('says how to start LM Studio when its server is not running', async () => {
    const c = await connect(`http://127.0.0.1:${await freePort()}`);
    const reply = await c.call('lmstudio_complete', { prompts: [{ prompt: 'hi' }] });
    expect(reply.isError).toBe(true);
    expect(textOf(reply)).toMatch(/ENDPOINT_UNREACHABLE[\s\S]*lms server start/);
  });

  it('uses the loaded LLM by default, and says so when none is loaded', async () => {
    const double = await startDouble({
      models: [
        { id: 'embedder', type: 'embeddings', state: 'loaded' },
        { id: 'cold', state: 'not-loaded' },
        { id: 'warm', state: 'loaded' },
      ],
    });
    const c = await connect(double.url);
    const ok = await c.call('lmstudio_complete', { prompts: [{ prompt: 'hi' }], wait_seconds: 20 });
    expect(textOf(ok)).toContain('Model warm on lmstudio');
    const coldOnly = await startDouble({ models: [{ id: 'cold', state: 'not-loaded' }] });
    const c2 = await connect(coldOnly.url);
    const reply = await c2.call('lmstudio_complete', { prompts: [{ prompt: 'hi' }] });
    expect(reply.isError).toBe(true);
    expect(textOf(reply)).toMatch(/MODEL_NOT_LOADED: No LLM is loaded. Downloaded: cold/);
  });

  it('sends the LM Studio API token from the environment, and explains a 401 without it', async () => {
    const double = await startDouble({ token: 'sk-lm-abc:def' });
    const withToken = await connect(double.url, () => {}, { env: { LM_API_TOKEN: 'sk-lm-abc:def' } });
    const ok = await withToken.call('lmstudio_complete', { prompts: [{ prompt: 'hi' }], wait_seconds: 20 });
    expect(ok.isError).toBeFalsy();
    expect(double.chatRequests[0]?.authorization).toBe('Bearer sk-lm-abc:def');
    // The token is never stored with the job.
    expect(JSON.stringify(withToken.app.engine.meta(jobIdOf(ok)))).not.toContain('sk-lm-abc');
    const without = await connect(double.url);
    const refused = await without.call('lmstudio_complete', { prompts: [{ prompt: 'hi' }] });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(/AUTH_REQUIRED[\s\S]*LM_API_TOKEN/);
  });

  it("--endpoint NAME=URL#lmstudio gets LM Studio's API and reads LM_API_TOKEN without further config", async () => {
    const double = await startDouble({ token: 'sk-lm-abc:def', models: [{ id: 'cold', state: 'not-loaded' }] });
    const config = await testConfig(() => {}, ['--endpoint', `box=${double.url}@2#lmstudio`]);
    expect(config.llm.endpoints).toEqual([
      { name: 'box', url: double.url, concurrency: 2, models: [], flavor: 'lmstudio', apiKeyEnv: 'LM_API_TOKEN' },
    ]);
    const c = await connectInMemory(config, { env: { LM_API_TOKEN: 'sk-lm-abc:def' } });
    cleanups.push(() => c.close());
    const reply = await c.call('lmstudio_complete', { prompts: [{ prompt: 'hi' }], model: 'cold', wait_seconds: 20 });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    expect(double.requests.map((r) => r.path)).toContain('/api/v1/models');
    expect(double.requests.every((r) => r.authorization === 'Bearer sk-lm-abc:def')).toBe(true);
    // The model was cold: one warm-up, then the prompt.
    expect(double.chatRequests.map((r) => r.body?.max_tokens)).toEqual([1, undefined]);
  });

  it('cancel_job aborts the HTTP requests in flight', async () => {
    const double = await startDouble();
    const c = await connect(double.url);
    const submitted = await c.call('lmstudio_complete', {
      prompts: Array.from({ length: 5 }, (_, i) => ({ prompt: `#fault:hang ${i}` })),
    });
    await expect.poll(() => double.inFlight).toBe(4);
    const cancelled = await c.call('cancel_job', { job_id: jobIdOf(submitted) });
    expect(cancelled.isError).toBeFalsy();
    await expect.poll(() => double.disconnects).toBe(4);
    const { results } = await collectAll(c, jobIdOf(submitted));
    expect(results.map((r) => r.state)).toEqual(Array(5).fill('cancelled'));
  });

  it('resumes a template job after a restart, reading its files again at run time', async () => {
    const double = await startDouble({ latencyMs: 5000 });
    const root = await filesRoot({ 'notes/a.md': 'alpha', 'notes/b.md': 'beta' });
    const config = await testConfig((cfg) => {
      cfg.allowedRoots = [root];
      cfg.llm.endpoints = [{ name: 'lmstudio', url: double.url, concurrency: 4, models: [], flavor: 'lmstudio' }];
    });
    const first = await connectInMemory(config);
    const submitted = await first.call('lmstudio_complete', {
      template: 'Summarise {{path}}: {{content}}',
      files: ['notes/*.md'],
    });
    const jobId = jobIdOf(submitted);
    await expect.poll(() => double.inFlight).toBe(2);
    // A restart: the server goes away mid-answer (without cancelling), its tasks load as interrupted.
    await first.client.close();
    await first.app.close();
    double.latencyMs = 0;
    await writeFile(path.join(root, 'notes', 'b.md'), 'beta, edited after submit');

    const second = await connectInMemory(config);
    cleanups.push(() => second.close());
    const resumed = await second.call('resume_job', { job_id: jobId });
    expect(resumed.isError, textOf(resumed)).toBeFalsy();
    const { results } = await collectAll(second, jobId);
    expect(results.map((r) => [r.state, r.value?.file])).toEqual([
      ['succeeded', 'notes/a.md'],
      ['succeeded', 'notes/b.md'],
    ]);
    expect(double.chatRequests.map((r) => r.prompt)).toContain('Summarise notes/b.md: beta, edited after submit');
  });
});
