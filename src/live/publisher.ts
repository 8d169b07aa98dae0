import { mkdir, rm } from 'node:fs/promises';
import type { Logger } from '../log.js';
import { writeFileAtomic } from '../store/atomic.js';
import { type ControlReply, ControlFiles, type ControlRequest } from '../store/control.js';
import { StateLayout } from '../store/layout.js';
import type { LiveFile, LiveTaskProgress } from '../store/records.js';

export type { ControlReply, ControlRequest } from '../store/control.js';

/** How often a running server rewrites its live file (its heartbeat) and looks for control requests. */
export const LIVE_INTERVAL_MS = 1000;
/** A control request nobody took within this long is answered by the dashboard itself. */
export const CONTROL_TIMEOUT_MS = 5000;
/** How often `control/` is swept of what nobody will use (old requests and replies). */
const SWEEP_MS = 60_000;
/** How long close() waits for a beat or a request under way (an act is the engine's cancel or resume). */
const CLOSE_WAIT_MS = 3000;

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
   * Whether this server should act on a request about `jobId`: it owns the job (runs it, or ran it
   * last and still listens), or its owner is gone (a dead server's job, which any server can take
   * over, as resume_job does).
   */
  handles(jobId: string): Promise<boolean>;
  act(request: ControlRequest): Promise<ControlReply>;
  now?: () => Date;
  intervalMs?: number;
}

/**
 * A running server's heartbeat: every second it rewrites its live file (one small write, renamed
 * into place) and, apart from it, looks for a dashboard's cancel or resume of a job it handles
 * (ControlFiles: one server takes a request, and answers it). The two never wait on each other:
 * a slow cancel or a hostile file in `control/` cannot stop the heartbeat.
 */
export class LivePublisher {
  private readonly options: LivePublisherOptions;
  private readonly layout: StateLayout;
  private readonly control: ControlFiles;
  private readonly file: string;
  private readonly startedAt: string;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private looking: Promise<void> | undefined;
  private sweptAt = 0;
  /** The last failure of each of the two loops, said as a warning once while it lasts. */
  private readonly failures = new Map<string, string>();
  private closed = false;

  constructor(options: LivePublisherOptions) {
    this.options = options;
    this.layout = new StateLayout(options.stateDir);
    this.control = new ControlFiles(options.stateDir, options.log);
    this.file = this.layout.liveFile(options.pid);
    this.startedAt = this.now().toISOString();
  }

  async start(): Promise<void> {
    await mkdir(this.layout.liveDir, { recursive: true, mode: 0o700 });
    // Without control/ (something else in its place) the dashboard cannot ask: said, and the heartbeat goes on.
    await mkdir(this.layout.controlDir, { recursive: true, mode: 0o700 }).catch((error: unknown) =>
      this.options.log.warn(`dashboard requests: ${String(error)}`),
    );
    await this.beat();
    this.timer = setInterval(() => {
      // One of each at a time: a slow disk skips beats and looks rather than piling them up.
      this.beating ??= this.beat().finally(() => {
        this.beating = undefined;
      });
      this.looking ??= this.look().finally(() => {
        this.looking = undefined;
      });
    }, this.options.intervalMs ?? LIVE_INTERVAL_MS);
    this.timer.unref();
  }

  /** Stops beating and removes the live file: a server that stopped cleanly is not "gone". */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    // Bounded: a request being acted on gets its answer written, but a wedged one cannot hold the shutdown.
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([this.beating, this.looking]),
      new Promise((resolve) => (timeout = setTimeout(resolve, CLOSE_WAIT_MS))),
    ]);
    clearTimeout(timeout);
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
    // Renamed into place (a reader never sees half a file; a symlink or FIFO planted at its name is
    // replaced) but not fsynced: a live file is worth nothing after a crash, and an fsync a second
    // would flush the journal under a busy job's appends.
    await writeFileAtomic(this.file, `${JSON.stringify(live)}\n`, { durable: false }).then(
      () => this.failures.delete('live figures'),
      (error: unknown) => this.failed('live figures', error),
    );
  }

  /** The dashboard's requests waiting, and (once a minute) what nobody will use removed. */
  private async look(): Promise<void> {
    if (this.closed) return;
    try {
      await this.takeRequests();
      this.failures.delete('dashboard requests');
      if (Date.now() - this.sweptAt >= SWEEP_MS) {
        this.sweptAt = Date.now();
        await this.control.sweep();
      }
    } catch (error) {
      this.failed('dashboard requests', error);
    }
  }

  private async takeRequests(): Promise<void> {
    const { pid } = this.options;
    for (const { name, request } of await this.control.waiting(pid)) {
      if (this.closed) return;
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

  /** A failure said once as a warning while it lasts (it repeats every second), then in the debug log. */
  private failed(what: string, error: unknown): void {
    const message = `${what}: ${String(error)}`;
    if (this.failures.get(what) === message) this.options.log.debug(message);
    else this.options.log.warn(message);
    this.failures.set(what, message);
  }
}
