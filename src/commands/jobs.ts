import type { DashboardJob, DashboardTask } from '../dashboard/data.js';
import { terminalValue as shown } from '../terminal.js';
import { formatAge, formatDuration } from '../tools/format.js';

/**
 * The job table for a person (`monitor-mcp jobs`), from what the dashboard reads (DashboardData):
 * every job of every server on the state directory; an unfinished job whose server is gone shows
 * as interrupted, with the call that resumes it.
 */
export function renderJobTable(
  jobs: readonly DashboardJob[],
  stateDir: string,
  now: number,
  /** Why there are none (DashboardState.state_dir_note): "the folder does not exist", say. */
  emptyNote?: string,
): string {
  // Every value from outside (labels, ids, paths, messages) is one line with its control characters escaped.
  if (jobs.length === 0) return `No jobs in ${shown(stateDir)}${emptyNote ? ` (${emptyNote})` : ''}.\n`;
  const table: string[][] = [
    ['JOB', 'KIND', 'LABEL', 'STATE', 'TASKS', 'OK', 'FAILED', 'CANCELLED', 'PENDING', 'WALL', 'ETA', 'CREATED'],
  ];
  for (const job of jobs) {
    table.push([
      job.id,
      job.kind,
      (job.label ?? '').slice(0, 24),
      job.state,
      String(job.tasks),
      String(job.succeeded),
      String(job.failed),
      String(job.cancelled),
      String(job.pending),
      formatDuration(job.elapsed_ms),
      job.eta_ms === undefined ? '' : formatDuration(job.eta_ms),
      // A damaged job has no time that can be trusted.
      job.created_at === '' ? '' : formatAge(job.created_at, now),
    ]);
  }
  const notes = jobs.filter((job) => job.next !== undefined).map((job) => shown(`${job.id}: ${job.next ?? ''}`));
  return `${columns(table)}\n${notes.length > 0 ? `\n${notes.join('\n')}\n` : ''}\nState directory: ${shown(stateDir)}\n`;
}

/** One job (`monitor-mcp jobs JOB_ID`): its state, then each task with its latest result. */
export function renderJobDetail(detail: { job: DashboardJob; tasks: readonly DashboardTask[] }, now: number): string {
  const { job, tasks } = detail;
  const lines = [
    `${shown(job.id)} [${job.kind}${job.label ? `: ${shown(job.label)}` : ''}] ${job.state}: ${job.succeeded + job.failed + job.cancelled}/${job.tasks} done (${job.succeeded} ok, ${job.failed} failed, ${job.cancelled} cancelled, ${job.pending} pending)`,
    `created ${formatAge(job.created_at, now)}; wall ${formatDuration(job.elapsed_ms)}${job.eta_ms === undefined ? '' : `; about ${formatDuration(job.eta_ms)} left`}${job.owner ? `; server pid ${job.owner.pid}${job.owner.alive ? '' : ' (gone)'}` : ''}${job.runs_on ? `; runs on ${shown(job.runs_on)}${job.upstream_tasks ? ` (${job.upstream_tasks.done}/${job.upstream_tasks.total} done)` : ''}` : ''}`,
  ];
  if (job.next) lines.push(shown(job.next));
  const table: string[][] = [['#', 'STATE', 'ATTEMPT', 'DURATION', 'ID', 'ERROR']];
  for (const task of tasks) {
    const error = task.error ? `${task.error.code}: ${task.error.message}`.replace(/\s+/g, ' ').slice(0, 100) : '';
    table.push([
      String(task.index),
      task.state,
      task.attempt === undefined ? '' : String(task.attempt),
      task.duration_ms === undefined ? '' : formatDuration(task.duration_ms),
      (task.id ?? '').slice(0, 60),
      error,
    ]);
  }
  return `${lines.join('\n')}\n\n${columns(table)}\n`;
}

function columns(cells: readonly string[][]): string {
  const table = cells.map((row) => row.map(shown));
  const widths = table[0]?.map((_, col) => Math.max(...table.map((row) => (row[col] ?? '').length))) ?? [];
  return table
    .map((row) =>
      row
        .map((cell, col) => cell.padEnd(widths[col] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
