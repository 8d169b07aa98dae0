import type { DamagedJob } from '../store/records.js';

/**
 * A damaged job as the dashboard and `monitor-mcp jobs` show it (a DashboardJob, typed by its
 * shape since data.ts imports this module): nothing of it counted, the file and why said.
 */
export function damagedView(found: DamagedJob, folder: string) {
  const damaged: { path: string; reason: string; moved_to?: string } = { path: found.path, reason: found.reason };
  if (found.moved_to !== undefined) damaged.moved_to = found.moved_to;
  return {
    id: found.id,
    kind: '',
    state: 'damaged',
    tasks: 0,
    succeeded: 0,
    failed: 0,
    cancelled: 0,
    pending: 0,
    running: 0,
    elapsed_ms: 0,
    concurrency: 0,
    peak_running: 0,
    created_at: '',
    failures: [] as Array<{ code: string; count: number; example: string }>,
    damaged,
    next: `Damaged: ${found.path}: ${found.reason}. Inspect the folder ${folder} and remove it when done; the other jobs are not affected.`,
  };
}
