import path from 'node:path';
import type { ResultValue, TaskContext, TaskResult } from '../../engine/types.js';
import { type TaskError, toTaskError } from '../../errors.js';
import type { RunPlan } from './launch.js';
import { decodeUtf8, type DiskAllowance, headUtf8, OutputCapture, tailUtf8 } from './output.js';
import { missingHelperHint } from './helpers.js';

/** Bytes of a large stdout shown in the value; the file has it all. */
export const PREVIEW_BYTES = 2048;
/** Bytes of stderr shown in the value. */
export const STDERR_TAIL_BYTES = 2048;

/**
 * A task's stdout or stderr as taskResult reads it: kept in memory up to `capBytes`, else in the
 * file `<index>.stdout` / `<index>.stderr` of the job's output folder; the preview keeps its start
 * (stdout) or its end (stderr).
 */
export function taskCapture(
  task: { outputDir: string; index: number },
  stream: 'stdout' | 'stderr',
  capBytes: number,
  allowance: DiskAllowance,
): OutputCapture {
  const keep = stream === 'stdout' ? PREVIEW_BYTES : STDERR_TAIL_BYTES;
  return new OutputCapture(path.join(task.outputDir, `${task.index}.${stream}`), capBytes, keep, allowance);
}

export interface ValueLimits {
  inlineBytes: number;
  killGraceSeconds: number;
  maxTaskOutputBytes: number;
  maxJobOutputBytes: number;
}

/**
 * What one task may still write to disk: its own limit, and what its job has left (shared by the
 * job's tasks). A `yes` worker wrote 334 MB in 2 s; at the default timeout one task could write
 * tens of GB, kept for days.
 */
export class OutputAllowance implements DiskAllowance {
  private taskLeft: number;
  private readonly job: { left: number };
  /** Which limit cut the output first. */
  ranOut: 'task' | 'job' | undefined;

  constructor(taskLimit: number, job: { left: number }) {
    this.taskLeft = taskLimit;
    this.job = job;
  }

  take(bytes: number): number {
    const allowed = Math.max(0, Math.min(bytes, this.taskLeft, this.job.left));
    this.taskLeft -= allowed;
    this.job.left -= allowed;
    if (allowed < bytes) this.ranOut ??= this.taskLeft <= 0 ? 'task' : 'job';
    return allowed;
  }
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** How a task ended, and what it printed: a cold task's process, or a warm task's reply. */
export interface TaskEnd {
  /** exit_code (and signal) of the value: the process's, or a warm reply's exit_code. */
  exit: ProcessExit | undefined;
  stopReason: 'timeout' | 'cancel' | undefined;
  /** The task's output: a cold worker's stdout, a warm reply's result or output. */
  stdout: OutputCapture;
  /** Its log: a cold worker's stderr, a warm process's stdout and stderr during the task. */
  stderr: OutputCapture;
  allowance: OutputAllowance;
  /** Shown before the output's own notes (a warm task retried after a crash, say). */
  notes?: string[];
  /** Added to the value after the output's fields (which warm process served the task). */
  extra?: Record<string, unknown>;
  /** The failure, when it is not the one the exit and stop reason tell (a warm protocol error, say). */
  error?: TaskError;
}

/**
 * A finished task's result, one shape for cold and warm tasks: exit_code; the envelope (stdout as
 * `json`, or as `text` with `cut` when only its start fits, the whole of it in `files.output`);
 * stderr_tail (`stderr_cut` when longer, the whole in `files.stderr`), sizes and notes.
 */
export async function taskResult(plan: RunPlan, end: TaskEnd, limits: ValueLimits): Promise<TaskResult> {
  const { stdout, stderr, exit, stopReason } = end;
  const notes: string[] = [...(end.notes ?? [])];
  const value: ResultValue = { exit_code: exit?.code ?? null };
  if (exit?.signal) value.signal = exit.signal;
  value.timed_out = stopReason === 'timeout';
  const keepOutput = describeStdout(stdout, limits.inlineBytes, value, notes);
  value.stdout_bytes = stdout.bytes;
  const keepStderr = describeStderr(stderr, value, notes);
  const files = await keepFiles(
    [
      ['output', stdout, keepOutput],
      ['stderr', stderr, keepStderr],
    ],
    notes,
  );
  if (stdout.cut || stderr.cut) {
    value.files_cut = true;
    notes.push(diskCutNote(end, limits));
  }
  Object.assign(value, end.extra);
  if (notes.length > 0) value.notes = notes;

  const result: TaskResult = { ok: false, value };
  if (Object.keys(files).length > 0) result.files = files;
  const error = end.error ?? failure(plan, stopReason, exit, value.stderr_tail, limits.killGraceSeconds);
  if (error) result.error = error;
  else result.ok = true;
  return result;
}

/** stdout into the value: parsed JSON, its text, or the start of it (`cut`). True when the whole must be kept in a file. */
function describeStdout(stdout: OutputCapture, inlineBytes: number, value: ResultValue, notes: string[]): boolean {
  const whole = stdout.whole();
  if (whole !== undefined && whole.length <= inlineBytes) {
    const { text, lossy } = decodeUtf8(whole);
    const parsed = lossy ? undefined : parseJson(text);
    if (parsed) value.json = parsed.value;
    else if (text !== '') value.text = text.endsWith('\n') ? text.slice(0, -1) : text;
    if (lossy)
      notes.push(
        'stdout is not valid UTF-8: "text" shows it with U+FFFD replacement characters; files.output has the exact bytes.',
      );
    return lossy;
  }
  const head = headUtf8(stdout.first(), PREVIEW_BYTES);
  const { text, lossy } = decodeUtf8(head);
  value.text = text;
  value.cut = true;
  const looksJson = /^\s*[[{]/.test(text) ? ' It looks like JSON, too large to inline.' : '';
  notes.push(
    `stdout is ${stdout.bytes} bytes; "text" shows the first ${head.length}; files.output has all of it.${looksJson}`,
  );
  if (lossy)
    notes.push(
      'stdout is not valid UTF-8: the preview shows U+FFFD replacement characters; the file has the exact bytes.',
    );
  return true;
}

/** stderr's tail into the value (`stderr_cut` when there was more). True when the whole must be kept in a file. */
function describeStderr(stderr: OutputCapture, value: ResultValue, notes: string[]): boolean {
  if (stderr.bytes === 0) return false;
  const { text, lossy } = decodeUtf8(tailUtf8(stderr.last(), STDERR_TAIL_BYTES));
  value.stderr_tail = text;
  value.stderr_bytes = stderr.bytes;
  if (stderr.bytes > STDERR_TAIL_BYTES) value.stderr_cut = true;
  if (lossy) notes.push('stderr is not valid UTF-8: stderr_tail shows U+FFFD replacement characters.');
  return stderr.bytes > STDERR_TAIL_BYTES || lossy;
}

/** Ends each capture, its file kept when wanted: the files by role. A file that could not be written gets a note. */
async function keepFiles(
  captures: ReadonlyArray<readonly [role: string, capture: OutputCapture, wanted: boolean]>,
  notes: string[],
): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const [role, capture, wanted] of captures) {
    try {
      const file = await capture.finish(wanted);
      if (file !== undefined) files[role] = file;
    } catch (error) {
      const what = role === 'output' ? 'stdout' : role;
      notes.push(`Could not write the ${what} file: ${error instanceof Error ? error.message : String(error)}.`);
    }
  }
  return files;
}

/** Which limit cut the files on disk, and what they hold. */
function diskCutNote(end: TaskEnd, limits: ValueLimits): string {
  const limit =
    end.allowance.ranOut === 'job'
      ? `its job's limit of ${limits.maxJobOutputBytes} bytes (script.maxJobOutputBytes)`
      : `the task's limit of ${limits.maxTaskOutputBytes} bytes (script.maxTaskOutputBytes)`;
  return `Output on disk was cut at ${limit}: the files hold the first ${end.stdout.onDisk} bytes of stdout and ${end.stderr.onDisk} of stderr; stdout_bytes and stderr_bytes count all the worker wrote, and the previews show its last bytes.`;
}

/** A task that threw, as the engine records one: its abort's reason when it was stopped. */
export function failedResult(task: Pick<TaskContext, 'signal'>, error: unknown): TaskResult {
  return { ok: false, error: toTaskError(task.signal.aborted ? task.signal.reason : error) };
}

/** The last line of a stderr tail, short enough for an error message. */
export function lastLineOf(stderrTail: unknown): string | undefined {
  return typeof stderrTail === 'string' ? stderrTail.trim().split('\n').at(-1)?.slice(0, 300) || undefined : undefined;
}

function failure(
  plan: RunPlan,
  stopReason: 'timeout' | 'cancel' | undefined,
  exit: ProcessExit | undefined,
  stderrTail: unknown,
  grace: number,
): TaskError | undefined {
  const name = plan.launch.display;
  if (stopReason === 'timeout') {
    return {
      code: 'TIMEOUT',
      message: `${name} ran longer than ${plan.timeoutMs / 1000} s; its process group got SIGTERM, then SIGKILL after ${grace} s.`,
      hint: 'Raise timeout_seconds, or give each task less work (fewer files per task). The value holds the output so far.',
    };
  }
  if (stopReason === 'cancel')
    return { code: 'CANCELLED', message: `${name} was cancelled; its process group was stopped.` };
  if (exit?.code === 0) return undefined;
  const lastLine = lastLineOf(stderrTail);
  const how = exit?.signal ? `was killed by ${exit.signal}` : `exited with code ${String(exit?.code)}`;
  return {
    code: 'NON_ZERO_EXIT',
    message: `${name} ${how}${lastLine ? `: ${lastLine}` : '.'}`,
    hint:
      missingHelperHint(stderrTail, plan.launch.helpers) ??
      'The value holds its stdout and stderr_tail (full stderr in files.stderr when long). Fix the input, then resume_job with include_failed: true re-runs only the failed tasks.',
  };
}

function parseJson(text: string): { value: unknown } | undefined {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const first = trimmed[0];
  // Only structured output counts as JSON: a worker printing "42" or "true" means text.
  if (first !== '{' && first !== '[') return undefined;
  try {
    return { value: JSON.parse(trimmed) };
  } catch {
    return undefined;
  }
}
