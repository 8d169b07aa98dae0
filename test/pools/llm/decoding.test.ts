import { rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { MOST_TOKENS_PER_ANSWER, tokenCount, Utf8Check } from '../../../src/pools/llm/decoding.js';
import { SseParser } from '../../../src/pools/llm/sse.js';
import { llmTotals } from '../../../src/pools/llm/totals.js';
import { sumUsage } from '../../../src/pools/llm/usage.js';
import { cleanupsAfterEach } from '../../helpers/cleanup.js';
import { connectInMemory, jobIdOf, makeTempDir, testConfig, textOf } from '../../helpers/client.js';
import { collectAll } from '../../helpers/collect.js';

/** Answers from a server that sends what no server should: invalid UTF-8, token counts that are none. */

const cleanups = cleanupsAfterEach();

const EURO = Buffer.from('€', 'utf8'); // 3 bytes: split across writes it must not read as invalid
const INVALID = Buffer.from([0xff, 0xfe]);

/** What the server says for a prompt: content bytes, and the usage object it sends. */
function answerFor(prompt: string): { content: Buffer; usage: Record<string, unknown> } {
  const usage = { prompt_tokens: 12, completion_tokens: 3 };
  if (prompt.includes('bad-bytes'))
    return { content: Buffer.concat([Buffer.from('ok '), INVALID, Buffer.from(' end')]), usage };
  if (prompt.includes('split')) return { content: Buffer.concat([Buffer.from('price '), EURO, EURO]), usage };
  if (prompt.includes('huge'))
    return { content: Buffer.from('fine'), usage: { prompt_tokens: -5, completion_tokens: 1e300 } };
  if (prompt.includes('strings'))
    return { content: Buffer.from('fine'), usage: { prompt_tokens: 'NaN', completion_tokens: 2.5 } };
  return { content: Buffer.from('fine'), usage };
}

/** A JSON text with `content` spliced in as raw bytes (a JSON string literal around them). */
function withContent(before: Record<string, unknown>, content: Buffer): Buffer {
  const marker = '@@CONTENT@@';
  const [head, tail] = JSON.stringify(before).split(JSON.stringify(marker)) as [string, string];
  return Buffer.concat([Buffer.from(`${head}"`), content, Buffer.from(`"${tail}`)]);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  if (req.method === 'GET' && req.url === '/v1/models') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: 'odd-model', object: 'model' }] }));
    return;
  }
  if (req.method === 'POST' && req.url === '/tokenize') {
    // A tokenizer that counts 1e300 tokens for any text.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"count": 1e300}');
    return;
  }
  if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'not found' } }));
    return;
  }
  const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    stream?: boolean;
    messages: Array<{ content: string }>;
  };
  const { content, usage } = answerFor(body.messages.at(-1)?.content ?? '');
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    const message = { role: 'assistant', content: '@@CONTENT@@' };
    res.end(
      withContent({ model: 'odd-model', choices: [{ index: 0, message, finish_reason: 'stop' }], usage }, content),
    );
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const event = withContent(
    { model: 'odd-model', choices: [{ index: 0, delta: { content: '@@CONTENT@@' } }] },
    content,
  );
  const line = Buffer.concat([Buffer.from('data: '), event, Buffer.from('\n\n')]);
  // Cut inside the first € (or the invalid bytes): the client must wait for the rest of the character.
  const at = line.indexOf(content[6] === EURO[0] ? EURO : INVALID) + 1;
  const cut = at > 0 ? at : Math.floor(line.length / 2);
  res.write(line.subarray(0, cut));
  await new Promise((resolve) => setTimeout(resolve, 20));
  res.write(line.subarray(cut));
  res.write(
    `data: ${JSON.stringify({ model: 'odd-model', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
  );
  res.write(`data: ${JSON.stringify({ model: 'odd-model', choices: [], usage })}\n\n`);
  res.end('data: [DONE]\n\n');
}

async function oddServer(): Promise<string> {
  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Result {
  index: number;
  id?: string;
  state: string;
  value?: Record<string, unknown>;
}

describe.each([false, true])('LLM answers a server should not send (stream: %s)', (stream) => {
  it('notes invalid UTF-8 (not a character split across reads), and token counts that are none are left out, noted and estimated', async () => {
    const url = await oddServer();
    const c = await connectInMemory(
      await testConfig((cfg) => {
        cfg.llm.endpoints = [{ name: 'odd', url, concurrency: 2, models: [], flavor: 'openai' }];
        cfg.llm.stream = stream;
      }),
    );
    cleanups.push(() => c.close());
    const reply = await c.call('lmstudio_complete', {
      model: 'odd-model',
      prompts: ['bad-bytes', 'split', 'huge', 'strings'].map((id) => ({ id, prompt: id })),
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const { results, last } = await collectAll<Result>(c, jobIdOf(reply), { waitSeconds: 20, timeoutMs: 60_000 });
    const byId = new Map(results.map((r) => [r.id, r]));
    expect(results.map((r) => r.state)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);

    const bad = byId.get('bad-bytes')?.value;
    expect(bad?.text).toBe('ok \uFFFD\uFFFD end');
    expect(bad?.notes).toEqual([expect.stringMatching(/not valid UTF-8: the text shows U\+FFFD/)]);
    const split = byId.get('split')?.value;
    expect(split?.text).toBe('price €€');
    expect(split?.notes).toBeUndefined();
    expect(split?.tokens_in).toBe(12);

    const huge = byId.get('huge')?.value;
    expect(huge?.tokens_estimated).toBe(true);
    expect(huge?.tokens_in).toBeGreaterThan(0);
    expect(huge?.tokens_out).toBeLessThan(100);
    expect(huge?.notes).toEqual([
      expect.stringMatching(/usage\.prompt_tokens \(-5\) is not a token count/),
      expect.stringMatching(/usage\.completion_tokens \(1e\+300\) is not a token count/),
    ]);
    const strings = byId.get('strings')?.value;
    expect(strings?.notes).toEqual([
      expect.stringMatching(/usage\.prompt_tokens \("NaN"\)/),
      expect.stringMatching(/usage\.completion_tokens \(2\.5\)/),
    ]);
    // The job's totals are sums of real counts and estimates: small and finite.
    const totals = JSON.stringify(last.jobs);
    expect(totals).not.toMatch(/e\+|Infinity|null,"completion"|-5/);
  }, 60_000);
});

describe('a tokenizer that miscounts', () => {
  it('is not taken as a measure: chunks are sized by the estimate, and the plan says so', async () => {
    const url = await oddServer();
    const root = await makeTempDir('monitor-odd-files-');
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    await writeFile(path.join(root, 'a.txt'), 'some words of text\n'.repeat(2000));
    const c = await connectInMemory(
      await testConfig((cfg) => {
        cfg.llm.endpoints = [{ name: 'odd', url, concurrency: 2, models: [], flavor: 'openai' }];
        cfg.allowedRoots = [root];
      }),
    );
    cleanups.push(() => c.close());
    const reply = await c.call('lmstudio_complete', {
      model: 'odd-model',
      template: 'Summarise {{content}}',
      files: ['a.txt'],
      chunk: true,
      max_tokens: 50,
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    expect(textOf(reply)).toMatch(/bytes a token, estimated/);
    expect(textOf(reply)).not.toMatch(/counted with odd's tokenizer/);
  }, 60_000);
});

describe('token counts and UTF-8 checks', () => {
  it('takes a count only when it is a whole number from 0 to the ceiling', () => {
    expect(tokenCount(0, 'x')).toEqual({ count: 0 });
    expect(tokenCount(MOST_TOKENS_PER_ANSWER, 'x')).toEqual({ count: MOST_TOKENS_PER_ANSWER });
    expect(tokenCount(undefined, 'x')).toEqual({});
    for (const bad of [-1, 1.5, MOST_TOKENS_PER_ANSWER + 1, 1e300, Infinity, Number.NaN, '7', true, [], {}])
      expect(tokenCount(bad, 'prompt_tokens').note, String(bad)).toMatch(
        /^The server's usage\.prompt_tokens .* is not a token count/,
      );
  });

  it('sums stored figures that are counts only: a damaged record adds nothing', () => {
    expect(
      sumUsage([
        { tokens_in: 1e300, tokens_out: -3, requests: 1.5 },
        { tokens_in: 10, tokens_out: 2, requests: 2 },
      ]),
    ).toEqual({
      tokens_in: 10,
      tokens_out: 2,
      requests: 3,
    });
    let totals = llmTotals.add(undefined, { tokens_in: 1e300, tokens_out: Number.MAX_VALUE });
    totals = llmTotals.add(totals, { tokens_in: 5, tokens_out: 7 });
    expect(totals).toEqual({ prompt: 5, completion: 7 });
  });

  it('tells a character split across reads from invalid bytes, and a stream that ends mid-character', () => {
    const split = new Utf8Check();
    split.push(EURO.subarray(0, 1));
    split.push(EURO.subarray(1));
    split.end();
    expect(split.lossy).toBe(false);
    const invalid = new Utf8Check();
    invalid.push(INVALID);
    expect(invalid.lossy).toBe(true);
    const cut = new Utf8Check();
    cut.push(EURO.subarray(0, 2));
    cut.end();
    expect(cut.lossy).toBe(true);

    const parser = new SseParser();
    const line = Buffer.from('data: "€"\n\n');
    expect(parser.push(line.subarray(0, 8))).toEqual([]);
    expect(parser.push(line.subarray(8))).toEqual([{ event: 'message', data: '"€"' }]);
    expect(parser.lossy).toBe(false);
  });
});
