import { MonitorError, toTaskError } from '../errors.js';
import type { Logger } from '../log.js';
import { JobStore } from '../store/store.js';
import type { JobCounts, JobMeta, JobSnapshot, JobState, Pool, TaskRecord, TaskResult, TaskState } from './types.js';

const STATE_CODES: readonly TaskState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'];
const code = (state: TaskState): number => STATE_CODES.indexOf(state);

interface JobRuntime {
  meta: JobMeta;
  /** Task states by index, as codes into STATE_CODES (10,000 tasks = 10 KB). */
  states: Uint8Array;
  attempts: Uint16Array;
  counts: JobCounts;
  /** Inputs of queued tasks only; dropped once dispatched. */
  inputs: Map<number, unknown>;
  queue: number[];
  queueHead: number;
  running: Map<number, AbortController>;
  peakRunning: number;
  usage: { promptTokens: number; completionTokens: number };
  prepared?: Promise<void>;
  prepareAbort?: AbortController;
  /** Run by another live server on the same state dir: read-only here, refreshed from disk. */
  foreign: boolean;
  /** How many records of results.jsonl are applied to `states`. */
  applied: number;
  /** Set when a result could not be written (disk full, …): shown with the job. */
  storeError?: string;
}

interface Lane {
  pool: Pool;
  running: number;
  /** Jobs with queued tasks, served round-robin so a small job is not stuck behind a huge one. */
  ring: JobRuntime[];
  next: number;
}

export interface SubmitRequest {
  kind: string;
  inputs: readonly unknown[];
  options: unknown;
  concurrency: number;
  label?: string;
}

/** Who runs jobs: lets several servers (one per client session) share a state directory safely. */
export interface Ownership {
  pid: number;
  /** Tells this process from a later one given the same pid (its start time), where known. */
  startToken?: string;
  /** With `startToken`, a process now holding that pid but started at another time is not it. */
  isAlive(pid: number, startToken?: string): boolean;
}

export interface EngineOptions {
  store: JobStore;
  pools: readonly Pool[];
  log: Logger;
  retentionDays: number;
  now?: () => Date;
  /** Without it every unfinished job found on start counts as interrupted. */
  ownership?: Ownership;
}

/**
 * Jobs, tasks, per-pool limits, cancellation and resume. Knows no worker kind and nothing of MCP:
 * a pool is a name, a limit and `run(task)`.
 */
export class Engine {
  private readonly store: JobStore;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly retentionDays: number;
  private readonly jobs = new Map<string, JobRuntime>();
  private readonly lanes = new Map<string, Lane>();
  private readonly listeners = new Set<() => void>();
  private readonly inFlight = new Set<Promise<void>>();
  private closing = false;
  private readonly ownership: Ownership | undefined;

  constructor(options: EngineOptions) {
    this.ownership = options.ownership;
    this.store = options.store;
    this.log = options.log;
    this.now = options.now ?? (() => new Date());
    this.retentionDays = options.retentionDays;
    for (const pool of options.pools) {
      if (!(Number.isInteger(pool.concurrency) && pool.concurrency > 0)) {
        throw new TypeError(`Expected pool ${pool.kind} concurrency to be an integer from 1 and up, got ${pool.concurrency}`);
      }
      this.lanes.set(pool.kind, { pool, running: 0, ring: [], next: 0 });
    }
  }

  get kinds(): string[] {
    return [...this.lanes.keys()];
  }

  /** Loads earlier jobs: finished results stay collectable; what was queued or running is `interrupted`. */
  async init(): Promise<{ loaded: number; removed: number; interrupted: number }> {
    await this.store.init();
    for (const lane of this.lanes.values()) await lane.pool.recover?.();
    const cutoff = this.now().getTime() - this.retentionDays * 86_400_000;
    let removed = 0;
    let interrupted = 0;
    for (const meta of await this.store.loadAll()) {
      // Unfinished jobs are kept: they load as interrupted (or stay with the live server running them).
      if (meta.finishedAt !== undefined && Date.parse(meta.finishedAt) < cutoff) {
        await this.store.removeJob(meta.id);
        removed++;
        continue;
      }
      if (await this.adopt(meta)) interrupted++;
    }
    return { loaded: this.jobs.size, removed, interrupted };
  }

  /** Takes a job found on disk into memory; true when it had tasks cut off by a dead process. */
  private async adopt(meta: JobMeta): Promise<boolean> {
    const job = this.newRuntime(meta);
    this.jobs.set(meta.id, job);
    if (meta.finishedAt === undefined && this.ownedElsewhere(meta)) {
      job.foreign = true;
      await this.refreshForeign(job);
      return false;
    }
    await this.applyNewRecords(job);
    return this.markInterrupted(job);
  }

  private stampOwner(meta: JobMeta): void {
    if (!this.ownership) return;
    meta.ownerPid = this.ownership.pid;
    if (this.ownership.startToken !== undefined) meta.ownerStart = this.ownership.startToken;
    else delete meta.ownerStart;
  }

  private ownedElsewhere(meta: JobMeta): boolean {
    const owner = meta.ownerPid;
    return this.ownership !== undefined && owner !== undefined && owner !== this.ownership.pid && this.ownership.isAlive(owner, meta.ownerStart);
  }

  private async applyNewRecords(job: JobRuntime): Promise<void> {
    const records = await this.store.readResults(job.meta.id);
    for (; job.applied < records.length; job.applied++) {
      const record = records[job.applied];
      if (record) this.applyRecord(job, record);
    }
  }

  /** Tasks with no final record were cut off by the end of the process that ran them. */
  private async markInterrupted(job: JobRuntime): Promise<boolean> {
    let cut = false;
    for (let i = 0; i < job.meta.taskCount; i++) {
      const state = job.states[i];
      if (state === code('queued') || state === code('running')) {
        this.setState(job, i, 'interrupted');
        cut = true;
      }
    }
    if (cut && job.meta.finishedAt === undefined) {
      job.meta.finishedAt = this.now().toISOString();
      await this.store.writeMeta(job.meta);
    }
    return cut;
  }

  /** Re-reads a job another server runs; once that server is gone, its leftovers are interrupted. */
  private async refreshForeign(job: JobRuntime): Promise<void> {
    const meta = await this.store.readMeta(job.meta.id).catch(() => job.meta);
    job.meta = meta;
    // Unknown tasks of a live foreign job count as running: queued or running over there.
    for (let i = 0; i < meta.taskCount; i++) if (job.states[i] === code('queued')) this.setState(job, i, 'running');
    await this.applyNewRecords(job);
    if (meta.finishedAt !== undefined || !this.ownedElsewhere(meta)) {
      job.foreign = false;
      await this.markInterrupted(job);
    }
  }

  /** Brings jobs run by other server processes up to date (no-op for our own). */
  async refresh(jobIds?: readonly string[]): Promise<void> {
    // Another server process may have submitted jobs since we started.
    if (jobIds === undefined) {
      for (const meta of await this.store.loadAllReadOnly()) if (!this.jobs.has(meta.id)) await this.adopt(meta);
    } else {
      for (const id of jobIds) {
        if (this.jobs.has(id) || !JobStore.isJobId(id)) continue;
        const meta = await this.store.readMeta(id).catch(() => undefined);
        if (meta) await this.adopt(meta);
      }
    }
    const jobs = jobIds === undefined ? [...this.jobs.values()] : jobIds.map((id) => this.jobs.get(id));
    for (const job of jobs) if (job?.foreign) await this.refreshForeign(job);
  }

  async submit(request: SubmitRequest): Promise<JobSnapshot> {
    const lane = this.lanes.get(request.kind);
    if (!lane) throw new MonitorError('INTERNAL', `No pool for job kind "${request.kind}".`);
    if (this.closing) throw new MonitorError('INTERNAL', 'The server is shutting down; submit again after it restarts.');
    if (!(Number.isInteger(request.concurrency) && request.concurrency > 0)) {
      throw new MonitorError('INVALID_INPUT', `Expected concurrency to be an integer from 1 and up, got ${request.concurrency}.`);
    }
    if (request.inputs.length === 0) throw new MonitorError('INVALID_INPUT', 'A job needs at least one task.');
    const meta: JobMeta = {
      id: JobStore.newJobId(),
      kind: request.kind,
      createdAt: this.now().toISOString(),
      taskCount: request.inputs.length,
      concurrency: request.concurrency,
      options: request.options,
    };
    if (request.label !== undefined) meta.label = request.label;
    this.stampOwner(meta);
    await this.store.createJob(meta, request.inputs);
    const job = this.newRuntime(meta);
    request.inputs.forEach((input, index) => {
      job.inputs.set(index, input);
      job.queue.push(index);
    });
    this.jobs.set(meta.id, job);
    lane.ring.push(job);
    this.pump(lane);
    this.emit();
    return this.snapshot(job);
  }

  /** Queued tasks are dropped at once; running ones are aborted and recorded as cancelled. */
  async cancel(jobId: string): Promise<JobSnapshot> {
    const job = this.requireOwn(jobId);
    // A finished job keeps its state: there is nothing left to stop.
    if (job.counts.queued === 0 && job.counts.running === 0) return this.snapshot(job);
    const finishedAt = this.now().toISOString();
    const dropped: TaskRecord[] = [];
    for (let q = job.queueHead; q < job.queue.length; q++) {
      const index = job.queue[q] ?? 0;
      this.setState(job, index, 'cancelled');
      dropped.push({ index, state: 'cancelled', attempt: job.attempts[index] ?? 1, finishedAt, error: { code: 'CANCELLED', message: 'Cancelled before it started.' } });
    }
    job.queue = [];
    job.queueHead = 0;
    job.inputs.clear();
    const lane = this.lanes.get(job.meta.kind);
    if (lane && lane.ring.includes(job)) {
      lane.ring.splice(lane.ring.indexOf(job), 1);
      if (lane.next >= lane.ring.length) lane.next = 0;
    }
    job.prepareAbort?.abort(new MonitorError('CANCELLED', 'Job cancelled.'));
    for (const controller of job.running.values()) controller.abort(new MonitorError('CANCELLED', 'Job cancelled.'));
    if (job.meta.cancelledAt === undefined) job.meta.cancelledAt = finishedAt;
    job.applied += dropped.length;
    if (dropped.length > 0) await this.store.appendResults(jobId, dropped);
    await this.store.writeMeta(job.meta);
    await this.finishIfDone(job);
    this.emit();
    return this.snapshot(job);
  }

  /** Queues interrupted (and, if asked, failed or cancelled) tasks of a job again, in the same job. */
  async resume(jobId: string, include: { failed?: boolean; cancelled?: boolean } = {}): Promise<{ snapshot: JobSnapshot; requeued: number }> {
    const job = this.requireOwn(jobId);
    const lane = this.lanes.get(job.meta.kind);
    if (!lane) throw new MonitorError('JOB_NOT_RESUMABLE', `Job ${jobId} is of kind "${job.meta.kind}", which this server does not run.`);
    const wanted = new Set<number>([code('interrupted')]);
    if (include.failed) wanted.add(code('failed'));
    if (include.cancelled) wanted.add(code('cancelled'));
    const indices: number[] = [];
    job.states.forEach((state, index) => {
      if (wanted.has(state)) indices.push(index);
    });
    if (indices.length === 0) return { snapshot: this.snapshot(job), requeued: 0 };
    const inputs = await this.store.readInputs(jobId);
    for (const index of indices) {
      this.setState(job, index, 'queued');
      job.attempts[index] = (job.attempts[index] ?? 1) + 1;
      job.inputs.set(index, inputs[index]);
      job.queue.push(index);
    }
    delete job.meta.finishedAt;
    delete job.meta.cancelledAt;
    this.stampOwner(job.meta);
    await this.store.writeMeta(job.meta);
    if (!lane.ring.includes(job)) lane.ring.push(job);
    this.pump(lane);
    this.emit();
    return { snapshot: this.snapshot(job), requeued: indices.length };
  }

  get(jobId: string): JobSnapshot | undefined {
    const job = this.jobs.get(jobId);
    return job && this.snapshot(job);
  }

  /** Throws JOB_NOT_FOUND with a hint, for tools. */
  snapshotOf(jobId: string): JobSnapshot {
    return this.snapshot(this.require(jobId));
  }

  meta(jobId: string): JobMeta {
    return this.require(jobId).meta;
  }

  list(): JobSnapshot[] {
    return [...this.jobs.values()].map((job) => this.snapshot(job)).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  /** Finished-task records in finish order; waits for queued appends, so "done" implies "all here". */
  async results(jobId: string): Promise<readonly TaskRecord[]> {
    this.require(jobId);
    await this.store.flush(jobId);
    return this.store.readResults(jobId);
  }

  outputDir(jobId: string): string {
    return this.store.outputDir(jobId);
  }

  /** Called on every task state change (coalescing is the listener's business). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Waits until every listed job has no queued or running task, `timeoutMs` passes, or `signal`
   * aborts; then resolves (never rejects). `onUpdate` runs after each change.
   */
  async waitFor(jobIds: readonly string[], timeoutMs: number, signal?: AbortSignal, onUpdate?: () => void): Promise<boolean> {
    await this.refresh(jobIds);
    const done = (): boolean => jobIds.every((id) => this.isDone(id));
    if (done() || timeoutMs <= 0 || signal?.aborted) return done();
    // Jobs of another server process change only on disk: poll those.
    const foreign = jobIds.filter((id) => this.jobs.get(id)?.foreign);
    await new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        clearInterval(poll);
        unsubscribe();
        signal?.removeEventListener('abort', finish);
        resolve();
      };
      const timer = setTimeout(finish, timeoutMs);
      const poll =
        foreign.length > 0
          ? setInterval(() => {
              void this.refresh(foreign).then(() => this.emit(), () => undefined);
            }, 500)
          : undefined;
      const unsubscribe = this.onChange(() => {
        onUpdate?.();
        if (done()) finish();
      });
      signal?.addEventListener('abort', finish, { once: true });
    });
    await this.store.flush();
    return done();
  }

  isDone(jobId: string): boolean {
    const job = this.jobs.get(jobId);
    return job === undefined || (job.counts.queued === 0 && job.counts.running === 0);
  }

  /**
   * Stops taking work and aborts what runs, without recording it: those tasks load as
   * `interrupted` next time, exactly as after a crash, and can be resumed.
   */
  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    for (const job of this.jobs.values()) {
      job.prepareAbort?.abort(new MonitorError('CANCELLED', 'Server shutting down.'));
      for (const controller of job.running.values()) controller.abort(new MonitorError('CANCELLED', 'Server shutting down.'));
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      }),
    ]);
    clearTimeout(timer);
    await this.store.flush();
  }

  private require(jobId: string): JobRuntime {
    const job = this.jobs.get(jobId);
    if (!job) {
      throw new MonitorError('JOB_NOT_FOUND', `No job "${jobId}" here.`, {
        hint: `Call list_jobs for the known job ids; jobs are removed ${this.retentionDays} days after they finish.`,
      });
    }
    return job;
  }

  private requireOwn(jobId: string): JobRuntime {
    const job = this.require(jobId);
    if (job.foreign) {
      throw new MonitorError('JOB_NOT_RESUMABLE', `Job ${jobId} is run by another monitor-mcp process (pid ${job.meta.ownerPid ?? '?'}) on the same state directory.`, {
        hint: 'Cancel or resume it from the client session that started it; its results are collectable from here.',
      });
    }
    return job;
  }

  private newRuntime(meta: JobMeta): JobRuntime {
    const job: JobRuntime = {
      meta,
      states: new Uint8Array(meta.taskCount),
      attempts: new Uint16Array(meta.taskCount).fill(1),
      counts: { total: meta.taskCount, queued: meta.taskCount, running: 0, succeeded: 0, failed: 0, cancelled: 0, interrupted: 0 },
      inputs: new Map(),
      queue: [],
      queueHead: 0,
      running: new Map(),
      peakRunning: meta.peakRunning ?? 0,
      usage: { promptTokens: 0, completionTokens: 0 },
      foreign: false,
      applied: 0,
    };
    return job;
  }

  private applyRecord(job: JobRuntime, record: TaskRecord): void {
    if (record.index < 0 || record.index >= job.meta.taskCount) return;
    this.setState(job, record.index, record.state);
    job.attempts[record.index] = record.attempt;
    if (record.usage) {
      job.usage.promptTokens += record.usage.promptTokens;
      job.usage.completionTokens += record.usage.completionTokens;
    }
  }

  private setState(job: JobRuntime, index: number, state: TaskState): void {
    const previous = STATE_CODES[job.states[index] ?? 0] ?? 'queued';
    job.counts[previous]--;
    job.counts[state]++;
    job.states[index] = code(state);
  }

  private pump(lane: Lane): void {
    while (!this.closing && lane.running < lane.pool.concurrency && lane.ring.length > 0) {
      let picked: JobRuntime | undefined;
      for (let tries = 0; tries < lane.ring.length; tries++) {
        const at = (lane.next + tries) % lane.ring.length;
        const job = lane.ring[at];
        if (job && job.queueHead < job.queue.length && job.running.size < job.meta.concurrency * (lane.pool.prefetch ?? 1)) {
          picked = job;
          lane.next = at + 1;
          break;
        }
      }
      if (!picked) break;
      const index = picked.queue[picked.queueHead++] ?? 0;
      if (picked.queueHead === picked.queue.length) {
        picked.queue = [];
        picked.queueHead = 0;
        lane.ring.splice(lane.ring.indexOf(picked), 1);
        if (lane.next > 0) lane.next--;
      }
      this.dispatch(lane, picked, index);
    }
    if (lane.next >= lane.ring.length) lane.next = 0;
  }

  private dispatch(lane: Lane, job: JobRuntime, index: number): void {
    const controller = new AbortController();
    const input = job.inputs.get(index);
    job.inputs.delete(index);
    job.running.set(index, controller);
    job.peakRunning = Math.max(job.peakRunning, job.running.size);
    lane.running++;
    this.setState(job, index, 'running');
    const startedAt = this.now();
    const run = this.runTask(lane.pool, job, index, input, controller.signal)
      .then(async (result) => {
        job.running.delete(index);
        lane.running--;
        await this.record(job, index, startedAt, controller.signal, result);
      })
      .catch((error: unknown) => this.log.error(`task ${index} of ${job.meta.id}: ${String(error)}`))
      .finally(() => {
        this.inFlight.delete(run);
        this.pump(lane);
        this.emit();
      });
    this.inFlight.add(run);
  }

  private async runTask(pool: Pool, job: JobRuntime, index: number, input: unknown, signal: AbortSignal): Promise<TaskResult> {
    try {
      if (pool.prepareJob && !job.prepared) {
        job.prepareAbort = new AbortController();
        job.prepared = pool
          .prepareJob({ jobId: job.meta.id, options: job.meta.options, signal: job.prepareAbort.signal })
          .catch((error: unknown) => this.log.warn(`preparing job ${job.meta.id} failed, its tasks run anyway: ${String(error)}`));
      }
      if (job.prepared) await job.prepared;
      signal.throwIfAborted();
      return await pool.run({
        jobId: job.meta.id,
        index,
        input,
        options: job.meta.options,
        outputDir: this.store.outputDir(job.meta.id),
        attempt: job.attempts[index] ?? 1,
        signal,
      });
    } catch (error) {
      return { ok: false, error: toTaskError(signal.aborted ? signal.reason : error) };
    }
  }

  private async record(job: JobRuntime, index: number, startedAt: Date, signal: AbortSignal, result: TaskResult): Promise<void> {
    if (this.closing && signal.aborted && !result.ok) {
      // Not recorded on purpose: the next start sees it as interrupted, ready to resume.
      this.setState(job, index, 'interrupted');
      return;
    }
    const finishedAt = this.now();
    // Work that completed is kept even if a cancel or shutdown arrived meanwhile.
    const state = result.ok ? 'succeeded' : signal.aborted ? 'cancelled' : 'failed';
    const record: TaskRecord = {
      index,
      state,
      attempt: job.attempts[index] ?? 1,
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      durationMs: finishedAt.getTime() - startedAt.getTime(),
    };
    if (result.value !== undefined) record.value = result.value;
    if (state === 'cancelled') record.error = { code: 'CANCELLED', message: 'Cancelled while running; its process was stopped.' };
    else if (result.error) record.error = result.error;
    if (result.files) record.files = result.files;
    if (result.usage) record.usage = result.usage;
    this.applyRecord(job, record);
    job.applied++;
    try {
      await this.store.appendResult(job.meta.id, record);
    } catch (error) {
      job.storeError = `task ${index}'s result could not be saved (${String(error)}); it will show as interrupted after a restart`;
      throw error;
    }
    await this.finishIfDone(job);
  }

  private async finishIfDone(job: JobRuntime): Promise<void> {
    if (job.counts.queued > 0 || job.counts.running > 0 || job.meta.finishedAt !== undefined) return;
    job.meta.finishedAt = this.now().toISOString();
    job.meta.peakRunning = job.peakRunning;
    await this.store.writeMeta(job.meta);
  }

  private snapshot(job: JobRuntime): JobSnapshot {
    const { meta, counts } = job;
    const end = meta.finishedAt ? Date.parse(meta.finishedAt) : this.now().getTime();
    const snapshot: JobSnapshot = {
      id: meta.id,
      kind: meta.kind,
      state: deriveState(counts, meta),
      createdAt: meta.createdAt,
      concurrency: meta.concurrency,
      counts: { ...counts },
      elapsedMs: Math.max(0, end - Date.parse(meta.createdAt)),
      // Prefetched tasks wait inside their pool; at most `concurrency` of them really run.
      peakRunning: (this.lanes.get(meta.kind)?.pool.prefetch ?? 1) > 1 ? Math.min(job.peakRunning, meta.concurrency) : job.peakRunning,
      usage: { ...job.usage },
    };
    if (meta.label !== undefined) snapshot.label = meta.label;
    if (meta.finishedAt !== undefined) snapshot.finishedAt = meta.finishedAt;
    if (job.foreign && meta.ownerPid !== undefined) snapshot.ownerPid = meta.ownerPid;
    if (job.storeError !== undefined) snapshot.warning = job.storeError;
    return snapshot;
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}

function deriveState(counts: JobCounts, meta: JobMeta): JobState {
  if (counts.running > 0) return 'running';
  if (counts.queued > 0) return counts.queued === counts.total ? 'queued' : 'running';
  if (counts.interrupted > 0) return 'interrupted';
  if (meta.cancelledAt !== undefined || counts.cancelled > 0) return 'cancelled';
  if (counts.failed > 0) return 'failed';
  return 'succeeded';
}
