import { MonitorError } from '../errors.js';
import type { EngineContext } from './context.js';
import type { OtherServers } from './foreign.js';
import type { Job } from './job.js';
import type { Pipelines } from './pipelines.js';

/** The engine's parts a resume works through. */
export interface ResumeParts {
  ctx: EngineContext;
  others: OtherServers;
  pipelines: Pipelines;
}

/**
 * Queues a job's interrupted (and, if asked, failed, cancelled or succeeded) tasks again, in the
 * same job, taking it over first (see OtherServers.own); returns how many. A later stage's tasks
 * wait for their upstream again.
 */
export async function requeueJob(
  { ctx, others, pipelines }: ResumeParts,
  job: Job,
  include: { failed?: boolean; cancelled?: boolean; succeeded?: boolean },
): Promise<number> {
  const { store, scheduler } = ctx;
  if (!scheduler.pool(job.meta.kind))
    throw new MonitorError(
      'JOB_NOT_RESUMABLE',
      `Job ${job.id} is of kind "${job.meta.kind}", which this server does not run.`,
    );
  const wanted = [
    'interrupted',
    ...(include.failed ? (['failed'] as const) : []),
    ...(include.cancelled ? (['cancelled'] as const) : []),
    ...(include.succeeded ? (['succeeded'] as const) : []),
  ] as const;
  // Another server's job: as it is now (its owner may be gone, or have finished it).
  await others.catchUp(job);
  // Nothing to run again: no need to take the job over.
  if (!job.foreign && job.isDone && job.indicesIn(wanted).length === 0) return 0;
  const generation = await others.own(job);
  const indices = job.indicesIn(wanted);
  if (indices.length === 0) {
    // Still running here (a pipeline resumed while a stage runs): it keeps its owner.
    if (job.isDone) job.owned = false;
    return 0;
  }
  const inputs = await store.readInputs(job.id);
  // Runs cut off by a crash left no record, but they count.
  job.countRuns(await store.readRuns(job.id));
  // Tasks queued again over their record: noted before the metadata says the job runs, so a crash
  // from here on leaves them unfinished (interrupted), not as their records say.
  const overRecords = indices.filter((index) => job.isRecorded(index));
  if (overRecords.length > 0) await store.appendRequeued(job.id, overRecords);
  for (const index of overRecords) job.requeueOver(index);
  for (const index of indices) {
    if (job.meta.after) job.hold(index, inputs[index]);
    else job.enqueue(index, inputs[index]);
  }
  delete job.meta.finishedAt;
  delete job.meta.cancelledAt;
  others.stamp(job.meta, generation);
  await store.writeMeta(job.meta);
  if (job.meta.after) await pipelines.feedHeld(job);
  else scheduler.add(job);
  ctx.emit();
  return indices.length;
}
