import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { type ChildProcess, spawn as spawnProcess } from 'node:child_process';
import * as z from 'zod';
import type { Pool, TaskContext, TaskResult } from '../../engine/types.js';
import { MonitorError, type TaskError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { resolveInsideRoots } from '../../paths.js';
import type { ProcessControl } from '../../processes.js';
import { shortLabel } from '../kind.js';
import type { LaunchPlan, WorkerCatalog } from './catalog.js';
import type { Descendants } from './descendants.js';
import type { GroupRecords } from './orphans.js';
import { decodeUtf8, type DiskAllowance, headUtf8, OutputCapture, tailUtf8 } from './output.js';

export const SCRIPT_KIND = 'script';

/** Bytes of a large stdout shown in the value; the file has it all. */
export const PREVIEW_BYTES = 2048;
/** Bytes of stderr shown in the value. */
export const STDERR_TAIL_BYTES = 2048;
/** After the worker exits, how long its pipes may stay open (a grandchild that left the group). */
const DRAIN_MS = 2000;
/** Plans of this many recent jobs are kept; an evicted one is simply worked out again. */
const PLAN_CACHE_SIZE = 128;

/** A job's options as run_script_batch stores them: enough to run its tasks again after a restart. */
export const scriptJobOptionsSchema = z.object({
  worker: z.string().min(1).optional(),
  command: z.string().min(1).optional(),
  /** Absolute, checked against the allowed roots at submit and again when the job (re)starts. */
  cwd: z.string().min(1),
  env: z.record(z.string(), z.string()).optional(),
  timeout_seconds: z.number().positive(),
});
export type ScriptJobOptions = z.infer<typeof scriptJobOptionsSchema>;

/**
 * One task's input: arguments, and at most one of stdin text or a JSON value (sent on stdin). The
 * one schema for both what run_script_batch accepts and what the pool reads back from the store.
 */
export const scriptTaskInputSchema = z
  .strictObject({
    args: z.array(z.string()).optional().describe('Arguments after the script, passed literally (usually file paths relative to cwd).'),
    stdin: z.string().optional().describe('Text on stdin.'),
    json: z.unknown().optional().describe('A JSON value sent on stdin as one line (instead of stdin).'),
  })
  .describe('One task; {} runs the worker with no input.');
export type ScriptTaskInput = z.infer<typeof scriptTaskInputSchema>;

/** Everything per job that tasks share, worked out once (not once per task). */
export interface RunPlan {
  launch: LaunchPlan;
  cwd: string;
  env: Record<string, string>;
  timeoutMs: number;
}

export interface ScriptPoolOptions {
  catalog: WorkerCatalog;
  allowedRoots: readonly string[];
  /** Script tasks of all jobs at once. */
  concurrency: number;
  outputCapBytes: number;
  inlineBytes: number;
  /** What one task, and all tasks of a job, may write to disk (see OutputAllowance). */
  maxTaskOutputBytes: number;
  maxJobOutputBytes: number;
  killGraceSeconds: number;
  /** The environment workers start from (the server's own); PATH falls back to searchPath. */
  baseEnv: Readonly<Record<string, string | undefined>>;
  searchPath: string;
  log: Logger;
  /** Signals worker process groups (timeouts, cancel, clean-up after exit). */
  processes: Pick<ProcessControl, 'signalGroup'>;
  /** Where running process groups are recorded, so the next start can end what a crash left running. */
  groupRecords?: GroupRecords;
  /** Finds and ends what a task's worker started that left its process group (see descendants.ts). */
  descendants?: Descendants;
}

/**
 * Checks a job's options and works out how its tasks start: the worker or command resolved (inside
 * a workers folder / on the allowlist), the interpreter found, the cwd inside an allowed root.
 */
export async function prepareRun(
  options: ScriptJobOptions,
  context: { catalog: WorkerCatalog; allowedRoots: readonly string[]; baseEnv: ScriptPoolOptions['baseEnv']; searchPath: string },
): Promise<RunPlan> {
  const launch = await context.catalog.plan({ worker: options.worker, command: options.command });
  const cwd = await resolveCwd(options.cwd, context.allowedRoots);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(context.baseEnv)) if (value !== undefined) env[key] = value;
  env.PATH ??= context.searchPath;
  Object.assign(env, options.env);
  return { launch, cwd, env, timeoutMs: Math.round(options.timeout_seconds * 1000) };
}

export async function resolveCwd(cwd: string, allowedRoots: readonly string[]): Promise<string> {
  const real = await resolveInsideRoots(cwd, allowedRoots, { what: 'cwd' });
  if (!(await stat(real)).isDirectory()) {
    throw new MonitorError('INVALID_INPUT', `The cwd "${cwd}" is not a folder.`, { hint: `Give a folder inside ${allowedRoots.join(', ')}.` });
  }
  return real;
}

/** Runs worker scripts (never through a shell), one process group per task. */
export class ScriptPool implements Pool {
  readonly kind = SCRIPT_KIND;
  readonly concurrency: number;
  private readonly options: ScriptPoolOptions;
  private readonly plans = new Map<string, Promise<RunPlan>>();
  private lastTurn: Promise<void> = Promise.resolve();
  /** What each recent job may still write to disk; an evicted one is worked out again from its files. */
  private readonly jobDisk = new Map<string, Promise<{ left: number }>>();

  constructor(options: ScriptPoolOptions) {
    if (!(Number.isInteger(options.concurrency) && options.concurrency > 0)) {
      throw new TypeError(`Expected script concurrency to be an integer from 1 and up, got ${options.concurrency}`);
    }
    this.options = options;
    this.concurrency = options.concurrency;
  }

  /** A task by its args (else its JSON or the first line of its stdin): what it worked on. */
  label(input: unknown): string | undefined {
    const { args, json, stdin } = (input ?? {}) as { args?: unknown; json?: unknown; stdin?: unknown };
    if (Array.isArray(args) && args.length > 0) return shortLabel(args.map(String).join(' '));
    if (json !== undefined) return shortLabel(JSON.stringify(json) ?? '');
    return typeof stdin === 'string' && stdin !== '' ? shortLabel(stdin) : undefined;
  }

  /** Ends worker process groups that servers which died without cleaning up left running. */
  async recover(): Promise<void> {
    await this.options.groupRecords?.recover();
    // Also what left its group, or was started before its group was recorded.
    await this.options.descendants?.recover();
  }

  /** After the engine has stopped every task: ends what is left of them, closes (and, with nothing running, removes) the journal. */
  async close(): Promise<void> {
    await this.options.descendants?.close();
    await this.options.groupRecords?.close();
  }

  async run(task: TaskContext): Promise<TaskResult> {
    const plan = await this.planFor(task.jobId, task.attempt, task.options);
    const input = parseTaskInput(task.input);
    const allowance = new OutputAllowance(this.options.maxTaskOutputBytes, await this.jobAllowance(task.jobId, task.outputDir));
    await this.turnToSpawn();
    task.signal.throwIfAborted();
    return this.spawn(plan, input, task, allowance);
  }

  /** The job's disk allowance: its limit less what its output folder holds (a resumed job has written before). */
  private jobAllowance(jobId: string, outputDir: string): Promise<{ left: number }> {
    let allowance = this.jobDisk.get(jobId);
    if (!allowance) {
      allowance = folderBytes(outputDir).then((used) => ({ left: Math.max(0, this.options.maxJobOutputBytes - used) }));
      this.jobDisk.set(jobId, allowance);
      if (this.jobDisk.size > PLAN_CACHE_SIZE) {
        const oldest = this.jobDisk.keys().next().value;
        if (oldest !== undefined) this.jobDisk.delete(oldest);
      }
    }
    return allowance;
  }

  /**
   * Resolves on a turn of the event loop of its own. Starting a process blocks the loop (fork and
   * exec are synchronous, ~1-10 ms each); 64 slots opening at once used to start 64 processes in
   * one turn and leave every request waiting for seconds. One start per turn lets replies through.
   */
  private turnToSpawn(): Promise<void> {
    const turn = this.lastTurn.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
    this.lastTurn = turn;
    return turn;
  }

  /**
   * Cached per job and attempt: thousands of tasks must not redo realpath, stat and PATH lookups
   * each, but a resumed task (a later attempt) is checked again against the folders and files as
   * they are now, and a failed plan is not kept (what failed it may be fixed by the next task).
   */
  private planFor(jobId: string, attempt: number, rawOptions: unknown): Promise<RunPlan> {
    const key = `${jobId}#${attempt}`;
    let plan = this.plans.get(key);
    if (!plan) {
      const parsed = scriptJobOptionsSchema.safeParse(rawOptions);
      plan = parsed.success
        ? prepareRun(parsed.data, this.options)
        : Promise.reject(new MonitorError('INVALID_INPUT', `The stored options of job ${jobId} are not script options: ${parsed.error.message}`));
      const cached = plan;
      cached.catch(() => {
        if (this.plans.get(key) === cached) this.plans.delete(key);
      });
      this.plans.set(key, cached);
      if (this.plans.size > PLAN_CACHE_SIZE) {
        const oldest = this.plans.keys().next().value;
        if (oldest !== undefined) this.plans.delete(oldest);
      }
    }
    return plan;
  }

  private async spawn(plan: RunPlan, input: ScriptTaskInput, task: TaskContext, allowance: OutputAllowance): Promise<TaskResult> {
    const { outputCapBytes, inlineBytes } = this.options;
    const stdinText = input.stdin ?? (input.json !== undefined ? `${JSON.stringify(input.json)}\n` : undefined);
    const run = this.options.descendants?.begin();
    const env: Record<string, string> = {
      // First: a reader of /proc/<pid>/environ finds it early (see descendants.ts).
      ...run?.env,
      ...plan.env,
      // A server started by another's worker inherited that one's token: its workers carry its own.
      ...run?.env,
      MONITOR_JOB_ID: task.jobId,
      MONITOR_TASK_INDEX: String(task.index),
      MONITOR_ATTEMPT: String(task.attempt),
      MONITOR_STDIN_FORMAT: input.stdin !== undefined ? 'text' : input.json !== undefined ? 'json' : 'none',
      MONITOR_OUTPUT_DIR: task.outputDir,
      // The bundled workers read files only inside these (a worker's args are paths of the model's choosing).
      MONITOR_ALLOWED_ROOTS: this.options.allowedRoots.join(path.delimiter),
    };
    const stdout = new OutputCapture(path.join(task.outputDir, `${task.index}.stdout`), outputCapBytes, PREVIEW_BYTES, allowance);
    const stderr = new OutputCapture(path.join(task.outputDir, `${task.index}.stderr`), outputCapBytes, STDERR_TAIL_BYTES, allowance);

    // Plain child_process, not execa: at thousands of tasks execa's per-process promises, streams
    // and option copies were most of what the server allocated, and lifted its peak memory.
    const subprocess = spawnProcess(plan.launch.file, [...plan.launch.prefixArgs, ...(input.args ?? [])], {
      cwd: plan.cwd,
      env,
      // Its own process group, so a timeout or cancel can end the worker's children too.
      detached: true,
      stdio: [stdinText === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let startError: NodeJS.ErrnoException | undefined;
    subprocess.once('error', (error: NodeJS.ErrnoException) => {
      startError ??= error;
    });
    if (stdinText !== undefined && subprocess.stdin) {
      // A worker may exit without reading all of its stdin: EPIPE here is not a failure.
      subprocess.stdin.on('error', () => undefined);
      subprocess.stdin.end(stdinText);
    }
    stdout.attach(subprocess.stdout);
    stderr.attach(subprocess.stderr);

    const pid = subprocess.pid;
    const untrack = pid === undefined ? undefined : this.options.groupRecords?.track(pid);
    let stopReason: 'timeout' | 'cancel' | undefined;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let forceKill: NodeJS.Timeout | undefined;
    const signalGroup = (signal: NodeJS.Signals): void => {
      // A group already gone is fine.
      if (pid !== undefined) this.options.processes.signalGroup(pid, signal);
    };
    const stop = (reason: 'timeout' | 'cancel'): void => {
      if (stopReason !== undefined || exit !== undefined) return;
      stopReason = reason;
      signalGroup('SIGTERM');
      forceKill = setTimeout(() => signalGroup('SIGKILL'), this.options.killGraceSeconds * 1000);
    };
    const timer = setTimeout(() => stop('timeout'), plan.timeoutMs);
    const onAbort = (): void => stop('cancel');
    task.signal.addEventListener('abort', onAbort, { once: true });
    subprocess.once('exit', (code, signal) => {
      exit = { code, signal };
      clearTimeout(timer);
      clearTimeout(forceKill);
      // Whatever the worker left behind in its group goes with it (also after a normal exit).
      signalGroup('SIGKILL');
    });

    let spawnError: { code?: string; message: string } | undefined;
    try {
      await settle(subprocess, () => exit !== undefined);
      if (exit === undefined && startError) spawnError = { code: startError.code, message: startError.message };
    } finally {
      clearTimeout(timer);
      clearTimeout(forceKill);
      task.signal.removeEventListener('abort', onAbort);
      if (exit === undefined) signalGroup('SIGKILL');
      untrack?.();
      run?.ended(stopReason !== undefined || exit === undefined);
    }
    if (spawnError) return { ok: false, error: spawnFailure(plan.launch, spawnError) };

    const notes: string[] = [];
    const value: Record<string, unknown> = { exit_code: exit?.code ?? null };
    if (exit?.signal) value.signal = exit.signal;
    value.timed_out = stopReason === 'timeout';

    let wantStdoutFile = false;
    const whole = stdout.whole();
    if (whole !== undefined && whole.length <= inlineBytes) {
      const { text, lossy } = decodeUtf8(whole);
      const parsed = lossy ? undefined : parseJson(text);
      if (parsed) value.json = parsed.value;
      else if (text !== '') value.text = text.endsWith('\n') ? text.slice(0, -1) : text;
      if (lossy) {
        wantStdoutFile = true;
        notes.push('stdout is not valid UTF-8: "text" shows it with U+FFFD replacement characters; files.stdout has the exact bytes.');
      }
    } else {
      const head = headUtf8(stdout.first(), PREVIEW_BYTES);
      const { text, lossy } = decodeUtf8(head);
      value.text = text;
      wantStdoutFile = true;
      const looksJson = /^\s*[[{]/.test(text) ? ' It looks like JSON, too large to inline.' : '';
      notes.push(`stdout is ${stdout.bytes} bytes; "text" shows the first ${head.length}; files.stdout has all of it.${looksJson}`);
      if (lossy) notes.push('stdout is not valid UTF-8: the preview shows U+FFFD replacement characters; the file has the exact bytes.');
    }
    value.stdout_bytes = stdout.bytes;

    let wantStderrFile = false;
    if (stderr.bytes > 0) {
      const { text, lossy } = decodeUtf8(tailUtf8(stderr.last(), STDERR_TAIL_BYTES));
      value.stderr_tail = text;
      value.stderr_bytes = stderr.bytes;
      wantStderrFile = stderr.bytes > STDERR_TAIL_BYTES || lossy;
      if (lossy) notes.push('stderr is not valid UTF-8: stderr_tail shows U+FFFD replacement characters.');
    }
    value.truncated = { stdout: whole === undefined || whole.length > inlineBytes, stderr: stderr.bytes > STDERR_TAIL_BYTES };

    const files: Record<string, string> = {};
    for (const [name, capture, wanted] of [['stdout', stdout, wantStdoutFile], ['stderr', stderr, wantStderrFile]] as const) {
      try {
        const file = await capture.finish(wanted);
        if (file !== undefined) files[name] = file;
      } catch (error) {
        notes.push(`Could not write the ${name} file: ${error instanceof Error ? error.message : String(error)}.`);
      }
    }
    if (stdout.cut || stderr.cut) {
      value.files_cut = true;
      const limit = allowance.ranOut === 'job' ? `its job's limit of ${this.options.maxJobOutputBytes} bytes (script.maxJobOutputBytes)` : `the task's limit of ${this.options.maxTaskOutputBytes} bytes (script.maxTaskOutputBytes)`;
      notes.push(
        `Output on disk was cut at ${limit}: the files hold the first ${stdout.onDisk} bytes of stdout and ${stderr.onDisk} of stderr; stdout_bytes and stderr_bytes count all the worker wrote, and the previews show its last bytes.`,
      );
    }
    if (notes.length > 0) value.notes = notes;

    const result: TaskResult = { ok: false, value };
    if (Object.keys(files).length > 0) result.files = files;
    const error = this.failure(plan, stopReason, exit, value.stderr_tail);
    if (error) result.error = error;
    else result.ok = true;
    return result;
  }

  private failure(
    plan: RunPlan,
    stopReason: 'timeout' | 'cancel' | undefined,
    exit: { code: number | null; signal: NodeJS.Signals | null } | undefined,
    stderrTail: unknown,
  ): TaskError | undefined {
    const name = plan.launch.display;
    const grace = this.options.killGraceSeconds;
    if (stopReason === 'timeout') {
      return {
        code: 'TIMEOUT',
        message: `${name} ran longer than ${plan.timeoutMs / 1000} s; its process group got SIGTERM, then SIGKILL after ${grace} s.`,
        hint: 'Raise timeout_seconds, or give each task less work (fewer files per task). The value holds the output so far.',
      };
    }
    if (stopReason === 'cancel') return { code: 'CANCELLED', message: `${name} was cancelled; its process group was stopped.` };
    if (exit?.code === 0) return undefined;
    const lastLine = typeof stderrTail === 'string' ? stderrTail.trim().split('\n').at(-1)?.slice(0, 300) : undefined;
    const how = exit?.signal ? `was killed by ${exit.signal}` : `exited with code ${String(exit?.code)}`;
    return {
      code: 'NON_ZERO_EXIT',
      message: `${name} ${how}${lastLine ? `: ${lastLine}` : '.'}`,
      hint: 'The value holds its stdout and stderr_tail (full stderr in files.stderr when long). Fix the input, then resume_job with include_failed: true re-runs only the failed tasks.',
    };
  }
}

/**
 * What one task may still write to disk: its own limit, and what its job has left (shared by the
 * job's tasks). A `yes` worker wrote 334 MB in 2 s; at the default timeout one task could write
 * tens of GB, kept for days.
 */
class OutputAllowance implements DiskAllowance {
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

/** The bytes of the files directly in `dir` (a job's output folder has no subfolders); 0 when missing. */
async function folderBytes(dir: string): Promise<number> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let total = 0;
  for (const name of names) total += await stat(path.join(dir, name)).then((s) => (s.isFile() ? s.size : 0), () => 0);
  return total;
}

/**
 * Resolves once the subprocess has exited and its pipes have closed, or it could not start. After
 * the exit its pipes get DRAIN_MS to close; a descendant that escaped the process group and holds
 * them open must not keep the task running forever.
 */
function settle(subprocess: ChildProcess, exited: () => boolean): Promise<void> {
  return new Promise<void>((resolve) => {
    let drainTimer: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(drainTimer);
      resolve();
    };
    const arm = (): void => {
      drainTimer = setTimeout(() => {
        subprocess.stdout?.destroy();
        subprocess.stderr?.destroy();
        done();
      }, DRAIN_MS);
    };
    subprocess.once('close', done);
    subprocess.once('error', done);
    if (exited()) arm();
    else subprocess.once('exit', arm);
  });
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

function parseTaskInput(raw: unknown): ScriptTaskInput {
  const hint = 'Each input is {args?: string[], stdin?: string} or {args?: string[], json?: any}.';
  const parsed = scriptTaskInputSchema.safeParse(raw);
  if (!parsed.success) throw new MonitorError('INVALID_INPUT', `Task input is not readable: ${z.prettifyError(parsed.error)}`, { hint });
  if (parsed.data.stdin !== undefined && parsed.data.json !== undefined) {
    throw new MonitorError('INVALID_INPUT', 'Task input has both stdin and json, but json is sent on stdin.', { hint });
  }
  return parsed.data;
}

function spawnFailure(launch: LaunchPlan, error: { code?: string | undefined; message: string }): TaskError {
  const file = launch.file;
  const hints: Record<string, string> = {
    ENOENT: `${file} (or the cwd) does not exist any more. Check the interpreter mapping in the config file and that the cwd still exists.`,
    EACCES: `${file} is not executable. The user can chmod +x it, or map its extension to an interpreter in the config file.`,
    E2BIG: 'The arguments or environment are too large for one process. Pass large inputs as json (sent on stdin) instead of args or env.',
    ENOEXEC: `${file} is not a program the system can run (a script without a #! line?). Map its extension to an interpreter in the config file.`,
  };
  return {
    code: 'SPAWN_FAILED',
    message: `Could not start ${launch.display}: ${error.message.trim().split('\n').join('; ')}`,
    hint: hints[error.code ?? ''] ?? 'Check that the worker and its interpreter run by hand; list_workers shows the interpreter per worker.',
  };
}
