import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../helpers/cleanup.js';
import { promptProject, promptText, runCalls, shownCalls } from '../helpers/prompts.js';

const cleanups = cleanupsAfterEach();

const AUTH = {
  'src/auth/token.ts':
    "import { createHash } from 'node:crypto';\nexport function check(t: string): string {\n  return createHash('sha256').update(t).digest('hex');\n}\n",
  'src/auth/session.ts':
    "import { check } from './token.js';\nimport express from 'express';\nexport const open = (): string => check('x');\n",
  'src/auth/notes.md': '# auth\nTokens are hashed.\n',
};

describe('analyse_module', () => {
  it(
    'runs as shown: the module packed and reduced on the local LLM, its imports by the bundled worker',
    { timeout: 120_000 },
    async () => {
      const { c, double } = await promptProject(AUTH, cleanups);
      const calls = shownCalls(await promptText(c.client, 'analyse_module', { path: 'src/auth' }));
      expect(calls.map((k) => k.tool)).toEqual([
        'lmstudio_complete',
        'run_script_batch',
        'collect_results',
        'lmstudio_investigate',
        'lmstudio_models',
      ]);
      const ran = await runCalls(c, calls);
      const review = ran.collected.get(ran.jobs.get(1) ?? '');
      expect(review?.results).toHaveLength(1);
      expect(review?.results[0]).toMatchObject({ id: 'reduce', state: 'succeeded' });
      // The one map prompt held all three files, each under its header.
      const mapPrompt = double?.chatRequests
        .map((r) => r.prompt ?? '')
        .find((p) => p.includes('### src/auth/token.ts'));
      expect(mapPrompt).toContain('### src/auth/session.ts');
      expect(mapPrompt).toContain('### src/auth/notes.md');
      const deps = ran.collected.get(ran.jobs.get(2) ?? '');
      expect(deps?.results[0]?.state).toBe('succeeded');
      const files = (
        deps?.results[0]?.value?.json as { files: Array<{ file: string; external: Array<{ package: string }> }> }
      ).files;
      expect(files.map((f) => f.file)).toEqual(['src/auth/session.ts', 'src/auth/token.ts']);
      expect(files[0]?.external.map((e) => e.package)).toEqual(['express']);
    },
  );
});
