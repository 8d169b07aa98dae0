import type { Readable } from 'node:stream';
import { decodeUtf8 } from './output.js';
import { lastLineOf, type ProcessExit } from './task-value.js';

/**
 * Packing: several inputs of a cold job run in one worker process, its output split back into one
 * result per input. A process start costs more than most per-file work (~70 ms of CPU for Python
 * against ~1.5 ms to measure a file), so a worker that takes many files per run does the work of
 * `pack` inputs for one start.
 *
 * The contract a worker declares with `# monitor: pack: files`: run with the args of several inputs
 * one after another, it prints one JSON object whose `files` array has exactly one entry per
 * argument, in argument order (an entry that is an object with a string `file` names its argument),
 * whatever the arguments are, and each entry is what it prints for that argument run alone. Then
 * the result of input i is `{"files": [its entries]}`: what a cold run of it alone prints, less the
 * other top-level keys (totals over the pack, say), which belong to the whole pack and are left out
 * (named in `packed.dropped`).
 *
 * When the pack fails as a whole (it cannot start, exits non-zero or is killed, runs past its
 * timeout, or prints what cannot be split) each of its inputs runs again alone, so a bad input fails
 * only itself. A run alone, like a batch of one input, is a plain cold run: its value is whole.
 */

/** Most inputs in one pack (run_script_batch's `pack`): its args must fit one command line. */
export const MAX_PACK = 64;

/** The args of an input that can go in a pack: it has some, and no stdin or json (a pack has one stdin). */
export function packableArgs(input: {
  args?: readonly string[] | undefined;
  stdin?: unknown;
  json?: unknown;
}): readonly string[] | undefined {
  return input.args !== undefined && input.args.length > 0 && input.stdin === undefined && input.json === undefined
    ? input.args
    : undefined;
}

/**
 * A pack's stdout, kept in memory up to `capBytes` (script.outputCapBytes) to be split; past it only
 * counted, and the pack's inputs run alone (each with its own cap and file).
 */
export class PackOutput {
  bytes = 0;
  private chunks: Buffer[] = [];

  constructor(private readonly capBytes: number) {}

  attach(stream: Readable | null | undefined): void {
    stream?.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length;
      if (this.bytes <= this.capBytes) this.chunks.push(chunk);
      else this.chunks = [];
    });
  }

  /** Everything it printed, unless that was over the cap. */
  whole(): Buffer | undefined {
    return this.bytes > this.capBytes ? undefined : Buffer.concat(this.chunks);
  }
}

/** How a pack's process ended, as the pool saw it. */
export interface PackRun {
  exit: ProcessExit | undefined;
  stopReason: 'timeout' | 'cancel' | undefined;
  spawnError?: { message: string } | undefined;
  stdout: PackOutput;
  /** The last bytes of its stderr (for the reason quoted when it failed). */
  stderrTail: string;
}

/**
 * Each input's entries of the pack's `files` (by `argsPerInput`, in order) and the other top-level
 * keys, or what keeps the pack from being split (said as the end of "its pack of N inputs …").
 */
export function splitPack(
  run: PackRun,
  argsPerInput: ReadonlyArray<readonly string[]>,
  timeoutMs: number,
): { entries: unknown[][]; dropped: string[] } | { problem: string } {
  const { exit, stopReason, spawnError } = run;
  if (spawnError) return { problem: `could not start: ${spawnError.message.trim().split('\n').join('; ')}` };
  if (stopReason === 'timeout')
    return { problem: `ran longer than its ${timeoutMs / 1000} s (timeout_seconds × its inputs) and was killed` };
  if (exit?.signal) return { problem: withLastLine(`was killed by ${exit.signal}`, run.stderrTail) };
  if (exit?.code !== 0) return { problem: withLastLine(`exited with code ${String(exit?.code)}`, run.stderrTail) };
  const bytes = run.stdout.whole();
  if (bytes === undefined)
    return { problem: `printed ${run.stdout.bytes} bytes, more than script.outputCapBytes to split in memory` };
  const { text, lossy } = decodeUtf8(bytes);
  if (lossy) return { problem: 'printed output that is not valid UTF-8' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { problem: 'did not print one JSON document' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    return { problem: 'printed JSON that is not an object' };
  const { files, ...rest } = parsed as Record<string, unknown>;
  if (!Array.isArray(files)) return { problem: 'printed JSON without a "files" array' };
  const args = argsPerInput.flat();
  if (files.length !== args.length)
    return { problem: `printed ${files.length} "files" entries for ${args.length} arguments` };
  for (const [at, entry] of files.entries()) {
    const named =
      entry !== null && typeof entry === 'object' && typeof (entry as { file?: unknown }).file === 'string'
        ? (entry as { file: string }).file
        : undefined;
    if (named !== undefined && named !== args[at]) {
      return {
        problem: `printed the entry of ${JSON.stringify(named.slice(0, 200))} where that of argument ${at + 1}, ${JSON.stringify((args[at] ?? '').slice(0, 200))}, belongs`,
      };
    }
  }
  const entries: unknown[][] = [];
  let next = 0;
  for (const inputArgs of argsPerInput) {
    entries.push(files.slice(next, next + inputArgs.length));
    next += inputArgs.length;
  }
  return { entries, dropped: Object.keys(rest).sort() };
}

function withLastLine(what: string, stderrTail: string): string {
  const lastLine = lastLineOf(stderrTail);
  return lastLine ? `${what}: ${lastLine}` : what;
}
