import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TaskRecord } from '../../engine/types.js';
import type { TaskError } from '../../errors.js';
import { provenanceOf, wholeOutput } from '../../store/result.js';
import { middleBreak } from './template.js';
import type { ChatMessage, ReduceOptions } from './types.js';

/** One input of a reduce level: where it comes from and what it says. */
export interface Piece {
  /** Its header: the map task it answers, or the span of sources a merged piece covers. */
  source: string;
  /** The map tasks it stands for, in order. */
  sources: readonly string[];
  text: string;
  /** Its length in the model's tokens, when the server counted it (the answer's tokens_out). */
  tokens?: number;
  failed?: boolean;
  /** Why a failed input has no answer: its error code, or CANCELLED. */
  failure?: string;
  /** Its answer failed its checks (verified: false): merged, marked as such. */
  unverified?: boolean;
}

export type AskResult =
  | { ok: true; text: string; value: Record<string, unknown> }
  | { ok: false; error: TaskError; value: Record<string, unknown> };
/** One request to the model, its answer at most `maxTokens` long; `stem` names its answer's file. */
export type Ask = (messages: ChatMessage[], stem: string, maxTokens: number) => Promise<AskResult>;

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
const MAX_LEVELS = 12;
/** A partial answer takes at most this share of a group's room, so each level merges several into one. */
const STEP_SHARE = 1 / 6;
const MIN_STEP_TOKENS = 48;
/** A group's room never drops below this, however small the context: an overflow then halves it. */
const MIN_GROUP_TOKENS = 64;
/** A request that overflows is halved at most this many times over. */
const MAX_SPLITS = 4;

const UNVERIFIED_MARK = '[UNVERIFIED: this answer failed its checks; do not present its claims as established]\n';

/** The map answers as reduce inputs, in task order, each labelled with its provenance; a failed or cut answer is named, never dropped. */
export async function piecesOf(records: readonly TaskRecord[], maxBytes: number): Promise<Piece[]> {
  const pieces: Piece[] = [];
  for (const record of records) {
    const source = provenanceOf(record);
    if (record.state !== 'succeeded') {
      const why =
        record.state === 'cancelled'
          ? 'was cancelled'
          : `failed with ${record.error?.code ?? 'an error'}: ${record.error?.message ?? ''}`;
      pieces.push({
        source,
        sources: [source],
        failed: true,
        failure: record.state === 'cancelled' ? 'CANCELLED' : (record.error?.code ?? 'ERROR'),
        text: `[no answer: this input ${why}]`,
      });
      continue;
    }
    const output = await wholeOutput(record, maxBytes);
    // The envelope's cut (only a preview was left), or this kind's own figure: max_tokens cut the answer.
    const cut = output.cut || record.value?.truncated === true;
    // An answer that failed its checks is merged, but the model is told: its claims need care.
    const unverified = record.value?.verified === false;
    const piece: Piece = {
      source,
      sources: [source],
      text: (unverified ? UNVERIFIED_MARK : '') + output.text + (cut ? '\n[this answer was cut off]' : ''),
    };
    if (unverified) piece.unverified = true;
    // The server's own count of the answer (reasoning included: it errs large).
    const tokensOut = record.value?.tokens_out;
    if (!output.cut && typeof tokensOut === 'number' && tokensOut > 0) piece.tokens = tokensOut + (cut ? 8 : 0);
    pieces.push(piece);
  }
  return pieces;
}

/** Sizes of one tree reduce, in the model's tokens. */
interface Sizing {
  /** Room for a group's pieces (headers included) in one request. */
  room: number;
  /** Longest answer of the final request and of a partial one. */
  final: number;
  step: number;
  bytesPerToken: number;
}

/**
 * Merges `pieces` into one answer on the model: as many pieces as fit the context go into one
 * request; while more than one request is needed, each one's answer becomes a piece of the next
 * level (a tree). A request that still overflows is split in two. Every answer is kept under
 * `cacheDir`, named by what was asked, so a run cut off by a restart reuses what it had.
 */
export async function treeReduce(
  pieces: readonly Piece[],
  options: ReduceOptions,
  ask: Ask,
  cacheDir: string,
  upstreamJob = 'the upstream job',
): Promise<ReduceOutcome> {
  const failedInputs = pieces.filter((piece) => piece.failed).map((piece) => piece.source);
  const outcome = { levels: 0, requests: 0, inputs: pieces.length, failedInputs, reused: 0 };
  // Nothing but failure notes to merge: the model would only restate them as if they were an answer.
  if (pieces.length > 0 && failedInputs.length === pieces.length)
    return { ...outcome, result: { ok: false, error: noAnswers(pieces, upstreamJob), value: {} } };
  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
  const bytesPerToken = options.bytes_per_token;
  const promptTokens =
    Math.max(
      ...[true, false].map((final) => Buffer.byteLength(instructions(options.prompt, 999, 999, 999, 999, final, 9999))),
    ) / bytesPerToken;
  const final = options.max_tokens ?? Math.floor(options.context_tokens / 4);
  const room = Math.max(MIN_GROUP_TOKENS, Math.floor(options.context_tokens - final - SLACK_TOKENS - promptTokens));
  // Partial results kept short: a level of answers as long as the final one would at best halve.
  const sizing: Sizing = {
    room,
    final,
    step: Math.min(final, Math.max(MIN_STEP_TOKENS, Math.floor(room * STEP_SHARE))),
    bytesPerToken,
  };
  let level: Piece[] = [...pieces];
  for (let depth = 1; depth <= MAX_LEVELS; depth++) {
    outcome.levels = depth;
    let groups = pack(level, sizing);
    if (groups.length > 1 && groups.length >= level.length) groups = pairs(level);
    const isFinal = groups.length === 1;
    const answers = await mapLimit(groups, options.parallel, (group, k) =>
      askGroup(
        group,
        { depth, k, groups: groups.length, final: isFinal, total: level.length },
        sizing,
        options,
        ask,
        cacheDir,
        outcome,
      ),
    );
    const failed = answers.find((answer) => !answer.ok);
    if (failed) return { ...outcome, result: failed };
    if (isFinal) return { ...outcome, result: answers[0] as AskResult };
    level = answers.map((answer, k) => merged(groups[k] ?? [], answer));
  }
  return {
    ...outcome,
    result: {
      ok: false,
      error: { code: 'INTERNAL', message: `The reduce did not come down to one answer in ${MAX_LEVELS} levels.` },
      value: {},
    },
  };
}

/** The error of a reduce whose every input failed: how many, their codes with a few examples, and how to run them again. */
function noAnswers(pieces: readonly Piece[], upstreamJob: string): TaskError {
  const byCode = new Map<string, string[]>();
  for (const piece of pieces) {
    const code = piece.failure ?? 'ERROR';
    byCode.set(code, [...(byCode.get(code) ?? []), piece.source]);
  }
  const cancelled = byCode.get('CANCELLED')?.length ?? 0;
  const failed = pieces.length - cancelled;
  const counts = [failed > 0 ? `${failed} failed` : '', cancelled > 0 ? `${cancelled} cancelled` : '']
    .filter(Boolean)
    .join(', ');
  const codes = [...byCode]
    .sort((a, b) => b[1].length - a[1].length)
    .slice(0, 4)
    .map(([code, sources]) => {
      const some = sources.slice(0, 3).map((s) => (s.length > 80 ? `${s.slice(0, 80)}…` : s));
      return `${code} ×${sources.length}: ${some.join(', ')}${sources.length > some.length ? ', …' : ''}`;
    });
  const more = byCode.size > codes.length ? `; ${byCode.size - codes.length} more code(s)` : '';
  return {
    code: 'UPSTREAM_FAILED',
    message: `None of the ${pieces.length} upstream tasks of job ${upstreamJob} succeeded: ${counts} (${codes.join('; ')}${more}). There is nothing to merge; the model was not asked.`,
    hint: `See why with collect_results on ${upstreamJob}, fix the cause, then resume_job ${upstreamJob} with include_failed: true: it runs the failed tasks again and then this reduce.`,
  };
}

interface GroupPlace {
  depth: number;
  k: number;
  groups: number;
  final: boolean;
  total: number;
}

/** One request over a group; on CONTEXT_OVERFLOW the group is halved (by pieces, else by text) and the halves' answers merged by one more request. */
async function askGroup(
  group: readonly Piece[],
  place: GroupPlace,
  sizing: Sizing,
  options: ReduceOptions,
  ask: Ask,
  cacheDir: string,
  outcome: { requests: number; reused: number },
  split = 0,
): Promise<AskResult> {
  const maxTokens = place.final ? sizing.final : sizing.step;
  const messages: ChatMessage[] = [
    {
      role: 'user',
      content: `${instructions(options.prompt, group.length, place.total, place.k + 1, place.groups, place.final, maxTokens)}\n\n${group.map(render).join('\n\n')}`,
    },
  ];
  const key = createHash('sha256').update(JSON.stringify(messages)).digest('hex').slice(0, 16);
  const stem = `L${place.depth}-${place.k + 1}${split > 0 ? `-s${split}` : ''}`;
  const cached = path.join(cacheDir, `${stem}-${key}.txt`);
  const kept = await readFile(cached, 'utf8').catch(() => undefined);
  if (kept !== undefined) {
    outcome.reused++;
    return { ok: true, text: kept, value: {} };
  }
  outcome.requests++;
  const answer = await ask(messages, path.join(path.basename(cacheDir), stem), maxTokens);
  if (!answer.ok && answer.error.code === 'CONTEXT_OVERFLOW' && split < MAX_SPLITS) {
    const halves = halve(group);
    if (halves) {
      const parts: Piece[] = [];
      for (const half of halves) {
        const part = await askGroup(
          half,
          { ...place, final: false },
          sizing,
          options,
          ask,
          cacheDir,
          outcome,
          split + 1,
        );
        if (!part.ok) return part;
        parts.push(merged(half, part));
      }
      return askGroup(parts, place, sizing, options, ask, cacheDir, outcome, split + 1);
    }
  }
  if (answer.ok) await writeFile(cached, answer.text, { mode: 0o600 });
  return answer;
}

/** What the model is asked to do with a group: merge into a partial result, or answer from all of it. */
function instructions(
  prompt: string,
  count: number,
  total: number,
  part: number,
  parts: number,
  final: boolean,
  maxTokens: number,
): string {
  const how = final
    ? `Below are ${count === total ? `all ${count}` : count} results, each under a "### <source>" header. Answer the request above from them in one combined answer.`
    : `Below are ${count} of ${total} results (group ${part} of ${parts}), each under a "### <source>" header. Merge them into one partial result for the request above, in at most about ${Math.max(20, Math.floor(maxTokens * 0.7))} words; another step merges the groups.`;
  return `${prompt}\n\n${how} Keep every distinct finding and name the source(s) each one comes from (file paths or ids, as in the headers). Name the results marked as failed, cut off or UNVERIFIED.`;
}

function header(piece: Pick<Piece, 'source' | 'failed'>): string {
  return `### ${piece.source}${piece.failed ? ' (FAILED)' : ''}\n`;
}

function render(piece: Piece): string {
  return `${header(piece)}${piece.text}`;
}

/** A group's answer as a piece of the next level: headed by the span of sources it covers. */
function merged(group: readonly Piece[], answer: AskResult): Piece {
  const sources = group.flatMap((piece) => piece.sources);
  const first = sources[0] ?? '';
  const last = sources.at(-1) ?? '';
  const source =
    sources.length === 1 ? `merged from: ${first}` : `merged from ${sources.length} results: ${first} … ${last}`;
  const piece: Piece = { source, sources, text: answer.ok ? answer.text : '' };
  const tokens = answer.value.tokens_out;
  if (typeof tokens === 'number' && tokens > 0) piece.tokens = tokens;
  return piece;
}

/** A piece's size in tokens: the server's count of its text where known, else its bytes at the measured rate; its header always estimated. */
function tokensOf(piece: Piece, bytesPerToken: number): number {
  const text = piece.tokens ?? Buffer.byteLength(piece.text) / bytesPerToken;
  return text + (Buffer.byteLength(header(piece)) + 2) / bytesPerToken;
}

/** Greedy, in order: as many pieces per group as fit the room; a piece alone larger than that is cut to fit, saying so. */
export function pack(pieces: readonly Piece[], sizing: Pick<Sizing, 'room' | 'bytesPerToken'>): Piece[][] {
  const groups: Piece[][] = [];
  let current: Piece[] = [];
  let used = 0;
  for (const original of pieces) {
    const piece = fitPiece(original, sizing);
    const size = tokensOf(piece, sizing.bytesPerToken);
    if (current.length > 0 && used + size > sizing.room) {
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

function fitPiece(piece: Piece, sizing: Pick<Sizing, 'room' | 'bytesPerToken'>): Piece {
  if (tokensOf(piece, sizing.bytesPerToken) <= sizing.room) return piece;
  const roomBytes = Math.floor((sizing.room - 16) * sizing.bytesPerToken) - Buffer.byteLength(header(piece));
  const text = Buffer.from(piece.text)
    .subarray(0, Math.max(0, roomBytes))
    .toString('utf8')
    .replace(/\uFFFD+$/, '');
  const cut: Piece = {
    source: piece.source,
    sources: piece.sources,
    text: `${text}\n[…cut to fit the model's context]`,
  };
  if (piece.failed) cut.failed = true;
  return cut;
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
  const bytes = Buffer.from(only.text);
  const cut = middleBreak(bytes);
  const part = (text: string, which: string): Piece => ({
    source: `${only.source} (${which} part)`,
    sources: only.sources,
    text,
  });
  return [
    [part(bytes.subarray(0, cut).toString('utf8'), 'first')],
    [part(bytes.subarray(cut).toString('utf8'), 'second')],
  ];
}

/** Runs `fn` over `items`, at most `limit` at once, results in order. */
async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
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
