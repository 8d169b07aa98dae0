import { describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../helpers/cleanup.js';
import { promptProject, promptText, runCalls, shownCalls } from '../helpers/prompts.js';

const cleanups = cleanupsAfterEach();

const PROJECT = {
  'src/add.js': 'export const add = (a, b) => a - b;\n',
  'test/run.mjs': [
    "import { add } from '../src/add.js';",
    'if (add(1, 2) !== 3) {',
    "  console.log('FAIL test/add > adds\\nAssertionError: expected ' + add(1, 2) + ' to be 3\\n    at src/add.js:1');",
    '  process.exit(1);',
    '}',
    '',
  ].join('\n'),
};

describe('triage_failures', () => {
  it(
    'runs as shown: the run through an allowed command keeps the failing output, one agent per failure, merged by root cause',
    { timeout: 120_000 },
    async () => {
      const { c, double } = await promptProject(PROJECT, cleanups, {
        edit: (config) => {
          config.allowCommands = [process.execPath];
        },
      });
      const command = `'${process.execPath}' test/run.mjs`;
      const calls = shownCalls(await promptText(c.client, 'triage_failures', { command, paths: 'src, test' }));
      expect(calls.map((k) => k.tool)).toEqual([
        'run_script_batch',
        'collect_results',
        'lmstudio_investigate',
        'collect_results',
        'lmstudio_models',
        'run_script_batch',
      ]);
      expect(calls[0]?.args).toMatchObject({ command: process.execPath, inputs: [{ args: ['test/run.mjs'] }] });
      const ran = await runCalls(c, calls);
      // A failing run fails its task and keeps its output, as the text says.
      const run = ran.collected.get(ran.jobs.get(1) ?? '')?.results[0];
      expect(run?.state).toBe('failed');
      expect(String(run?.value?.text)).toContain('AssertionError: expected -1 to be 3');
      const diagnosis = ran.collected.get(ran.jobs.get(4) ?? '');
      expect(diagnosis?.results[0]).toMatchObject({ id: 'reduce', state: 'succeeded' });
      expect(diagnosis?.last.upstream?.[0]?.counts).toMatchObject({ total: 2, succeeded: 2 });
      // Each agent was handed its failure.
      const tasks = double?.chatRequests.flatMap((r) => {
        const messages = (r.body?.messages ?? []) as Array<{ role: string; content: unknown }>;
        return messages.filter((m) => m.role === 'user').map((m) => String(m.content));
      });
      expect(tasks?.some((t) => t.includes('Why does FAILURE_1 fail?'))).toBe(true);
      expect(tasks?.some((t) => t.includes('Why does FAILURE_2 fail?'))).toBe(true);
    },
  );

  it('runs a bundled or user worker named as the command through run_script_batch', async () => {
    const { c } = await promptProject(PROJECT, cleanups);
    const calls = shownCalls(await promptText(c.client, 'triage_failures', { command: 'grep_context.py -F add src' }));
    expect(calls[0]).toMatchObject({
      tool: 'run_script_batch',
      step: 1,
      args: { worker: 'grep_context.py', inputs: [{ args: ['-F', 'add', 'src'] }] },
    });
    const reply = await c.call('run_script_batch', { ...calls[0]?.args, wait_seconds: 20 });
    expect(reply.isError).toBeFalsy();
  });
});
