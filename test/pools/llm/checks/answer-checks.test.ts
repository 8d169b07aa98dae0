import { describe, expect, it } from 'vitest';
import { type AnswerCheckDeps, checkAnswer } from '../../../../src/pools/llm/checks/answer-checks.js';
import { SchemaValidator } from '../../../../src/pools/llm/schema.js';
import { cleanupsAfterEach, fileTree } from '../../../helpers/cleanup.js';

const cleanups = cleanupsAfterEach();

async function deps(lent: AnswerCheckDeps['lent'] = {}): Promise<AnswerCheckDeps> {
  const root = await fileTree({ 'src/a.py': 'def f():\n    return   1\n\n# end\n' }, cleanups, 'answer-checks-');
  return { schemas: new SchemaValidator(), allowedRoots: [root], lent };
}

const signal = new AbortController().signal;

describe('checkAnswer', () => {
  it('finds citations arrays anywhere in a JSON answer and checks each, quotes whitespace-normalised', async () => {
    const d = await deps();
    const json = {
      findings: [
        { claim: 'f returns 1', citations: [{ path: 'src/a.py', start_line: 2, quote: 'return 1' }] },
        { claim: 'f exists', citations: [{ path: 'src/a.py', start_line: 1, end_line: 2 }] },
      ],
    };
    const good = await checkAnswer({ text: '', json, result: { ok: true } }, { citations: true }, undefined, d, signal);
    expect(good).toEqual([{ name: 'citations', ok: true }]);
    const lie = {
      citations: [
        { path: 'src/a.py', start_line: 2, quote: 'return 2' },
        { path: 'src/a.py', start_line: 40 },
        { path: 'src/a.py', start_line: 1 },
      ],
    };
    const bad = await checkAnswer(
      { text: '', json: lie, result: { ok: true } },
      { citations: true },
      undefined,
      d,
      signal,
    );
    expect(bad[0]).toEqual({
      name: 'citations',
      ok: false,
      reason: '2 of 3 citation(s) do not hold: src/a.py:2 (quote not in lines 2–2); src/a.py:40 (file has 4 lines)',
    });
  });

  it("reads a text answer's path:line mentions; an answer citing nothing fails", async () => {
    const d = await deps();
    const text = 'f is defined at src/a.py:1 and returns at src/a.py:2-3.';
    expect(await checkAnswer({ text, result: { ok: true } }, { citations: true }, undefined, d, signal)).toEqual([
      { name: 'citations', ok: true },
    ]);
    const none = await checkAnswer(
      { text: 'f returns 1.', result: { ok: true } },
      { citations: true },
      undefined,
      d,
      signal,
    );
    expect(none[0]?.reason).toMatch(/^the answer cites nothing/);
  });

  it('takes an investigation’s own checked citations from its result, failed ones named', async () => {
    const d = await deps();
    const value = {
      citations_verified: '1/3',
      citations: [
        { path: 'src/a.py', start_line: 1, end_line: 1, verified: true, reason: 'ok' },
        { path: 'src/b.py', start_line: 5, end_line: 9, verified: false, reason: 'no such file' },
      ],
    };
    const out = await checkAnswer(
      { text: 'x', result: { ok: true, value } },
      { citations: true },
      undefined,
      d,
      signal,
    );
    expect(out[0]).toEqual({
      name: 'citations',
      ok: false,
      reason: '2 of 3 citation(s) do not hold: src/b.py:5-9 (no such file) and 1 more',
    });
  });

  it('checks the schema and says why an answer is off it', async () => {
    const d = await deps();
    const schema = { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };
    const ok = await checkAnswer({ text: '{"n": 1}', result: { ok: true } }, { schema: true }, schema, d, signal);
    expect(ok).toEqual([{ name: 'schema', ok: true }]);
    const off = await checkAnswer({ text: '{"n": "one"}', result: { ok: true } }, { schema: true }, schema, d, signal);
    expect(off[0]).toMatchObject({ name: 'schema', ok: false, reason: 'data/n must be integer' });
    const broken = await checkAnswer({ text: '{"n": ', result: { ok: true } }, { schema: true }, schema, d, signal);
    expect(broken[0]?.reason).toMatch(/^the answer is not valid JSON/);
  });

  it('a checker that cannot run is a failed check with its reason, never a thrown error', async () => {
    const missing = await checkAnswer(
      { text: 'x', result: { ok: true } },
      { script: { worker: 'check.py' } },
      undefined,
      await deps(),
      signal,
    );
    expect(missing[0]).toMatchObject({ name: 'script', ok: false });
    const throwing = await deps({
      checkAnswer: () => Promise.reject(new Error('spawn EACCES')),
    });
    const failed = await checkAnswer(
      { text: 'x', result: { ok: true } },
      { script: { worker: 'c.py' } },
      undefined,
      throwing,
      signal,
    );
    expect(failed[0]?.reason).toMatch(/^c\.py could not run: .*spawn EACCES/);
    const rejecting = await deps({
      checkAnswer: (request) =>
        Promise.resolve({ accepted: false, reason: `no: ${request.answer.text}`, exitCode: 1, durationMs: 3 }),
    });
    const rejected = await checkAnswer(
      { text: 'x', result: { ok: true } },
      { script: { worker: 'c.py' } },
      undefined,
      rejecting,
      signal,
    );
    expect(rejected[0]).toEqual({ name: 'script', ok: false, reason: 'c.py: no: x' });
  });
});
