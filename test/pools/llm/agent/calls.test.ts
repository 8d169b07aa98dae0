import { describe, expect, it } from 'vitest';
import { LlmError } from '../../../../src/pools/llm/errors.js';
import {
  type AgentCall,
  type CallReading,
  protocolPrompt,
  readCalls,
  toolsRejected,
} from '../../../../src/pools/llm/agent/calls.js';
import { parseLoose } from '../../../../src/pools/llm/agent/loose-json.js';
import { matchToolName } from '../../../../src/pools/llm/agent/names.js';
import type { NativeToolCall, ToolSpec } from '../../../../src/pools/llm/types.js';
import { UpstreamAnswerError } from '../../../../src/pools/llm/upstream.js';

const TOOLS = ['list_files', 'read_file', 'grep', 'outline', 'finish'];

function text(content: string): CallReading {
  return readCalls({ content }, TOOLS);
}

function native(...toolCalls: NativeToolCall[]): CallReading {
  return readCalls({ content: '', toolCalls }, TOOLS);
}

/** The calls of a reading that must have some. */
function callsOf(reading: CallReading): AgentCall[] {
  if (reading.kind !== 'calls') throw new Error(`expected calls, got ${JSON.stringify(reading)}`);
  return reading.calls;
}

function problemOf(reading: CallReading): { problem: string; correction: string } {
  if (reading.kind !== 'malformed') throw new Error(`expected malformed, got ${JSON.stringify(reading)}`);
  return reading;
}

describe('readCalls: native tool calls', () => {
  it('reads arguments as sent, keeps the id, and makes one up when there is none', () => {
    const calls = callsOf(
      native(
        { id: 'abc', name: 'read_file', arguments: '{"path":"src/a.ts","start_line":3}' },
        { name: 'grep', arguments: '{"pattern":"TODO"}' },
      ),
    );
    expect(calls).toEqual([
      { id: 'abc', name: 'read_file', args: { path: 'src/a.ts', start_line: 3 } },
      { id: 'call_2', name: 'grep', args: { pattern: 'TODO' } },
    ]);
  });

  it('takes empty arguments as {} and a string holding JSON again as its object', () => {
    expect(callsOf(native({ name: 'list_files', arguments: '' }))[0]?.args).toEqual({});
    expect(callsOf(native({ name: 'list_files', arguments: '  null ' }))[0]?.args).toEqual({});
    const twice = callsOf(native({ name: 'read_file', arguments: JSON.stringify('{"path": "a.ts"}') }))[0];
    expect(twice?.args).toEqual({ path: 'a.ts' });
    expect(twice?.recovered).toContain('arguments were JSON inside a string');
  });

  it('repairs arguments that are almost JSON and says how', () => {
    const call = callsOf(native({ name: 'read_file', arguments: "{'path': 'a.ts', end_line: 9,}" }))[0];
    expect(call?.args).toEqual({ path: 'a.ts', end_line: 9 });
    expect(call?.recovered).toMatch(/single quotes/);
    expect(call?.recovered).toMatch(/trailing comma/);
    expect(call?.recovered).toMatch(/unquoted keys/);
  });

  it('maps a name close to a real tool, and says so', () => {
    const cases: Array<[string, string]> = [
      ['Read_File', 'read_file'],
      ['readFile', 'read_file'],
      ['read-file', 'read_file'],
      ['read_flie', 'read_file'],
      ['functions.grep', 'grep'],
      ['list_file', 'list_files'],
      ['final_answer', 'finish'],
      ['cat', 'read_file'],
    ];
    for (const [sent, tool] of cases) {
      const call = callsOf(native({ name: sent, arguments: '{}' }))[0];
      expect(call?.name, sent).toBe(tool);
      expect(call?.recovered, sent).toBe(`name ${JSON.stringify(sent)} taken as ${tool}`);
    }
  });

  it('refuses an unknown name with a correction listing the tools and an example', () => {
    const { problem, correction } = problemOf(native({ name: 'web_search', arguments: '{}' }));
    expect(problem).toBe('the call names a tool "web_search" that does not exist');
    expect(correction).toBe(
      'Your tool call could not be read: the call names a tool "web_search" that does not exist. Call one of: list_files, read_file, grep, outline, finish, with JSON arguments, e.g. {"name": "read_file", "arguments": {"path": "src/index.ts", "start_line": 1, "end_line": 80}}.',
    );
    // Short names get one edit only: `glob` is no typo of `grep` (it is a synonym of list_files).
    expect(matchToolName('grap', TOOLS)?.tool).toBe('grep');
    expect(matchToolName('gxxp', TOOLS)).toBeUndefined();
    expect(matchToolName('glob', TOOLS)?.tool).toBe('list_files');
  });

  it('refuses arguments that are not an object, or not JSON, naming the call', () => {
    expect(problemOf(native({ name: 'grep', arguments: '["TODO"]' })).problem).toBe(
      'the call (grep): its arguments are a list, not a JSON object',
    );
    expect(problemOf(native({ name: 'grep', arguments: '42' })).problem).toMatch(/a number, not a JSON object/);
    const broken = problemOf(
      native({ name: 'read_file', arguments: '{"path":"a"}' }, { name: 'grep', arguments: '{"pattern": "x"' }),
    );
    expect(broken.problem).toMatch(/^call 2 of 2 \(grep\): its arguments are not valid JSON: the JSON is cut off/);
  });
});

describe('readCalls: calls written in the text', () => {
  const expected = { name: 'read_file', args: { path: 'src/a.ts' } };

  it('reads bare JSON, fenced JSON and JSON within prose', () => {
    for (const content of [
      '{"name": "read_file", "arguments": {"path": "src/a.ts"}}',
      '```json\n{"name": "read_file", "arguments": {"path": "src/a.ts"}}\n```',
      '```\n{"name": "read_file", "arguments": {"path": "src/a.ts"}}\n```',
      'Let me look at the file first.\n{"name": "read_file", "arguments": {"path": "src/a.ts"}}\nThen I will grep.',
    ]) {
      const call = callsOf(text(content))[0];
      expect(call, content).toMatchObject({ ...expected, id: 'call_1' });
      expect(call?.recovered, content).toBe('written in the text');
    }
  });

  it('reads Qwen/Hermes <tool_call> tags (several), Mistral [TOOL_CALLS] and <function=…> tags', () => {
    const tags = text(
      '<tool_call>\n{"name": "read_file", "arguments": {"path": "src/a.ts"}}\n</tool_call>\n<tool_call>\n{"name": "grep", "arguments": {"pattern": "x"}}\n</tool_call>',
    );
    expect(callsOf(tags).map((c) => [c.id, c.name])).toEqual([
      ['call_1', 'read_file'],
      ['call_2', 'grep'],
    ]);
    expect(callsOf(text('[TOOL_CALLS][{"name": "read_file", "arguments": {"path": "src/a.ts"}}]'))[0]).toMatchObject(
      expected,
    );
    expect(callsOf(text('<function=read_file>{"path": "src/a.ts"}</function>'))[0]).toMatchObject(expected);
    // A tag cut by max_tokens still holds its call.
    expect(callsOf(text('<tool_call>{"name": "read_file", "arguments": {"path": "src/a.ts"}}'))[0]).toMatchObject(
      expected,
    );
  });

  it('reads every call shape models use, and lists of them', () => {
    const shapes = [
      '{"name": "read_file", "parameters": {"path": "src/a.ts"}}',
      '{"name": "read_file", "args": {"path": "src/a.ts"}}',
      '{"tool": "read_file", "path": "src/a.ts"}',
      '{"function": "read_file", "arguments": {"path": "src/a.ts"}}',
      '{"tool_name": "read_file", "input": {"path": "src/a.ts"}}',
      '{"function": {"name": "read_file", "arguments": "{\\"path\\": \\"src/a.ts\\"}"}}',
      '{"type": "function", "function": {"name": "read_file", "arguments": {"path": "src/a.ts"}}}',
      '{"name": "read_file", "path": "src/a.ts"}',
      '{"tool_calls": [{"function": {"name": "read_file", "arguments": {"path": "src/a.ts"}}}]}',
    ];
    for (const shape of shapes) expect(callsOf(text(shape))[0], shape).toMatchObject(expected);
    const list = callsOf(
      text('[{"name": "read_file", "arguments": {"path": "src/a.ts"}}, {"tool": "outline", "path": "b.py"}]'),
    );
    expect(list.map((c) => [c.name, c.args])).toEqual([
      ['read_file', { path: 'src/a.ts' }],
      ['outline', { path: 'b.py' }],
    ]);
  });

  it('repairs trailing commas, single quotes, unquoted keys and Python literals', () => {
    const call = callsOf(
      text("```json\n{name: 'read_file', arguments: {'path': 'src/a.ts', 'whole': True, 'x': None,},}\n```"),
    )[0];
    expect(call?.args).toEqual({ path: 'src/a.ts', whole: true, x: null });
    expect(call?.recovered).toBe(
      'written in the text; unquoted keys quoted; single quotes read as double; Python True/False/None read as JSON; trailing comma dropped',
    );
  });

  it('reads Python-style calls when the text is nothing else', () => {
    const calls = callsOf(text('[read_file(path="src/a.ts", start_line=2), grep(pattern=\'x\')]'));
    expect(calls.map((c) => [c.name, c.args])).toEqual([
      ['read_file', { path: 'src/a.ts', start_line: 2 }],
      ['grep', { pattern: 'x' }],
    ]);
    expect(calls[0]?.recovered).toContain('written as a Python-style call');
    expect(callsOf(text('```tool_code\nfinish({"answer": "done", "citations": []})\n```'))[0]?.args).toEqual({
      answer: 'done',
      citations: [],
    });
    // In prose, `read_file(path)` is a mention, not a call.
    expect(text('I used read_file(path) and then grep(pattern) to find it.').kind).toBe('text');
  });

  it('takes a bare {"answer": …} as finish, but only when finish is offered', () => {
    const call = callsOf(
      text('{"answer": "It is in a.ts", "citations": [{"path": "a.ts", "start_line": 1, "end_line": 2}]}'),
    )[0];
    expect(call?.name).toBe('finish');
    expect(call?.recovered).toContain('taken as finish');
    expect(readCalls({ content: '{"answer": "x"}' }, ['read_file']).kind).toBe('text');
  });

  it('strips reasoning before reading: a call drafted in <think> is not a call', () => {
    expect(text('<think>maybe {"name": "grep", "arguments": {"pattern": "x"}}</think>The answer is 42.')).toEqual({
      kind: 'text',
      text: 'The answer is 42.',
    });
  });

  it('leaves plain answers, JSON that is not a call and quoted objects in prose as text', () => {
    for (const content of [
      'The config is loaded in src/config.ts:12.',
      'The package reads {"name": "monitor-mcp", "version": "0.1.0"} from package.json.',
      '```ts\nconst x = { name: "read_file" };\n```',
      '```json\n{"name": "monitor-mcp", "version": "0.1.0"}\n```',
      '',
    ])
      expect(text(content).kind, content).toBe('text');
  });
});

describe('readCalls: malformed calls get one precise correction', () => {
  it('an unknown tool written as the whole answer', () => {
    expect(problemOf(text('{"name": "run_shell", "arguments": {"cmd": "ls"}}')).problem).toBe(
      'the call names a tool "run_shell" that does not exist',
    );
    expect(problemOf(text('<tool_call>{"name": "web_search", "arguments": {}}</tool_call>')).problem).toMatch(
      /web_search/,
    );
  });

  it('broken JSON in a tag, a fence, or alone; cut off by max_tokens', () => {
    expect(
      problemOf(text('<tool_call>{"name": "read_file", "arguments": {"path": "a" "x"}}</tool_call>')).problem,
    ).toBe('the JSON does not parse: expected `:` after key "x" at character 52 (near `s": {"path": "a" "x"}}`)');
    expect(problemOf(text('```json\n{"name": "grep", "arguments": {"pattern": x}}\n```')).problem).toMatch(
      /unexpected word `x`/,
    );
    expect(problemOf(text('{"name": "read_file", "arguments": {"path": "src/a.ts"')).problem).toMatch(/cut off/);
    expect(problemOf(text('<tool_call>\nread the file please\n</tool_call>')).problem).toBe(
      'no tool name and arguments found in it',
    );
  });

  it('broken JSON in prose only when it names a tool', () => {
    expect(
      problemOf(text('I will now call {"name": "read_file", "arguments": {"path": src/a.ts}} to check.')).problem,
    ).toMatch(/does not parse/);
    expect(text('The struct is {name: x y} in C.').kind).toBe('text');
  });
});

describe('readCalls: hostile input', () => {
  it('1 MB of content is the answer, not searched', () => {
    const big = '{"name": "read_file", "arguments": {"path": "a"}} ' + 'x'.repeat(1_000_000);
    const started = performance.now();
    const reading = text(big);
    expect(reading.kind).toBe('text');
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('200 KB of braces and quotes stays bounded', () => {
    const started = performance.now();
    expect(text('{'.repeat(100_000)).kind).toBe('text');
    expect(text('{"name": "grep", '.repeat(10_000)).kind).not.toBe('calls');
    expect(text('[\'"'.repeat(60_000)).kind).toBe('text');
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('deeply nested arguments are refused, not a stack overflow', () => {
    const deep = '['.repeat(50_000) + ']'.repeat(50_000);
    expect(problemOf(native({ name: 'grep', arguments: `{"pattern": ${deep}}` })).problem).toMatch(
      /nested deeper than 32/,
    );
    expect(problemOf(native({ name: 'grep', arguments: `{'pattern': ${deep},}` })).problem).toMatch(
      /nested deeper than 32/,
    );
  });

  it('__proto__ keys are dropped and touch no prototype', () => {
    const viaJson = callsOf(
      native({ name: 'grep', arguments: '{"pattern": "x", "__proto__": {"polluted": true}}' }),
    )[0];
    const viaLoose = callsOf(native({ name: 'grep', arguments: "{pattern: 'x', __proto__: {polluted: true},}" }))[0];
    for (const call of [viaJson, viaLoose]) {
      expect(call?.args).toEqual({ pattern: 'x' });
      expect(Object.getPrototypeOf(call?.args)).toBe(Object.prototype);
      expect(Object.hasOwn(call?.args ?? {}, '__proto__')).toBe(false);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('wrong-typed fields and oversized arguments never throw', () => {
    const hostile = [
      { name: 42, arguments: {} },
      { name: 'grep', arguments: 'x'.repeat(300_000) },
      { name: '', arguments: '{}' },
    ] as unknown as NativeToolCall[];
    expect(problemOf(readCalls({ content: '', toolCalls: [hostile[0]!] }, TOOLS)).problem).toBe(
      'the call has no tool name',
    );
    expect(problemOf(readCalls({ content: '', toolCalls: [hostile[1]!] }, TOOLS)).problem).toMatch(
      /longer than 200000/,
    );
    expect(readCalls({ content: 7 as unknown as string }, TOOLS)).toEqual({ kind: 'text', text: '' });
  });

  it('more than 16 calls: the rest are dropped', () => {
    const many = Array.from({ length: 40 }, () => ({ name: 'grep', arguments: '{"pattern": "x"}' }));
    expect(callsOf(native(...many))).toHaveLength(16);
  });
});

describe('parseLoose', () => {
  it('keeps strict JSON as it is and reports repairs otherwise', () => {
    expect(parseLoose('{"a": [1, 2.5e3, "x\\n"]}')).toEqual({ ok: true, value: { a: [1, 2500, 'x\n'] }, repairs: [] });
    expect(parseLoose('{a = 1 b = "two" // note\n}')).toEqual({
      ok: true,
      value: { a: 1, b: 'two' },
      repairs: ['unquoted keys quoted', '`=` read as `:`', 'missing comma added', 'comments dropped'],
    });
    expect(parseLoose('{"answer": "line one\nline two"}')).toMatchObject({
      ok: true,
      value: { answer: 'line one\nline two' },
    });
    expect(parseLoose('{"a": 1} tail')).toMatchObject({
      ok: false,
      problem: expect.stringMatching(/^text after the JSON value/),
    });
  });
});

describe('toolsRejected', () => {
  // The texts real servers send (see protocol.ts); Ollama's carries the model's full name.
  const refusals = [
    'tools param requires --jinja flag',
    'Unsupported param: tools',
    'Cannot use tools with stream',
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
    'qwen2.5-coder:0.5b does not support tools',
    "[{'type': 'extra_forbidden', 'loc': ('body', 'tools'), 'msg': 'Extra inputs are not permitted'}]",
    'Unexpected role "tool"',
  ];

  it('recognises each server refusal, wrapped as the client wraps it', () => {
    for (const message of refusals) {
      expect(toolsRejected(message), message).toBe(true);
      const wrapped = new UpstreamAnswerError(
        'UPSTREAM_ERROR',
        `endpoint x answered with an error (HTTP 400): ${message}`,
        400,
      );
      expect(toolsRejected(wrapped), message).toBe(true);
      expect(toolsRejected(new Error('the request failed', { cause: new Error(message) })), message).toBe(true);
    }
  });

  it('is false for other errors', () => {
    for (const error of [
      new LlmError('CONTEXT_OVERFLOW', 'The prompt does not fit the context'),
      new Error('Extra inputs are not permitted: seed'),
      new Error('model "x" not found'),
      undefined,
      null,
      42,
      { message: 7 },
    ])
      expect(toolsRejected(error)).toBe(false);
  });
});

describe('protocolPrompt', () => {
  it('describes each tool with its arguments and how to write one call', () => {
    const tools: ToolSpec[] = [
      {
        type: 'function',
        function: {
          name: 'read_file',
          description: 'Read lines of a file.',
          parameters: {
            type: 'object',
            properties: { path: { type: 'string' }, start_line: { type: 'integer' } },
            required: ['path'],
          },
        },
      },
      {
        type: 'function',
        function: {
          name: 'finish',
          description: 'End with the answer.',
          parameters: {
            type: 'object',
            properties: {
              answer: { type: 'string' },
              citations: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { path: { type: 'string' }, quote: { type: 'string' } },
                  required: ['path'],
                },
              },
            },
            required: ['answer'],
          },
        },
      },
    ];
    const prompt = protocolPrompt(tools);
    expect(prompt).toContain('- read_file(path: string, start_line?: integer): Read lines of a file.');
    expect(prompt).toContain(
      '- finish(answer: string, citations?: array of {path: string, quote?: string}): End with the answer.',
    );
    expect(prompt).toContain('{"name": "<tool name>", "arguments": {<arguments as JSON>}}');
    expect(prompt).toContain('call finish when you have the answer');
    // What the prompt asks for is what readCalls reads.
    const example = /for example (\{.*\})$/m.exec(prompt)?.[1] ?? '';
    expect(callsOf(readCalls({ content: example }, ['read_file', 'finish']))[0]?.name).toBe('read_file');
  });
});
