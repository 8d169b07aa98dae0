import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { keepText } from '../../../src/pools/llm/answer-files.js';
import { makeTempDir } from '../../helpers/client.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function outputDir(): Promise<string> {
  const dir = await makeTempDir('monitor-answers-');
  dirs.push(dir);
  return dir;
}

describe('keepText', () => {
  it('keeps a short answer inline only, as the envelope text', async () => {
    const dir = await outputDir();
    expect(await keepText(dir, '0', 'Short.', 'answer', 100)).toEqual({ inline: { text: 'Short.' } });
  });

  it('writes a long answer whole to a file only the owner reads, the inline text its start with cut: true', async () => {
    const dir = await outputDir();
    const text = 'x'.repeat(1000);
    const kept = await keepText(dir, '3.p1', text, 'answer', 100);
    expect(kept.inline).toEqual({ text: `${'x'.repeat(100)}…`, cut: true });
    expect(kept.file).toBe(path.join(dir, '3.p1.answer.txt'));
    expect(await readFile(kept.file ?? '', 'utf8')).toBe(text);
    expect((await stat(kept.file ?? '')).mode & 0o777).toBe(0o600);
  });

  it('keeps reasoning in its own fields (reasoning, reasoning_cut), and recreates a removed output folder', async () => {
    const dir = path.join(await outputDir(), 'gone');
    const kept = await keepText(dir, '1', 'y'.repeat(600), 'reasoning', 500);
    expect(kept.inline).toEqual({ reasoning: `${'y'.repeat(500)}…`, reasoning_cut: true });
    expect(kept.file).toBe(path.join(dir, '1.reasoning.txt'));
    expect((await readFile(kept.file ?? '', 'utf8')).length).toBe(600);
  });
});
