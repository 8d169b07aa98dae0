import { describe, expect, it } from 'vitest';
import { MonitorError } from '../../../src/errors.js';
import { jobOptions, taskInput } from '../../../src/pools/llm/stored.js';

describe('stored inputs and options', () => {
  it('reads back every kind of task input', () => {
    const inputs = [
      { id: '1', messages: [{ role: 'user', content: 'Hi' }] },
      { id: 'reduce', reduce: true },
      { id: 'a.py', upstream: true },
      { id: 'a.md | 1', values: { topic: 'auth', n: 2 }, file: { path: '/r/a.md', display: 'a.md' } },
      { id: 'pack', files: [{ path: '/r/b.md', display: 'b.md', chunk: 1, chunks: 2, start: 0, end: 9, size: 20 }] },
    ];
    for (const input of inputs) expect(taskInput(input)).toEqual(input);
  });

  it('refuses a damaged input or options with INVALID_INPUT, naming what was stored', () => {
    expect(() => taskInput({ id: 1, messages: [{ role: 'user', content: 'Hi' }] })).toThrow(MonitorError);
    expect(() => taskInput({ id: '1', file: { path: '/r/a.md' } })).toThrow(
      /The stored input of this task is not valid/,
    );
    expect(() => jobOptions({ model: 'm' })).toThrow(/The stored job options of this task is not valid/);
    expect(() => jobOptions('m')).toThrow(MonitorError);
  });

  it('parses a job options object once: every task of the job shares the parsed value', () => {
    const stored = { model: 'm', timeout_seconds: 30, max_tokens: 64 };
    const first = jobOptions(stored);
    expect(first).toEqual(stored);
    expect(jobOptions(stored)).toBe(first);
  });

  it("reads back a job's checks as stored, and refuses damaged ones", () => {
    const stored = {
      model: 'small',
      timeout_seconds: 60,
      checks: {
        schema: true,
        citations: true,
        script: { worker: 'check_patch.py', args: ['--strict'], timeout_seconds: 5 },
        agree: 3,
        escalate_model: 'big',
      },
    };
    expect(jobOptions(stored)).toEqual(stored);
    expect(() => jobOptions({ ...stored, checks: { agree: 1000 } })).toThrow(/stored job options/);
    expect(() => jobOptions({ ...stored, checks: { script: { args: [] } } })).toThrow(MonitorError);
  });
});
