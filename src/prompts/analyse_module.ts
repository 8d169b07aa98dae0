import { describeCount, type FolderListing, listFolder } from './folder.js';
import { isGlob, MODEL_ARGUMENT, type PromptDefinition } from './prompt.js';
import { call, collect, jobOf, label, noLlm, quoted, Steps, untemplated, withModel } from './text.js';

const DEFAULT_FOCUS = 'its architecture: its parts, how they depend on each other, and its risks';

/** Files analyze_dependencies.py reads (Python, JavaScript, TypeScript). */
const SOURCE = /\.(?:py|pyi|pyw|js|mjs|cjs|jsx|ts|tsx|mts|cts)$/i;

/** The seed's own example: "analyse the architecture of the auth module" on the local model, its imports by a script meanwhile. */
export const analyseModule: PromptDefinition = {
  name: 'analyse_module',
  title: 'Analyse a module on the local LLM',
  description:
    'Analyse a module (a folder, file or glob) on the local LLM: its files packed into few prompts, the answers merged into one review (map → reduce), with a dependency map from a script meanwhile.',
  arguments: [
    {
      name: 'path',
      description: 'The module: a folder, a file or a glob',
      required: true,
      max: 500,
      example: 'src/auth',
    },
    {
      name: 'focus',
      description: 'What to analyse (default: architecture, dependencies, risks)',
      max: 1000,
      multiline: true,
      example: 'error handling',
    },
    MODEL_ARGUMENT,
  ],
  async render(args, ctx) {
    const path = args.path ?? '';
    const focus = args.focus ?? DEFAULT_FOCUS;
    const glob = isGlob(path);
    const listing = glob ? undefined : await listFolder(path, ctx);
    const sources = listing?.files.filter((f) => SOURCE.test(f)) ?? [];
    const steps = new Steps();
    const review = steps.add(
      `Call ${call('lmstudio_complete', {
        template: `Analyse this part of the module "${untemplated(path)}". Focus on ${untemplated(focus)}. Cite files as path:line.\n\n{{content}}`,
        files: [listing?.textGlob ?? path],
        group: 'all',
        reduce: `Combine these analyses into one review of the module "${path}" (${focus}). Name the files each finding comes from.`,
        ...withModel(args.model),
        label: label(`analyse ${path}`),
      })}. The server reads the files${listing ? ` (${describeCount(listing)})` : ''}, packs them into as few prompts as fit the model's context and merges the answers on the local model; it returns the merge's job_id at once.`,
    );
    const deps =
      sources.length === 0
        ? undefined
        : steps.add(
            `At the same time, call ${call('run_script_batch', {
              worker: 'analyze_dependencies.py',
              inputs: [{ args: sources }],
              label: label(`dependencies of ${path}`),
            })}: the imports of each file${partOf(listing, sources)}, internal and external.`,
          );
    steps.add("While they run, keep working on something else (read the module's entry point yourself, say).");
    steps.add(
      `${collect(deps === undefined ? [jobOf(review)] : [jobOf(review), jobOf(deps)])} The merged review is the one result of step ${review}'s job; its "upstream" names the map job, whose per-part answers collect_results also shows.`,
    );
    steps.add(
      'Write the analysis for the user: check the claims that matter against the cited lines, and say which parts came from the local model.',
    );
    return [
      `Analyse the module ${quoted(path)} with monitor-mcp's workers, focusing on ${quoted(focus)}: the local LLM reads the files, not you.`,
      '',
      steps.toString(),
      '',
      `For a question the review leaves open, hand it to local agents: ${call('lmstudio_investigate', {
        tasks: [{ task: 'QUESTION', paths: [listing?.given ?? path] }],
        ...withModel(args.model),
      })}.`,
      noLlm(
        'lmstudio_complete',
        deps === undefined
          ? 'read the module yourself.'
          : `go on with step ${deps}'s dependency map and read the module yourself.`,
      ),
    ].join('\n');
  },
};

/** " (the 40 source files of the first 40 listed)" when the listing was cut. */
function partOf(listing: FolderListing | undefined, sources: readonly string[]): string {
  if (!listing || listing.files.length >= listing.total) return '';
  return ` (${sources.length} source files among the first ${listing.files.length} of ${listing.total}; run it again for the others)`;
}
