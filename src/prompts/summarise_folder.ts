import { describeCount, listFolder } from './folder.js';
import { invalidParams, isGlob, MODEL_ARGUMENT, type PromptDefinition } from './prompt.js';
import { call, collect, jobOf, label, noLlm, quoted, Steps, untemplated, withModel } from './text.js';

/** Figures from a script (no LLM needed), a summary per file on the local LLM, merged there into one. */
export const summariseFolder: PromptDefinition = {
  name: 'summarise_folder',
  title: 'Summarise a folder',
  description:
    'Summarise a folder: its figures from code_stats.py (sizes, functions, TODOs), a summary of each file on the local LLM, merged into one summary there; Claude reads only the result, not the files.',
  arguments: [
    { name: 'folder', description: 'The folder to summarise', required: true, max: 500, example: 'src/store' },
    MODEL_ARGUMENT,
  ],
  async render(args, ctx) {
    const folder = args.folder ?? '';
    if (isGlob(folder))
      throw invalidParams(`The folder ${quoted(folder)} is a glob.`, 'Give one folder, e.g. src/store.');
    const listing = await listFolder(folder, ctx);
    if (!listing.isFolder)
      throw invalidParams(
        `${quoted(folder)} is a file, not a folder.`,
        'Give its folder, or use analyse_module for one file.',
      );
    if (listing.total === 0)
      throw invalidParams(
        `The folder ${quoted(folder)} holds no files (dot-files and node_modules are skipped).`,
        'Give a folder with files in it.',
      );
    const name = untemplated(listing.given);
    const steps = new Steps();
    const stats = steps.add(
      `Call ${call('run_script_batch', {
        worker: 'code_stats.py',
        inputs: [{ args: listing.files }],
        label: label(`stats of ${listing.given}`),
      })}: lines, functions, classes and TODOs per file and in total, for ${describeCount(listing)}${listing.files.length < listing.total ? ' (run it again with the next files for the rest)' : ''}.`,
    );
    const summaries = steps.add(
      `At the same time, call ${call('lmstudio_complete', {
        template: `Summarise the file {{path}} of the folder "${name}" in at most 5 sentences: what it is for, its main parts, and what it depends on.\n\n{{content}}`,
        files: [listing.textGlob],
        reduce: `Write one summary of the folder "${listing.given}" from these summaries of its files: its purpose, its main parts and how they fit together, and where to start reading. Name the files.`,
        ...withModel(args.model),
        label: label(`summarise ${listing.given}`),
      })}: one prompt per file${listing.binary > 0 ? ` (${listing.binary} binary file(s) left out)` : ''}, merged on the local model; it returns the merge's job_id at once.`,
    );
    steps.add('While they run, keep working on something else.');
    steps.add(
      `${collect([jobOf(stats), jobOf(summaries)])} Step ${summaries}'s job has one result, the folder's summary; its "upstream" names the job holding each file's summary.`,
    );
    steps.add(`Give the user the summary with the figures of step ${stats} (files, code lines, functions, TODOs).`);
    return [
      `Summarise the folder ${quoted(listing.given)} with monitor-mcp's workers: the local LLM reads the files, not you.`,
      '',
      steps.toString(),
      '',
      `Files too large for the model's context: add "chunk": true to step ${summaries}'s call.`,
      noLlm(
        'lmstudio_complete',
        `summarise from step ${stats}'s figures and a map of the files: step ${stats}'s call with "worker": "outline.py" (each file's classes and functions).`,
      ),
    ].join('\n');
  },
};
