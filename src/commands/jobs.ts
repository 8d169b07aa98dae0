import { silentLogger } from '../log.js';
import type { JobMeta, TaskRecord } from '../store/records.js';
import { JobStore } from '../store/store.js';
import { formatAge, formatDuration } from '../tools/format.js';

/** Tells whether the server process that owns a job still runs (pid, and its start time where known). */
export type OwnerAlive = (pid: number, start?: string) => boolean;

/** One job as a person (or a script) reading the state directory sees it. */
export interface JobRow {
  id: string;
  kind: string;
  label?: string;
  /** queued, running, succeeded, failed, cancelled, or interrupted: unfinished and its server gone. */
  state: string;
  tasks: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  /** Tasks with no result yet (queued or running, or cut off when the job is interrupted). */
  pending: number;
  elapsedMs: number;
  /** Time left at the rate so far, for a running job that has finished some tasks. */
  etaMs?: number;
  createdAt: string;
  finishedAt?: string;
  /** The server process running it, for an unfinished job, and whether it still runs. */
  owner?: { pid: number; alive: boolean };
  /** What to do about it (an interrupted job: resume it). */
  next?: string;
  /** A later stage of a pipeline: the job it runs on. */
  runsOn?: string;
}

/**
 * Every job of the state directory, newest first. Read-only: a server may be running on it, so
 * nothing is marked or taken over here; an unfinished job whose server is gone shows as
 * interrupted (what the next server to start on the directory will make of it).
 */
export async function readJobRows(stateDir: string, now: number, alive: OwnerAlive): Promise<JobRow[]> {
  const store = new JobStore(stateDir, silentLogger);
  const metas = (await store.loadAllReadOnly()).reverse();
  const rows: JobRow[] = [];
  for (const meta of metas) rows.push(jobRow(meta, latestOf(await store.readResults(meta.id)), await ownerOf(store, meta, alive), now));
  return rows;
}

/** One job and its tasks' latest results, or undefined when there is no such job. */
export async function readJobDetail(stateDir: string, jobId: string, now: number, alive: OwnerAlive): Promise<{ row: JobRow; records: TaskRecord[] } | undefined> {
  if (!JobStore.isJobId(jobId)) return undefined;
  const store = new JobStore(stateDir, silentLogger);
  const meta = await store.readMeta(jobId).catch(() => undefined);
  if (!meta) return undefined;
  const latest = latestOf(await store.readResults(jobId));
  return { row: jobRow(meta, latest, await ownerOf(store, meta, alive), now), records: [...latest.values()].sort((a, b) => a.index - b.index) };
}

function latestOf(records: readonly TaskRecord[]): Map<number, TaskRecord> {
  const latest = new Map<number, TaskRecord>();
  for (const record of records) latest.set(record.index, record);
  return latest;
}

/** The server running an unfinished job: the latest claim (a takeover) or the metadata's owner. */
async function ownerOf(store: JobStore, meta: JobMeta, alive: OwnerAlive): Promise<JobRow['owner']> {
  if (meta.finishedAt !== undefined) return undefined;
  const claim = await store.readClaim(meta.id);
  const pid = claim && claim.pid > 0 && claim.generation >= (meta.ownerGeneration ?? 0) ? claim.pid : meta.ownerPid;
  if (pid === undefined) return undefined;
  const start = claim && claim.pid === pid ? claim.start : meta.ownerStart;
  return { pid, alive: alive(pid, start) };
}

function jobRow(meta: JobMeta, latest: ReadonlyMap<number, TaskRecord>, owner: JobRow['owner'], now: number): JobRow {
  let succeeded = 0;
  let failed = 0;
  let cancelled = 0;
  for (const record of latest.values()) {
    if (record.state === 'succeeded') succeeded++;
    else if (record.state === 'failed') failed++;
    else cancelled++;
  }
  const pending = meta.taskCount - latest.size;
  const end = meta.finishedAt ? Date.parse(meta.finishedAt) : now;
  const elapsedMs = Math.max(0, end - Date.parse(meta.createdAt));
  const row: JobRow = { id: meta.id, kind: meta.kind, state: 'succeeded', tasks: meta.taskCount, succeeded, failed, cancelled, pending, elapsedMs, createdAt: meta.createdAt };
  if (meta.label !== undefined) row.label = meta.label;
  if (meta.finishedAt !== undefined) row.finishedAt = meta.finishedAt;
  if (meta.after) row.runsOn = meta.after.job;
  if (owner) row.owner = owner;
  const running = meta.finishedAt === undefined && owner?.alive === true;
  if (running) {
    row.state = latest.size === 0 ? 'queued' : 'running';
    const done = latest.size;
    if (done > 0 && pending > 0) row.etaMs = Math.round((elapsedMs / done) * pending);
  } else if (pending > 0) {
    row.state = 'interrupted';
    row.next = `${owner && !owner.alive ? `Its server (pid ${owner.pid}) is gone. ` : ''}resume_job with {"job_id":"${meta.id}"} runs its ${pending} unfinished task(s) again.`;
  } else if (meta.cancelledAt !== undefined || cancelled > 0) row.state = 'cancelled';
  else if (failed > 0) row.state = 'failed';
  return row;
}

/** The job table (`monitor-mcp jobs`). */
export function renderJobTable(rows: readonly JobRow[], stateDir: string, now: number): string {
  if (rows.length === 0) return `No jobs in ${stateDir}.\n`;
  const table: string[][] = [['JOB', 'KIND', 'LABEL', 'STATE', 'TASKS', 'OK', 'FAILED', 'CANCELLED', 'PENDING', 'WALL', 'ETA', 'CREATED']];
  for (const row of rows) {
    table.push([
      row.id,
      row.kind,
      (row.label ?? '').slice(0, 24),
      row.state,
      String(row.tasks),
      String(row.succeeded),
      String(row.failed),
      String(row.cancelled),
      String(row.pending),
      formatDuration(row.elapsedMs),
      row.etaMs === undefined ? '' : formatDuration(row.etaMs),
      formatAge(row.createdAt, now),
    ]);
  }
  const notes = rows.filter((row) => row.next !== undefined).map((row) => `${row.id}: ${row.next ?? ''}`);
  return `${columns(table)}\n${notes.length > 0 ? `\n${notes.join('\n')}\n` : ''}\nState directory: ${stateDir}\n`;
}

/** One job (`monitor-mcp jobs JOB_ID`): its state, then each task with its latest result. */
export function renderJobDetail(detail: { row: JobRow; records: readonly TaskRecord[] }, now: number): string {
  const { row, records } = detail;
  const lines = [
    `${row.id} [${row.kind}${row.label ? `: ${row.label}` : ''}] ${row.state}: ${row.succeeded + row.failed + row.cancelled}/${row.tasks} done (${row.succeeded} ok, ${row.failed} failed, ${row.cancelled} cancelled, ${row.pending} pending)`,
    `created ${formatAge(row.createdAt, now)} ago; wall ${formatDuration(row.elapsedMs)}${row.etaMs === undefined ? '' : `; about ${formatDuration(row.etaMs)} left`}${row.owner ? `; server pid ${row.owner.pid}${row.owner.alive ? '' : ' (gone)'}` : ''}${row.runsOn ? `; runs on ${row.runsOn}` : ''}`,
  ];
  if (row.next) lines.push(row.next);
  const table: string[][] = [['#', 'STATE', 'ATTEMPT', 'DURATION', 'ID', 'ERROR']];
  const byIndex = new Map(records.map((record) => [record.index, record]));
  for (let index = 0; index < row.tasks; index++) {
    const record = byIndex.get(index);
    if (!record) {
      table.push([String(index), row.state === 'interrupted' ? 'interrupted' : 'pending', '', '', '', '']);
      continue;
    }
    const error = record.error ? `${record.error.code}: ${record.error.message}`.replace(/\s+/g, ' ').slice(0, 100) : '';
    table.push([String(index), record.state, String(record.attempt), record.durationMs === undefined ? '' : formatDuration(record.durationMs), (record.label ?? '').slice(0, 60), error]);
  }
  return `${lines.join('\n')}\n\n${columns(table)}\n`;
}

function columns(table: readonly string[][]): string {
  const widths = table[0]?.map((_, col) => Math.max(...table.map((row) => (row[col] ?? '').length))) ?? [];
  return table.map((row) => row.map((cell, col) => cell.padEnd(widths[col] ?? 0)).join('  ').trimEnd()).join('\n');
}
