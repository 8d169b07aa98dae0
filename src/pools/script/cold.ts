import type { TaskContext, TaskResult } from '../../engine/types.js';
import type { ScriptTaskInput } from './job-options.js';
import {
  type ColdWorker,
  type LaunchDeps,
  type RunPlan,
  settleSpawned,
  spawnFailure,
  startColdWorker,
} from './launch.js';
import type { OutputCapture } from './output.js';
import { SpawnError, type Spawner } from './spawner.js';
import {
  type OutputAllowance,
  type ProcessExit,
  type TaskEnd,
  taskCapture,
  taskResult,
  type ValueLimits,
} from './task-value.js';

/** What a cold run needs from the pool. */
export interface ColdRunnerOptions extends LaunchDeps, ValueLimits {
  outputCapBytes: number;
}

/** Where a process's stdout or stderr goes: an OutputCapture, or a pack's PackOutput. */
export type OutputSink = Pick<OutputCapture, 'attach'>;

/** How a worker process ended. */
export interface ProcessRun {
  exit: ProcessExit | undefined;
  stopReason: 'timeout' | 'cancel' | undefined;
  /** It could not start. */
  spawnError: { code?: string; message: string } | undefined;
}

/** One cold process: what it runs, with which per-process variables and stdin, for how long. */
export interface ProcessSpec {
  args: readonly string[];
  perProcessEnv: Readonly<Record<string, string>>;
  stdinText: string | undefined;
  timeoutMs: number;
  signal: AbortSignal;
  /** Called once the process runs (its task's run counts from then: TaskContext.began). */
  began?: (() => void) | undefined;
}

/**
 * Cold runs: a worker process per task (or per pack of inputs, see pack-run.ts), started through
 * the spawner, stopped with its whole group on timeout or cancel, its output captured.
 */
export class ColdRunner {
  constructor(
    private readonly options: ColdRunnerOptions,
    private readonly spawner: Spawner,
    /** Resolves on a turn of the event loop of its own for a process start (see ScriptPool.turnToSpawn). */
    private readonly turnToSpawn: () => Promise<void>,
  ) {}

  /** Waits for a turn to start a process; throws when the task was stopped meanwhile. */
  async takeTurn(signal: AbortSignal): Promise<void> {
    await this.turnToSpawn();
    signal.throwIfAborted();
  }

  /** One input in a cold process of its own (the caller counts it against the pool's cap). */
  async runAlone(
    plan: RunPlan,
    input: ScriptTaskInput,
    task: TaskContext,
    allowance: OutputAllowance,
    told?: Pick<TaskEnd, 'notes' | 'extra'>,
  ): Promise<TaskResult> {
    await this.takeTurn(task.signal);
    const { outputCapBytes } = this.options;
    const stdout = taskCapture(task, 'stdout', outputCapBytes, allowance);
    const stderr = taskCapture(task, 'stderr', outputCapBytes, allowance);
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
        began: task.began,
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
  async runProcess(
    plan: RunPlan,
    where: { jobId: string; outputDir: string },
    spec: ProcessSpec,
    sinks: { stdout: OutputSink; stderr: OutputSink },
  ): Promise<ProcessRun> {
    let worker: ColdWorker;
    try {
      worker = await startColdWorker(
        plan,
        this.options,
        this.spawner,
        { jobId: where.jobId, outputDir: where.outputDir },
        { args: spec.args, perProcessEnv: spec.perProcessEnv, stdin: spec.stdinText },
      );
    } catch (error) {
      if (error instanceof SpawnError)
        return { exit: undefined, stopReason: undefined, spawnError: { code: error.code, message: error.message } };
      throw error;
    }
    spec.began?.();
    sinks.stdout.attach(worker.process.stdout);
    sinks.stderr.attach(worker.process.stderr);
    return this.watch(worker, spec);
  }

  /** Until the process is gone: its timeout, a cancel (SIGTERM to its group, SIGKILL after the grace), its exit. */
  private async watch(worker: ColdWorker, spec: ProcessSpec): Promise<ProcessRun> {
    const { signal } = spec;
    const started = worker.process;
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
