import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { readLiveServers } from '../live/publisher.js';
import { silentLogger } from '../log.js';
import type { JobMeta, TaskRecord } from '../store/records.js';
import { JobStore } from '../store/store.js';

/** Tells whether the server process that owns a job still runs (pid, and its start time where known). */
export type OwnerAlive = (pid: number, start?: string) => boolean;

/** One job as the dashboard and `monitor-mcp jobs` show it (JSON: also `GET /api/jobs`, `jobs --json`). */
export interface DashboardJob {
  id: string;
  kind: string;
  label?: string;
  state: string;
  tasks: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  pending: number;
  elapsed_ms: number;
  eta_ms?: number;
  concurrency: number;
  peak_running: number;
  created_at: string;
  finished_at?: string;
  /** Failures by error code: how many, and one message as an example. */
  failures: Array<{ code: string; count: number; example: string }>;
  /** LLM jobs: tokens processed and generated per second of wall time. */
  tokens?: { prompt: number; completion: number; per_second: number };
  owner?: { pid: number; alive: boolean };
  runs_on?: string;
  next?: string;
}

export interface DashboardTask {
  index: number;
  state: string;
  attempt?: number;
  duration_ms?: number;
  id?: string;
  /** The start of its output or error, bounded: the page shows it as text. */
  preview?: string;
  error?: { code: string; message: string };
  files?: Record<string, string>;
}

export interface DashboardState {
  state_dir: string;
  generated_at: string;
  jobs: DashboardJob[];
  /** Running servers on the state directory (their heartbeat is fresh). */
  servers: Array<{ pid: number; version: string; started_at: string; heartbeat_at: string }>;
  /** LLM endpoints as their servers see them (slots busy, queue, models, tokens/s). */
  endpoints: Array<Record<string, unknown>>;
}

/** How much of a task's output the detail view shows. */
const PREVIEW_CHARS = 400;

interface Tail {
  offset: number;
  latest: Map<number, TaskRecord>;
  partial: string;
}

/**
 * The state directory as the dashboard shows it: every job of every server, and the live figures
 * servers publish. Read-only. Results files are read incrementally (only what was appended since
 * the last look), so a poll costs little however large the jobs are.
 */
export class DashboardData {
  private readonly stateDir: string;
  private readonly store: JobStore;
  private readonly alive: OwnerAlive;
  private readonly tails = new Map<string, Tail>();
  private readonly metas = new Map<string, { mtimeMs: number; meta: JobMeta }>();

  constructor(stateDir: string, alive: OwnerAlive) {
    this.stateDir = stateDir;
    this.store = new JobStore(stateDir, silentLogger);
    this.alive = alive;
  }

  async snapshot(now: number): Promise<DashboardState> {
    const ids = (await readdir(path.join(this.stateDir, 'jobs')).catch(() => [])).filter((id) => JobStore.isJobId(id));
    const jobs: DashboardJob[] = [];
    for (const id of ids) {
      const meta = await this.meta(id);
      if (!meta) continue;
      jobs.push(await this.job(meta, now));
    }
    jobs.sort((a, b) => b.created_at.localeCompare(a.created_at));
    for (const id of this.tails.keys()) if (!ids.includes(id)) this.tails.delete(id);
    const live = await readLiveServers(this.stateDir, now);
    const endpoints = live.flatMap((server) => {
      const llm = server.pools.llm as { endpoints?: Array<Record<string, unknown>> } | undefined;
      return (llm?.endpoints ?? []).map((endpoint) => ({ ...endpoint, server_pid: server.pid }));
    });
    return {
      state_dir: this.stateDir,
      generated_at: new Date(now).toISOString(),
      jobs,
      servers: live.map((server) => ({
        pid: server.pid,
        version: server.version,
        started_at: server.started_at,
        heartbeat_at: server.heartbeat_at,
      })),
      endpoints,
    };
  }

  /** One job's tasks, each with its latest result (at most `limit`, from `offset`). */
  async tasks(
    jobId: string,
    offset = 0,
    limit = 500,
  ): Promise<{ job: DashboardJob; tasks: DashboardTask[]; total: number } | undefined> {
    if (!JobStore.isJobId(jobId)) return undefined;
    const meta = await this.meta(jobId);
    if (!meta) return undefined;
    const job = await this.job(meta, Date.now());
    const latest = this.tails.get(jobId)?.latest ?? new Map<number, TaskRecord>();
    const tasks: DashboardTask[] = [];
    for (let index = offset; index < Math.min(meta.taskCount, offset + limit); index++) {
      const record = latest.get(index);
      tasks.push(record ? taskView(record) : { index, state: job.state === 'interrupted' ? 'interrupted' : 'pending' });
    }
    return { job, tasks, total: meta.taskCount };
  }

  private async meta(id: string): Promise<JobMeta | undefined> {
    const file = path.join(this.stateDir, 'jobs', id, 'job.json');
    const info = await stat(file).catch(() => undefined);
    if (!info) return undefined;
    const known = this.metas.get(id);
    if (known && known.mtimeMs === info.mtimeMs) return known.meta;
    const meta = await readFile(file, 'utf8')
      .then((text) => JSON.parse(text) as JobMeta)
      .catch(() => undefined);
    if (meta) this.metas.set(id, { mtimeMs: info.mtimeMs, meta });
    return meta ?? known?.meta;
  }

  private async job(meta: JobMeta, now: number): Promise<DashboardJob> {
    const latest = await this.latest(meta.id);
    const failures = new Map<string, { count: number; example: string }>();
    let succeeded = 0;
    let failed = 0;
    let cancelled = 0;
    let prompt = 0;
    let completion = 0;
    for (const record of latest.values()) {
      if (record.state === 'succeeded') succeeded++;
      else if (record.state === 'failed') failed++;
      else cancelled++;
      if (record.state === 'failed' && record.error) {
        const group = failures.get(record.error.code) ?? { count: 0, example: record.error.message.slice(0, 300) };
        group.count++;
        failures.set(record.error.code, group);
      }
      const value = record.value as { tokens_in?: unknown; tokens_out?: unknown } | undefined;
      if (typeof value?.tokens_in === 'number') prompt += value.tokens_in;
      if (typeof value?.tokens_out === 'number') completion += value.tokens_out;
    }
    const pending = meta.taskCount - latest.size;
    const end = meta.finishedAt ? Date.parse(meta.finishedAt) : now;
    const elapsed = Math.max(0, end - Date.parse(meta.createdAt));
    const owner = meta.finishedAt === undefined ? await this.owner(meta) : undefined;
    const job: DashboardJob = {
      id: meta.id,
      kind: meta.kind,
      state: 'succeeded',
      tasks: meta.taskCount,
      succeeded,
      failed,
      cancelled,
      pending,
      elapsed_ms: elapsed,
      concurrency: meta.concurrency,
      peak_running: meta.peakRunning ?? 0,
      created_at: meta.createdAt,
      failures: [...failures].map(([code, group]) => ({ code, ...group })).sort((a, b) => b.count - a.count),
    };
    if (meta.label !== undefined) job.label = meta.label;
    if (meta.finishedAt !== undefined) job.finished_at = meta.finishedAt;
    if (meta.after) job.runs_on = meta.after.job;
    if (owner) job.owner = owner;
    if (prompt + completion > 0)
      job.tokens = { prompt, completion, per_second: elapsed > 0 ? Math.round(completion / (elapsed / 1000)) : 0 };
    if (meta.finishedAt === undefined && owner?.alive) {
      job.state = latest.size === 0 ? 'queued' : 'running';
      if (latest.size > 0 && pending > 0) job.eta_ms = Math.round((elapsed / latest.size) * pending);
    } else if (pending > 0) {
      job.state = 'interrupted';
      job.next = `${owner && !owner.alive ? `Its server (pid ${owner.pid}) is gone. ` : ''}resume_job with {"job_id":"${meta.id}"} (or Resume on the dashboard) runs its ${pending} unfinished task(s) again.`;
    } else if (meta.cancelledAt !== undefined || cancelled > 0) job.state = 'cancelled';
    else if (failed > 0) job.state = 'failed';
    return job;
  }

  private async owner(meta: JobMeta): Promise<DashboardJob['owner']> {
    const claim = await this.store.readClaim(meta.id);
    const pid = claim && claim.pid > 0 && claim.generation >= (meta.ownerGeneration ?? 0) ? claim.pid : meta.ownerPid;
    if (pid === undefined) return undefined;
    const start = claim && claim.pid === pid ? claim.start : meta.ownerStart;
    return { pid, alive: this.alive(pid, start) };
  }

  /** Each task's latest record, reading only what was appended to results.jsonl since the last call. */
  private async latest(jobId: string): Promise<Map<number, TaskRecord>> {
    const tail = this.tails.get(jobId) ?? { offset: 0, latest: new Map<number, TaskRecord>(), partial: '' };
    this.tails.set(jobId, tail);
    const handle = await open(path.join(this.stateDir, 'jobs', jobId, 'results.jsonl'), 'r').catch(() => undefined);
    if (!handle) return tail.latest;
    try {
      const { size } = await handle.stat();
      if (size < tail.offset) {
        // Rewritten (a job cleaned up and recreated): read it again from the start.
        tail.offset = 0;
        tail.latest.clear();
        tail.partial = '';
      }
      if (size === tail.offset) return tail.latest;
      const buffer = Buffer.alloc(size - tail.offset);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, tail.offset);
      tail.offset += bytesRead;
      const text = tail.partial + buffer.subarray(0, bytesRead).toString('utf8');
      const lines = text.split('\n');
      tail.partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        try {
          const record = JSON.parse(line) as TaskRecord;
          tail.latest.set(record.index, record);
        } catch {
          // A torn line from a crash: the store skips it too.
        }
      }
      return tail.latest;
    } finally {
      await handle.close();
    }
  }
}

function taskView(record: TaskRecord): DashboardTask {
  const view: DashboardTask = { index: record.index, state: record.state, attempt: record.attempt };
  if (record.durationMs !== undefined) view.duration_ms = record.durationMs;
  if (record.label !== undefined) view.id = record.label;
  if (record.error) view.error = { code: record.error.code, message: record.error.message.slice(0, PREVIEW_CHARS) };
  const value = record.value as { text?: unknown; json?: unknown; stderr_tail?: unknown } | undefined;
  const output =
    typeof value?.text === 'string'
      ? value.text
      : value?.json !== undefined
        ? JSON.stringify(value.json)
        : typeof value?.stderr_tail === 'string'
          ? value.stderr_tail
          : undefined;
  if (output !== undefined)
    view.preview = output.length > PREVIEW_CHARS ? `${output.slice(0, PREVIEW_CHARS)}…` : output;
  if (record.files) view.files = record.files;
  return view;
}
