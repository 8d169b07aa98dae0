import { describe, expect, it } from 'vitest';
import type { TaskResult } from '../../../../src/engine/types.js';
import { agreement, normalised } from '../../../../src/pools/llm/checks/agree.js';

const ok: TaskResult = { ok: true };
const failed: TaskResult = { ok: false, error: { code: 'TIMEOUT', message: 'slow' } };

describe('agreement', () => {
  it('treats equal JSON (keys in any order) and text differing in case, spacing or a closing full stop as one answer', () => {
    expect(normalised('{"a": 1, "b": [1, {"y": 2, "x": 1}]}')).toBe(normalised('{"b":[1,{"x":1,"y":2}],"a":1}'));
    expect(normalised('  Yes.\n')).toBe(normalised('yes'));
    expect(normalised('The  answer is\nRED!')).toBe(normalised('the answer is red'));
    expect(normalised('{"a": 1}')).not.toBe(normalised('{"a": 2}'));
    expect(normalised('{not json')).toBe(normalised('{NOT json'));
    // A JSON string and the same text unquoted are different answers: one is JSON.
    expect(normalised('"red"')).not.toBe(normalised('red'));
    // A hostile answer nested past the stack compares as text instead of taking the task down.
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    expect(normalised(deep)).toBe(`text:${deep}`);
  });

  it('accepts the answer more than half of the samples give, the first of them chosen', () => {
    const answers = ['Red', 'blue', 'red.'];
    expect(agreement([ok, ok, ok], answers)).toEqual({ chosen: 0, votes: 2, asked: 3, majority: true });
  });

  it('a plurality is not a majority; failed samples vote for nothing and are counted in the reason', () => {
    const split = agreement([ok, ok, ok, ok], ['a', 'b', 'a', 'b']);
    expect(split.majority).toBe(false);
    expect(split.reason).toBe('no majority among 4 samples: "a" ×2, "b" ×2');
    const withFailures = agreement([ok, failed, failed], ['a', undefined, undefined]);
    expect(withFailures).toMatchObject({ chosen: 0, votes: 1, majority: false });
    expect(withFailures.reason).toContain('2 gave no answer');
    expect(agreement([failed, failed], [undefined, undefined])).toMatchObject({
      chosen: undefined,
      majority: false,
      reason: 'no sample answered',
    });
  });
});
