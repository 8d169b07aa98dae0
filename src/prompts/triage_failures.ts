import { invalidParams, type PromptDefinition } from './prompt.js';
import { call, collect, commandWords, jobOf, label, listArgument, noLlm, quoted, Steps, withModel } from './text.js';

/** A bare script name (no folder) is taken for a worker from list_workers; anything else is a command. */
const WORKER = /^[^/\\]+\.(?:py|js|mjs|cjs|sh)$/;

/** How step 1 runs the command: the caller's shell, or run_script_batch (a worker, or an executable the user allowed). */
function runStep(command: string): { text: string; runs: boolean } {
  const words = commandWords(command);
  const shell = `Run ${quoted(command)} with your own shell tool and keep its output`;
  if (words === undefined) return { text: `${shell} (it needs a shell: monitor-mcp runs no shell).`, runs: false };
  const [first = '', ...rest] = words;
  const timeout = { timeout_seconds: 1800, label: label(`triage run: ${command}`) };
  if (WORKER.test(first))
    return {
      text: `Call ${call('run_script_batch', { worker: first, inputs: [{ args: rest }], ...timeout })} to run it (a worker from list_workers).`,
      runs: true,
    };
  return {
    text: `${shell}. Without a shell tool, call ${call('run_script_batch', { command: first, inputs: [{ args: rest }], ...timeout })} (only for an executable the user allowed with --allow-command; list_workers says which).`,
    runs: true,
  };
}

/** A test or script run → one local agent per failure → one merged diagnosis. */
export const triageFailures: PromptDefinition = {
  name: 'triage_failures',
  title: 'Triage the failures of a run',
  description:
    'Triage a failing test or script run: run it, hand each failure to a local agent that reads the code (lmstudio_investigate, many at once), and merge the findings by root cause on the local LLM.',
  arguments: [
    {
      name: 'command',
      description: 'The test or script command, e.g. npx vitest run',
      required: true,
      max: 1000,
      example: 'npx vitest run',
    },
    {
      name: 'paths',
      description: 'Folders or globs the agents may read, separated by commas (default: all allowed folders)',
      max: 2000,
      example: 'src, test',
    },
    { name: 'model', description: 'A model from lmstudio_models that calls tools well', max: 200, example: 'qwen3' },
  ],
  async render(args) {
    const command = args.command ?? '';
    const paths = args.paths === undefined ? undefined : listArgument(args.paths);
    if (paths !== undefined && (paths.length === 0 || paths.length > 64))
      throw invalidParams('The argument "paths" must name 1 to 64 folders or globs.', 'Give e.g. src, test.');
    const run = runStep(command);
    const steps = new Steps();
    const first = steps.add(run.text);
    if (run.runs)
      steps.add(
        `If step ${first} went through run_script_batch, ${collect([jobOf(first)], 'call')} A failing run fails its task but keeps its output (value.text; all of it in files.output).`,
      );
    steps.add(
      'From the output, list each distinct failure: its name, its error message and the first stack frame in the project. If nothing failed, say so and stop.',
    );
    const task = (name: string): Record<string, unknown> => ({
      id: name,
      task: `Why does ${name} fail? Error: ERROR_MESSAGE (at FILE:LINE). Find the cause in the code and cite the lines.`,
      ...(paths === undefined ? {} : { paths }),
    });
    const investigate = steps.add(
      `Call ${call('lmstudio_investigate', {
        tasks: [task('FAILURE_1'), task('FAILURE_2')],
        reduce:
          'Group these findings by root cause: for each cause, the failures it explains, the lines at fault and a fix.',
        ...withModel(args.model),
        label: label(`triage: ${command}`),
      })}, one task per failure (at most 20; failures with the same error share one). Each task is a local agent that reads the code; the merge's job_id comes back at once.`,
    );
    steps.add(
      `${collect([jobOf(investigate)])} Its one result is the diagnosis by root cause; its "upstream" names the job with each failure's findings. Citations are checked: trust the verified ones, read the others yourself.`,
    );
    steps.add('Report the root causes, the failures each explains and the fixes; change code only if the user asks.');
    return [
      `Triage the failures of ${quoted(command)} with monitor-mcp's local agents: one investigation per failure, merged by root cause on the local LLM.`,
      '',
      steps.toString(),
      '',
      noLlm(
        'lmstudio_investigate',
        `investigate the failures yourself, e.g. ${call('run_script_batch', {
          worker: 'grep_context.py',
          inputs: [{ args: ['--context', '5', '-F', 'ERROR_TEXT', '.'] }],
        })}.`,
      ),
    ].join('\n');
  },
};
