import { stat } from 'node:fs/promises';
import { MonitorError } from '../../errors.js';
import { resolveRoots } from '../../paths.js';
import { expandFiles } from './glob.js';
import { autoChunkTokens, chunkFile } from './plan-chunks.js';
import { bytesPerToken, describeRatio } from './plan-measure.js';
import type { ItemValues, LlmJobRequest, LlmPlanContext, ServedModel } from './plan-types.js';
import { CHUNK_BYTES_PER_TOKEN, checkPlaceholders, displayPath, FILE_PLACEHOLDERS } from './template.js';
import type { FileRef, LlmJobOptions, LlmTaskInput } from './types.js';

/** One task per item, per file (or chunk), or per file × item; placeholders checked against what fills them. */
export async function templateInputs(
  request: LlmJobRequest,
  template: string,
  served: ServedModel,
  options: LlmJobOptions,
  context: LlmPlanContext,
  notes: string[],
): Promise<LlmTaskInput[]> {
  const { maxTasks } = context.settings;
  const items = request.items;
  checkTemplateNames(template, items, request.files !== undefined);
  const files = request.files ? await fileRefs(request.files, request, served, options, context, notes) : undefined;
  const inputs: LlmTaskInput[] = [];
  const itemList = items ?? [undefined];
  for (const file of files ?? [undefined]) {
    itemList.forEach((item, i) => {
      const input: LlmTaskInput = { id: taskId(file, item, i, items !== undefined) };
      if (item) input.values = item;
      if (file) input.file = file;
      inputs.push(input);
    });
    if (inputs.length > maxTasks) break;
  }
  return inputs;
}

/** The template's placeholders are what the files and every item fill, and no item value takes a file placeholder's name. */
function checkTemplateNames(template: string, items: readonly ItemValues[] | undefined, hasFiles: boolean): void {
  const fileNames = new Set<string>(FILE_PLACEHOLDERS);
  if (items && hasFiles) {
    const clash = items.flatMap((item) => Object.keys(item)).find((k) => fileNames.has(k));
    if (clash)
      throw new MonitorError('INVALID_INPUT', `Item value "${clash}" has the name of a file placeholder.`, {
        hint: `Rename it: ${FILE_PLACEHOLDERS.join(', ')} are filled from each file.`,
      });
  }
  const available = new Set<string>(hasFiles ? FILE_PLACEHOLDERS : []);
  if (items) {
    // Every item must fill every placeholder: check the names all items share.
    const shared = items
      .map((item) => new Set(Object.keys(item)))
      .reduce((a, b) => new Set([...a].filter((k) => b.has(k))));
    for (const key of shared) available.add(key);
  }
  checkPlaceholders(template, available, items ? (hasFiles ? 'the files and every item' : 'every item') : 'the files');
}

/** The files the patterns match, whole or cut into chunks (chunk / chunk_tokens); what the caller should know goes to `notes`. */
async function fileRefs(
  patterns: readonly string[],
  request: LlmJobRequest,
  served: ServedModel,
  options: LlmJobOptions,
  context: LlmPlanContext,
  notes: string[],
): Promise<FileRef[]> {
  const { settings } = context;
  const { contextLength } = served;
  const roots = context.allowedRoots;
  const matched = await expandFiles(patterns, { roots, maxFiles: settings.maxFiles, rules: context.pathRules });
  const realRoots = await resolveRoots(roots);
  const chunking = request.chunkTokens !== undefined || request.chunk === true;
  const ratio = chunking ? await bytesPerToken(matched, served.endpoints, options.model, context) : undefined;
  const chunkTokens =
    request.chunkTokens ?? (request.chunk ? autoChunkTokens(contextLength, options, ratio?.bytes ?? 4) : undefined);
  const files: FileRef[] = [];
  let oversized = 0;
  for (const file of matched) {
    const display = displayPath(file, realRoots);
    if (chunkTokens === undefined) {
      const { size } = await stat(file);
      if (contextLength !== undefined && size / 4 > contextLength) oversized++;
      files.push({ path: file, display });
      continue;
    }
    // One push per chunk: spreading 100k+ chunks into push() overflows the stack.
    const chunkBytes = Math.floor(chunkTokens * (ratio?.bytes ?? CHUNK_BYTES_PER_TOKEN));
    const room = settings.maxTasks - files.length;
    for (const chunk of await chunkFile(file, display, chunkBytes, settings.maxFileBytes, room, settings.maxTasks))
      files.push(chunk);
  }
  if (oversized > 0) {
    notes.push(
      `Note: ${oversized} file(s) look larger than the model's context (${contextLength} tokens): one the model refuses is split in two and asked again (up to 8 parts), and fails with CONTEXT_OVERFLOW if that is not enough; to cut them to the context up front, cancel and resubmit with chunk: true (or group: "all" to pack a module into as few prompts as fit).`,
    );
  }
  if (chunkTokens !== undefined) {
    notes.push(
      `Files were cut into chunks of about ${chunkTokens} tokens (${describeRatio(ratio)}): ${files.length} task(s) from ${matched.length} file(s).`,
    );
  }
  return files;
}

function taskId(file: FileRef | undefined, item: ItemValues | undefined, index: number, hasItems: boolean): string {
  const itemId = item && item.id !== undefined ? String(item.id) : String(index + 1);
  if (!file) return itemId;
  const fileId = file.chunks !== undefined && file.chunks > 1 ? `${file.display}#${file.chunk ?? 1}` : file.display;
  return hasItems ? `${fileId} | ${itemId}` : fileId;
}
