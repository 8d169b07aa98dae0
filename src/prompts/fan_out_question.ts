import { invalidParams, MODEL_ARGUMENT, type PromptDefinition } from './prompt.js';
import { call, collect, jobOf, label, listArgument, noLlm, quoted, Steps, untemplated, withModel } from './text.js';

/** Most patterns one argument may name (lmstudio_complete takes any number; a slash command should not need more). */
const MAX_PATTERNS = 64;

/** One question, one local-LLM prompt per file, the answers merged there: Claude reads one answer. */
export const fanOutQuestion: PromptDefinition = {
  name: 'fan_out_question',
  title: 'Ask a question over many files',
  description:
    'Ask one question of many files in parallel on the local LLM (one prompt per file), then merge the answers into one there; Claude reads the merged answer, not the files.',
  arguments: [
    {
      name: 'files',
      description: 'Files or globs, separated by commas, e.g. src/**/*.ts',
      required: true,
      max: 2000,
      example: 'src/**/*.ts',
    },
    {
      name: 'question',
      description: 'The question to ask of each file',
      required: true,
      max: 2000,
      multiline: true,
      example: 'Where are tokens validated?',
    },
    MODEL_ARGUMENT,
  ],
  async render(args) {
    const files = listArgument(args.files ?? '');
    if (files.length === 0)
      throw invalidParams('The argument "files" names no file.', 'Give files or globs, e.g. src/**/*.ts.');
    if (files.length > MAX_PATTERNS)
      throw invalidParams(
        `The argument "files" names ${files.length} files or globs, over ${MAX_PATTERNS}.`,
        'Use globs (src/**/*.ts) instead of naming each file.',
      );
    const question = args.question ?? '';
    const asked = untemplated(question);
    const steps = new Steps();
    const fanned = steps.add(
      `Call ${call('lmstudio_complete', {
        template: `Question: ${asked}\n\nAnswer it from the file {{path}} alone, citing lines as path:line. If the file says nothing about it, answer only: not relevant.\n\n{{content}}`,
        files,
        reduce: `Answer the question "${question}" from these answers, one per file. Leave out those that say not relevant; cite path:line for each point and say where the files disagree.`,
        ...withModel(args.model),
        label: label(`ask: ${question}`),
      })}: one prompt per file, many at once, merged on the local model; it returns the merge's job_id at once.`,
    );
    steps.add('While it runs, keep working on something else.');
    steps.add(
      `${collect([jobOf(fanned)])} Its one result is the merged answer; its "upstream" names the job with each file's answer, e.g. for the files that had something to say: ${call(
        'collect_results',
        { job_ids: ['<the upstream job_id>'], filter: 'succeeded', merge: 'json' },
      )}.`,
    );
    steps.add(
      'Read the cited lines that carry the answer before you give it to the user, with the files it comes from.',
    );
    return [
      `Answer the question ${quoted(question)} over the files ${files.map(quoted).join(', ')} with monitor-mcp's workers: the local LLM reads the files, not you.`,
      '',
      steps.toString(),
      '',
      `Files too large for the model's context: add "chunk": true to step ${fanned}'s call.`,
      noLlm(
        'lmstudio_complete',
        `search the files yourself, e.g. ${call('run_script_batch', {
          worker: 'grep_context.py',
          inputs: [{ args: ['--context', '3', '-i', 'KEYWORD', '.'] }],
        })}.`,
      ),
    ].join('\n');
  },
};
