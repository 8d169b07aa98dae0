import { describe, expect, it } from 'vitest';
import type { TaskContext } from '../../../src/engine/types.js';
import { parseReply, preview, requestFor, requestId } from '../../../src/pools/script/warm-protocol.js';

/** The warm protocol's lines (warm-protocol.ts) on their own: the request made for a task, a reply line checked. */

const task = (index: number, attempt = 1): TaskContext =>
  ({
    index,
    attempt,
    jobId: 'job_x',
    input: {},
    options: {},
    outputDir: '/tmp',
    signal: new AbortController().signal,
  }) as TaskContext;

describe('requestFor', () => {
  it("carries a cold task's args, its input and its per-task MONITOR_ variables", () => {
    // No id: each request line gets a fresh one when it is sent (requestId).
    expect(requestFor(task(7, 2), { args: ['a b'] })).toEqual({
      args: ['a b'],
      env: { MONITOR_TASK_INDEX: '7', MONITOR_ATTEMPT: '2', MONITOR_STDIN_FORMAT: 'none' },
    });
    expect(requestFor(task(1), { stdin: 'text' })).toMatchObject({
      args: [],
      stdin: 'text',
      env: { MONITOR_STDIN_FORMAT: 'text' },
    });
    const json = requestFor(task(1), { json: { n: 1 } });
    expect(json).toMatchObject({ json: { n: 1 }, env: { MONITOR_STDIN_FORMAT: 'json' } });
    expect(json).not.toHaveProperty('stdin');
  });
});

describe('requestId', () => {
  it('draws positive 31-bit integers that cannot be told in advance, never the previous one again', () => {
    const ids = Array.from({ length: 1000 }, () => requestId(undefined));
    for (const id of ids) {
      expect(Number.isInteger(id)).toBe(true);
      expect(id).toBeGreaterThan(0);
      expect(id).toBeLessThan(2 ** 31);
    }
    // Not a counter: 1000 draws from 2^31 values hardly ever repeat, and do not come in order.
    expect(new Set(ids).size).toBeGreaterThan(990);
    expect(ids.slice(1).every((id, at) => id === (ids[at] ?? 0) + 1)).toBe(false);
    let previous = requestId(undefined);
    for (let n = 0; n < 1000; n++) {
      const next = requestId(previous);
      expect(next).not.toBe(previous);
      previous = next;
    }
  });
});

describe('parseReply', () => {
  const line = (text: string): Buffer => Buffer.from(text);

  it('takes a reply with its exit_code and a result or an output', () => {
    expect(parseReply(line('{"id": 3, "exit_code": 0, "result": {"a": 1}}'), 3)).toEqual({
      reply: { exit_code: 0, result: { a: 1 } },
    });
    expect(parseReply(line('{"id": 3, "exit_code": 2, "output": "text"}'), 3)).toEqual({
      reply: { exit_code: 2, output: 'text' },
    });
    expect(parseReply(line('{"id": 3, "exit_code": 0}'), 3)).toEqual({ reply: { exit_code: 0 } });
  });

  it.each([
    ['not JSON', '{"id": 3', /not JSON/],
    ['an array', '[1]', /not a JSON object/],
    ['another id', '{"id": 4, "exit_code": 0}', /replied with id 4 to request 3/],
    ['no id', '{"exit_code": 0}', /replied with id missing to request 3/],
    ['the id as a string', '{"id": "3", "exit_code": 0}', /replied with id "3" to request 3/],
    ['no integer exit_code', '{"id": 3, "exit_code": 0.5}', /without an integer exit_code/],
    ['an output that is no string', '{"id": 3, "exit_code": 0, "output": 1}', /output is not a string/],
    ['both result and output', '{"id": 3, "exit_code": 0, "output": "a", "result": 1}', /both result and output/],
  ])('refuses %s', (_what, text, problem) => {
    const parsed = parseReply(line(text), 3);
    expect('problem' in parsed && parsed.problem).toMatch(problem);
  });

  it('refuses a reply that is not UTF-8, quoting it escaped', () => {
    const parsed = parseReply(Buffer.from([0x7b, 0xff, 0x7d]), 3);
    expect('problem' in parsed && parsed.problem).toBe('sent a reply that is not valid UTF-8: "{\uFFFD}"');
  });

  it('quotes at most 200 characters of a bad line', () => {
    expect(preview('x'.repeat(500))).toBe(`${JSON.stringify('x'.repeat(200))}…`);
    expect(preview('a\nb')).toBe('"a\\nb"');
  });
});
