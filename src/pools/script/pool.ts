import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import type { Pool, TaskContext, TaskResult, UpstreamView } from '../../engine/types.js';
import { MonitorError, toTaskError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { type PathRules, resolveInsideRoots } from '../../paths.js';
import type { Platform } from '../../platform/index.js';
import type { ProcessControl } from '../../processes.js';
import { shortLabel } from '../kind.js';
import { wholeOutput } from '../../store/result.js';
import type { WorkerCatalog } from './catalog.js';
import type { Descendants } from './descendants.js';
import { type ColdWorker, type RunPlan, settleSpawned, spawnFailure, startColdWorker } from './launch.js';
import type { GroupRecords } from './orphans.js';
import { decodeUtf8, OutputCapture, tailUtf8 } from './output.js';
import { MAX_PACK, packableArgs, PackOutput, splitPack } from './pack.js';
import {
  OutputAllowance,
  PREVIEW_BYTES,
  type ProcessExit,
  STDERR_TAIL_BYTES,
  type TaskEnd,
  taskResult,
} from './task-value.js';
import { DirectSpawner, SpawnError, type Spawner } from './spawner.js';
import { WarmWorkers } from './warm.js';

export type { RunPlan } from './launch.js';
export { PREVIEW_BYTES, STDERR_TAIL_BYTES } from './task-value.js';

export const SCRIPT_KIND = 'script';

/** The longest delay setTimeout takes (2^31 - 1 ms). */
const MAX_TIMER_MS = 2_147_483_647;

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
  /** Tasks go to warm processes (see warm.ts); absent (a job from before warm workers) means cold. */
  warm: z.boolean().optional(),
  /** Cold runs take up to this many inputs each, their output split per input (see pack.ts). */
  pack: z.number().int().min(2).max(MAX_PACK).optional(),
});
export type ScriptJobOptions = z.infer<typeof scriptJobOptionsSchema>;

/**
 * One task's input: arguments, and at most one of stdin text or a JSON value (sent on stdin). The
 * one schema for both what run_script_batch accepts and what the pool reads back from the store.
 */
export const scriptTaskInputSchema = z
  .strictObject({
    args: z
      .array(z.string())
      .optional()
      .describe('Arguments after the script, passed literally (usually file paths relative to cwd).'),
    stdin: z.string().optional().describe('Text on stdin.'),
    json: z.unknown().optional().describe('A JSON value sent on stdin as one line (instead of stdin).'),
  })
  .describe('One task; {} runs the worker with no input.');
export type ScriptTaskInput = z.infer<typeof scriptTaskInputSchema>;

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
  /** A warm process is replaced after this many tasks, or once its RSS is over warmMaxRssMB after one. */
  warmMaxTasks: number;
  warmMaxRssMB: number;
  /** A warm process with no task for this long ends (default: a few seconds). */
  warmIdleMs?: number;
  /** The environment workers start from (the server's own); PATH falls back to searchPath. */
  baseEnv: Readonly<Record<string, string | undefined>>;
  searchPath: string;
  log: Logger;
  /** Signals worker process groups (timeouts, cancel, clean-up after exit). */
  processes: Pick<ProcessControl, 'signalTree'>;
  /** How workers start and stop on this system (Linux when not given). */
  platform?: Platform;
  /** Where running process groups are recorded, so the next start can end what a crash left running. */
  groupRecords?: GroupRecords;
  /** Finds and ends what a task's worker started that left its process group (see descendants.ts). */
  descendants?: Descendants;
  /** Starts cold tasks' processes (default: child_process.spawn on this thread); the pool closes it. */
  spawner?: Spawner;
}

/**
 * Checks a job's options and works out how its tasks start: the worker or command resolved (inside
 * a workers folder / on the allowlist), the interpreter found, the cwd inside an allowed root.
 */
export async function prepareRun(
  options: ScriptJobOptions,
  context: {
    catalog: WorkerCatalog;
    allowedRoots: readonly string[];
    baseEnv: ScriptPoolOptions['baseEnv'];
    searchPath: string;
  },
): Promise<RunPlan> {
  const launch = await context.catalog.plan({ worker: options.worker, command: options.command });
  const cwd = await resolveCwd(options.cwd, context.allowedRoots, context.catalog.pathRules);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(context.baseEnv)) if (value !== undefined) env[key] = value;
  env.PATH ??= context.searchPath;
  Object.assign(env, options.env);
  // A worker that no longer declares warm (edited since the job was submitted) runs cold; one that no longer declares pack, an input per process.
  const warm = options.warm === true && launch.warm;
  const pack = options.pack !== undefined && !warm && launch.packFiles;
  return { launch, cwd, env, timeoutMs: Math.round(options.timeout_seconds * 1000), warm, pack };
}

export async function resolveCwd(cwd: string, allowedRoots: readonly string[], rules: PathRules): Promise<string> {
  const real = await resolveInsideRoots(cwd, allowedRoots, { what: 'cwd', rules });
  if (!(await stat(real)).isDirectory()) {
    throw new MonitorError('INVALID_INPUT', `The cwd "${cwd}" is not a folder.`, {
      hint: `Give a folder inside ${allowedRoots.join(', ')}.`,
    });
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
  private readonly warm: WarmWorkers;
  private readonly spawner: Spawner;
  /** Cold tasks' processes starting or running: with the warm ones, at most `concurrency`. */
  private coldProcesses = 0;

  constructor(options: ScriptPoolOptions) {
    if (!(Number.isInteger(options.concurrency) && options.concurrency > 0)) {
      throw new TypeError(`Expected script concurrency to be an integer from 1 and up, got ${options.concurrency}`);
    }
    this.options = options;
    this.concurrency = options.concurrency;
    this.spawner = options.spawner ?? new DirectSpawner(options.platform);
    this.warm = new WarmWorkers({
      launch: options,
      capacity: options.concurrency,
      outputCapBytes: options.outputCapBytes,
      inlineBytes: options.inlineBytes,
      maxTaskOutputBytes: options.maxTaskOutputBytes,
      maxJobOutputBytes: options.maxJobOutputBytes,
      killGraceSeconds: options.killGraceSeconds,
      maxTasks: options.warmMaxTasks,
      maxRssBytes: options.warmMaxRssMB * 1024 * 1024,
      ...(options.warmIdleMs === undefined ? {} : { idleMs: options.warmIdleMs }),
      log: options.log,
      turnToSpawn: () => this.turnToSpawn(),
      coldProcesses: () => this.coldProcesses,
    });
  }

  /** Warm processes running now (busy or idle), for tests and diagnostics. */
  get warmProcesses(): number {
    return this.warm.processCount;
  }

  /** A task by its args (else its JSON or the first line of its stdin): what it worked on. */
  label(input: unknown): string | undefined {
    const { args, json, stdin, upstream } = (input ?? {}) as {
      args?: unknown;
      json?: unknown;
      stdin?: unknown;
      upstream?: unknown;
    };
    // A later stage's task is named after what its upstream task worked on.
    if (typeof upstream === 'string') return shortLabel(upstream);
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

  /** The job has no task queued or running: its warm processes end. */
  jobEnded(jobId: string): void {
    this.warm.jobEnded(jobId);
  }

  /** After the engine has stopped every task: ends what is left of them, closes (and, with nothing running, removes) the journal. */
  async close(): Promise<void> {
    await this.warm.close();
    await this.spawner.close();
    await this.options.descendants?.close();
    await this.options.groupRecords?.close();
  }

  /** A packed job's cold runs take up to `pack` of its inputs each (see pack.ts). Read as is, not parsed: asked each time a slot opens. */
  batchSize(options: unknown): number {
    const { pack, warm } = (options ?? {}) as { pack?: unknown; warm?: unknown };
    return typeof pack === 'number' && Number.isInteger(pack) && pack > 1 && warm !== true
      ? Math.min(pack, MAX_PACK)
      : 1;
  }

  async run(task: TaskContext): Promise<TaskResult> {
    const plan = await this.planFor(task.jobId, task.attempt, task.options);
    const input = task.upstream
      ? await fedFromUpstream(parseTaskInput(task.input), task.upstream)
      : parseTaskInput(task.input);
    const allowance = await this.allowanceOf(task);
    if (plan.warm) return this.warm.run(planKey(task.jobId, task.attempt), plan, input, task, allowance);
    return this.asColdProcess(() => this.runCold(plan, input, task, allowance));
  }

  /**
   * Tasks of a packed job: their args together in one cold process, its `files` split back per
   * input; when the pack fails as a whole, each input again alone (see pack.ts). One process at a
   * time throughout: the batch holds one slot.
   */
  async runBatch(tasks: readonly TaskContext[]): Promise<TaskResult[]> {
    const [first] = tasks;
    if (!first) return [];
    // A later attempt among them: the plan is checked again against the files as they are now.
    const plan = await this.planFor(first.jobId, Math.max(...tasks.map((task) => task.attempt)), first.options);
    // The worker no longer declares `pack: files` (edited since the job was planned): each task as if alone.
    if (!plan.pack) return this.eachAlone(tasks);
    const results: Array<TaskResult | undefined> = tasks.map(() => undefined);
    const members: PackMember[] = [];
    const alone: TaskContext[] = [];
    for (const [at, task] of tasks.entries()) {
      let input: ScriptTaskInput;
      try {
        input = parseTaskInput(task.input);
      } catch (error) {
        results[at] = { ok: false, error: toTaskError(error) };
        continue;
      }
      const args = packableArgs(input);
      // Refused when the job was planned; an input of another shape still runs, alone.
      if (args === undefined) alone.push(task);
      else members.push({ at, task, input, args, allowance: await this.allowanceOf(task) });
    }
    const [lone] = members;
    // A lone input gains nothing from a pack, and would run twice when it fails: a plain cold run (its value whole, without `packed`).
    if (lone && members.length === 1) alone.push(lone.task);
    else if (members.length > 1) {
      const packed = await this.asColdProcess(() => this.runPack(plan, members));
      members.forEach((member, position) => {
        results[member.at] = packed[position];
      });
    }
    const done = await this.eachAlone(alone);
    alone.forEach((task, at) => {
      results[tasks.indexOf(task)] = done[at];
    });
    return results.map(
      (result) =>
        result ?? { ok: false, error: { code: 'INTERNAL', message: 'The task got no result from its pack.' } },
    );
  }

  /** Each task as run() runs it, one after another; a throw fails that task only. */
  private async eachAlone(tasks: readonly TaskContext[]): Promise<TaskResult[]> {
    const results: TaskResult[] = [];
    for (const task of tasks) {
      results.push(await this.run(task).catch((error: unknown) => failed(task, error)));
    }
    return results;
  }

  /** Runs `work` counted as one cold process against the cap it shares with the warm ones (an idle warm process may have to make room). */
  private async asColdProcess<T>(work: () => Promise<T>): Promise<T> {
    this.warm.makeRoom();
    this.coldProcesses++;
    try {
      return await work();
    } finally {
      this.coldProcesses--;
    }
  }

  /** One input in a cold process of its own (the caller counts it, see asColdProcess). */
  private async runCold(
    plan: RunPlan,
    input: ScriptTaskInput,
    task: TaskContext,
    allowance: OutputAllowance,
    told?: Pick<TaskEnd, 'notes' | 'extra'>,
  ): Promise<TaskResult> {
    await this.turnToSpawn();
    task.signal.throwIfAborted();
    return this.spawn(plan, input, task, allowance, told);
  }

  /** The pack's one process, then a result per member: its share of the output, or its own run alone when the pack failed. */
  private async runPack(plan: RunPlan, members: readonly PackMember[]): Promise<TaskResult[]> {
    const [lead] = members;
    if (!lead) return [];
    const { task: first } = lead;
    const { outputCapBytes } = this.options;
    // Each input's own timeout, end to end; within what a timer can hold (~24.8 days: past it Node fires at once).
    const timeoutMs = Math.min(plan.timeoutMs * members.length, MAX_TIMER_MS);
    const stdout = new PackOutput(outputCapBytes);
    // One log for the pack, named after its first task; a task's own stdout file comes from its split.
    const stderr = new OutputCapture(
      path.join(first.outputDir, `pack-${first.index}.stderr`),
      outputCapBytes,
      STDERR_TAIL_BYTES,
      await this.allowanceOf(first),
    );
    await this.turnToSpawn();
    first.signal.throwIfAborted();
    const ran = await this.runProcess(
      plan,
      first,
      {
        args: members.flatMap((member) => member.args),
        perProcessEnv: {
          MONITOR_TASK_INDEX: String(first.index),
          MONITOR_ATTEMPT: String(first.attempt),
          MONITOR_STDIN_FORMAT: 'none',
          MONITOR_PACK_INDICES: members.map((member) => member.task.index).join(','),
        },
        stdinText: undefined,
        timeoutMs,
        // The tasks of a batch share one signal.
        signal: first.signal,
      },
      { stdout, stderr },
    );
    const place = (position: number): { with: number; position: number } => ({ with: members.length, position });
    const results: TaskResult[] = [];
    if (ran.stopReason === 'cancel') {
      // Stopped with its job: nothing runs again.
      for (const [position, member] of members.entries()) {
        results.push(
          await taskResult(
            plan,
            {
              exit: ran.exit,
              stopReason: 'cancel',
              stdout: this.stdoutOf(member),
              stderr,
              allowance: member.allowance,
              extra: { packed: place(position) },
            },
            this.options,
          ),
        );
      }
      return results;
    }
    const split = splitPack(
      { ...ran, stdout, stderrTail: decodeUtf8(tailUtf8(stderr.last(), STDERR_TAIL_BYTES)).text },
      members.map((member) => member.args),
      timeoutMs,
    );
    if ('problem' in split) {
      const log = await stderr.finish(false).catch(() => undefined);
      const why = `Ran alone: its pack of ${members.length} inputs ${split.problem}${log === undefined ? '' : ` (the pack's log: ${log})`}.`;
      for (const [position, member] of members.entries()) {
        const told = { notes: [why], extra: { packed: { ...place(position), ran_alone: true } } };
        results.push(
          await this.runCold(plan, member.input, member.task, member.allowance, told).catch((error: unknown) =>
            failed(member.task, error),
          ),
        );
      }
      return results;
    }
    // One at a time: the shared log's file is written by the first that wants it.
    for (const [position, member] of members.entries()) {
      const own = this.stdoutOf(member);
      // What a cold run of this input alone prints, less the pack's other top-level keys.
      own.accept(Buffer.from(`${JSON.stringify({ files: split.entries[position] ?? [] })}\n`));
      const packed = split.dropped.length > 0 ? { ...place(position), dropped: split.dropped } : place(position);
      const notes = stderr.bytes > 0 ? [`stderr_tail is the log of the whole pack of ${members.length} inputs.`] : [];
      results.push(
        await taskResult(
          plan,
          {
            exit: ran.exit,
            stopReason: undefined,
            stdout: own,
            stderr,
            allowance: member.allowance,
            notes,
            extra: { packed },
          },
          this.options,
        ),
      );
    }
    return results;
  }

  private stdoutOf(member: PackMember): OutputCapture {
    return new OutputCapture(
      path.join(member.task.outputDir, `${member.task.index}.stdout`),
      this.options.outputCapBytes,
      PREVIEW_BYTES,
      member.allowance,
    );
  }

  /** What a task (or a pack's log) may write to disk: script.maxTaskOutputBytes, and what its job has left. */
  private async allowanceOf(task: TaskContext): Promise<OutputAllowance> {
    return new OutputAllowance(this.options.maxTaskOutputBytes, await this.jobAllowance(task.jobId, task.outputDir));
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
    const key = planKey(jobId, attempt);
    let plan = this.plans.get(key);
    if (!plan) {
      const parsed = scriptJobOptionsSchema.safeParse(rawOptions);
      plan = parsed.success
        ? prepareRun(parsed.data, this.options)
        : Promise.reject(
            new MonitorError(
              'INVALID_INPUT',
              `The stored options of job ${jobId} are not script options: ${parsed.error.message}`,
            ),
          );
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

  private async spawn(
    plan: RunPlan,
    input: ScriptTaskInput,
    task: TaskContext,
    allowance: OutputAllowance,
    told?: Pick<TaskEnd, 'notes' | 'extra'>,
  ): Promise<TaskResult> {
    const { outputCapBytes } = this.options;
    const stdout = new OutputCapture(
      path.join(task.outputDir, `${task.index}.stdout`),
      outputCapBytes,
      PREVIEW_BYTES,
      allowance,
    );
    const stderr = new OutputCapture(
      path.join(task.outputDir, `${task.index}.stderr`),
      outputCapBytes,
      STDERR_TAIL_BYTES,
      allowance,
    );
    const ran = await this.runProcess(
      plan,
      task,
      {
        args: input.args ?? [],
        perProcessEnv: {
          MONITOR_TASK_INDEX: String(task.index),
          MONITOR_ATTEMPT: String(task.attempt),
          MONITOR_STDIN_FORMAT: input.stdin !== undefined ? 'text' : input.json !== undefined ? 'json' : 'none',
        },
        stdinText: input.stdin ?? (input.json !== undefined ? `${JSON.stringify(input.json)}\n` : undefined),
        timeoutMs: plan.timeoutMs,
        signal: task.signal,
      },
      { stdout, stderr },
    );
    if (ran.spawnError) return { ok: false, error: spawnFailure(plan.launch, ran.spawnError) };
    return taskResult(
      plan,
      { exit: ran.exit, stopReason: ran.stopReason, stdout, stderr, allowance, ...told },
      this.options,
    );
  }

  /** One worker process from its start until it has exited and its pipes have closed; its output goes to `sinks`. */
  private async runProcess(
    plan: RunPlan,
    where: { jobId: string; outputDir: string },
    spec: {
      args: readonly string[];
      perProcessEnv: Readonly<Record<string, string>>;
      stdinText: string | undefined;
      timeoutMs: number;
      signal: AbortSignal;
    },
    sinks: { stdout: OutputSink; stderr: OutputSink },
  ): Promise<ProcessRun> {
    const { stdinText, signal } = spec;
    let worker: ColdWorker;
    try {
      worker = await startColdWorker(
        plan,
        this.options,
        this.spawner,
        { jobId: where.jobId, outputDir: where.outputDir },
        {
          args: spec.args,
          perProcessEnv: spec.perProcessEnv,
          stdin: stdinText,
        },
      );
    } catch (error) {
      if (error instanceof SpawnError)
        return { exit: undefined, stopReason: undefined, spawnError: { code: error.code, message: error.message } };
      throw error;
    }
    const started = worker.process;
    sinks.stdout.attach(started.stdout);
    sinks.stderr.attach(started.stderr);

    let stopReason: 'timeout' | 'cancel' | undefined;
    let exit: ProcessExit | undefined;
    let forceKill: NodeJS.Timeout | undefined;
    const stop = (reason: 'timeout' | 'cancel'): void => {
      if (stopReason !== undefined || exit !== undefined) return;
      stopReason = reason;
      worker.signalTree('SIGTERM');
      forceKill = setTimeout(() => worker.signalTree('SIGKILL'), this.options.killGraceSeconds * 1000);
    };
    const timer = setTimeout(() => stop('timeout'), spec.timeoutMs);
    const onAbort = (): void => stop('cancel');
    signal.addEventListener('abort', onAbort, { once: true });
    // Cancelled while it was starting.
    if (signal.aborted) stop('cancel');
    const noteExit = started.exited.then((status) => {
      exit = status;
      clearTimeout(timer);
      clearTimeout(forceKill);
      // Whatever the worker left behind in its group goes with it (also after a normal exit).
      worker.signalTree('SIGKILL');
    });

    try {
      await noteExit;
      await settleSpawned(started);
    } finally {
      clearTimeout(timer);
      clearTimeout(forceKill);
      signal.removeEventListener('abort', onAbort);
      if (exit === undefined) worker.signalTree('SIGKILL');
      worker.ended(stopReason !== undefined || exit === undefined);
    }
    return { exit, stopReason, spawnError: undefined };
  }
}

/** Where a process's stdout or stderr goes: an OutputCapture, or a pack's PackOutput. */
type OutputSink = Pick<OutputCapture, 'attach'>;

/** How a worker process ended. */
interface ProcessRun {
  exit: ProcessExit | undefined;
  stopReason: 'timeout' | 'cancel' | undefined;
  /** It could not start. */
  spawnError: { code?: string; message: string } | undefined;
}

/** A task in a pack: its place in the batch, its input and args, and what it may write to disk. */
interface PackMember {
  at: number;
  task: TaskContext;
  input: ScriptTaskInput;
  args: readonly string[];
  allowance: OutputAllowance;
}

/** A task that threw, as the engine records one: its abort's reason when it was stopped. */
function failed(task: TaskContext, error: unknown): TaskResult {
  return { ok: false, error: toTaskError(task.signal.aborted ? task.signal.reason : error) };
}

/** Plans and warm processes are per job and attempt: a resumed task is checked again against the files as they are now. */
function planKey(jobId: string, attempt: number): string {
  return `${jobId}#${attempt}`;
}

/** The bytes of the files directly in `dir` (a job's output folder has no subfolders); 0 when missing. */
async function folderBytes(dir: string): Promise<number> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let total = 0;
  for (const name of names)
    total += await stat(path.join(dir, name)).then(
      (s) => (s.isFile() ? s.size : 0),
      () => 0,
    );
  return total;
}

/** The most of an upstream task's output a later stage's task gets on stdin. */
const MAX_UPSTREAM_STDIN_BYTES = 16 * 1024 * 1024;

/** A later stage's task: its upstream task's whole output on stdin, as JSON when it is JSON. */
async function fedFromUpstream(input: ScriptTaskInput, upstream: UpstreamView): Promise<ScriptTaskInput> {
  const record = upstream.records[0];
  if (!record) throw new MonitorError('INTERNAL', 'A task of a later stage ran without its upstream result.');
  const output = await wholeOutput(record, MAX_UPSTREAM_STDIN_BYTES);
  return output.json !== undefined ? { ...input, json: output.json } : { ...input, stdin: `${output.text}\n` };
}

function parseTaskInput(stored: unknown): ScriptTaskInput {
  const hint = 'Each input is {args?: string[], stdin?: string} or {args?: string[], json?: any}.';
  // `upstream` (what a later stage's task is named after) is stored, never given by a caller.
  const raw = { ...((stored ?? {}) as Record<string, unknown>) };
  delete raw.upstream;
  const parsed = scriptTaskInputSchema.safeParse(raw);
  if (!parsed.success)
    throw new MonitorError('INVALID_INPUT', `Task input is not readable: ${z.prettifyError(parsed.error)}`, { hint });
  if (parsed.data.stdin !== undefined && parsed.data.json !== undefined) {
    throw new MonitorError('INVALID_INPUT', 'Task input has both stdin and json, but json is sent on stdin.', { hint });
  }
  return parsed.data;
}
