import type { Engine } from './engine/engine.js';
import type { Ownership } from './engine/types.js';
import { type ControlReply, type ControlRequest, LivePublisher } from './live/publisher.js';
import type { Logger } from './log.js';
import type { LiveCard } from './pools/kind.js';
import type { BuiltKind } from './registry.js';
import { StateReader } from './store/reader.js';

export interface LiveControlDeps {
  stateDir: string;
  version: string;
  engine: Engine;
  kinds: readonly BuiltKind[];
  ownership: Ownership;
  log: Logger;
  /** How often the live file beats and control/ is looked at (tests); LIVE_INTERVAL_MS otherwise. */
  intervalMs?: number;
}

/**
 * The dashboard's view of this server and its hand on it: every kind's live figures published,
 * and the dashboard's cancel and resume requests acted on for the jobs this server handles.
 * Nothing runs until the publisher's start().
 */
export function liveControl(deps: LiveControlDeps): LivePublisher {
  const { engine, kinds, ownership } = deps;
  return new LivePublisher({
    stateDir: deps.stateDir,
    pid: ownership.pid,
    ...(ownership.startToken === undefined ? {} : { start: ownership.startToken }),
    version: deps.version,
    log: deps.log,
    ...(deps.intervalMs === undefined ? {} : { intervalMs: deps.intervalMs }),
    figures: () => liveFigures(kinds),
    tasks: () =>
      engine.runningProgress().map(({ jobId, index, updatedAt, ...progress }) => ({
        job_id: jobId,
        index,
        updated_at: updatedAt,
        ...progress,
      })),
    handles: (jobId) => handles(deps, jobId),
    act: (request) => actOn(engine, request, ownership.pid),
  });
}

/**
 * Whether this server acts on a dashboard's request about `jobId`. Every server on the state
 * directory sees the request, and the first to rename it acts: so only the job's owner does while
 * it is alive and listening (its live file beats), and any other only once the owner is gone, as
 * resume_job would take it over. A job another live server runs is never acted on here.
 */
async function handles(deps: LiveControlDeps, jobId: string): Promise<boolean> {
  const { engine, ownership } = deps;
  await engine.refresh([jobId]);
  const job = engine.get(jobId);
  if (job === undefined || job.ownerPid !== undefined) return false;
  // A finished job is not "run" by anyone, but its last owner still takes what is asked about it.
  const { ownerPid, ownerStart } = engine.meta(jobId);
  if (ownerPid === undefined || ownerPid === ownership.pid || !ownership.isAlive(ownerPid, ownerStart)) return true;
  const live = await new StateReader(deps.stateDir, deps.log).liveServers(Date.now());
  return !live.some((server) => server.pid === ownerPid);
}

/** Each kind's live cards, under its name (kinds without any are left out). */
function liveFigures(kinds: readonly BuiltKind[]): Record<string, LiveCard[]> {
  const figures: Record<string, LiveCard[]> = {};
  for (const kind of kinds) {
    const cards = kind.instance.live?.();
    if (cards !== undefined) figures[kind.name] = cards;
  }
  return figures;
}

/** Carries out a dashboard's request. */
async function actOn(engine: Engine, request: ControlRequest, pid: number): Promise<ControlReply> {
  if (request.action === 'cancel') {
    const job = await engine.cancel(request.job_id);
    return { ok: true, message: `Cancelled ${job.id}: it is ${job.state}.`, by_pid: pid };
  }
  if (request.action === 'resume') {
    // The dashboard's Resume runs whatever did not succeed: interrupted, failed and cancelled tasks.
    const { snapshot, requeued } = await engine.resume(request.job_id, { failed: true, cancelled: true });
    return { ok: true, message: `Resumed ${snapshot.id}: ${requeued} task(s) queued again.`, by_pid: pid };
  }
  // Never reached through ControlFiles (its schema refuses it first): an unknown action is no resume.
  const action = String((request as { action: unknown }).action);
  return { ok: false, message: `Refused: "${action}" is no action (only cancel and resume are).`, by_pid: pid };
}
