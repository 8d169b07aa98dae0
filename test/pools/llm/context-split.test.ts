import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TaskResult } from '../../../src/engine/types.js';
import { askInParts, splitFailure, splitForContext } from '../../../src/pools/llm/context-split.js';
import type { TemplateTaskInput } from '../../../src/pools/llm/types.js';
import { cleanupsAfterEach, fileTree } from '../../helpers/cleanup.js';

/** askInParts over a real file cut by splitForContext; the model's answers are the test's rule of what fits. */

const cleanups = cleanupsAfterEach();

/** 4,096 bytes of 32-byte lines: every cut in two lands on a line break at the exact middle. */
const TEXT = Array.from({ length: 128 }, (_, i) => `line ${String(i).padStart(3, '0')} ${'x'.repeat(22)}\n`).join('');

async function fileInput(): Promise<{ input: TemplateTaskInput; root: string }> {
  const root = await fileTree({ 'm.ts': TEXT }, cleanups, 'context-split-');
  return { root, input: { id: 'm.ts', file: { path: path.join(root, 'm.ts'), display: 'm.ts' } } };
}

const overflow = (): TaskResult => ({
  ok: false,
  error: { code: 'CONTEXT_OVERFLOW', message: 'too long', hint: 'server hint' },
  value: { tokens_in: 0 },
});

/** What fits: the first half of the file is dense (600 bytes fit), the second sparse (2,100 bytes fit). */
function fits(input: TemplateTaskInput): boolean {
  const start = input.file?.start ?? 0;
  const length = (input.file?.end ?? TEXT.length) - start;
  return length <= (start < 2048 ? 600 : 2100);
}

describe('askInParts', () => {
  it('counts the leaves of an uneven split: four eighths of the dense half and the sparse half whole are 5 parts', async () => {
    const { input, root } = await fileInput();
    const asked: string[] = [];
    const outcome = await askInParts(
      input,
      '0',
      async (part, stem) => {
        asked.push(`${part.id} ${stem}`);
        return fits(part) ? { ok: true, value: { text: part.id, tokens_in: 10 } } : overflow();
      },
      (part) => splitForContext(part, [root]),
    );
    expect(outcome?.parts).toBe(5);
    expect(outcome?.depth).toBe(3);
    expect(outcome?.asked.map((p) => p.input.id)).toEqual([
      'm.ts [part 1/8]',
      'm.ts [part 2/8]',
      'm.ts [part 3/8]',
      'm.ts [part 4/8]',
      'm.ts [part 2/2]',
    ]);
    // Parts asked depth first, in file order; a refused part is asked again as its halves.
    expect(asked).toEqual([
      'm.ts [part 1/2] 0.p1',
      'm.ts [part 1/4] 0.p1.p1',
      'm.ts [part 1/8] 0.p1.p1.p1',
      'm.ts [part 2/8] 0.p1.p1.p2',
      'm.ts [part 2/4] 0.p1.p2',
      'm.ts [part 3/8] 0.p1.p2.p1',
      'm.ts [part 4/8] 0.p1.p2.p2',
      'm.ts [part 2/2] 0.p2',
    ]);
    // The leaves are the file, each byte once.
    const ranges = outcome?.asked.map((p) => [p.input.file?.start, p.input.file?.end]);
    expect(ranges).toEqual([
      [0, 512],
      [512, 1024],
      [1024, 1536],
      [1536, 2048],
      [2048, 4096],
    ]);
  });

  it('stops at a part still refused three levels down: the parts made so far counted, the failed one named', async () => {
    const { input, root } = await fileInput();
    const outcome = await askInParts(
      input,
      '0',
      async () => overflow(),
      (part) => splitForContext(part, [root]),
    );
    expect(outcome).toBeDefined();
    if (!outcome) return;
    // The first eighth refused; its sibling eighth, the second quarter and the second half not asked.
    expect(outcome.parts).toBe(4);
    expect(outcome.asked.map((p) => p.input.id)).toEqual(['m.ts [part 1/8]']);
    const error = splitFailure(outcome);
    expect(error).toEqual({
      code: 'CONTEXT_OVERFLOW',
      message: "Split into 4 parts to fit the model's context (halved 3 times over); m.ts [part 1/8] failed: too long",
      hint: 'server hint',
    });
  });

  it('is undefined for a prompt too small to cut', async () => {
    const root = await fileTree({ 'tiny.ts': 'x\n'.repeat(50) }, cleanups, 'context-split-');
    const input = { id: 'tiny.ts', file: { path: path.join(root, 'tiny.ts'), display: 'tiny.ts' } };
    const outcome = await askInParts(
      input,
      '0',
      async () => overflow(),
      (part) => splitForContext(part, [root]),
    );
    expect(outcome).toBeUndefined();
  });
});
