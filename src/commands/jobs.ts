import type { JobMeta } from '../store/records.js';
import { silentLogger } from '../log.js';
import { JobStore } from '../store/store.js';
import { formatAge, formatDuration } from '../tools/format.js';

/**
 * The job table for a human (`monitor-mcp jobs`). Read-only: a server may be running on the same
 * state directory, so this never marks anything interrupted; unfinished tasks show as "pending".
 */
export async function renderJobTable(stateDir: string, now: number): Promise<string> {
  const store = new JobStore(stateDir, silentLogger);
  const metas = (await store.loadAllReadOnly()).reverse();
  if (metas.length === 0) return `No jobs in ${stateDir}.\n`;
  const rows: string[][] = [['JOB', 'KIND', 'LABEL', 'TASKS', 'OK', 'FAILED', 'CANCELLED', 'PENDING', 'WALL', 'CREATED']];
  for (const meta of metas) {
    const latest = new Map<number, string>();
    for (const record of await store.readResults(meta.id)) latest.set(record.index, record.state);
    const count = (state: string): number => [...latest.values()].filter((s) => s === state).length;
    rows.push([
      meta.id,
      meta.kind,
      (meta.label ?? '').slice(0, 24),
      String(meta.taskCount),
      String(count('succeeded')),
      String(count('failed')),
      String(count('cancelled')),
      String(meta.taskCount - latest.size),
      wall(meta, now),
      formatAge(meta.createdAt, now),
    ]);
  }
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length))) ?? [];
  const lines = rows.map((row) => row.map((cell, col) => cell.padEnd(widths[col] ?? 0)).join('  ').trimEnd());
  return `${lines.join('\n')}\n\nState directory: ${stateDir}\n`;
}

function wall(meta: JobMeta, now: number): string {
  const end = meta.finishedAt ? Date.parse(meta.finishedAt) : now;
  return formatDuration(end - Date.parse(meta.createdAt));
}
