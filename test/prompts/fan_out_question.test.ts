import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../helpers/cleanup.js';
import { textOf } from '../helpers/client.js';
import { freePort } from '../helpers/net.js';
import { promptProject, promptText, runCalls, shownCalls } from '../helpers/prompts.js';

const cleanups = cleanupsAfterEach();

const FILES = {
  'src/auth.ts': 'export function checkToken(t: string): boolean {\n  return t.startsWith("tok_");\n}\n',
  'src/db.ts': 'export const url = "postgres://localhost";\n',
  'lib/util.js': 'module.exports = { checkToken: () => true };\n',
};

describe('fan_out_question', () => {
  it(
    'runs as shown: one prompt per file, merged on the local LLM, the per-file answers collected from upstream',
    { timeout: 120_000 },
    async () => {
      const { c, double } = await promptProject(FILES, cleanups);
      const question = 'Where are "tokens" checked?';
      const calls = shownCalls(await promptText(c.client, 'fan_out_question', { files: 'src/*.ts, lib/**', question }));
      expect(calls.map((k) => k.tool)).toEqual([
        'lmstudio_complete',
        'collect_results',
        'collect_results',
        'lmstudio_models',
        'run_script_batch',
      ]);
      const ran = await runCalls(c, calls);
      const merged = ran.collected.get(ran.jobs.get(1) ?? '');
      expect(merged?.results[0]).toMatchObject({ id: 'reduce', state: 'succeeded' });
      // The second collect_results (the upstream job, as shown) gave each file's answer.
      const upstream = merged?.last.upstream?.[0]?.job_id ?? '';
      expect(
        ran.collected
          .get(upstream)
          ?.results.map((r) => r.id)
          .sort(),
      ).toEqual(['lib/util.js', 'src/auth.ts', 'src/db.ts']);
      const asked = double?.chatRequests.map((r) => r.prompt ?? '') ?? [];
      expect(asked.filter((p) => p.startsWith(`Question: ${question}`))).toHaveLength(3);
      // The reduce was asked the question too.
      expect(asked.some((p) => p.includes(`Answer the question "${question}" from these answers`))).toBe(true);
    },
  );

  it(
    'names the error a call gives when no LLM endpoint answers, and lmstudio_models says why',
    { timeout: 120_000 },
    async () => {
      // A port nothing listens on: connections are refused.
      const { c } = await promptProject(FILES, cleanups, { url: `http://127.0.0.1:${await freePort()}` });
      const text = await promptText(c.client, 'fan_out_question', { files: 'src/*.ts', question: 'Why?' });
      const [first] = shownCalls(text);
      const reply = await c.call(first?.tool ?? '', first?.args ?? {});
      const named = /ENDPOINT_UNREACHABLE|MODEL_NOT_FOUND|MODEL_NOT_LOADED/.exec(textOf(reply))?.[0];
      expect(named, textOf(reply)).toBeDefined();
      expect(text).toContain(named);
      const models = await c.call('lmstudio_models', {});
      expect(models.isError).toBeFalsy();
      expect(JSON.stringify(models.structuredContent)).toMatch(/"reachable":false/);
    },
  );
});
