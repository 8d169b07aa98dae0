import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TaskRecord } from '../../engine/types.js';
import type { TaskError } from '../../errors.js';
import { provenanceOf, stageOutput } from '../stage-input.js';
import type { ChatMessage, ReduceOptions } from './types.js';

/** One input of a reduce level: where it comes from and what it says. */
export interface Piece {
  source: string;
  text: string;
  failed?: boolean;
}

export type AskResult = { ok: true; text: string; value: Record<string, unknown> } | { ok: false; error: TaskError; value: Record<string, unknown> };
/** One request to the model; `stem` names its answer's file. */
export type Ask = (messages: ChatMessage[], stem: string) => Promise<AskResult>;

export interface ReduceOutcome {
  result: AskResult;
  levels: number;
  requests: number;
  inputs: number;
  failedInputs: string[];
  /** Answers reused from an earlier run of this task (cut off by a restart). */
  reused: number;
}

/** Tokens kept free besides the answer and the instructions: the chat template and counting error. */
const SLACK_TOKENS = 96;
/** A level that does not shrink is forced into pairs; past this many levels the reduce gives up. */
const MAX_LEVELS = 8;
/** A group's room never drops below this, however small the context: an overflow then halves it. */
const MIN_GROUP_BYTES = 128;
/** Sources listed in a combined piece's header before "… (N sources)". */
const SOURCES_SHOWN = 6;

/** The map answers as reduce inputs, in task order, each labelled with its provenance; a failed or cut answer is named, never dropped. */
export async function piecesOf(records: readonly TaskRecord[], maxBytes: number): Promise<Piece[]> {
  const pieces: Piece[] = [];
  for (const record of records) {
    const source = provenanceOf(record);
    if (record.state !== 'succeeded') {
      pieces.push({ source, failed: true, text: `[no answer: this input ${record.state === 'cancelled' ? 'was cancelled' : `failed with ${record.error?.code ?? 'an error'}: ${record.error?.message ?? ''}`}]` });
      continue;
    }
    const output = await stageOutput(record, maxBytes);
    const value = record.value as { truncated?: unknown } | undefined;
    const cut = output.cut || value?.truncated === true ? '\n[this answer was cut off]' : '';
    pieces.push({ source, text: output.text + cut });
  }
  return pieces;
}

/**
 * Merges `pieces` into one answer on the model: as many pieces as fit the context go into one
 * request; while more than one request is needed, each one's answer becomes a piece of the next
 * level (a tree). A request that still overflows is split in two. Every answer is kept under
 * `cacheDir`, named by what was asked, so a run cut off by a restart reuses what it had.
 */
export async function treeReduce(pieces: readonly Piece[], options: ReduceOptions, ask: Ask, cacheDir: string): Promise<ReduceOutcome> {
  const failedInputs = pieces.filter((piece) => piece.failed).map((piece) => piece.source);
  const outcome = { levels: 0, requests: 0, inputs: pieces.length, failedInputs, reused: 0 };
  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
  const promptBytes = Math.max(...[true, false].map((final) => Buffer.byteLength(instructions(options.prompt, 999, 999, 999, 999, final))));
  const answerTokens = options.max_tokens ?? Math.floor(options.context_tokens / 4);
  const budgetBytes = Math.max(MIN_GROUP_BYTES, Math.floor((options.context_tokens - answerTokens - SLACK_TOKENS) * options.bytes_per_token) - promptBytes);
  let level: Piece[] = [...pieces];
  for (let depth = 1; depth <= MAX_LEVELS; depth++) {
    outcome.levels = depth;
    let groups = pack(level, budgetBytes);
    if (groups.length > 1 && groups.length >= level.length) groups = pairs(level);
    const final = groups.length === 1;
    const answers = await mapLimit(groups, options.parallel, (group, k) => askGroup(group, { depth, k, groups: groups.length, final, total: level.length }, options, ask, cacheDir, outcome));
    const failed = answers.find((answer) => !answer.ok);
    if (failed) return { ...outcome, result: failed };
    if (final) return { ...outcome, result: answers[0] as AskResult };
    level = answers.map((answer, k) => ({ source: combinedSource(groups[k] ?? []), text: answer.ok ? answer.text : '' }));
  }
  return { ...outcome, result: { ok: false, error: { code: 'INTERNAL', message: `The reduce did not come down to one answer in ${MAX_LEVELS} levels.` }, value: {} } };
}

interface GroupPlace {
  depth: number;
  k: number;
  groups: number;
  final: boolean;
  total: number;
}

/** One request over a group; on CONTEXT_OVERFLOW the group is halved (by pieces, else by text) and the halves' answers merged by one more request. */
async function askGroup(group: readonly Piece[], place: GroupPlace, options: ReduceOptions, ask: Ask, cacheDir: string, outcome: { requests: number; reused: number }, split = 0): Promise<AskResult> {
  const messages: ChatMessage[] = [{ role: 'user', content: `${instructions(options.prompt, group.length, place.total, place.k + 1, place.groups, place.final)}\n\n${group.map(render).join('\n\n')}` }];
  const key = createHash('sha256').update(JSON.stringify(messages)).digest('hex').slice(0, 16);
  const stem = `L${place.depth}-${place.k + 1}${split > 0 ? `-s${split}` : ''}`;
  const cached = path.join(cacheDir, `${stem}-${key}.txt`);
  const kept = await readFile(cached, 'utf8').catch(() => undefined);
  if (kept !== undefined) {
    outcome.reused++;
    return { ok: true, text: kept, value: {} };
  }
  outcome.requests++;
  const answer = await ask(messages, path.join(path.basename(cacheDir), stem));
  if (!answer.ok && answer.error.code === 'CONTEXT_OVERFLOW' && split < 4) {
    const halves = halve(group);
    if (halves) {
      const parts: AskResult[] = [];
      for (const half of halves) {
        const part = await askGroup(half, { ...place, final: false }, options, ask, cacheDir, outcome, split + 1);
        if (!part.ok) return part;
        parts.push(part);
      }
      const merged = parts.map((part, i) => ({ source: combinedSource(halves[i] ?? []), text: part.ok ? part.text : '' }));
      return askGroup(merged, place, options, ask, cacheDir, outcome, split + 1);
    }
  }
  if (answer.ok) await writeFile(cached, answer.text, { mode: 0o600 });
  return answer;
}

/** What the model is asked to do with a group: merge into a partial result, or answer from all of it. */
function instructions(prompt: string, count: number, total: number, part: number, parts: number, final = true): string {
  const how = final
    ? `Below are ${count === total ? `all ${count}` : count} results, each under a "### <source>" header. Answer the request above from them in one combined answer.`
    : `Below are ${count} of ${total} results (group ${part} of ${parts}), each under a "### <source>" header. Merge them into one partial result for the request above; another step merges the groups.`;
  return `${prompt}\n\n${how} Keep every distinct finding and name the source(s) each one comes from (file paths or ids, as in the headers). Name the results marked as failed or cut off.`;
}

function render(piece: Piece): string {
  return `### ${piece.source}${piece.failed ? ' (FAILED)' : ''}\n${piece.text}`;
}

/** The header of a merged group: the sources it covers. */
function combinedSource(group: readonly Piece[]): string {
  const sources = group.flatMap((piece) => (piece.source.startsWith('merged from: ') ? piece.source.slice('merged from: '.length).split(', ') : [piece.source]));
  const shown = sources.slice(0, SOURCES_SHOWN).join(', ');
  return `merged from: ${shown}${sources.length > SOURCES_SHOWN ? ` … (${sources.length} sources)` : ''}`;
}

/** Greedy, in order: as many pieces per group as fit `budgetBytes`; a piece alone larger than that is cut to fit, saying so. */
export function pack(pieces: readonly Piece[], budgetBytes: number): Piece[][] {
  const groups: Piece[][] = [];
  let current: Piece[] = [];
  let used = 0;
  for (const original of pieces) {
    const piece = fitPiece(original, budgetBytes);
    const size = Buffer.byteLength(render(piece)) + 2;
    if (current.length > 0 && used + size > budgetBytes) {
      groups.push(current);
      current = [];
      used = 0;
    }
    current.push(piece);
    used += size;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

function fitPiece(piece: Piece, budgetBytes: number): Piece {
  const room = budgetBytes - Buffer.byteLength(`### ${piece.source} (FAILED)\n`) - 64;
  if (Buffer.byteLength(piece.text) <= room) return piece;
  const text = Buffer.from(piece.text).subarray(0, Math.max(0, room)).toString('utf8').replace(/\uFFFD+$/, '');
  return { ...piece, text: `${text}\n[…cut to fit the model's context]` };
}

/** Two pieces a group: a level that fit nothing together still comes down by half. */
function pairs(pieces: readonly Piece[]): Piece[][] {
  const groups: Piece[][] = [];
  for (let i = 0; i < pieces.length; i += 2) groups.push(pieces.slice(i, i + 2));
  return groups;
}

/** A group cut in two: by pieces, or a lone piece by its text at a line break near the middle. */
function halve(group: readonly Piece[]): [Piece[], Piece[]] | undefined {
  if (group.length > 1) {
    const mid = Math.ceil(group.length / 2);
    return [group.slice(0, mid), group.slice(mid)];
  }
  const [only] = group;
  if (!only || only.text.length < 64) return undefined;
  const middle = Math.floor(only.text.length / 2);
  const at = only.text.lastIndexOf('\n', middle);
  const cut = at > only.text.length / 4 ? at + 1 : middle;
  return [[{ ...only, source: `${only.source} (first part)`, text: only.text.slice(0, cut) }], [{ ...only, source: `${only.source} (second part)`, text: only.text.slice(cut) }]];
}

/** Runs `fn` over `items`, at most `limit` at once, results in order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const at = next++;
      results[at] = await fn(items[at] as T, at);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}
