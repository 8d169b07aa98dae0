import { stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { walkFiles, type FoundFile } from './files.js';
import { count, isRefusal, stringArgument } from './format.js';
import { GREP_WORKER_SOURCE, type GrepJob, type GrepMessage } from './grep-worker.js';
import type { AgentScope } from './scope.js';

export interface GrepLimits {
  /** The search's time once its thread runs: a catastrophic pattern is stopped here. */
  timeMs: number;
  maxFiles: number;
  maxFileBytes: number;
  maxShown: number;
  maxCounted: number;
  lineChars: number;
  maxEntries: number;
}

export const GREP_LIMITS: GrepLimits = {
  timeMs: 2000,
  maxFiles: 2000,
  maxFileBytes: 2 * 1024 * 1024,
  maxShown: 50,
  maxCounted: 1000,
  lineChars: 200,
  maxEntries: 20_000,
};

export interface GrepOutcome {
  ok: boolean;
  text: string;
  summary: string;
  bytesRead: number;
}

export interface CompiledPattern {
  source: string;
  flags: string;
  /** Shown in the summary: `/source/flags`. */
  shown: string;
  /** Set when the pattern did not compile and is searched as literal text. */
  literalBecause?: string;
}

/**
 * A model's pattern as a JS RegExp: case-sensitive, unless it starts with `(?i)` or is written
 * `/body/i` (the two forms models carry over from other tools). One that does not compile is
 * searched as literal text, and the result says so.
 */
export function compilePattern(pattern: string): CompiledPattern {
  let body = pattern;
  let flags = '';
  const slashed = /^\/(.+)\/([imsu]*)$/s.exec(pattern);
  if (slashed) {
    body = slashed[1] ?? '';
    flags = slashed[2] ?? '';
  }
  if (body.startsWith('(?i)')) {
    body = body.slice(4);
    if (!flags.includes('i')) flags += 'i';
  }
  try {
    new RegExp(body, flags);
    return { source: body, flags, shown: `/${body}/${flags}` };
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/^Invalid regular expression: /, '') : 'invalid';
    return {
      source: pattern.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'),
      flags: '',
      shown: JSON.stringify(pattern),
      literalBecause: reason,
    };
  }
}

/** The grep tool: matches as `path:line: text`, searched off the main thread under a hard time limit. */
export async function grep(
  scope: AgentScope,
  args: Record<string, unknown>,
  signal: AbortSignal,
  limits: GrepLimits = GREP_LIMITS,
): Promise<GrepOutcome> {
  const pattern = stringArgument(args.pattern, 'pattern');
  const glob = stringArgument(args.glob, 'glob', 500);
  const refused = (text: string): GrepOutcome => ({ ok: false, text, summary: 'grep (refused)', bytesRead: 0 });
  if (pattern === undefined) return refused('grep needs a pattern (a regular expression or literal text).');
  if (isRefusal(pattern)) return refused(pattern.refused);
  if (isRefusal(glob)) return refused(glob.refused);
  const where = await scope.resolve(args.path ?? '.', 'any');
  if ('refused' in where) return refused(where.refused);
  const compiled = compilePattern(pattern);
  const isDir = (await stat(where.real)).isDirectory();
  const walk = isDir
    ? await walkFiles(scope, where.real, { glob, maxFiles: limits.maxFiles, maxEntries: limits.maxEntries, signal })
    : { files: [where], moreFiles: false, stoppedEarly: false };
  const run = await search(walk.files, compiled, limits, signal);
  const notes: string[] = [];
  if (compiled.literalBecause)
    notes.push(`Not a valid regular expression (${compiled.literalBecause}): searched as literal text.`);
  if (run.timedOut)
    notes.push(
      `The search was stopped after ${limits.timeMs / 1000} s, ${count(run.searched)} of ${count(walk.files.length)} files searched: the pattern may backtrack catastrophically (nested quantifiers such as (a+)+); simplify it.`,
    );
  if (run.error) notes.push(`The search failed: ${run.error}.`);
  if (walk.moreFiles) notes.push(`Only the first ${count(limits.maxFiles)} files were searched: narrow path or glob.`);
  if (walk.stoppedEarly) notes.push('The folder is too large to search whole: narrow path or glob.');
  if (run.large > 0) notes.push(`${files(run.large)} over ${limits.maxFileBytes / 1024 / 1024} MB skipped.`);
  if (run.binary > 0) notes.push(`${files(run.binary, 'binary file')} skipped.`);
  const total = run.counted >= limits.maxCounted ? `${count(run.counted)}+` : count(run.counted);
  if (run.lines.length < run.counted)
    notes.push(`Showing the first ${run.lines.length} of ${total} matches: narrow the pattern, path or glob.`);
  const matchWord = run.counted === 1 ? 'match' : 'matches';
  const header =
    run.counted === 0
      ? `No matches for ${compiled.shown} in ${where.shown} (${count(run.searched)} files searched).`
      : `${total} ${matchWord} for ${compiled.shown} in ${where.shown} (${count(run.files)} of ${count(run.searched)} files searched):`;
  return {
    ok: true,
    // Notes before the matches: a cut to the budget takes matches off the end, never a note.
    text: [header, ...notes, ...run.lines].join('\n'),
    summary: `grep ${cutShown(compiled.shown)} in ${where.shown} (${total} ${matchWord})`,
    bytesRead: run.bytes,
  };
}

interface SearchRun {
  lines: string[];
  counted: number;
  /** Files with a match. */
  files: number;
  searched: number;
  bytes: number;
  binary: number;
  large: number;
  timedOut: boolean;
  error?: string;
}

/** Threads kept warm between searches: one started anew costs ~70 ms of CPU, most of a grep's. */
const IDLE_THREADS = 4;
const idleThreads: Worker[] = [];
let threadsStarted = 0;

/** Threads started so far in this process (warm ones serve later searches without a start). */
export function grepThreadsStarted(): number {
  return threadsStarted;
}

/** A warm thread, or a new one; either way it ends the process's wait for it only while it searches. */
function searchThread(): { worker: Worker; fresh: boolean } {
  const warm = idleThreads.pop();
  if (warm) {
    warm.ref();
    return { worker: warm, fresh: false };
  }
  threadsStarted++;
  const worker = new Worker(GREP_WORKER_SOURCE, {
    eval: true,
    resourceLimits: { maxOldGenerationSizeMb: 256 },
    stdout: true,
    stderr: true,
  });
  // An error after its search was given up on must not reach the process as an unhandled one.
  worker.on('error', () => {});
  return { worker, fresh: true };
}

/**
 * Runs the search in a worker thread; terminate() ends it at the time limit (a regex cannot be
 * interrupted otherwise). A thread that finished its search goes back to the warm ones.
 */
function search(
  files: FoundFile[],
  compiled: CompiledPattern,
  limits: GrepLimits,
  signal: AbortSignal,
): Promise<SearchRun> {
  const run: SearchRun = {
    lines: [],
    counted: 0,
    files: 0,
    searched: 0,
    bytes: 0,
    binary: 0,
    large: 0,
    timedOut: false,
  };
  if (files.length === 0) return Promise.resolve(run);
  const job: GrepJob = {
    files,
    source: compiled.source,
    flags: compiled.flags,
    maxShown: limits.maxShown,
    maxCounted: limits.maxCounted,
    maxFileBytes: limits.maxFileBytes,
    lineChars: limits.lineChars,
  };
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const { worker, fresh } = searchThread();
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const timedOut = (): void => finish(false, () => (run.timedOut = true));
    const arm = (): void => {
      timer = setTimeout(timedOut, limits.timeMs);
    };
    // On a loaded machine a new thread may take a while to start: that is not the pattern's time.
    const hard = setTimeout(timedOut, limits.timeMs + 10_000);
    const onAbort = (): void => finish(false, () => reject(signal.reason));
    const onMessage = (message: GrepMessage): void => {
      if ('done' in message) finish(true, () => {});
      else if ('skipped' in message) run[message.skipped === 'binary' ? 'binary' : 'large']++;
      else take(run, message);
    };
    const onError = (error: Error): void => finish(false, () => (run.error = error.message));
    const onExit = (): void => finish(false, () => {});
    const finish = (reusable: boolean, then: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(hard);
      signal.removeEventListener('abort', onAbort);
      worker.off('message', onMessage).off('error', onError).off('exit', onExit).off('online', arm);
      if (reusable && idleThreads.length < IDLE_THREADS) {
        worker.unref();
        idleThreads.push(worker);
      } else void worker.terminate();
      then();
      resolve(run);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    worker.on('message', onMessage).on('error', onError).on('exit', onExit);
    if (fresh) worker.once('online', arm);
    else arm();
    worker.postMessage(job);
  });
}

function take(run: SearchRun, message: Extract<GrepMessage, { matches: unknown }>): void {
  run.searched++;
  run.bytes += message.bytes;
  run.counted += message.counted;
  if (message.counted > 0) run.files++;
  for (const match of message.matches) run.lines.push(`${message.file}:${match.line}: ${match.text}`);
}

function cutShown(shown: string): string {
  return shown.length > 60 ? `${shown.slice(0, 60)}…` : shown;
}

function files(n: number, what = 'file'): string {
  return `${count(n)} ${what}${n === 1 ? '' : 's'}`;
}
