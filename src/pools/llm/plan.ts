import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { JobPlan } from '../../engine/types.js';
import { MonitorError } from '../../errors.js';
import { type PathRules, resolveRoots } from '../../paths.js';
import type { Endpoints } from './endpoints.js';
import { expandFiles } from './glob.js';
import { LLM_KIND } from './pool.js';
import type { SchemaValidator } from './schema.js';
import type { LlmSettings } from './settings.js';
import {
  CHUNK_BYTES_PER_TOKEN,
  checkPlaceholders,
  chunkRanges,
  displayPath,
  FILE_PLACEHOLDERS,
  looksBinary,
  placeholdersOf,
} from './template.js';
import type { ChatMessage, FileRef, LlmJobOptions, LlmTaskInput, ReduceOptions } from './types.js';

/** Context assumed for chunk sizing when no endpoint tells the model's context length. */
const ASSUMED_CONTEXT_TOKENS = 4096;
/** Files larger than this are not cut into chunks at submit time (it reads them whole to find line breaks). */
const MAX_CHUNKED_FILE_BYTES = 64 * 1024 * 1024;

type ItemValues = Record<string, string | number | boolean>;

/** What lmstudio_complete asks for, before any of it is checked. */
export interface LlmJobRequest {
  prompts?:
    | ReadonlyArray<{ id?: string | undefined; prompt?: string | undefined; messages?: ChatMessage[] | undefined }>
    | undefined;
  template?: string | undefined;
  items?: readonly ItemValues[] | undefined;
  files?: readonly string[] | undefined;
  system?: string | undefined;
  model?: string | undefined;
  temperature?: number | undefined;
  maxTokens?: number | undefined;
  stop?: string[] | undefined;
  seed?: number | undefined;
  jsonSchema?: Record<string, unknown> | undefined;
  includeReasoning?: boolean | undefined;
  chunk?: boolean | undefined;
  chunkTokens?: number | undefined;
  concurrency?: number | undefined;
  timeoutSeconds?: number | undefined;
  /** Pack the files into as few prompts as fit the context: all together, or per folder. */
  group?: 'all' | 'folder' | undefined;
  /** Merge the answers on the model once they are in (a reduce stage). */
  reduce?: { prompt: string; maxTokens?: number | undefined } | undefined;
  /** A later stage: one task per task of this job, filled from its output (labels name them). */
  upstream?: { jobId: string; labels: readonly string[] } | undefined;
}

/** The job, and what the caller should know about how it will run (model, endpoints, chunking). */
export interface LlmJobPlan extends JobPlan {
  notes: string[];
}

export interface LlmPlanContext {
  settings: LlmSettings;
  allowedRoots: readonly string[];
  /** How this system compares paths (Linux's when not given). */
  pathRules?: PathRules;
  endpoints: Endpoints;
  schemas: SchemaValidator;
  signal: AbortSignal;
}

/**
 * Turns an lmstudio_complete request into tasks: one per prompt, or the template filled from each
 * item and/or file (files × items), files cut into chunks sized to the model's context when asked.
 * Resolves the model now (refusing when no endpoint serving it answers) and refuses a concurrency
 * above what those endpoints take together.
 */
export async function planLlmJob(request: LlmJobRequest, context: LlmPlanContext): Promise<LlmJobPlan> {
  const { settings, endpoints } = context;
  if ((request.prompts === undefined) === (request.template === undefined)) {
    throw new MonitorError(
      'INVALID_INPUT',
      request.prompts
        ? 'Give either prompts or template, not both.'
        : 'Nothing to send: give prompts, or a template with items and/or files.',
      {
        hint: 'prompts: [{"prompt": "…"}], or template: "… {{content}} …" with files: ["src/**/*.ts"].',
      },
    );
  }
  if (
    request.upstream !== undefined &&
    (request.items !== undefined || request.files !== undefined || request.template === undefined)
  ) {
    throw new MonitorError(
      'INVALID_INPUT',
      'from_job fills a template from each result of that job: give template, and no items, files or prompts.',
      {
        hint: 'e.g. template: "Explain the risks in this dependency report:\\n{{output}}"; {{output}} is the whole output, {{id}} what the task worked on, and a JSON output\'s top-level fields fill {{field}}.',
      },
    );
  }
  if (
    request.prompts === undefined &&
    request.items === undefined &&
    request.files === undefined &&
    request.upstream === undefined
  ) {
    throw new MonitorError('INVALID_INPUT', 'A template needs items and/or files to fill it.', {
      hint: 'Add files: ["path/or/**/*.glob"] or items: [{"name": "value"}].',
    });
  }
  if (
    request.group !== undefined &&
    (request.files === undefined ||
      request.items !== undefined ||
      request.chunk !== undefined ||
      request.chunkTokens !== undefined)
  ) {
    throw new MonitorError(
      'INVALID_INPUT',
      'group packs `files` into prompts and splits what does not fit by itself: it goes with files only, without items, chunk or chunk_tokens.',
      {
        hint: 'e.g. template: "Review the architecture of this module:\\n{{content}}", files: ["src/auth/**"], group: "all".',
      },
    );
  }
  if (request.reduce !== undefined && request.reduce.prompt.trim() === '') {
    throw new MonitorError('INVALID_INPUT', 'reduce needs a prompt: what to make of all the answers together.', {
      hint: 'e.g. reduce: "Combine these per-file findings into one architecture review."',
    });
  }
  if (request.prompts !== undefined && (request.items !== undefined || request.files !== undefined)) {
    throw new MonitorError('INVALID_INPUT', 'items and files go with a template, not with prompts.', {
      hint: 'Use template with {{placeholders}} instead of prompts.',
    });
  }
  if (request.jsonSchema !== undefined) context.schemas.compile(request.jsonSchema);
  if (request.chunkTokens !== undefined) checkChunkTokens(request.chunkTokens, settings.maxFileBytes);

  const resolved = await endpoints.resolveModel(request.model, context.signal);
  const capacity = endpoints.router.capacityOf(resolved.endpoints);
  if (request.concurrency !== undefined && request.concurrency > capacity)
    throw concurrencyOverLimit(request.concurrency, capacity, resolved.model, resolved.endpoints, endpoints);
  const options: LlmJobOptions = {
    model: resolved.model,
    timeout_seconds: request.timeoutSeconds ?? settings.requestTimeoutSeconds,
  };
  if (request.system !== undefined) options.system = request.system;
  if (request.template !== undefined) options.template = request.template;
  if (request.temperature !== undefined) options.temperature = request.temperature;
  if (request.maxTokens !== undefined) options.max_tokens = request.maxTokens;
  if (request.stop !== undefined) options.stop = request.stop;
  if (request.seed !== undefined) options.seed = request.seed;
  if (request.jsonSchema !== undefined) options.json_schema = request.jsonSchema;
  if (request.includeReasoning) options.include_reasoning = true;

  const notes: string[] = [];
  const served = { contextLength: resolved.contextLength, endpoints: resolved.endpoints };
  let reducePrompt = request.reduce?.prompt;
  let inputs: LlmTaskInput[];
  let ratio: Measured | undefined;
  if (request.prompts !== undefined) {
    inputs = request.prompts.map((p, i): LlmTaskInput => ({
      id: p.id ?? String(i + 1),
      messages: toMessages(p, i, request.system !== undefined),
    }));
  } else if (request.upstream !== undefined) {
    if (placeholdersOf(request.template ?? '').length === 0)
      checkPlaceholders(request.template ?? '', new Set(['output', 'id']), 'each result');
    inputs = request.upstream.labels.map((label): LlmTaskInput => ({ id: label, upstream: true }));
  } else if (request.group !== undefined) {
    const packed = await groupInputs(request, request.template ?? '', request.group, served, options, context, notes);
    inputs = packed.inputs;
    ratio = packed.ratio;
    if (inputs.length > 1 && request.group === 'all' && reducePrompt === undefined) {
      reducePrompt = defaultReducePrompt(request.template ?? '');
      notes.push(
        `They do not fit one prompt, so their ${inputs.length} answers are merged on the model by a reduce stage (map → reduce), added for you; pass reduce to word the merge yourself.`,
      );
    }
  } else {
    inputs = await templateInputs(request, request.template ?? '', served, options, context, notes);
  }
  if (inputs.length > settings.maxTasks) throw tooManyTasks(settings.maxTasks, '');

  const concurrency = Math.max(1, request.concurrency ?? capacity);
  notes.unshift(`Model ${resolved.model} on ${resolved.endpoints.join(', ')}, up to ${concurrency} prompt(s) at once.`);
  const plan: LlmJobPlan = { kind: LLM_KIND, inputs, options, concurrency, notes };
  if (request.upstream !== undefined) plan.after = { job: request.upstream.jobId, mode: 'each' };
  if (reducePrompt !== undefined) {
    ratio ??= await measure(reducePrompt, served.endpoints, options.model, context);
    const reduce: ReduceOptions = {
      prompt: reducePrompt,
      context_tokens: resolved.contextLength ?? ASSUMED_CONTEXT_TOKENS,
      bytes_per_token: ratio?.bytes ?? CHUNK_BYTES_PER_TOKEN * MEASURED_MARGIN,
      parallel: concurrency,
    };
    // Not the map's max_tokens: that sizes one item's answer, and the merged one says more.
    if (request.reduce?.maxTokens !== undefined) reduce.max_tokens = request.reduce.maxTokens;
    plan.then = {
      kind: LLM_KIND,
      inputs: [{ id: 'reduce', reduce: true }],
      options: { ...options, reduce },
      concurrency: 1,
    };
  }
  return plan;
}

/** The merge a module too large for one prompt gets when the caller named none: the request itself, over the partial answers. */
function defaultReducePrompt(template: string): string {
  const request = template
    .replace(/\{\{\s*content\s*\}\}/g, '[the files]')
    .replace(/\{\{\s*(path|name|chunk|chunks)\s*\}\}/g, '[…]')
    .slice(0, 2000);
  return `The files were too many for one prompt, so this request was asked of them in groups:\n---\n${request}\n---\nThe answers of the groups follow. Give the one answer to that request for all the files together.`;
}

/**
 * Files packed into as few prompts as fit the model's context, in path order (`folder`: a folder's
 * files together, never mixed with another folder's): each under a `### path` header. A file larger
 * than a prompt's room is cut into chunks that each take a prompt.
 */
async function groupInputs(
  request: LlmJobRequest,
  template: string,
  group: 'all' | 'folder',
  served: { contextLength: number | undefined; endpoints: readonly string[] },
  options: LlmJobOptions,
  context: LlmPlanContext,
  notes: string[],
): Promise<{ inputs: LlmTaskInput[]; ratio: Measured | undefined }> {
  const { settings } = context;
  checkPlaceholders(template, new Set(FILE_PLACEHOLDERS), 'the files');
  if (!placeholdersOf(template).includes('content')) {
    throw new MonitorError('INVALID_INPUT', 'group puts the files into {{content}}, which the template does not use.', {
      hint: 'e.g. "Review this module:\\n{{content}}".',
    });
  }
  const matched = await expandFiles(request.files ?? [], {
    roots: context.allowedRoots,
    maxFiles: settings.maxFiles,
    rules: context.pathRules,
  });
  const realRoots = await resolveRoots(context.allowedRoots);
  const ratio = await bytesPerToken(matched, served.endpoints, options.model, context);
  const bytesPerTok = ratio?.bytes ?? CHUNK_BYTES_PER_TOKEN;
  const roomBytes = Math.floor(autoChunkTokens(served.contextLength, options, bytesPerTok) * bytesPerTok);
  const files = await Promise.all(
    matched.map(async (file) => ({ path: file, display: displayPath(file, realRoots), size: (await stat(file)).size })),
  );
  files.sort((a, b) => (a.display < b.display ? -1 : a.display > b.display ? 1 : 0));
  // One binary file would fail the whole prompt it is packed into: refused now, by name.
  const binary: string[] = [];
  for (const file of files) if (await startsBinary(file.path)) binary.push(file.display);
  if (binary.length > 0) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${binary.length} of the files look binary (they contain NUL bytes): ${binary.slice(0, 5).join(', ')}${binary.length > 5 ? ', …' : ''}. Only text files can go into a prompt.`,
      {
        hint: 'Narrow the file patterns to text files (e.g. "src/auth/**/*.ts").',
      },
    );
  }
  const folderOf = (display: string): string =>
    group === 'all' ? '' : path.posix.dirname(display.split(path.sep).join('/'));
  const packs: Array<{ folder: string; refs: FileRef[]; bytes: number }> = [];
  let current: { folder: string; refs: FileRef[]; bytes: number } | undefined;
  for (const file of files) {
    const header = Buffer.byteLength(`### ${file.display} (part 99 of 99)\n\n\n`);
    const folder = folderOf(file.display);
    const pieces: FileRef[] =
      file.size + header <= roomBytes
        ? [{ path: file.path, display: file.display }]
        : await chunkFile(
            file.path,
            file.display,
            roomBytes - header,
            settings.maxFileBytes,
            settings.maxTasks,
            settings.maxTasks,
          );
    for (const piece of pieces) {
      const bytes =
        (piece.end !== undefined && piece.start !== undefined ? piece.end - piece.start : file.size) + header;
      if (!current || current.folder !== folder || current.bytes + bytes > roomBytes) {
        current = { folder, refs: [], bytes: 0 };
        packs.push(current);
        if (packs.length > settings.maxTasks) throw tooManyTasks(settings.maxTasks, '');
      }
      current.refs.push(piece);
      current.bytes += bytes;
    }
  }
  const perFolder = new Map<string, number>();
  for (const pack of packs) perFolder.set(pack.folder, (perFolder.get(pack.folder) ?? 0) + 1);
  const seen = new Map<string, number>();
  const inputs = packs.map((pack): LlmTaskInput => {
    const k = (seen.get(pack.folder) ?? 0) + 1;
    seen.set(pack.folder, k);
    const of = perFolder.get(pack.folder) ?? 1;
    const name =
      group === 'all'
        ? packs.length === 1
          ? 'all files'
          : `files ${k}/${packs.length}`
        : `${pack.folder || '.'}${of > 1 ? ` [${k}/${of}]` : ''}`;
    const fileCount = new Set(pack.refs.map((ref) => ref.display)).size;
    const first = pack.refs[0]?.display ?? '';
    const last = pack.refs.at(-1)?.display ?? '';
    return {
      id: `${name}: ${fileCount === 1 ? first : `${first} … ${last}`} (${fileCount} file${fileCount === 1 ? '' : 's'})`,
      files: pack.refs,
    };
  });
  const how = describeRatio(ratio);
  notes.push(
    `${files.length} file(s) packed into ${packs.length} prompt(s) of up to ${(roomBytes / 1024).toFixed(1)} KB (≈${Math.floor(roomBytes / bytesPerTok)} tokens of the ${served.contextLength ?? ASSUMED_CONTEXT_TOKENS}-token context; ${how}), each file under a "### path" header.`,
  );
  return { inputs, ratio };
}

/** One task per item, per file (or chunk), or per file × item; placeholders checked against what fills them. */
async function templateInputs(
  request: LlmJobRequest,
  template: string,
  served: { contextLength: number | undefined; endpoints: readonly string[] },
  options: LlmJobOptions,
  context: LlmPlanContext,
  notes: string[],
): Promise<LlmTaskInput[]> {
  const { settings } = context;
  const { contextLength } = served;
  const items = request.items;
  const fileNames = new Set<string>(FILE_PLACEHOLDERS);
  if (items && request.files) {
    const clash = items.flatMap((item) => Object.keys(item)).find((k) => fileNames.has(k));
    if (clash)
      throw new MonitorError('INVALID_INPUT', `Item value "${clash}" has the name of a file placeholder.`, {
        hint: `Rename it: ${FILE_PLACEHOLDERS.join(', ')} are filled from each file.`,
      });
  }
  const available = new Set<string>(request.files ? FILE_PLACEHOLDERS : []);
  if (items) {
    // Every item must fill every placeholder: check the names all items share.
    const shared = items
      .map((item) => new Set(Object.keys(item)))
      .reduce((a, b) => new Set([...a].filter((k) => b.has(k))));
    for (const key of shared) available.add(key);
  }
  checkPlaceholders(
    template,
    available,
    items ? (request.files ? 'the files and every item' : 'every item') : 'the files',
  );

  let files: FileRef[] | undefined;
  if (request.files) {
    const roots = context.allowedRoots;
    const matched = await expandFiles(request.files, { roots, maxFiles: settings.maxFiles, rules: context.pathRules });
    const realRoots = await resolveRoots(roots);
    const chunking = request.chunkTokens !== undefined || request.chunk === true;
    const ratio = chunking ? await bytesPerToken(matched, served.endpoints, options.model, context) : undefined;
    const chunkTokens =
      request.chunkTokens ?? (request.chunk ? autoChunkTokens(contextLength, options, ratio?.bytes ?? 4) : undefined);
    files = [];
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
      for (const chunk of await chunkFile(
        file,
        display,
        chunkBytes,
        settings.maxFileBytes,
        settings.maxTasks - files.length,
        settings.maxTasks,
      ))
        files.push(chunk);
    }
    if (oversized > 0) {
      notes.push(
        `Note: ${oversized} file(s) look larger than the model's context (${contextLength} tokens): one the model refuses is split in two and asked again (up to 8 parts), and fails with CONTEXT_OVERFLOW if that is not enough; to cut them to the context up front, cancel and resubmit with chunk: true (or group: "all" to pack a module into as few prompts as fit).`,
      );
    }
    if (chunkTokens !== undefined) {
      const how = describeRatio(ratio);
      notes.push(
        `Files were cut into chunks of about ${chunkTokens} tokens (${how}): ${files.length} task(s) from ${matched.length} file(s).`,
      );
    }
  }

  const inputs: LlmTaskInput[] = [];
  const itemList = items ?? [undefined];
  for (const file of files ?? [undefined]) {
    itemList.forEach((item, i) => {
      const input: LlmTaskInput = { id: taskId(file, item, i, items !== undefined) };
      if (item) input.values = item;
      if (file) input.file = file;
      inputs.push(input);
    });
    if (inputs.length > settings.maxTasks) break;
  }
  return inputs;
}

function toMessages(
  p: NonNullable<LlmJobRequest['prompts']>[number],
  index: number,
  hasSystem: boolean,
): ChatMessage[] {
  if ((p.prompt === undefined) === (p.messages === undefined)) {
    throw new MonitorError('INVALID_INPUT', `prompts[${index}] needs exactly one of prompt or messages.`, {
      hint: 'e.g. {"prompt": "Explain …"}',
    });
  }
  if (hasSystem && p.messages?.[0]?.role === 'system') {
    throw new MonitorError(
      'INVALID_INPUT',
      `prompts[${index}] starts with its own system message, and \`system\` is given too: only one can be used.`,
      {
        hint: "Drop `system`, or drop the system message from that prompt's messages (or put the text of both into one).",
      },
    );
  }
  return p.messages ?? [{ role: 'user', content: p.prompt ?? '' }];
}

function taskId(file: FileRef | undefined, item: ItemValues | undefined, index: number, hasItems: boolean): string {
  const itemId = item && item.id !== undefined ? String(item.id) : String(index + 1);
  if (!file) return itemId;
  const fileId = file.chunks !== undefined && file.chunks > 1 ? `${file.display}#${file.chunk ?? 1}` : file.display;
  return hasItems ? `${fileId} | ${itemId}` : fileId;
}

/** Tokens per chunk that leave room for the template, the system prompt and the answer. */
function autoChunkTokens(contextLength: number | undefined, options: LlmJobOptions, bytesPerToken: number): number {
  const context = contextLength ?? ASSUMED_CONTEXT_TOKENS;
  const answer = options.max_tokens ?? Math.min(1024, Math.floor(context / 4));
  const overhead = Math.ceil(Buffer.byteLength((options.template ?? '') + (options.system ?? '')) / bytesPerToken) + 64;
  return Math.max(128, Math.floor((context - answer - overhead) * 0.9));
}

/** Files sampled, and bytes of each, to measure the tokenizer's bytes per token. */
const SAMPLE_FILES = 8;
const SAMPLE_BYTES_PER_FILE = 8192;
/** Files differ from the sample: on this repository 95% of files were within 0.89× of the median ratio. */
const MEASURED_MARGIN = 0.8;

/**
 * Bytes per token for sizing chunks, measured on a sample of the files with the tokenizer of the
 * first endpoint serving the model that has one (`/tokenize`): a model's vocabulary decides it, from
 * ~4 bytes a token for large BPE vocabularies down to 1.6 for a small one, where the fixed
 * estimate made chunks twice too large. Undefined bytes (no counter anywhere): the estimate.
 */
async function bytesPerToken(
  files: readonly string[],
  endpointNames: readonly string[],
  model: string,
  context: LlmPlanContext,
): Promise<Measured | undefined> {
  const parts: Buffer[] = [];
  for (const file of files.slice(0, SAMPLE_FILES)) {
    const handle = await open(file, 'r').catch(() => undefined);
    if (!handle) continue;
    try {
      const buffer = Buffer.alloc(SAMPLE_BYTES_PER_FILE);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      if (!looksBinary(buffer.subarray(0, bytesRead))) parts.push(buffer.subarray(0, bytesRead));
    } finally {
      await handle.close();
    }
  }
  return measure(Buffer.concat(parts).toString('utf8'), endpointNames, model, context);
}

interface Measured {
  bytes: number;
  /** How it was measured, for the submit's note. */
  how: string;
}

/** The bytes a token a plan used, as its note says it. */
function describeRatio(ratio: Measured | undefined): string {
  return ratio !== undefined
    ? `${ratio.bytes.toFixed(2)} bytes a token, ${ratio.how} less a margin`
    : `${CHUNK_BYTES_PER_TOKEN} bytes a token, estimated`;
}

/** Bytes a token of `sample` on the first endpoint that counts tokens, less the margin. */
async function measure(
  sample: string,
  endpointNames: readonly string[],
  model: string,
  context: LlmPlanContext,
): Promise<Measured | undefined> {
  if (sample.length === 0) return undefined;
  for (const name of endpointNames) {
    const tokens = await context.endpoints.client(name).countTokens(sample, model, context.signal);
    if (tokens !== undefined && tokens > 0)
      return { bytes: (Buffer.byteLength(sample) / tokens) * MEASURED_MARGIN, how: `counted with ${name}'s tokenizer` };
  }
  // No tokenizer to ask (LM Studio's REST API has none): what the endpoints reported for earlier prompts of this model.
  for (const name of endpointNames) {
    const learned = context.endpoints.learnedBytesPerToken(name, model);
    if (learned)
      return {
        bytes: learned.bytes * MEASURED_MARGIN,
        how: `learned from the prompt token counts ${name} reported for ${learned.prompts} earlier prompts`,
      };
  }
  return undefined;
}

/** More prompts at once than the endpoints serving the model take is refused, naming their limits: never silently lowered. */
function concurrencyOverLimit(
  concurrency: number,
  capacity: number,
  model: string,
  names: readonly string[],
  endpoints: Endpoints,
): MonitorError {
  const limits = names.map((name) => `${name} ${endpoints.router.stats(name)?.limit ?? '?'}`).join(', ');
  return new MonitorError(
    'INVALID_INPUT',
    `concurrency ${concurrency} is more than the endpoints serving ${model} take at once (${capacity}: ${limits}).`,
    {
      hint: `Pass a concurrency of at most ${capacity}, or leave it out (that is the default). Only the user can raise an endpoint's limit, and only as far as its server runs prompts in parallel (LM Studio: "Max Concurrent Predictions"): --lmstudio-concurrency N, --endpoint NAME=URL@N, or "concurrency" on the endpoint in "llm.endpoints" in the config file.`,
    },
  );
}

/** The file's first bytes hold a NUL byte (see looksBinary). */
async function startsBinary(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(SAMPLE_BYTES_PER_FILE);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return looksBinary(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

/** Chunks larger than llm.maxFileBytes could never be read into a prompt: refused rather than made smaller unasked. */
function checkChunkTokens(chunkTokens: number, maxFileBytes: number): void {
  const bytes = chunkTokens * CHUNK_BYTES_PER_TOKEN;
  if (bytes <= maxFileBytes) return;
  throw new MonitorError(
    'INVALID_INPUT',
    `chunk_tokens ${chunkTokens} makes chunks of up to ${bytes} bytes, more than llm.maxFileBytes (${maxFileBytes} bytes) read into one prompt.`,
    {
      hint: `Pass chunk_tokens of at most ${Math.floor(maxFileBytes / CHUNK_BYTES_PER_TOKEN)}, or chunk: true to size chunks to the model's context. Only the user can raise the limit: "llm": {"maxFileBytes": N} in the config file.`,
    },
  );
}

function tooManyTasks(maxTasks: number, why: string): MonitorError {
  return new MonitorError('INVALID_INPUT', `This would be more than ${maxTasks} tasks${why}.`, {
    hint: 'Split the work into several calls, narrow the file patterns, or use larger chunks (chunk_tokens). The cap is "llm.maxTasks" in the config file.',
  });
}

/**
 * Reads a file once at submit to cut it at line breaks; only the byte ranges are stored. `room` is
 * how many more tasks the job may have: a file that needs more is refused before it is read.
 */
async function chunkFile(
  file: string,
  display: string,
  chunkBytes: number,
  maxFileBytes: number,
  room: number,
  maxTasks: number,
): Promise<FileRef[]> {
  const { size } = await stat(file);
  // An explicit chunk_tokens was checked against maxFileBytes at submit; a size made from the model's context may still need the cap.
  const bytesPerChunk = Math.max(16, Math.min(chunkBytes, maxFileBytes));
  const fewest = Math.ceil(size / bytesPerChunk);
  if (fewest > room)
    throw tooManyTasks(
      maxTasks,
      `: ${display} needs at least ${fewest} chunks of ${bytesPerChunk} bytes, and only ${room} more fit`,
    );
  if (size > MAX_CHUNKED_FILE_BYTES) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${display} is ${size} bytes; files over ${MAX_CHUNKED_FILE_BYTES} bytes are not chunked.`,
      {
        hint: 'Split it first (e.g. with run_script_batch), or leave it out of files.',
      },
    );
  }
  const buffer = await readFile(file);
  if (looksBinary(buffer)) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${display} looks binary (it contains NUL bytes); only text files can go into a prompt.`,
      {
        hint: 'Narrow the file patterns to text files.',
      },
    );
  }
  const ranges = chunkRanges(buffer, bytesPerChunk, room + 1);
  if (ranges.length > room)
    throw tooManyTasks(
      maxTasks,
      `: ${display} needs more than the ${room} chunks of ${bytesPerChunk} bytes that still fit`,
    );
  return ranges.map((range, i) => ({
    path: file,
    display,
    chunk: i + 1,
    chunks: ranges.length,
    start: range.start,
    end: range.end,
    size: buffer.length,
  }));
}
