import path from 'node:path';
import type { UpstreamView } from '../../engine/types.js';
import { MonitorError } from '../../errors.js';
import { type PathRules, resolveInsideRoots } from '../../paths.js';
import { provenanceOf, wholeOutput } from '../../store/result.js';
import { largerContextIn } from './error-answers.js';
import { LlmError } from './errors.js';
import { hashKey } from './slots.js';
import { estimateTokens, FILE_PLACEHOLDERS, placeholdersOf, readFileForPrompt, renderTemplate } from './template.js';
import type {
  AgentTaskInput,
  ChatMessage,
  FileRef,
  LlmJobOptions,
  LlmTaskInput,
  ReduceTaskInput,
  TemplateTaskInput,
} from './types.js';

/** A task that is one prompt (every input but a reduce). */
export type PromptInput = Exclude<LlmTaskInput, ReduceTaskInput | AgentTaskInput>;

/** What building a prompt reads: files inside the allowed places, and the model's context. */
export interface PromptSources {
  allowedRoots: readonly string[];
  /** How this system compares paths (Linux's when not given). */
  pathRules?: PathRules | undefined;
  maxFileBytes: number;
  /** The model's context in tokens, where an endpoint told it. */
  contextLength(model: string): number | undefined;
  /** A file asked about per item goes first in the prompt, so its prompts share a prefix (llm.prefixReuse). */
  prefixFirst?: boolean | undefined;
}

/**
 * A task's messages: its own, or the job's template filled from its files and values, or from its
 * upstream task's output; the job's system prompt first.
 */
export async function buildMessages(
  options: LlmJobOptions,
  input: PromptInput,
  upstream: UpstreamView | undefined,
  sources: PromptSources,
): Promise<ChatMessage[]> {
  const system: ChatMessage[] = options.system ? [{ role: 'system', content: options.system }] : [];
  if ('messages' in input) {
    return input.messages[0]?.role === 'system' ? input.messages : [...system, ...input.messages];
  }
  if (options.template === undefined)
    throw new MonitorError('INVALID_INPUT', 'This job has template inputs but no template.');
  if ('upstream' in input)
    return [...system, { role: 'user', content: await fillFromUpstream(options.template, upstream, sources) }];
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(input.values ?? {})) values[key] = String(value);
  const files = input.files ?? (input.file ? [input.file] : []);
  const texts = await readFiles(files, sources);
  const content = input.files
    ? input.files.map((file, i) => `### ${partName(file)}\n${texts[i] ?? ''}`).join('\n\n')
    : (texts[0] ?? '');
  if (files.length > 0) checkFits(input, content, sources.contextLength(options.model));
  if (input.files) {
    values.path = commonFolder(input.files.map((file) => file.display));
    values.name = `${input.files.length} file(s)`;
    values.content = content;
    values.chunk = '1';
    values.chunks = '1';
  } else if (input.file) {
    values.path = input.file.display;
    values.name = path.basename(input.file.display);
    values.content = content;
    values.chunk = String(input.file.chunk ?? 1);
    values.chunks = String(input.file.chunks ?? 1);
  }
  const user =
    sources.prefixFirst === true && itemBeforeContent(options.template, input)
      ? fileFirst(options.template, values, input)
      : renderTemplate(options.template, values);
  return [...system, { role: 'user', content: user }];
}

const CONTENT = /\{\{\s*content\s*\}\}/;

/**
 * True when the file is what a template's tasks share (a file × items task) but the template puts
 * an item's own text before it: each prompt would then differ from its first line on.
 */
function itemBeforeContent(template: string, input: TemplateTaskInput): boolean {
  if (input.values === undefined || (input.file === undefined && input.files === undefined)) return false;
  const at = template.search(CONTENT);
  if (at === -1) return false;
  const fileNames = new Set<string>(FILE_PLACEHOLDERS);
  return placeholdersOf(template.slice(0, at)).some((name) => !fileNames.has(name));
}

/**
 * The file (or packed files) first, then the template as written with {{content}} pointing back to
 * it: the model is asked the same, and every item's prompt starts with the same tokens.
 */
function fileFirst(template: string, values: Readonly<Record<string, string>>, input: TemplateTaskInput): string {
  const content = values.content ?? '';
  const block = input.file && !input.files ? `### ${partName(input.file)}\n${content}` : content;
  const pointer = input.files ? '(the files above)' : `(the file ${values.path ?? ''} above)`;
  return `${block}\n\n---\n\n${renderTemplate(template, { ...values, content: pointer })}`;
}

/**
 * What a file × items task shares with the other items of its file (slots.ts routes on it): the
 * system prompt, the template's text before the file unless the file goes first, and which file
 * (and range) it is. Undefined for other tasks: their conversation decides (conversationKey).
 */
export function prefixKeyOf(options: LlmJobOptions, input: PromptInput, prefixFirst: boolean): string | undefined {
  if (!prefixFirst || options.template === undefined || 'messages' in input || 'upstream' in input) return undefined;
  const files = input.files ?? (input.file ? [input.file] : []);
  const at = options.template.search(CONTENT);
  if (input.values === undefined || files.length === 0 || at === -1) return undefined;
  const head = itemBeforeContent(options.template, input) ? '' : options.template.slice(0, at);
  const ranges = files.map((file) => `${file.path}\0${file.start ?? ''}-${file.end ?? ''}`);
  return hashKey(options.model, options.system ?? '', head, ...ranges);
}

async function readFiles(files: readonly FileRef[], sources: PromptSources): Promise<string[]> {
  const texts: string[] = [];
  for (const file of files) {
    // Checked again at run time: the path may have become a symlink pointing elsewhere since submit.
    const real = await resolveInsideRoots(file.path, sources.allowedRoots, {
      what: 'file',
      rules: sources.pathRules,
    });
    texts.push(await readFileForPrompt({ ...file, path: real }, sources.maxFileBytes));
  }
  return texts;
}

/** ~6 bytes a token is a generous lower bound: content beyond it cannot fit, so it is not sent. */
function checkFits(input: TemplateTaskInput, content: string, context: number | undefined): void {
  if (context === undefined || content.length / 6 <= context) return;
  const what = input.files ? `The ${input.files.length} files of ${input.id}` : `The file ${input.file?.display ?? ''}`;
  throw new LlmError(
    'CONTEXT_OVERFLOW',
    `${what} (${content.length} characters, ≈${estimateTokens(content)} tokens) is far larger than the model's context (${context} tokens).`,
    {
      hint:
        overflowHint(input) ??
        'Submit it again with chunk: true (or chunk_tokens) to split it into chunks, one task each; {{chunk}} and {{chunks}} give the chunk number and count.',
    },
  );
}

/**
 * A later stage's prompt: {{output}} is the upstream task's whole output, {{id}} what it worked on,
 * and each top-level field of a JSON output fills the placeholder of its name.
 */
async function fillFromUpstream(
  template: string,
  upstream: UpstreamView | undefined,
  sources: PromptSources,
): Promise<string> {
  const record = upstream?.records[0];
  if (!upstream || !record)
    throw new MonitorError('INTERNAL', 'A task of a later stage ran without its upstream result.');
  const output = await wholeOutput(record, sources.maxFileBytes);
  const values: Record<string, string> = {};
  if (output.json !== null && typeof output.json === 'object' && !Array.isArray(output.json)) {
    for (const [key, value] of Object.entries(output.json as Record<string, unknown>))
      values[key] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  values.output = output.text;
  values.id = provenanceOf(record);
  const missing = placeholdersOf(template).filter((name) => values[name] === undefined);
  if (missing.length > 0) {
    throw new MonitorError(
      'INVALID_INPUT',
      `The template uses {{${missing.join('}}, {{')}}}, which the output of ${values.id} (task #${record.index} of job ${upstream.jobId}) does not have.`,
      {
        hint: `Available: {{output}} (the whole output), {{id}}, and the top-level fields of a JSON output: ${
          Object.keys(values)
            .filter((k) => k !== 'output' && k !== 'id')
            .join(', ') || 'none here'
        }.`,
      },
    );
  }
  return renderTemplate(template, values);
}

const chunkTooLargeHint = (larger: string): string =>
  `This chunk was still too large for the model's context: submit the file again with a smaller chunk_tokens (half the size the submit's note gave), a shorter template or system prompt, or a lower max_tokens; or ${larger}.`;

const packTooLargeHint = (larger: string): string =>
  `Even split into 8 parts this did not fit the model's context: shorten the template or system prompt, lower max_tokens, or ${larger}; or leave this file out of the group and send it alone with chunk: true.`;

/**
 * What to change when `input` overflowed the context, where the generic hint (pass chunk: true)
 * would not do: a chunk already is one (it needs smaller chunks), and a pack (group) takes no chunk
 * options, so what is left is the room around its files; the way to a larger context is the one
 * the server's own hint named (`serverHint`). Undefined for a whole file or a prompt.
 */
export function overflowHint(input: LlmTaskInput, serverHint?: string): string | undefined {
  if ('files' in input && input.files) return packTooLargeHint(largerContextIn(serverHint));
  if ('file' in input && input.file?.chunks !== undefined) return chunkTooLargeHint(largerContextIn(serverHint));
  return undefined;
}

/** The task's own fields in its value (its id is its label, kept with the result). */
export function describeInput(input: LlmTaskInput): Record<string, unknown> {
  const base: Record<string, unknown> = {};
  if ('files' in input && input.files) base.files = input.files.map(partName);
  if ('file' in input && input.file) {
    base.file = input.file.display;
    if (input.file.chunks !== undefined && input.file.chunks > 1)
      base.chunk = `${input.file.chunk ?? 1}/${input.file.chunks}`;
  }
  return base;
}

/** A file or its chunk, as a packed prompt's header names it. */
function partName(file: FileRef): string {
  if (file.chunks !== undefined && file.chunks > 1)
    return `${file.display} (part ${file.chunk ?? 1} of ${file.chunks})`;
  if (
    file.start !== undefined &&
    file.end !== undefined &&
    file.size !== undefined &&
    (file.start > 0 || file.end < file.size)
  )
    return `${file.display} (bytes ${file.start}–${file.end} of ${file.size})`;
  return file.display;
}

/** The folder the files share, for {{path}} of a packed prompt. */
function commonFolder(displays: readonly string[]): string {
  const split = displays.map((display) => display.split('/').slice(0, -1));
  const first = split[0] ?? [];
  let length = first.length;
  for (const parts of split) {
    let same = 0;
    while (same < length && parts[same] === first[same]) same++;
    length = same;
  }
  return length === 0 ? '.' : first.slice(0, length).join('/');
}
