import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { type Logger, silentLogger } from '../log.js';
import { stateOnDisk, type TasksOnDisk } from '../store/job-state.js';
import { StateLayout } from '../store/layout.js';
import { StateReader } from '../store/reader.js';
import { DamagedRecordError, type JobMeta, type LiveFile, type TaskRecord } from '../store/records.js';
import { damagedView } from './damaged.js';
import type { JobTotals, TotalsView } from '../engine/types.js';
import type { LiveCard } from '../pools/kind.js';
import { previewOf, unverifiedNote } from '../store/result.js';
import type { TranscriptTail } from '../store/transcript.js';
import {
  type JobProgressView,
  jobProgressOf,
  liveProgressOf,
  progressView,
  type RunningTasks,
  runningTasksOf,
  type TaskProgressView,
} from './progress.js';
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
  /** Tasks not finished: running (a run started, not recorded), queued, or interrupted. */
  pending: number;
  /** Of those, running (at most the job's concurrency). */
  running: number;
  elapsed_ms: number;
  eta_ms?: number;
  concurrency: number;
  peak_running: number;
  created_at: string;
  finished_at?: string;
  /** Failures by error code: how many, and one message as an example. */
  failures: Array<{ code: string; count: number; example: string }>;
  /** The kind's totals over the results so far (tokens processed, say), as the kind phrases them. */
  totals?: TotalsView;
  owner?: { pid: number; alive: boolean };
  runs_on?: string;
  /** While its tasks wait for the job it runs on (a reduce's map): that job's tasks done and in all. */
  upstream_tasks?: { done: number; total: number };
  next?: string;
  /** While it runs: its tasks that report progress (an agent's steps), and the latest report. */
  progress?: JobProgressView;
  /** State `damaged`: the file that fails its check and why (its figures are all 0: nothing of it is read). */
  damaged?: { path: string; reason: string; moved_to?: string };
}

export interface DashboardTask {
  index: number;
  state: string;
  attempt?: number;
  duration_ms?: number;
  id?: string;
  /** The start of its output or error, bounded: the page shows it as text. */
  preview?: string;
  /** Its answer failed its checks (kept with verified: false): why, bounded. */
  unverified?: string;
  error?: { code: string; message: string };
  files?: Record<string, string>;
  /** A running task's last progress, from its server's live file. */
  progress?: TaskProgressView;
  /** It has a transcript: GET /api/jobs/<id>/tasks/<index>/transcript reads its end. */
  transcript?: boolean;
}

export interface DashboardState {
  state_dir: string;
  generated_at: string;
  jobs: DashboardJob[];
  /** With no job: why, said beside "no jobs in <state_dir>" (a mistyped --state-dir shows as such). */
  state_dir_note?: string;
  /** Running servers on the state directory (their heartbeat is fresh). */
  servers: Array<{ pid: number; version: string; started_at: string; heartbeat_at: string }>;
  /** Every kind's live cards (LLM endpoints, the script and HTTP pools), with the server that reports each. */
  capacity: Array<LiveCard & { kind: string; server_pid: number }>;
}

/** The most slots a live card may draw. */
const MAX_CARD_SLOTS = 1024;
/** Cards per kind and kinds per server, the characters of a card's texts, points of its chart. */
const MAX_CARDS = 64;
const MAX_CARD_TEXT = 200;
const MAX_RATE_POINTS = 120;

/** How much of a task's output the detail view shows. */
const PREVIEW_CHARS = 400;

/**
 * The state directory as the dashboard and `monitor-mcp jobs` show it: every job of every server,
 * and the live figures servers publish. A view over the store's reader (StateReader), which reads
 * results files incrementally, so a poll costs little however large the jobs are. Read-only.
 */
export class DashboardData {
  private readonly stateDir: string;
  private readonly reader: StateReader;
  private readonly alive: OwnerAlive;
  private readonly totals: ReadonlyMap<string, JobTotals<unknown>>;

  /** `log` hears of damaged jobs, which are left out; `totals` are the kinds' own, by kind name. */
  constructor(
    stateDir: string,
    alive: OwnerAlive,
    log: Logger = silentLogger,
    totals: ReadonlyMap<string, JobTotals<unknown>> = new Map(),
  ) {
    this.totals = totals;
    this.stateDir = stateDir;
    // Every job's results stay read: the page polls them all several times a second.
    this.reader = new StateReader(stateDir, log, { cachedJobs: Number.POSITIVE_INFINITY });
    this.alive = alive;
  }

  async snapshot(now: number): Promise<DashboardState> {
    const { metas, damaged } = await this.reader.scanJobs(true);
    const live = await this.reader.liveServers(now);
    const running = runningTasksOf(live);
    const jobs: DashboardJob[] = [];
    for (const meta of metas) jobs.push(await this.jobOrDamaged(meta, now, running));
    jobs.sort((a, b) => b.created_at.localeCompare(a.created_at));
    // Listed after the others: a damaged job has no time of its own that can be trusted.
    jobs.push(...damaged.map((found) => damagedView(found, this.reader.jobDir(found.id))));
    const note = jobs.length === 0 ? await emptyStateDirNote(this.stateDir) : undefined;
    return {
      state_dir: this.stateDir,
      generated_at: new Date(now).toISOString(),
      jobs,
      ...(note === undefined ? {} : { state_dir_note: note }),
      servers: live.map((server) => ({
        pid: server.pid,
        version: server.version,
        started_at: server.started_at,
        heartbeat_at: server.heartbeat_at,
      })),
      capacity: capacityOf(live),
    };
  }

  /**
   * One job's tasks, each with its latest result (at most `limit`, from `offset`); `only: 'failed'`:
   * its failed tasks alone (`total` counts them), so a few failures among thousands are found.
   */
  async tasks(
    jobId: string,
    offset = 0,
    limit = 500,
    only?: 'failed',
  ): Promise<{ job: DashboardJob; tasks: DashboardTask[]; total: number } | undefined> {
    if (!StateReader.isJobId(jobId)) return undefined;
    const meta = await this.reader.jobOrDamaged(jobId);
    if (!meta) return undefined;
    if ('reason' in meta) return { job: damagedView(meta, this.reader.jobDir(jobId)), tasks: [], total: 0 };
    const now = Date.now();
    const running = runningTasksOf(await this.reader.liveServers(now));
    const job = await this.jobOrDamaged(meta, now, running);
    if (job.damaged) return { job, tasks: [], total: 0 };
    const latest = await this.reader.latestResults(jobId);
    const live = job.progress ? running.get(jobId) : undefined;
    const ownerRuns = job.owner?.alive === true;
    const { running: started, unfinished } = stateOnDisk(meta, await this.onDisk(jobId, ownerRuns), ownerRuns);
    const tasks: DashboardTask[] = [];
    if (only === 'failed') {
      const failed = [...latest.values()].filter((r) => r.state === 'failed').sort((a, b) => a.index - b.index);
      return { job, tasks: failed.slice(offset, offset + limit).map(taskView), total: failed.length };
    }
    for (let index = offset; index < Math.min(meta.taskCount, offset + limit); index++) {
      // A task queued again by a resume: its record is of an earlier attempt.
      const record = unfinished.has(index) ? undefined : latest.get(index);
      const progress = liveProgressOf(live?.get(index), record);
      if (progress)
        tasks.push({ index, state: 'running', progress: progressView(progress), transcript: !!progress.transcript });
      else if (record) tasks.push(taskView(record));
      else tasks.push({ index, state: started.has(index) ? 'running' : ownerRuns ? 'pending' : 'interrupted' });
    }
    return { job, tasks, total: meta.taskCount };
  }

  /**
   * The end of a task's transcript: the running task's (from its server's live file), else its
   * record's `files.transcript`. Undefined when there is none; throws TranscriptRefused for a path
   * the store will not read (outside the job's output folder, a symlink).
   */
  async transcript(jobId: string, index: number): Promise<(TranscriptTail & { file: string }) | undefined> {
    if (!StateReader.isJobId(jobId) || !(await this.reader.knownMeta(jobId))) return undefined;
    const record = (await this.reader.latestResults(jobId)).get(index);
    const live = runningTasksOf(await this.reader.liveServers(Date.now()))
      .get(jobId)
      ?.get(index);
    const file = liveProgressOf(live, record)?.transcript ?? record?.files?.transcript;
    if (file === undefined) return undefined;
    try {
      return { file, ...(await this.reader.transcript(jobId, file)) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** The job, or, when a file of it fails on reading (its results file is a FIFO, say), the job as damaged. */
  private async jobOrDamaged(meta: JobMeta, now: number, running: RunningTasks): Promise<DashboardJob> {
    try {
      return await this.job(meta, now, running);
    } catch (error) {
      if (!(error instanceof DamagedRecordError)) throw error;
      return damagedView({ id: meta.id, path: error.file, reason: error.reason }, this.reader.jobDir(meta.id));
    }
  }

  private async job(meta: JobMeta, now: number, running: RunningTasks): Promise<DashboardJob> {
    const latest = await this.reader.latestResults(meta.id);
    const end = meta.finishedAt ? Date.parse(meta.finishedAt) : now;
    const elapsed = Math.max(0, end - Date.parse(meta.createdAt));
    const owner = meta.finishedAt === undefined ? await this.owner(meta) : undefined;
    const runs = owner?.alive === true;
    const { state, counts } = stateOnDisk(meta, await this.onDisk(meta.id, runs), runs);
    const pending = counts.queued + counts.running + counts.interrupted;
    const job: DashboardJob = {
      id: meta.id,
      kind: meta.kind,
      state,
      tasks: meta.taskCount,
      succeeded: counts.succeeded,
      failed: counts.failed,
      cancelled: counts.cancelled,
      pending,
      running: counts.running,
      elapsed_ms: elapsed,
      concurrency: meta.concurrency,
      peak_running: meta.peakRunning ?? 0,
      created_at: meta.createdAt,
      failures: failuresOf(latest.values()),
    };
    if (meta.label !== undefined) job.label = meta.label;
    if (meta.finishedAt !== undefined) job.finished_at = meta.finishedAt;
    if (meta.after) job.runs_on = meta.after.job;
    if (meta.after && pending > 0) {
      const upstream = await this.reader.knownMeta(meta.after.job);
      // A damaged upstream is shown as such on its own row, not on this one.
      const done = upstream && (await this.reader.latestResults(upstream.id).catch(() => undefined))?.size;
      if (upstream && done !== undefined && done < upstream.taskCount)
        job.upstream_tasks = { done, total: upstream.taskCount };
    }
    if (owner) job.owner = owner;
    const totals = totalsOf(this.totals.get(meta.kind), latest.values(), meta, elapsed);
    if (totals) job.totals = totals;
    if (runs) {
      const progress = jobProgressOf(running.get(meta.id));
      if (progress) {
        job.progress = progress;
        // Queued on disk until its first result, but its server says tasks of it run.
        job.state = 'running';
      }
      if (latest.size > 0 && pending > 0) job.eta_ms = Math.round((elapsed / latest.size) * pending);
    } else if (pending > 0) {
      job.next = `${owner && !owner.alive ? `Its server (pid ${owner.pid}) is gone. ` : ''}resume_job with {"job_id":"${meta.id}"} (or Resume on the dashboard) runs its ${pending} unfinished task(s) again.`;
    }
    return job;
  }

  /** A job's tasks as its files show them (which started: only while its owner runs it). */
  private async onDisk(jobId: string, ownerRuns: boolean): Promise<TasksOnDisk> {
    const disk: TasksOnDisk = {
      records: await this.reader.readResults(jobId),
      latest: await this.reader.latestResults(jobId),
      requeued: await this.reader.readRequeued(jobId),
    };
    if (ownerRuns) disk.runs = await this.reader.readRuns(jobId);
    return disk;
  }

  private async owner(meta: JobMeta): Promise<DashboardJob['owner']> {
    const owner = await this.reader.ownerOf(meta);
    return owner && { pid: owner.pid, alive: this.alive(owner.pid, owner.start) };
  }
}

/** Why a state directory shows no job: it is not there, not a folder, empty, or has had no job yet. */
async function emptyStateDirNote(stateDir: string): Promise<string> {
  const info = await stat(stateDir).catch((error: unknown) => error as NodeJS.ErrnoException);
  if (info instanceof Error)
    return info.code === 'ENOENT' ? 'the folder does not exist' : `it cannot be read: ${info.code ?? info.message}`;
  if (!info.isDirectory()) return 'it is not a folder';
  const entries = new Set(await readdir(stateDir).catch(() => []));
  if (entries.size === 0) return 'the folder is empty';
  const layout = new StateLayout(stateDir);
  const ours = [layout.jobsDir, layout.liveDir, layout.changesFile].some((file) => entries.has(path.basename(file)));
  return ours ? 'no job there yet' : 'nothing of monitor-mcp in it: is it a state directory?';
}

/** Failures by error code, most frequent first, each with one message as an example. */
function failuresOf(records: Iterable<TaskRecord>): DashboardJob['failures'] {
  const failures = new Map<string, { count: number; example: string }>();
  for (const record of records) {
    if (record.state !== 'failed' || !record.error) continue;
    const group = failures.get(record.error.code) ?? { count: 0, example: record.error.message.slice(0, 300) };
    group.count++;
    failures.set(record.error.code, group);
  }
  return [...failures].map(([code, group]) => ({ code, ...group })).sort((a, b) => b.count - a.count);
}

/**
 * A job's totals as its kind keeps them (none without totals, or before any result counts); an unfinished
 * job's rates over the time to its latest result, so they stay put while nothing new comes (no push).
 */
function totalsOf(
  kindTotals: JobTotals<unknown> | undefined,
  records: Iterable<TaskRecord>,
  meta: JobMeta,
  elapsedMs: number,
): TotalsView | undefined {
  if (!kindTotals) return undefined;
  let sum: unknown;
  let latest = Number.NEGATIVE_INFINITY;
  for (const record of records) {
    if (record.value !== undefined) sum = kindTotals.add(sum, record.value);
    latest = Math.max(latest, Date.parse(record.finishedAt));
  }
  const span = meta.finishedAt === undefined ? latest - Date.parse(meta.createdAt) : elapsedMs;
  return sum === undefined ? undefined : kindTotals.view(sum, Number.isFinite(span) ? Math.max(0, span) : elapsedMs);
}

/** Every kind's live cards as the live servers publish them, each with its kind and server's pid. */
function capacityOf(live: readonly LiveFile[]): DashboardState['capacity'] {
  return live.flatMap((server) =>
    Object.entries(server.pools)
      .slice(0, MAX_CARDS)
      .flatMap(([kind, cards]) =>
        (Array.isArray(cards) ? cards.slice(0, MAX_CARDS) : [])
          .map(liveCardOf)
          .filter((card) => card !== undefined)
          .map((card) => ({ ...card, kind: kind.slice(0, MAX_CARD_TEXT), server_pid: server.pid })),
      ),
  );
}

const isCount = (n: unknown, max: number): n is number =>
  Number.isInteger(n) && (n as number) >= 0 && (n as number) <= max;
const shortText = (text: unknown): string | undefined =>
  typeof text === 'string' ? text.slice(0, MAX_CARD_TEXT) : undefined;

/**
 * A card from another server's file, rebuilt from what checks out: no card without a name and
 * counts a real pool could have; texts cut, the rate chart kept only as a short list of numbers.
 */
function liveCardOf(raw: unknown): LiveCard | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const { name, detail, busy, limit, waiting, reachable, rate } = raw as Record<string, unknown>;
  const cardName = shortText(name);
  // The page draws `limit` slots: a number past any real pool's is no card.
  if (cardName === undefined || !isCount(limit, MAX_CARD_SLOTS) || !isCount(busy, MAX_CARD_SLOTS)) return undefined;
  const card: LiveCard = { name: cardName, busy, limit };
  const detailText = shortText(detail);
  if (detailText !== undefined) card.detail = detailText;
  if (isCount(waiting, Number.MAX_SAFE_INTEGER)) card.waiting = waiting;
  if (typeof reachable === 'boolean') card.reachable = reachable;
  const chart = rateOf(rate);
  if (chart) card.rate = chart;
  return card;
}

function rateOf(raw: unknown): LiveCard['rate'] {
  if (raw === null || typeof raw !== 'object') return undefined;
  const { unit, series } = raw as Record<string, unknown>;
  const unitText = shortText(unit);
  if (unitText === undefined || !Array.isArray(series)) return undefined;
  const points = series
    .slice(-MAX_RATE_POINTS)
    .filter(
      (point): point is [number, number] =>
        Array.isArray(point) && point.length === 2 && point.every((n) => typeof n === 'number' && Number.isFinite(n)),
    );
  return { unit: unitText, series: points };
}

function taskView(record: TaskRecord): DashboardTask {
  const view: DashboardTask = { index: record.index, state: record.state, attempt: record.attempt };
  if (record.durationMs !== undefined) view.duration_ms = record.durationMs;
  if (record.label !== undefined) view.id = record.label;
  if (record.error) view.error = { code: record.error.code, message: record.error.message.slice(0, PREVIEW_CHARS) };
  const preview = previewOf(record, PREVIEW_CHARS);
  if (preview !== undefined) view.preview = preview;
  const unverified = unverifiedNote(record);
  if (unverified !== undefined) view.unverified = unverified;
  if (record.files) view.files = record.files;
  if (record.files?.transcript !== undefined) view.transcript = true;
  return view;
}
