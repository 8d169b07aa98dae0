import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../../../src/engine/types.js';
import { type Ask, type Piece, piecesOf, treeReduce } from '../../../src/pools/llm/reduce.js';
import type { ReduceOptions } from '../../../src/pools/llm/types.js';
import { makeTempDir } from '../../helpers/client.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A stand-in model that answers with the sources it was given, so the tree's shape can be checked. */
function model(): { ask: Ask; prompts: string[] } {
  const prompts: string[] = [];
  const ask: Ask = (messages) => {
    const text = messages.map((m) => m.content).join('\n');
    prompts.push(text);
    const sources = [...text.matchAll(/^### (.+)$/gm)].map((m) => m[1]).join('; ');
    return Promise.resolve({ ok: true, text: `summary of ${sources}`.slice(0, 200), value: { tokens_out: 40 } });
  };
  return { ask, prompts };
}

describe('treeReduce', () => {
  it('merges in levels sized to the context, and a run cut off and started again reuses every finished step', async () => {
    const cacheDir = path.join(await makeTempDir('monitor-reduce-'), 'cache');
    dirs.push(path.dirname(cacheDir));
    const pieces: Piece[] = Array.from({ length: 40 }, (_, i) => ({
      source: `src/f${i}.ts`,
      sources: [`src/f${i}.ts`],
      text: `finding ${i} `.repeat(20),
      tokens: 60,
    }));
    const options: ReduceOptions = {
      prompt: 'Combine the findings.',
      context_tokens: 1200,
      bytes_per_token: 3,
      parallel: 2,
      max_tokens: 200,
    };
    const first = model();
    const done = await treeReduce(pieces, options, first.ask, cacheDir);
    expect(done.result.ok).toBe(true);
    expect(done.levels).toBeGreaterThanOrEqual(2);
    expect(done.requests).toBe(first.prompts.length);
    expect(done.reused).toBe(0);
    // Every source went into exactly one first-level prompt.
    const firstLevel = first.prompts.filter((p) => p.includes('### src/f'));
    expect(firstLevel.flatMap((p) => [...p.matchAll(/^### (src\/f\d+\.ts)$/gm)].map((m) => m[1])).sort()).toEqual(
      pieces.map((p) => p.source).sort(),
    );
    expect(first.prompts.at(-1)).toMatch(/^### merged from \d+ results: src\/f0\.ts … /m);

    // The same inputs again (a resumed task): nothing is asked twice.
    const again = model();
    const resumed = await treeReduce(pieces, options, again.ask, cacheDir);
    expect(again.prompts).toHaveLength(0);
    expect(resumed.reused).toBe(done.requests);
    expect(resumed.result).toMatchObject({ ok: true, text: done.result.ok ? done.result.text : '' });
    expect((await readdir(cacheDir)).length).toBe(done.requests);
  });
});

describe('piecesOf', () => {
  it('reads each answer through the result envelope: the whole output file, cut answers marked, failed ones named', async () => {
    const dir = await makeTempDir('monitor-pieces-');
    dirs.push(dir);
    const whole = path.join(dir, '0.answer.txt');
    await writeFile(whole, 'The whole answer, longer than its preview.');
    const records: TaskRecord[] = [
      {
        index: 0,
        state: 'succeeded',
        attempt: 1,
        finishedAt: '2026-01-01T00:00:00.000Z',
        label: 'src/a.ts',
        value: { text: 'The whole…', cut: true, tokens_out: 9 },
        files: { output: whole },
      },
      {
        index: 1,
        state: 'succeeded',
        attempt: 1,
        finishedAt: '2026-01-01T00:00:00.000Z',
        label: 'src/b.ts',
        value: { text: 'Cut by max_tokens', truncated: true, tokens_out: 5 },
      },
      {
        index: 2,
        state: 'failed',
        attempt: 1,
        finishedAt: '2026-01-01T00:00:00.000Z',
        error: { code: 'TIMEOUT', message: 'Too slow.' },
      },
    ];
    expect(await piecesOf(records, 1024)).toEqual([
      { source: 'src/a.ts', sources: ['src/a.ts'], text: 'The whole answer, longer than its preview.', tokens: 9 },
      { source: 'src/b.ts', sources: ['src/b.ts'], text: 'Cut by max_tokens\n[this answer was cut off]', tokens: 13 },
      {
        source: 'task #2',
        sources: ['task #2'],
        failed: true,
        failure: 'TIMEOUT',
        text: '[no answer: this input failed with TIMEOUT: Too slow.]',
      },
    ]);
  });
});
