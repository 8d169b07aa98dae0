import { deriveState } from '../store/job-state.js';
import type { JobCounts, JobMeta, JobSnapshot, JobTotals, TaskRecord, TaskState, UpstreamView } from './types.js';

const STATE_CODES: readonly TaskState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'];
const code = (state: TaskState): number => STATE_CODES.indexOf(state);

/**
 * One job in memory: the state of each task, counts, the queue of what waits to run and the
 * controllers of what runs. Finished work lives in the store; this holds only what a job needs to
 * go on (10,000 tasks cost ~70 KB here, plus the inputs of queued tasks).
 */
export class Job {
  meta: JobMeta;
  private readonly states: Uint8Array;
  private readonly attempts: Uint16Array;
  /** Records applied per task, and times a resume queued it again over its record: unfinished while records ≤ requeues. */
  private readonly recorded: Uint16Array;
  private readonly requeued: Uint16Array;
  readonly counts: JobCounts;
  /** Inputs of queued tasks only; dropped once dispatched. */
  private readonly inputs = new Map<number, unknown>();
  /** A later stage's tasks waiting for their upstream: queued in counts, not in the queue yet. */
  private readonly held = new Map<number, unknown>();
  /** What each released task of a later stage runs on, until it is taken to run. */
  private readonly upstreams = new Map<number, UpstreamView>();
  private queue: number[] = [];
  private queueHead = 0;
  /** Running tasks; the tasks of one batch share a controller. */
  readonly running = new Map<number, AbortController>();
  /** Slots of its pool it holds: one per task run alone, one per batch (see Pool.batchSize); kept by the scheduler. */
  slots = 0;
  peakRunning: number;
  /** Run by another live server on the same state dir: read-only here, refreshed from disk. */
  foreign = false;
  /** This server runs it: it submitted or resumed the job (took its latest generation) and the job is not finished. */
  owned = false;
  /** Results being written, applied once on disk (and the job's end, when last, still to be written). */
  settling = 0;
  /** How many records of results.jsonl are applied to the task states. */
  applied = 0;
  /** Set when a result could not be written (disk full, …): shown with the job. */
  storeError?: string;
  /** The pool's one-off preparation (see Pool.prepareJob), started with the first task. */
  prepared?: Promise<void>;
  prepareAbort?: AbortController;
  private totals: unknown;
  private readonly totalsOf: JobTotals<unknown> | undefined;

  constructor(meta: JobMeta, totalsOf?: JobTotals<unknown>) {
    this.meta = meta;
    this.states = new Uint8Array(meta.taskCount);
    this.attempts = new Uint16Array(meta.taskCount);
    this.recorded = new Uint16Array(meta.taskCount);
    this.requeued = new Uint16Array(meta.taskCount);
    this.counts = {
      total: meta.taskCount,
      queued: meta.taskCount,
      running: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      interrupted: 0,
    };
    this.peakRunning = meta.peakRunning ?? 0;
    this.totalsOf = totalsOf;
  }

  get id(): string {
    return this.meta.id;
  }

  stateOf(index: number): TaskState {
    return STATE_CODES[this.states[index] ?? 0] ?? 'queued';
  }

  /** Runs the task has started (its latest run's number; 0 before the first). */
  attemptOf(index: number): number {
    return this.attempts[index] ?? 0;
  }

  /** The task starts another run; returns its number. */
  started(index: number): number {
    const attempt = this.attemptOf(index) + 1;
    this.attempts[index] = attempt;
    return attempt;
  }

  /** The run `started` counted never reached its worker (see Pool.reportsBegin): it is no attempt. */
  notStarted(index: number): void {
    this.attempts[index] = Math.max(0, this.attemptOf(index) - 1);
  }

  /** Runs started as the store counted them (a run cut off by a crash has no record, but counts). */
  countRuns(runs: ReadonlyMap<number, number>): void {
    for (const [index, count] of runs)
      if (index >= 0 && index < this.meta.taskCount) this.attempts[index] = Math.max(this.attemptOf(index), count);
  }

  setState(index: number, state: TaskState): void {
    this.counts[this.stateOf(index)]--;
    this.counts[state]++;
    this.states[index] = code(state);
  }

  /**
   * A finished-task record, from this process or read back from disk. One that a resume has queued
   * again since (requeued.log, read before it) leaves the task unfinished.
   */
  apply(record: TaskRecord): void {
    if (record.index < 0 || record.index >= this.meta.taskCount) return;
    this.recorded[record.index] = Math.min(0xffff, (this.recorded[record.index] ?? 0) + 1);
    this.setState(record.index, this.isRecorded(record.index) ? record.state : this.unfinishedState(record.index));
    this.attempts[record.index] = Math.max(this.attemptOf(record.index), record.attempt);
    if (this.totalsOf && record.value !== undefined) this.totals = this.totalsOf.add(this.totals, record.value);
  }

  /** The task has a record of its latest queueing (none of a resume that queued it again since). */
  isRecorded(index: number): boolean {
    return (this.recorded[index] ?? 0) > (this.requeued[index] ?? 0);
  }

  /** A resume queues the task again over its record (see JobStore.appendRequeued): one more record is due. */
  requeueOver(index: number): void {
    this.requeued[index] = Math.min(0xffff, (this.requeued[index] ?? 0) + 1);
  }

  /**
   * The requeues another server (or an earlier run of this one) noted (requeued.log): a task with a
   * record but queued again since is unfinished, queued until told otherwise.
   */
  countRequeued(requeued: ReadonlyMap<number, number>): void {
    for (const [index, times] of requeued) {
      if (index < 0 || index >= this.meta.taskCount || times <= (this.requeued[index] ?? 0)) continue;
      this.requeued[index] = Math.min(0xffff, times);
      if (!this.isRecorded(index)) this.setState(index, this.unfinishedState(index));
    }
  }

  /** What an unfinished task stays: queued, running or interrupted as it is, else queued. */
  private unfinishedState(index: number): TaskState {
    const state = this.stateOf(index);
    return state === 'queued' || state === 'running' || state === 'interrupted' ? state : 'queued';
  }

  /** Indices of the tasks now in one of `states`. */
  indicesIn(states: readonly TaskState[]): number[] {
    const wanted = new Set(states.map(code));
    const out: number[] = [];
    this.states.forEach((state, index) => {
      if (wanted.has(state)) out.push(index);
    });
    return out;
  }

  /** Queues a task to run (again); its run counts when it starts. */
  enqueue(index: number, input: unknown): void {
    this.setState(index, 'queued');
    this.inputs.set(index, input);
    this.queue.push(index);
  }

  /** A later stage's task waits for its upstream before it can queue. */
  hold(index: number, input: unknown): void {
    this.setState(index, 'queued');
    this.held.set(index, input);
  }

  isHeld(index: number): boolean {
    return this.held.has(index);
  }

  /** Indices of the tasks waiting for their upstream. */
  heldIndices(): number[] {
    return [...this.held.keys()];
  }

  /** Its upstream is in: the task joins the queue with it. Returns its input. */
  release(index: number, upstream: UpstreamView): unknown {
    if (!this.held.has(index)) return undefined;
    const input = this.held.get(index);
    this.held.delete(index);
    this.inputs.set(index, input);
    this.upstreams.set(index, upstream);
    this.queue.push(index);
    return input;
  }

  /** Takes a held task out to be recorded without running (its upstream failed); returns its input. */
  unhold(index: number): unknown {
    const input = this.held.get(index);
    this.held.delete(index);
    return input;
  }

  get hasQueued(): boolean {
    return this.queueHead < this.queue.length;
  }

  /** The next queued task, taken off the queue with its input. */
  takeNext(): { index: number; input: unknown; upstream?: UpstreamView } | undefined {
    if (!this.hasQueued) return undefined;
    const index = this.queue[this.queueHead++] ?? 0;
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    }
    const input = this.inputs.get(index);
    this.inputs.delete(index);
    const upstream = this.upstreams.get(index);
    if (upstream === undefined) return { index, input };
    this.upstreams.delete(index);
    return { index, input, upstream };
  }

  /** Empties the queue and the tasks waiting for their upstream (cancel); returns what was in them. */
  dropQueued(): Array<{ index: number; input: unknown }> {
    const dropped = this.queue.slice(this.queueHead).map((index) => ({ index, input: this.inputs.get(index) }));
    for (const [index, input] of this.held) dropped.push({ index, input });
    this.queue = [];
    this.queueHead = 0;
    this.inputs.clear();
    this.held.clear();
    this.upstreams.clear();
    return dropped;
  }

  /** Tasks with no final record were cut off by the end of the process that ran them; true when any was. */
  interruptUnfinished(): boolean {
    let cut = false;
    this.held.clear();
    for (const index of this.indicesIn(['queued', 'running'])) {
      this.setState(index, 'interrupted');
      cut = true;
    }
    return cut;
  }

  get isDone(): boolean {
    return this.counts.queued === 0 && this.counts.running === 0;
  }

  /** Done, and every record (and the job's end) on disk. */
  get isSettled(): boolean {
    return this.isDone && this.settling === 0;
  }

  snapshot(now: number): JobSnapshot {
    const { meta, counts } = this;
    const end = meta.finishedAt ? Date.parse(meta.finishedAt) : now;
    const elapsedMs = Math.max(0, end - Date.parse(meta.createdAt));
    const snapshot: JobSnapshot = {
      id: meta.id,
      kind: meta.kind,
      state: deriveState(counts, meta),
      createdAt: meta.createdAt,
      concurrency: meta.concurrency,
      counts: { ...counts },
      elapsedMs,
      peakRunning: this.peakRunning,
    };
    if (meta.label !== undefined) snapshot.label = meta.label;
    if (meta.after !== undefined) snapshot.after = { ...meta.after };
    if (this.held.size > 0) snapshot.waiting = this.held.size;
    if (meta.finishedAt !== undefined) snapshot.finishedAt = meta.finishedAt;
    if (this.foreign && meta.ownerPid !== undefined) snapshot.ownerPid = meta.ownerPid;
    if (this.storeError !== undefined) snapshot.warning = this.storeError;
    const totals = this.totals === undefined ? undefined : this.totalsOf?.view(this.totals, elapsedMs);
    if (totals) snapshot.totals = totals;
    return snapshot;
  }
}
