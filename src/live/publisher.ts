import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import type { Logger } from '../log.js';
import { type ControlReply, ControlFiles, type ControlRequest } from '../store/control.js';
import { StateLayout } from '../store/layout.js';
import type { LiveFile, LiveTaskProgress } from '../store/records.js';

export type { ControlReply, ControlRequest } from '../store/control.js';

/** How often a running server rewrites its live file (its heartbeat) and looks for control requests. */
export const LIVE_INTERVAL_MS = 1000;
/** A control request nobody took within this long is answered by the dashboard itself. */
export const CONTROL_TIMEOUT_MS = 5000;

export interface LivePublisherOptions {
  stateDir: string;
  pid: number;
  start?: string;
  version: string;
  log: Logger;
  /** Each kind's live figures, read every beat (cheap: counters the pools keep anyway). */
  figures(): Record<string, unknown>;
  /** The last progress of the running tasks that report any, read every beat (bounded by the engine). */
  tasks?(): LiveTaskProgress[];
  /**
   * Whether this server should act on a request about `jobId`: it runs the job, or no live server
   * does (a dead server's job, which any server can take over, as resume_job does).
   */
  handles(jobId: string): Promise<boolean>;
  act(request: ControlRequest): Promise<ControlReply>;
  now?: () => Date;
  intervalMs?: number;
}

/**
 * A running server's heartbeat: every second it rewrites its live file (one small write, renamed
 * into place) and looks for a dashboard's cancel or resume of a job it handles (ControlFiles: one
 * server takes a request, and answers it).
 */
export class LivePublisher {
  private readonly options: LivePublisherOptions;
  private readonly layout: StateLayout;
  private readonly control: ControlFiles;
  private readonly file: string;
  private readonly startedAt: string;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private closed = false;

  constructor(options: LivePublisherOptions) {
    this.options = options;
    this.layout = new StateLayout(options.stateDir);
    this.control = new ControlFiles(options.stateDir);
    this.file = this.layout.liveFile(options.pid);
    this.startedAt = this.now().toISOString();
  }

  async start(): Promise<void> {
    await mkdir(this.layout.liveDir, { recursive: true, mode: 0o700 });
    await mkdir(this.layout.controlDir, { recursive: true, mode: 0o700 });
    await this.beat();
    this.timer = setInterval(() => {
      // One beat at a time: a slow disk skips beats rather than piling them up.
      this.beating ??= this.beat().finally(() => {
        this.beating = undefined;
      });
    }, this.options.intervalMs ?? LIVE_INTERVAL_MS);
    this.timer.unref();
  }

  /** Stops beating and removes the live file: a server that stopped cleanly is not "gone". */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.beating;
    await rm(this.file, { force: true });
  }

  private now(): Date {
    return (this.options.now ?? (() => new Date()))();
  }

  private async beat(): Promise<void> {
    if (this.closed) return;
    const live: LiveFile = {
      pid: this.options.pid,
      version: this.options.version,
      started_at: this.startedAt,
      heartbeat_at: this.now().toISOString(),
      pools: this.options.figures(),
    };
    if (this.options.start !== undefined) live.start = this.options.start;
    const tasks = this.options.tasks?.();
    if (tasks !== undefined && tasks.length > 0) live.tasks = tasks;
    try {
      // Renamed into place (a reader never sees half a file) but not fsynced: a live file is worth
      // nothing after a crash, and an fsync a second would flush the journal under a busy job's appends.
      const temp = `${this.file}.tmp`;
      await writeFile(temp, `${JSON.stringify(live)}\n`, { mode: 0o600 });
      await rename(temp, this.file);
      await this.takeRequests();
    } catch (error) {
      this.options.log.debug(`live figures: ${String(error)}`);
    }
  }

  private async takeRequests(): Promise<void> {
    const { pid } = this.options;
    for (const { name, request } of await this.control.waiting()) {
      if (!(await this.options.handles(request.job_id).catch(() => false))) continue;
      await this.control.take(name, pid, () =>
        this.options.act(request).catch((error: unknown) => ({
          ok: false,
          message: error instanceof Error ? error.message : String(error),
          by_pid: pid,
        })),
      );
    }
  }
}
