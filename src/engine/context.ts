import type { Logger } from '../log.js';
import type { JobStore } from '../store/store.js';
import type { Job } from './job.js';
import type { Scheduler } from './scheduler.js';

/**
 * What the engine's parts share (engine.ts wires them): the jobs in memory, the store they are
 * kept in, the scheduler of the pools, the clock, and the signal that something changed.
 */
export interface EngineContext {
  readonly store: JobStore;
  readonly log: Logger;
  readonly jobs: Map<string, Job>;
  readonly scheduler: Scheduler;
  now(): Date;
  /** Tells the listeners (waitFor, a tool's progress) that a job changed. */
  emit(): void;
}
