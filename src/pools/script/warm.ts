import type { TaskContext, TaskResult } from '../../engine/types.js';
import { MonitorError, type TaskError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { LINUX } from '../../platform/index.js';
import { readProcRss } from '../../platform/proc.js';
import { type LaunchDeps, type RunPlan, spawnFailure, startWorker } from './launch.js';
import { type OutputAllowance, type ProcessExit, taskCapture, type ValueLimits } from './task-value.js';
import { type LogSink, WarmProcess } from './warm-process.js';
import { type Outcome, requestFor, type WarmRequest, type WarmTaskInput } from './warm-protocol.js';
import { warmResult } from './warm-result.js';

export type { WarmTaskInput } from './warm-protocol.js';

/**
 * Warm workers: long-lived worker processes that serve a job's tasks one at a time, so a task
 * costs a line each way instead of an interpreter start (~70 ms of CPU for Python, for ~1 ms of
 * work on a file). The protocol (v1, documented in workers/README.md):
 *
 * - A worker declares `# monitor: warm: yes`. It is started exactly as a cold task (interpreter,
 *   flags, cwd, env, run token, process group) but with no task args, stdin /dev/null,
 *   MONITOR_WARM=1, fd 3 for requests (server → worker) and fd 4 for replies (worker → server).
 * - Request, one JSON line: `{"id": 48213077, "args": [...], "env": {"MONITOR_TASK_INDEX": "7",
 *   "MONITOR_ATTEMPT": "1", "MONITOR_STDIN_FORMAT": "none"}}` plus at most one of `"stdin"` (text)
 *   or `"json"` (a value): a cold task's input.
 * - Reply, one JSON line: `{"id": 48213077, "exit_code": 0, "result": <JSON>}` or `... "output": "<text>"}`.
 *   The id is an integer drawn at random per request: only the request itself tells it.
 *   exit_code ≠ 0 fails the task like a cold worker's exit code; `output` counts as a cold
 *   worker's stdout, `result` as the JSON it would print.
 * - What the worker writes on fd 1 and 2 during a task is that task's log (its stderr capture);
 *   it flushes them before replying. Output while idle goes to the next task's log.
 * - It exits at EOF on fd 3. A reply that is not JSON, has another id or is too long fails the task
 *   with WORKER_PROTOCOL and the process is killed; so does closing fd 3 or fd 4 while it runs
 *   (noticed at once: an idle one is killed, a request waiting on it fails).
 */

/** A warm process without a task for this long ends: a fallback, a job's end ends its processes at once. */
const IDLE_MS = 5000;
export interface WarmWorkersOptions extends ValueLimits {
  launch: LaunchDeps;
  /** Worker processes of all jobs at once, warm (busy or idle) and cold: the pool's concurrency. */
  capacity: number;
  outputCapBytes: number;
  /** A process is replaced after this many tasks (script.warmMaxTasks). */
  maxTasks: number;
  /** ...or once its RSS is over this after a task (script.warmMaxRssMB; Linux). */
  maxRssBytes: number;
  /** A process with no task for this long ends (default IDLE_MS). */
  idleMs?: number;
  log: Logger;
  /** Resolves on a turn of the event loop of its own for a process start (see ScriptPool.turnToSpawn). */
  turnToSpawn(): Promise<void>;
  /** Cold tasks' processes running now: they count against `capacity` too. */
  coldProcesses(): number;
}

/** Who a request is for: its job (or the service lent), the output folder its process is told of, and its signal. */
export interface WarmRequester {
  jobId: string;
  outputDir: string;
  signal: AbortSignal;
  /** A task's attempt (its plan's): a later one's plan takes the job's processes over. 0 when not given. */
  attempt?: number;
  /** A task's run counts from the moment its request goes to a process (TaskContext.began). */
  began?: (() => void) | undefined;
}

/** A request served: how it ended, on which process; and the process that died before, when it was sent twice. */
export interface WarmServed {
  outcome: Outcome;
  worker: WarmProcess;
  served: { process: number; task: number };
  crash: { exit: ProcessExit | undefined; process: number } | undefined;
}

/**
 * The warm processes of one job (or lent service): all on one plan, the one of the latest attempt
 * asked for (`key`); its idle ones longest idle first. A task of an earlier attempt (resumed
 * tasks and fresh ones run side by side) is served on them too, so the job never has more
 * processes than tasks in flight: at most its concurrency.
 */
interface WarmGroup {
  jobId: string;
  key: string;
  attempt: number;
  plan: RunPlan;
  idle: WarmProcess[];
}

/** Long-lived worker processes per job, shared by its tasks one at a time (see the protocol above). */
export class WarmWorkers {
  private readonly options: WarmWorkersOptions;
  /** By job id (a lent service's key), until the job's run ends: its plan is kept while it has no process. */
  private readonly groups = new Map<string, WarmGroup>();
  /** Busy and idle processes: what counts against the capacity (processes ending do not). */
  private readonly counted = new Set<WarmProcess>();
  /** Every process not yet gone, ending ones included: close() waits for them. */
  private readonly alive = new Set<WarmProcess>();
  /** Processes being started (waiting for their turn). */
  private starting = 0;
  /** Numbers the processes in task values (`warm.process`). */
  private started = 0;
  private closed = false;

  constructor(options: WarmWorkersOptions) {
    this.options = options;
  }

  /** Warm processes that count against the capacity now: busy, idle and starting. */
  get processCount(): number {
    return this.counted.size + this.starting;
  }

  /**
   * Runs one task on a warm process of its job (`key`: the job and its attempt plan): an idle one,
   * else a new one. A process that dies mid-task has the task run once more on a fresh process.
   */
  async run(
    key: string,
    plan: RunPlan,
    input: WarmTaskInput,
    task: TaskContext,
    allowance: OutputAllowance,
  ): Promise<TaskResult> {
    const log = taskCapture(task, 'stderr', this.options.outputCapBytes, allowance);
    const ran = await this.request(key, plan, requestFor(task, input), log, Date.now() + plan.timeoutMs, task);
    if ('error' in ran) return { ok: false, error: ran.error };
    return warmResult(plan, task, { ...ran, log, allowance }, this.options);
  }

  /**
   * One request on a process of `who.jobId` (an idle one, else a new one), its log into `log`, until
   * `deadline` (ms since the epoch): a task's, or a call another kind borrows (lend.ts). A process
   * that dies mid-request has it sent once more to a fresh process.
   */
  async request(
    key: string,
    plan: RunPlan,
    message: WarmRequest,
    log: LogSink,
    deadline: number,
    who: WarmRequester,
  ): Promise<WarmServed | { error: TaskError }> {
    let crash: WarmServed['crash'];
    let resent = false;
    for (;;) {
      const acquired = await this.acquire(key, plan, who, crash !== undefined);
      if ('error' in acquired) return acquired;
      const worker = acquired.process;
      who.began?.();
      const served = await worker.serve(message, log, Math.max(0, deadline - Date.now()), who.signal);
      const place = { process: worker.number, task: worker.tasksServed };
      if (served.kind === 'unsent' && !resent && !who.signal.aborted) {
        // Closed its request pipe before reading the request: the worker never saw it, another process gets it.
        this.options.log.warn(
          `warm process ${worker.number} (${worker.plan.launch.display}, pid ${String(worker.pid)}) ${served.problem}; it was killed and the request goes to a fresh process`,
        );
        resent = true;
        continue;
      }
      const outcome: Outcome = served.kind === 'unsent' ? { ...served, kind: 'protocol' } : served;
      this.release(worker, outcome);
      if (outcome.kind === 'exited' && crash === undefined && !who.signal.aborted) {
        crash = { exit: worker.exit, process: worker.number };
        continue;
      }
      return { outcome, worker, served: place, crash };
    }
  }

  /** The job's run is over: its idle processes end now, a busy one when its request is over. */
  jobEnded(jobId: string): void {
    const group = this.groups.get(jobId);
    if (!group) return;
    this.groups.delete(jobId);
    for (const worker of [...group.idle]) this.retire(worker, 'its job ended');
  }

  /**
   * Before another process starts: when the processes running (cold and warm, idle ones included)
   * fill the capacity, ends idle warm processes of other jobs until there is room.
   */
  makeRoom(exceptJob?: string): void {
    while (this.processCount + this.options.coldProcesses() + 1 > this.options.capacity) {
      let victim: WarmProcess | undefined;
      for (const [jobId, group] of this.groups) {
        if (jobId === exceptJob) continue;
        const oldest = group.idle[0];
        if (oldest && (!victim || oldest.idleSince < victim.idleSince)) victim = oldest;
      }
      if (!victim) return;
      this.retire(victim, 'room was needed for another task');
    }
  }

  /** Ends every process (shutdown: the engine has stopped their tasks) and waits until they are gone. */
  async close(): Promise<void> {
    this.closed = true;
    for (const worker of [...this.alive]) {
      if (worker.state === 'busy') worker.terminate();
      else if (worker.state === 'idle') this.retire(worker, 'the server is closing');
    }
    await Promise.all([...this.alive].map((worker) => worker.gone));
  }

  /**
   * The job's group, on the plan of the latest attempt asked for: a later attempt's plan (a resume,
   * after the worker may have been fixed) takes it over, and the idle processes of the earlier one
   * end at once; a busy one ends when its request is over.
   */
  private groupOf(key: string, plan: RunPlan, who: WarmRequester): WarmGroup {
    const attempt = who.attempt ?? 0;
    let group = this.groups.get(who.jobId);
    if (!group) {
      group = { jobId: who.jobId, key, attempt, plan, idle: [] };
      this.groups.set(who.jobId, group);
    } else if (group.key !== key && attempt > group.attempt) {
      Object.assign(group, { key, attempt, plan });
      for (const worker of [...group.idle]) this.retire(worker, `attempt ${attempt} of its job runs on a new plan`);
    }
    return group;
  }

  /** An idle process of the job (unless `fresh`), else a new one; or why none could start. */
  private async acquire(
    key: string,
    plan: RunPlan,
    who: WarmRequester,
    fresh: boolean,
  ): Promise<{ process: WarmProcess } | { error: TaskError }> {
    if (this.closed) throw new MonitorError('SHUTTING_DOWN', 'The server is shutting down.');
    const group = this.groupOf(key, plan, who);
    while (!fresh && group.idle.length > 0) {
      // Most recently idle first: its memory is warm, and the oldest are the ones to let go.
      const worker = group.idle.pop();
      if (worker?.claim()) return { process: worker };
    }
    // A retry after a crash takes none of its job's idle processes, and makes room at their expense too.
    this.makeRoom(fresh ? undefined : who.jobId);
    this.starting++;
    let worker: WarmProcess;
    try {
      // Its job's processes on their way out (an earlier plan's, a broken one) go first: the job
      // never has more processes alive than tasks in flight, however briefly.
      await Promise.all(
        [...this.alive]
          .filter((other) => other.jobId === who.jobId && other.state === 'ending')
          .map((other) => other.gone),
      );
      await this.options.turnToSpawn();
      who.signal.throwIfAborted();
      if (this.closed) throw new MonitorError('SHUTTING_DOWN', 'The server is shutting down.');
      worker = this.spawn(group, who);
    } finally {
      this.starting--;
    }
    this.alive.add(worker);
    this.counted.add(worker);
    const startError = await worker.spawned;
    if (startError)
      return { error: spawnFailure(worker.plan.launch, { code: startError.code, message: startError.message }) };
    return { process: worker };
  }

  /** A new process on the group's plan (it may have changed while this one waited for its turn). */
  private spawn(group: WarmGroup, who: WarmRequester): WarmProcess {
    const started = startWorker(
      group.plan,
      this.options.launch,
      { jobId: who.jobId, outputDir: who.outputDir },
      { args: [], perProcessEnv: { MONITOR_WARM: '1' }, stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] },
    );
    return new WarmProcess(++this.started, group.key, who.jobId, started, group.plan, this.options, {
      gone: (gone) => this.forget(gone),
      broken: (broken, problem) => {
        this.options.log.warn(
          `warm process ${broken.number} (${broken.plan.launch.display}, pid ${String(broken.pid)}) ${problem}; it is killed`,
        );
        this.uncount(broken);
        broken.terminate();
      },
    });
  }

  /** After a task: the process goes back to its job's idle ones, or is replaced when it has served enough. */
  private release(worker: WarmProcess, outcome: Outcome): void {
    // Killed (timeout, cancel, protocol) or dead: it is on its way out and forgets itself when gone.
    if (outcome.kind !== 'reply' || worker.state !== 'busy') return;
    const { maxTasks, maxRssBytes } = this.options;
    if (this.closed) return this.retire(worker, 'the server is closing');
    // A pipe it closed is noticed after its grace (or its exit): ended then, never given another task.
    if (!worker.usable) return;
    const group = this.groups.get(worker.jobId);
    if (group?.key !== worker.key) return this.retire(worker, 'its job ended or runs on a later plan');
    if (worker.tasksServed >= maxTasks)
      return this.retire(worker, `it served ${worker.tasksServed} tasks (script.warmMaxTasks)`);
    const procDir = (this.options.launch.platform ?? LINUX).procDir;
    const rss = worker.pid === undefined || procDir === undefined ? undefined : readProcRss(worker.pid, procDir);
    if (rss !== undefined && rss > maxRssBytes) {
      return this.retire(worker, `its memory (RSS ${Math.round(rss / 1048576)} MB) is over script.warmMaxRssMB`);
    }
    worker.idle(this.options.idleMs ?? IDLE_MS, () => this.retire(worker, 'it was idle'));
    group.idle.push(worker);
  }

  /** Ends a process that is not serving a task: fd 3 closed (it exits), its group killed after the grace. */
  private retire(worker: WarmProcess, why: string): void {
    this.uncount(worker);
    this.options.log.debug(
      `warm process ${worker.number} (${worker.plan.launch.display}, pid ${String(worker.pid)}) ends: ${why}`,
    );
    worker.end();
  }

  /** No longer counted against the capacity, nor among its job's idle ones. */
  private uncount(worker: WarmProcess): void {
    const idle = this.groups.get(worker.jobId)?.idle;
    const at = idle?.indexOf(worker) ?? -1;
    if (at !== -1) idle?.splice(at, 1);
    this.counted.delete(worker);
  }

  private forget(worker: WarmProcess): void {
    this.uncount(worker);
    this.alive.delete(worker);
  }
}
