import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMessages, prefixKeyOf, type PromptSources } from '../../../src/pools/llm/prompt.js';
import type { LlmJobOptions, TemplateTaskInput } from '../../../src/pools/llm/types.js';
import { makeTempDir } from '../../helpers/client.js';

describe('prompts over a file × items: the file first', () => {
  let dir = '';
  let sources: PromptSources;
  const ref = (name: string): { path: string; display: string } => ({ path: path.join(dir, name), display: name });
  const task = (name: string, q: string): TemplateTaskInput => ({
    id: `${name} | ${q}`,
    file: ref(name),
    values: { q },
  });
  const options = (template: string): LlmJobOptions => ({
    model: 'm',
    template,
    system: 'Be brief.',
    timeout_seconds: 60,
  });

  beforeAll(async () => {
    dir = await makeTempDir('monitor-prompt-');
    await writeFile(path.join(dir, 'a.ts'), 'export const a = 1;\n');
    await writeFile(path.join(dir, 'b.ts'), 'export const b = 2;\n');
    sources = { allowedRoots: [dir], maxFileBytes: 1 << 20, contextLength: () => undefined, prefixFirst: true };
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('moves the file before the item text, pointing {{content}} back at it', async () => {
    const opts = options('Answer "{{q}}" about {{path}}:\n{{content}}\nBe exact.');
    const [system, user] = await buildMessages(opts, task('a.ts', 'what is a?'), undefined, sources);
    expect(system).toEqual({ role: 'system', content: 'Be brief.' });
    expect(user?.content).toBe(
      '### a.ts\nexport const a = 1;\n\n\n---\n\nAnswer "what is a?" about a.ts:\n(the file a.ts above)\nBe exact.',
    );
    const other = await buildMessages(opts, task('a.ts', 'why?'), undefined, sources);
    // Every item's prompt starts with the same text: the file.
    expect(other[1]?.content.startsWith('### a.ts\nexport const a = 1;\n\n\n---\n\nAnswer "why?"')).toBe(true);
  });

  it('leaves the template as written where the file already comes first, or reuse is off, or there are no items', async () => {
    const first = options('{{content}}\nQuestion: {{q}}');
    expect((await buildMessages(first, task('a.ts', 'q1'), undefined, sources))[1]?.content).toBe(
      'export const a = 1;\n\nQuestion: q1',
    );
    const itemFirst = options('Q: {{q}}\n{{content}}');
    const off = { ...sources, prefixFirst: false };
    expect((await buildMessages(itemFirst, task('a.ts', 'q1'), undefined, off))[1]?.content).toBe(
      'Q: q1\nexport const a = 1;\n',
    );
    const noItems: TemplateTaskInput = { id: 'a.ts', file: ref('a.ts') };
    expect((await buildMessages(options('{{path}}: {{content}}'), noItems, undefined, sources))[1]?.content).toBe(
      'a.ts: export const a = 1;\n',
    );
  });

  it('packs a group of files first under their headers', async () => {
    const group: TemplateTaskInput = { id: 'g | 1', files: [ref('a.ts'), ref('b.ts')], values: { q: 'compare' } };
    const [, user] = await buildMessages(options('{{q}} in {{path}}:\n{{content}}'), group, undefined, sources);
    expect(user?.content).toMatch(
      /^### a\.ts\nexport const a = 1;\n\n\n### b\.ts\nexport const b = 2;\n\n\n---\n\ncompare in \.:\n\(the files above\)$/,
    );
  });

  it('keys the tasks of one file alike, and other files, systems and settings apart', () => {
    const opts = options('Q: {{q}}\n{{content}}');
    const key = prefixKeyOf(opts, task('a.ts', 'q1'), true);
    expect(key).toBeDefined();
    expect(prefixKeyOf(opts, task('a.ts', 'q2'), true)).toBe(key);
    expect(prefixKeyOf(opts, task('b.ts', 'q1'), true)).not.toBe(key);
    expect(prefixKeyOf({ ...opts, system: 'Other.' }, task('a.ts', 'q1'), true)).not.toBe(key);
    expect(prefixKeyOf(opts, task('a.ts', 'q1'), false)).toBeUndefined();
    expect(prefixKeyOf(opts, { id: 'a.ts', file: ref('a.ts') }, true)).toBeUndefined();
    expect(prefixKeyOf(opts, { id: 'p', messages: [{ role: 'user', content: 'hi' }] }, true)).toBeUndefined();
    // A template whose text before the file is the same for every item keeps it in the key.
    const fileFirst = options('About {{path}}:\n{{content}}\n{{q}}');
    expect(prefixKeyOf(fileFirst, task('a.ts', 'q1'), true)).toBe(prefixKeyOf(fileFirst, task('a.ts', 'q2'), true));
    expect(prefixKeyOf(fileFirst, task('a.ts', 'q1'), true)).not.toBe(key);
  });
});
