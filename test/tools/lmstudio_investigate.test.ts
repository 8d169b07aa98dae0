import { readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/registry.js';
import { LmStudioDouble, type DoubleOptions, type ScriptedTurn } from '../fixtures/lmstudio-double.js';
import { connectInMemory, jobIdOf, testConfig, textOf, type Connected } from '../helpers/client.js';
import { collectAll, type CollectedResult } from '../helpers/collect.js';
import { cleanupsAfterEach, fileTree } from '../helpers/cleanup.js';

const cleanups = cleanupsAfterEach();

const AUTH = [
  'export function checkToken(token: string): boolean {',
  '  if (token.length < 10) return false;',
  '  return token.startsWith("tok_");',
  '}',
  '',
].join('\n');

interface Turn {
  messages: Array<{ role?: string; content?: unknown; tool_call_id?: unknown; tool_calls?: unknown }>;
  tools: unknown[] | undefined;
  body: Record<string, unknown>;
}

/** The step a request is for: 1 + the answers the agent already had. */
function stepOf(turn: Turn): number {
  return turn.messages.filter((m) => m.role === 'assistant').length + 1;
}

function taskOf(turn: Turn): string {
  return String(turn.messages.find((m) => m.role === 'user')?.content ?? '');
}

function lastText(turn: Turn): string {
  return String(turn.messages.at(-1)?.content ?? '');
}

const call = (name: string, args: Record<string, unknown>): ScriptedTurn => ({
  tool_calls: [{ name, arguments: args }],
});

async function setUp(
  agent: (turn: Turn) => ScriptedTurn | undefined,
  options: DoubleOptions = {},
  edit: (config: Config) => void = () => {},
): Promise<{ double: LmStudioDouble; c: Connected; root: string }> {
  const root = await fileTree({ 'src/auth.ts': AUTH, 'src/util.ts': 'export const x = 1;\n' }, cleanups, 'agent-');
  const double = await LmStudioDouble.start({ ...options, agent: (turn) => agent(turn as Turn) });
  cleanups.push(() => double.close());
  const config = await testConfig((c) => {
    c.allowedRoots = [root];
    c.llm.endpoints = [
      { name: 'lmstudio', url: double.url, concurrency: 4, models: [], flavor: 'lmstudio', apiKeyEnv: 'LM_API_TOKEN' },
    ];
    edit(c);
  });
  const c = await connectInMemory(config);
  cleanups.push(() => c.close());
  return { double, c, root };
}

async function investigate(c: Connected, args: Record<string, unknown>): Promise<CollectedResult[]> {
  const submitted = await c.call('lmstudio_investigate', args);
  expect(submitted.isError, textOf(submitted)).toBeFalsy();
  const { results } = await collectAll(c, jobIdOf(submitted));
  return results;
}

async function transcriptOf(result: CollectedResult | undefined): Promise<Array<Record<string, unknown>>> {
  const file = result?.files?.transcript;
  expect(file).toBeDefined();
  const text = await readFile(file ?? '', 'utf8');
  return text
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** A well-behaved agent: looks around, reads, and finishes citing one true and two false claims. */
function carefulAgent(turn: Turn): ScriptedTurn {
  switch (stepOf(turn)) {
    case 1:
      return call('list_files', { path: 'src' });
    case 2:
      return call('grep', { pattern: 'startsWith', path: 'src' });
    case 3:
      return call('read_file', { path: 'src/auth.ts', start_line: 1, end_line: 4 });
    default:
      return call('finish', {
        answer: 'checkToken accepts tokens of 10+ characters starting with tok_.',
        citations: [
          { path: 'src/auth.ts', start_line: 2, end_line: 3, quote: 'return token.startsWith("tok_");' },
          { path: 'src/auth.ts', start_line: 40, end_line: 41 },
          { path: 'src/util.ts', start_line: 1, end_line: 1, quote: 'export const y = 2;' },
        ],
      });
  }
}

describe('lmstudio_investigate', () => {
  for (const stream of [false, true]) {
    it(`runs an agent loop over native tool calls${stream ? ' (streamed)' : ''} and checks its citations`, async () => {
      const { double, c } = await setUp(carefulAgent, {}, (config) => {
        config.llm.stream = stream;
      });
      const [result] = await investigate(c, { tasks: [{ id: 'auth', task: 'How are tokens checked?' }] });
      expect(result?.state).toBe('succeeded');
      expect(result?.id).toBe('auth');
      expect(result?.value).toMatchObject({
        text: 'checkToken accepts tokens of 10+ characters starting with tok_.',
        steps: 4,
        tool_calls: { list_files: 1, grep: 1, read_file: 1, finish: 1 },
        citations_verified: '1/3',
      });
      const citations = result?.value?.citations as Array<{ verified: boolean; reason: string }>;
      expect(citations.map((c) => c.verified)).toEqual([true, false, false]);
      expect(Number(result?.value?.tokens_in)).toBeGreaterThan(0);
      expect(Number(result?.value?.bytes_read)).toBeGreaterThan(0);
      // Each tool result went back as a `tool` message answering its call, and the tools were offered.
      const requests = double.chatRequests;
      expect(requests).toHaveLength(4);
      const names = (requests[0]?.body?.tools as Array<{ function: { name: string } }>).map((t) => t.function.name);
      expect(names).toEqual(['list_files', 'read_file', 'grep', 'outline', 'finish']);
      const messages = requests[3]?.body?.messages as Turn['messages'];
      const toolReplies = messages.filter((m) => m.role === 'tool');
      expect(toolReplies).toHaveLength(3);
      expect(String(toolReplies[1]?.content)).toContain('src/auth.ts:3');
      expect(String(toolReplies[2]?.content)).toContain('return token.startsWith("tok_");');
      const lines = await transcriptOf(result);
      expect(lines.map((l) => l.type)).toEqual([
        'start',
        'request',
        'tool',
        'request',
        'tool',
        'request',
        'tool',
        'request',
        'finish',
      ]);
    });
  }

  it('recovers calls written in the text, and takes a plain answer as the answer with its path:line citations', async () => {
    const { c } = await setUp((turn) => {
      if (taskOf(turn).includes('plain'))
        return { content: 'Tokens are checked in src/auth.ts:2-3 by length and prefix.' };
      if (stepOf(turn) === 1)
        return {
          content: 'I will read it.\n```json\n{"name": "read_file", "arguments": {"path": "src/auth.ts",}}\n```',
        };
      return { content: '{"name": "finish", "arguments": {"answer": "By prefix.", "citations": []}}' };
    });
    const results = await investigate(c, { tasks: [{ task: 'in text' }, { task: 'plain' }] });
    expect(results[0]?.value).toMatchObject({ text: 'By prefix.', steps: 2, tool_calls: { read_file: 1, finish: 1 } });
    expect(results[1]?.value).toMatchObject({
      answered_without_tools: true,
      steps: 1,
      citations_verified: '1/1',
      citations: [{ path: 'src/auth.ts', start_line: 2, end_line: 3, verified: true }],
    });
  });

  it('answers a malformed call with one correction, and refuses hostile paths without ending the loop', async () => {
    const { double, c, root } = await setUp((turn) => {
      switch (stepOf(turn)) {
        case 1:
          return { content: '{"name": "read_file", "arguments": {"path": ' };
        case 2:
          return call('read_file', { path: '../../etc/passwd' });
        case 3:
          return call('read_file', { path: '/etc/passwd' });
        case 4:
          return call('read_file', { path: 'escape/passwd' });
        default:
          return call('finish', { answer: 'Nothing outside.', citations: [] });
      }
    });
    await symlink('/etc', path.join(root, 'escape'));
    const [result] = await investigate(c, { tasks: [{ task: 'try to escape' }] });
    expect(result?.state).toBe('succeeded');
    expect(result?.value).toMatchObject({ steps: 5, corrections: 1 });
    const messages = double.chatRequests.at(-1)?.body?.messages as Turn['messages'];
    const replies = messages.filter((m) => m.role === 'tool').map((m) => String(m.content));
    expect(replies).toHaveLength(3);
    for (const reply of replies) expect(reply).not.toContain('root:');
    const correction = messages.find((m) => m.role === 'user' && String(m.content).includes('could not be read'));
    expect(correction).toBeDefined();
  });

  it('ends a loop that never finishes after max_steps with one request that offers only finish', async () => {
    const { double, c } = await setUp((turn) => {
      const offered = (turn.tools ?? []) as Array<{ function: { name: string } }>;
      if (offered.length === 1) return call('finish', { answer: 'Partial: looked at src.', citations: [] });
      return call('list_files', { path: 'src', glob: `*${stepOf(turn)}` });
    });
    const [result] = await investigate(c, { tasks: [{ task: 'loop' }], max_steps: 3 });
    expect(result?.value).toMatchObject({ text: 'Partial: looked at src.', steps: 4, max_steps_reached: true });
    const last = double.chatRequests.at(-1);
    expect(lastText({ messages: last?.body?.messages as Turn['messages'], tools: [], body: {} })).toContain(
      'used all 3 turns',
    );
  });

  it('falls back to tools described in the prompt when the server refuses `tools`', async () => {
    const { double, c } = await setUp(
      (turn) => {
        if (stepOf(turn) === 1) return { content: '{"name": "outline", "arguments": {"path": "src/auth.ts"}}' };
        return { content: '{"name": "finish", "arguments": {"answer": "One function.", "citations": []}}' };
      },
      { rejectTools: 'tools param requires --jinja flag' },
    );
    const [result] = await investigate(c, { tasks: [{ task: 'outline it' }] });
    expect(result?.state).toBe('succeeded');
    expect(result?.value).toMatchObject({ text: 'One function.', steps: 2 });
    expect(result?.value?.notes).toEqual([expect.stringContaining('refused')]);
    const sent = double.chatRequests;
    // Refused once (llama-server's 500 is not retried): every later request describes the tools in the prompt.
    expect(sent[0]?.body?.tools).toBeDefined();
    expect(sent.slice(1).every((r) => r.body?.tools === undefined)).toBe(true);
    const system = String((sent[1]?.body?.messages as Turn['messages'])[0]?.content);
    expect(system).toContain('read_file');
  });

  it('checks a final answer against json_schema with one correction', async () => {
    const schema = { type: 'object', properties: { risk: { type: 'integer' } }, required: ['risk'] };
    const { c } = await setUp((turn) => {
      if (stepOf(turn) === 1) return call('finish', { answer: { risky: 'yes' }, citations: [] });
      return call('finish', { answer: { risk: 3 }, citations: [] });
    });
    const [result] = await investigate(c, { tasks: [{ task: 'rate it' }], json_schema: schema });
    expect(result?.value).toMatchObject({ json: { risk: 3 }, steps: 2, corrections: 1 });
  });

  it('refuses bad requests with a clear error and starts nothing', async () => {
    const { c } = await setUp(() => undefined);
    const outside = await c.call('lmstudio_investigate', { tasks: [{ task: 'x', paths: ['../elsewhere/**'] }] });
    expect(outside.isError).toBe(true);
    expect(textOf(outside)).toContain('outside the allowed folders');
    const steps = await c.call('lmstudio_investigate', { tasks: [{ task: 'x' }], max_steps: 0 });
    expect(steps.isError).toBe(true);
    const none = await c.call('lmstudio_investigate', {});
    expect(textOf(none)).toContain('Nothing to investigate');
  });

  it('makes room in a filling context by eliding the oldest tool results to a stub, never overflowing', async () => {
    const line = (i: number): string => `export const value${String(i).padStart(3, '0')} = "${'x'.repeat(40)}";`;
    const big = Array.from({ length: 120 }, (_, i) => line(i)).join('\n');
    const { double, c, root } = await setUp(
      (turn) => {
        const step = stepOf(turn);
        if (step <= 3) return call('read_file', { path: `src/big${step}.ts` });
        return call('finish', { answer: 'Read three files.', citations: [] });
      },
      { models: [{ id: 'test-model', type: 'llm', state: 'loaded', contextLength: 4000 }] },
    );
    for (const n of [1, 2, 3]) await writeFile(path.join(root, `src/big${n}.ts`), big);
    const [result] = await investigate(c, { tasks: [{ task: 'read them all' }], max_tokens: 200 });
    expect(result?.state, JSON.stringify(result)).toBe('succeeded');
    expect(Number(result?.value?.elided_results)).toBeGreaterThan(0);
    const last = double.chatRequests.at(-1)?.body?.messages as Turn['messages'];
    expect(last.some((m) => /^\[read_file src\/big1\.ts [^\]]*elided\]$/.test(String(m.content)))).toBe(true);
    // Every request fitted: the double refuses a prompt over its context with a 400.
    expect(double.chatRequests).toHaveLength(4);
  });

  it('reads a 10 MB file by windows and stops a catastrophic regex, and the loop goes on', async () => {
    const { double, c, root } = await setUp((turn) => {
      switch (stepOf(turn)) {
        case 1:
          return call('read_file', { path: 'huge.txt', start_line: 100_000, end_line: 100_001 });
        case 2:
          return call('grep', { pattern: '(a+)+$', path: 'evil.txt' });
        default:
          return call('finish', { answer: 'Done.', citations: [{ path: 'huge.txt', start_line: 2, end_line: 2 }] });
      }
    });
    const row = `${'0123456789'.repeat(9)}\n`;
    await writeFile(path.join(root, 'huge.txt'), row.repeat(Math.ceil((10 * 1024 * 1024) / row.length)));
    await writeFile(path.join(root, 'evil.txt'), `${'a'.repeat(60)}b\n`);
    const [result] = await investigate(c, { tasks: [{ task: 'hostile files' }] });
    expect(result?.value).toMatchObject({ text: 'Done.', steps: 3, citations_verified: '1/1' });
    const replies = (double.chatRequests.at(-1)?.body?.messages as Turn['messages'])
      .filter((m) => m.role === 'tool')
      .map((m) => String(m.content));
    expect(replies[0]).toContain('100000');
    expect(replies[0]?.length).toBeLessThan(2000);
    expect(replies[1]).toContain('stopped after');
  }, 60_000);

  it('reads tasks from tasks_file, merges the findings with reduce, and runs one investigation per upstream result', async () => {
    const { c, root } = await setUp((turn) => {
      if (turn.tools === undefined && !taskOf(turn).startsWith('Task:')) return undefined;
      return call('finish', { answer: `Found for ${taskOf(turn).slice(6, 40)}`, citations: [] });
    });
    await writeFile(path.join(root, 'tasks.jsonl'), '{"id": "a", "task": "alpha"}\n{"id": "b", "task": "beta"}\n');
    const [merged] = await investigate(c, { tasks_file: 'tasks.jsonl', reduce: 'Merge the findings.' });
    expect(merged?.state).toBe('succeeded');
    expect(merged?.value).toMatchObject({ inputs: 2 });
    const upstream = await c.call('lmstudio_complete', { prompts: [{ prompt: 'one' }, { prompt: 'two' }] });
    const later = await investigate(c, { from_job: jobIdOf(upstream), tasks: [{ task: 'Explain: {{output}}' }] });
    expect(later.map((r) => r.value?.text)).toEqual([
      'Found for Explain: Answer to: one',
      'Found for Explain: Answer to: two',
    ]);
  });

  it('answers a repeated call with a note instead of its result again', async () => {
    const { double, c } = await setUp((turn) => {
      if (stepOf(turn) <= 2) return call('read_file', { path: 'src/util.ts' });
      return call('finish', { answer: 'x = 1', citations: [] });
    });
    const [result] = await investigate(c, { tasks: [{ task: 'repeat' }] });
    expect(result?.value).toMatchObject({ steps: 3, tool_calls: { read_file: 2 } });
    const replies = (double.chatRequests.at(-1)?.body?.messages as Turn['messages']).filter((m) => m.role === 'tool');
    expect(String(replies[0]?.content)).toContain('export const x = 1;');
    expect(String(replies[1]?.content)).toContain('already made this exact call');
  });

  it('runs more agents than slots, each with one request in flight, the endpoint never over its limit', async () => {
    const { double, c } = await setUp(
      (turn) => {
        if (stepOf(turn) <= 3) return call('grep', { pattern: `value${stepOf(turn)}`, path: 'src' });
        return call('finish', { answer: 'done', citations: [] });
      },
      { latencyMs: 60, slots: 4 },
    );
    const submitted = await c.call('lmstudio_investigate', {
      tasks: Array.from({ length: 12 }, (_, i) => ({ task: `agent ${i}` })),
    });
    const { results, job } = await collectAll(c, jobIdOf(submitted));
    expect(results.every((r) => r.state === 'succeeded')).toBe(true);
    expect(job.concurrency).toBe(8);
    expect(Number(job.peak_running)).toBeGreaterThan(4);
    expect(double.peakActive).toBeLessThanOrEqual(4);
    expect(double.peakInFlight).toBeLessThanOrEqual(4);
  });
});
