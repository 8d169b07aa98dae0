import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../helpers/cleanup.js';
import { promptProject, promptText, runCalls, shownCalls } from '../helpers/prompts.js';

const cleanups = cleanupsAfterEach();

const STORE = {
  'store/a.py': 'def read():\n    # TODO: cache\n    return 1\n',
  'store/b.ts': 'export function write(): number {\n  return 2;\n}\n',
  'store/deep/c.md': '# notes\n',
  'store/icon.png': 'not really a png',
};

describe('summarise_folder', () => {
  it(
    'runs as shown: the figures from code_stats.py, one summary per text file merged on the local LLM',
    { timeout: 120_000 },
    async () => {
      const { c, double } = await promptProject(STORE, cleanups);
      const calls = shownCalls(await promptText(c.client, 'summarise_folder', { folder: 'store' }));
      expect(calls.map((k) => k.tool)).toEqual([
        'run_script_batch',
        'lmstudio_complete',
        'collect_results',
        'lmstudio_models',
      ]);
      const ran = await runCalls(c, calls);
      const stats = ran.collected.get(ran.jobs.get(1) ?? '')?.results[0];
      expect(stats?.state).toBe('succeeded');
      const value = stats?.value?.json as { files: Array<{ file: string }>; totals: { files: number; todos: number } };
      expect(value.files.map((f) => f.file)).toEqual(['store/a.py', 'store/b.ts', 'store/deep/c.md', 'store/icon.png']);
      expect(value.totals).toMatchObject({ files: 4, todos: 1 });
      const summary = ran.collected.get(ran.jobs.get(2) ?? '');
      expect(summary?.results[0]).toMatchObject({ id: 'reduce', state: 'succeeded' });
      expect(summary?.last.upstream?.[0]?.counts).toMatchObject({ total: 3, succeeded: 3 });
      // One map prompt per text file, the PNG left out.
      const asked = double?.chatRequests.map((r) => r.prompt ?? '') ?? [];
      for (const file of ['store/a.py', 'store/b.ts', 'store/deep/c.md'])
        expect(
          asked.some((p) => p.startsWith(`Summarise the file ${file} of the folder "store"`)),
          file,
        ).toBe(true);
      expect(asked.some((p) => p.includes('icon.png'))).toBe(false);
    },
  );
});
