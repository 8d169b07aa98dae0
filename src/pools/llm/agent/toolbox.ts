import { stat } from 'node:fs/promises';
import { listFolder, walkFiles } from './files.js';
import {
  type Budget,
  count,
  cutBytes,
  cutToBudget,
  DEFAULT_BUDGET,
  digest,
  isRefusal,
  lineArgument,
  short,
  size,
  stringArgument,
} from './format.js';
import { grep, GREP_LIMITS, type GrepLimits } from './grep.js';
import { readLines } from './lines.js';
import { formatOutline } from './outline.js';
import type { AgentScope } from './scope.js';

/** What one tool call gives back: `text` goes to the model, the rest to the transcript and the figures. */
export interface ToolOutcome {
  /** False for a refusal (bad arguments, a path it may not see, an unknown tool): the loop goes on. */
  ok: boolean;
  text: string;
  /** One line naming the call (`read_file src/a.ts 1–80`), for the stub that replaces an old result. */
  summary: string;
  /** Bytes of file content the tool looked at. */
  bytesRead: number;
  /** Short sha256 of `text`: resume compares a recomputed result with the stored one. */
  digest: string;
}

/** The bundled outline worker, run warm by the script kind: its JSON for these real paths. */
export type OutlineRunner = (files: string[], signal: AbortSignal) => Promise<unknown>;

export interface ToolboxOptions {
  scope: AgentScope;
  outline?: OutlineRunner | undefined;
  /** Each result's size for the model (default 8,000 bytes, 200 lines). */
  budget?: Partial<Budget> | undefined;
  grep?: Partial<GrepLimits> | undefined;
}

type Result = Omit<ToolOutcome, 'digest'>;

/** Longer lines of read_file keep this many bytes. */
const LINE_BYTES = 500;
const LIST_ENTRIES = 200;
const OUTLINE_FILES = 20;
const SOURCE = /\.(py|pyi|ts|tsx|mts|cts|js|mjs|cjs|jsx)$/i;

/**
 * The agent's read-only tools (list_files, read_file, grep, outline) over one scope. Hostile
 * arguments get a short refusal, never an exception; only an aborted signal throws.
 */
export class Toolbox {
  readonly scope: AgentScope;
  readonly budget: Budget;
  /** The budget's lines are the content's: a header and a note come on top. */
  private readonly framed: Budget;
  private readonly outlineRunner: OutlineRunner | undefined;
  private readonly grepLimits: GrepLimits;

  constructor(options: ToolboxOptions) {
    this.scope = options.scope;
    this.outlineRunner = options.outline;
    this.budget = { ...DEFAULT_BUDGET, ...options.budget };
    this.framed = { bytes: this.budget.bytes, lines: this.budget.lines + 2 };
    this.grepLimits = { ...GREP_LIMITS, ...options.grep };
  }

  async run(name: string, args: Record<string, unknown>, signal: AbortSignal): Promise<ToolOutcome> {
    if (signal.aborted) throw signal.reason;
    const safeArgs = typeof args === 'object' && args !== null && !Array.isArray(args) ? args : {};
    let result: Result;
    try {
      result = await this.dispatch(name, safeArgs, signal);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      const message = error instanceof Error ? error.message : String(error);
      result = refusal(`${short(name)} failed`, `${name} failed: ${cutBytes(message, 300)}`);
    }
    if (signal.aborted) throw signal.reason;
    // Each tool cuts its own text with advice of its own; this only holds the budget for any other.
    const text = cutToBudget(result.text, this.framed, 'ask for less');
    return { ...result, text, digest: digest(text) };
  }

  private dispatch(name: string, args: Record<string, unknown>, signal: AbortSignal): Promise<Result> {
    switch (name) {
      case 'list_files':
        return this.listFiles(args, signal);
      case 'read_file':
        return this.readFile(args, signal);
      case 'grep':
        return grep(this.scope, args, signal, this.grepLimits).then((r) =>
          r.ok ? { ...r, text: cutToBudget(r.text, this.framed, 'narrow the pattern, path or glob') } : r,
        );
      case 'outline':
        return this.outline(args, signal);
      default:
        return Promise.resolve(
          refusal(
            `${short(name)} (unknown tool)`,
            `There is no tool ${short(name)}. The tools are list_files, read_file, grep, outline and finish.`,
          ),
        );
    }
  }

  private async listFiles(args: Record<string, unknown>, signal: AbortSignal): Promise<Result> {
    const glob = stringArgument(args.glob, 'glob', 500);
    if (isRefusal(glob)) return refusal('list_files (refused)', glob.refused);
    const where = await this.scope.resolve(args.path ?? '.', 'dir');
    if ('refused' in where) return refusal(`list_files ${short(args.path)} (refused)`, where.refused);
    let lines: string[];
    let more = 0;
    let note = '';
    const most = Math.max(1, Math.min(LIST_ENTRIES, this.budget.lines));
    if (glob === undefined) {
      const entries = await listFolder(this.scope, where.real, signal);
      lines = entries.slice(0, most).map((e) => (e.dir ? `${e.shown}/` : e.shown));
      more = Math.max(0, entries.length - most);
    } else {
      const walk = await walkFiles(this.scope, where.real, {
        glob,
        maxFiles: most,
        maxEntries: this.grepLimits.maxEntries,
        signal,
      });
      lines = walk.files.map((f) => f.shown);
      if (walk.moreFiles) note = `\n[more than ${most} files match: narrow the glob or list a deeper path]`;
      if (walk.stoppedEarly) note += '\n[the folder is too large to walk whole: list a deeper path]';
    }
    if (more > 0) note = `\n[${count(more)} more entries not shown: list a deeper path, or use glob]`;
    const what = glob === undefined ? 'entries' : `files matching ${glob}`;
    const header =
      lines.length === 0 ? `${where.shown}/: no ${what}.` : `${where.shown}/ (${count(lines.length)} ${what}):`;
    const text = cutToBudget([header, ...lines].join('\n') + note, this.framed, 'list a deeper path, or use glob');
    const summary = `list_files ${where.shown}${glob === undefined ? '' : ` ${glob}`} (${count(lines.length)})`;
    return { ok: true, text, summary, bytesRead: 0 };
  }

  private async readFile(args: Record<string, unknown>, signal: AbortSignal): Promise<Result> {
    const start = lineArgument(args.start_line, 'start_line');
    const end = lineArgument(args.end_line, 'end_line');
    if (isRefusal(start)) return refusal('read_file (refused)', start.refused);
    if (isRefusal(end)) return refusal('read_file (refused)', end.refused);
    const from = start ?? 1;
    if (end !== undefined && end < from)
      return refusal('read_file (refused)', `end_line ${end} is before start_line ${from}.`);
    const where = await this.scope.resolve(args.path, 'file');
    if ('refused' in where) return refusal(`read_file ${short(args.path)} (refused)`, where.refused);
    const to = Math.min(end ?? Infinity, from + this.budget.lines - 1);
    const window = await readLines(where.real, { from, to, maxLineBytes: LINE_BYTES, count: true, signal });
    const name = `read_file ${where.shown}`;
    if (window.binary) return refusal(`${name} (binary)`, `${where.shown} is a binary file (${size(window.size)}).`);
    const total = window.total;
    if (window.lines.length === 0) {
      const text =
        total === 0
          ? `${where.shown} is empty.`
          : `${where.shown} has ${total === undefined ? 'fewer' : count(total)} lines: start_line ${count(from)} is past its end.`;
      return refusal(`${name} ${from} (past the end)`, text);
    }
    // Lines up to the byte budget, keeping room for the header and the note.
    const shown: string[] = [];
    let used = 0;
    let bytesRead = 0;
    const room = this.budget.bytes - 300;
    for (const line of window.lines) {
      const text = `${line.n}| ${line.text}${line.cut > 0 ? `…[+${size(line.cut)}]` : ''}`;
      if (shown.length > 0 && used + Buffer.byteLength(text) + 1 > room) break;
      shown.push(text);
      used += Buffer.byteLength(text) + 1;
      bytesRead += Buffer.byteLength(line.text) + line.cut + 1;
    }
    const last = from + shown.length - 1;
    const of = total === undefined ? `, ${size(window.size)}` : ` of ${count(total)}`;
    const header = `${where.shown} lines ${count(from)}–${count(last)}${of}:`;
    const rest =
      total === undefined
        ? `[lines after ${count(last)} not shown: read_file with start_line ${last + 1}]`
        : last < total && (end === undefined || last < end)
          ? `[lines ${count(last + 1)}–${count(end !== undefined ? Math.min(end, total) : total)} not shown: read_file with start_line ${last + 1}]`
          : '';
    const text = [header, ...shown, ...(rest ? [rest] : [])].join('\n');
    return { ok: true, text, summary: `${name} ${from}–${last}`, bytesRead };
  }

  private async outline(args: Record<string, unknown>, signal: AbortSignal): Promise<Result> {
    if (this.outlineRunner === undefined) return refusal('outline (not available)', 'outline is not available.');
    const where = await this.scope.resolve(args.path, 'any');
    if ('refused' in where) return refusal(`outline ${short(args.path)} (refused)`, where.refused);
    let files = [where.real];
    let note = '';
    if ((await stat(where.real)).isDirectory()) {
      // A folder: its own source files, a map of the folder.
      const entries = await listFolder(this.scope, where.real, signal);
      const sources = entries.filter((e) => !e.dir && SOURCE.test(e.real));
      if (sources.length === 0)
        return refusal(
          `outline ${where.shown} (no sources)`,
          `${where.shown}/ has no Python, JavaScript or TypeScript files directly in it.`,
        );
      files = sources.slice(0, OUTLINE_FILES).map((e) => e.real);
      if (sources.length > OUTLINE_FILES)
        note = `\n[${sources.length - OUTLINE_FILES} more files not outlined: outline them one by one]`;
    }
    const answer = await this.outlineRunner(files, signal);
    const lines = formatOutline(answer, (file) => this.scope.show(file));
    let bytesRead = 0;
    for (const file of files) bytesRead += (await stat(file).catch(() => undefined))?.size ?? 0;
    const text = cutToBudget(
      lines.join('\n') + note,
      this.framed,
      'outline a single file, or read_file the lines you need',
    );
    return { ok: true, text, summary: `outline ${where.shown}`, bytesRead };
  }
}

function refusal(summary: string, text: string): Result {
  return { ok: false, text, summary, bytesRead: 0 };
}
