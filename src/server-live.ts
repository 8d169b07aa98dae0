import type { Engine } from './engine/engine.js';
import type { Ownership } from './engine/types.js';
import { type ControlReply, type ControlRequest, LivePublisher } from './live/publisher.js';
import type { Logger } from './log.js';
import type { LiveCard } from './pools/kind.js';
import type { BuiltKind } from './registry.js';

export interface LiveControlDeps {
  stateDir: string;
  version: string;
  engine: Engine;
  kinds: readonly BuiltKind[];
  ownership: Ownership;
  log: Logger;
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
    figures: () => liveFigures(kinds),
    tasks: () =>
      engine.runningProgress().map(({ jobId, index, updatedAt, ...progress }) => ({
        job_id: jobId,
        index,
        updated_at: updatedAt,
        ...progress,
      })),
    handles: async (jobId) => {
      await engine.refresh([jobId]);
      const job = engine.get(jobId);
      return job !== undefined && job.ownerPid === undefined;
    },
    act: (request) => actOn(engine, request, ownership.pid),
  });
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
  // The dashboard's Resume runs whatever did not succeed: interrupted, failed and cancelled tasks.
  const { snapshot, requeued } = await engine.resume(request.job_id, { failed: true, cancelled: true });
  return { ok: true, message: `Resumed ${snapshot.id}: ${requeued} task(s) queued again.`, by_pid: pid };
}
