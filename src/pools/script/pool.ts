import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Pool, TaskContext, TaskResult, UpstreamView } from '../../engine/types.js';
import { MonitorError, type TaskError, toTaskError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Platform } from '../../platform/index.js';
import type { ProcessControl } from '../../processes.js';
import { wholeOutput } from '../../store/result.js';
import { shortLabel } from '../kind.js';
import type { WorkerCatalog } from './catalog.js';
import { ColdRunner, type OutputSink, type ProcessRun, type ProcessSpec } from './cold.js';
import type { Descendants } from './descendants.js';
import { parseTaskInput, prepareRun, scriptJobOptionsSchema, type ScriptTaskInput } from './job-options.js';
import type { RunPlan } from './launch.js';
import type { GroupRecords } from './orphans.js';
import { MAX_PACK, packableArgs } from './pack.js';
import { type PackMember, runPack } from './pack-run.js';
import { DirectSpawner, type Spawner } from './spawner.js';
import { failedResult, OutputAllowance } from './task-value.js';
import { Slots } from './slots.js';
import { type WarmRequester, type WarmServed, WarmWorkers } from './warm.js';
import type { LogSink } from './warm-process.js';
import type { WarmRequest } from './warm-protocol.js';
import type { LiveCard } from '../kind.js';
import { WorkGauge } from '../rates.js';
import { SCRIPT_KIND } from './facts.js';

export type { RunPlan } from './launch.js';
export { PREVIEW_BYTES, STDERR_TAIL_BYTES } from './task-value.js';

/** Plans of this many recent jobs are kept; an evicted one is simply worked out again. */
const PLAN_CACHE_SIZE = 128;

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

/** Runs worker scripts (never through a shell), one process group per task. */
export class ScriptPool implements Pool {
  readonly kind = SCRIPT_KIND;
  readonly concurrency: number;
  /** A task's run counts once its worker process runs (cold.ts), or its warm request is on its way. */
  readonly reportsBegin = true;
  private readonly options: ScriptPoolOptions;
  private readonly plans = new Map<string, Promise<RunPlan>>();
  private lastTurn: Promise<void> = Promise.resolve();
  /** What each recent job may still write to disk; an evicted one is worked out again from its files. */
  private readonly jobDisk = new Map<string, Promise<{ left: number }>>();
  private readonly warm: WarmWorkers;
  private readonly spawner: Spawner;
  private readonly cold: ColdRunner;
  /** Cold tasks' processes starting or running: with the warm ones, at most `concurrency`. */
  private coldProcesses = 0;
  /** Runs in hand and tasks finished, for the live card. */
  private readonly gauge = new WorkGauge('scripts');
  /** The engine's runs and the calls lent to other kinds, against `concurrency`. */
  private readonly slots: Slots;

  constructor(options: ScriptPoolOptions) {
    if (!(Number.isInteger(options.concurrency) && options.concurrency > 0)) {
      throw new TypeError(`Expected script concurrency to be an integer from 1 and up, got ${options.concurrency}`);
    }
    this.options = options;
    this.concurrency = options.concurrency;
    this.slots = new Slots(options.concurrency);
    this.spawner = options.spawner ?? new DirectSpawner(options.platform);
    this.cold = new ColdRunner(options, this.spawner, () => this.turnToSpawn());
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
    return this.slots.hold(() => this.gauge.count(1, () => this.runOne(task)));
  }

  // A pack holds one slot, whatever its size: one run in hand, its tasks finished together.
  async runBatch(tasks: readonly TaskContext[]): Promise<TaskResult[]> {
    return this.slots.hold(() => this.gauge.count(tasks.length, () => this.runTogether(tasks)));
  }

  /**
   * One request on a warm process of group `key` for a service lent to another kind (lend.ts):
   * it waits for a slot the engine's runs leave free, and counts as a run in hand; the process
   * stays up between calls like a job's (its idle timeout and close() end it). `deadline` ends the
   * wait and the request; with `runMs`, the request gets that long from when it holds its slot.
   */
  async lentRequest(
    key: string,
    plan: RunPlan,
    message: WarmRequest,
    log: LogSink,
    deadline: number,
    who: WarmRequester,
    runMs?: number,
  ): Promise<WarmServed | { error: TaskError }> {
    return this.slots.borrow(who.signal, deadline, () =>
      this.gauge.count(1, () =>
        this.warm.request(key, plan, message, log, runMs === undefined ? deadline : Date.now() + runMs, who),
      ),
    );
  }

  /**
   * One cold process for a service lent to another kind (check-lend.ts): like lentRequest it waits
   * until `deadline` for a slot the engine's runs leave free; it counts as a run in hand and a cold
   * process, and runs as a task's would, `spec.timeoutMs` from its start.
   */
  async lentProcess(
    plan: RunPlan,
    spec: ProcessSpec,
    sinks: { stdout: OutputSink; stderr: OutputSink },
    deadline: number,
    where: { jobId: string; outputDir: string },
  ): Promise<ProcessRun> {
    return this.slots.borrow(spec.signal, deadline, () =>
      this.gauge.count(1, () =>
        this.asColdProcess(async () => {
          await this.cold.takeTurn(spec.signal);
          return this.cold.runProcess(plan, where, spec, sinks);
        }),
      ),
    );
  }

  /** The pool as a live card: slots in use, warm processes, tasks finished per second. */
  liveCards(): LiveCard[] {
    const warm = this.warm.processCount;
    return [this.gauge.card(this.concurrency, `${warm} warm process${warm === 1 ? '' : 'es'}`, 'tasks/s')];
  }

  private async runOne(task: TaskContext): Promise<TaskResult> {
    const plan = await this.planFor(task.jobId, task.attempt, task.options);
    const input = task.upstream
      ? await fedFromUpstream(parseTaskInput(task.input), task.upstream)
      : parseTaskInput(task.input);
    const allowance = await this.allowanceOf(task);
    if (plan.warm) {
      return this.warm.run(planKey(task.jobId, task.attempt), plan, input, task, allowance);
    }
    return this.asColdProcess(() => this.cold.runAlone(plan, input, task, allowance));
  }

  /**
   * Tasks of a packed job: their args together in one cold process, its `files` split back per
   * input; when the pack fails as a whole, each input again alone (see pack.ts). One process at a
   * time throughout: the batch holds one slot.
   */
  private async runTogether(tasks: readonly TaskContext[]): Promise<TaskResult[]> {
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
    else if (lone) {
      const deps = { cold: this.cold, outputCapBytes: this.options.outputCapBytes, limits: this.options };
      const packed = await this.asColdProcess(async () =>
        runPack(deps, plan, members, await this.allowanceOf(lone.task)),
      );
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
      // Within the batch's slot: counted as a run in hand, not as a slot of its own.
      const result = this.gauge.count(1, () => this.runOne(task));
      results.push(await result.catch((error: unknown) => failedResult(task, error)));
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
