import type { LiveFile, LiveTaskProgress, TaskRecord } from '../store/records.js';

/** What a running task has done so far, as the page shows it. */
export interface TaskProgressView {
  summary: string;
  figures?: Record<string, number | string>;
  updated_at: string;
}

/** A job's running tasks that report progress: how many, and the most recent one's. */
export interface JobProgressView {
  tasks: number;
  index: number;
  latest: string;
}

/** The running tasks' progress the live servers publish, by job id then task index (the latest report wins). */
export type RunningTasks = ReadonlyMap<string, ReadonlyMap<number, LiveTaskProgress>>;

/** Every live server's running tasks, by job and index (the store's reader has bounded each file's list). */
export function runningTasksOf(live: readonly LiveFile[]): RunningTasks {
  const byJob = new Map<string, Map<number, LiveTaskProgress>>();
  for (const server of live)
    for (const task of server.tasks ?? []) {
      const tasks = byJob.get(task.job_id) ?? new Map<number, LiveTaskProgress>();
      const known = tasks.get(task.index);
      if (!known || known.updated_at < task.updated_at) tasks.set(task.index, task);
      byJob.set(task.job_id, tasks);
    }
  return byJob;
}

/** A running job's progress line: its latest report, and how many of its tasks report. */
export function jobProgressOf(tasks: ReadonlyMap<number, LiveTaskProgress> | undefined): JobProgressView | undefined {
  let latest: LiveTaskProgress | undefined;
  for (const task of tasks?.values() ?? []) if (!latest || latest.updated_at < task.updated_at) latest = task;
  return latest && { tasks: tasks?.size ?? 0, index: latest.index, latest: latest.summary };
}

/**
 * The live progress of a task, unless its record is newer (the task ended since its server's last
 * beat): a task resumed after a failure runs again past its old record.
 */
export function liveProgressOf(
  live: LiveTaskProgress | undefined,
  record: TaskRecord | undefined,
): LiveTaskProgress | undefined {
  if (!live) return undefined;
  return record === undefined || record.finishedAt < live.updated_at ? live : undefined;
}

export function progressView(live: LiveTaskProgress): TaskProgressView {
  const view: TaskProgressView = { summary: live.summary, updated_at: live.updated_at };
  if (live.figures) view.figures = live.figures;
  return view;
}
