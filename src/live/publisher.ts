import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';

/** How often a running server rewrites its live file (its heartbeat) and looks for control requests. */
export const LIVE_INTERVAL_MS = 1000;
/** A live file older than this is a server that stopped without removing it (killed). */
export const LIVE_STALE_MS = 5000;
/** A control request nobody took within this long is answered by the dashboard itself. */
export const CONTROL_TIMEOUT_MS = 5000;

/** What a running server publishes for the dashboard and `monitor-mcp jobs` (`live/<pid>.json`). */
export interface LiveFile {
  pid: number;
  start?: string;
  version: string;
  started_at: string;
  heartbeat_at: string;
  /** Each kind's live figures (the LLM endpoints: slots busy, queue, tokens/s). */
  pools: Record<string, unknown>;
}

/** A cancel or resume asked by the dashboard, for the server that runs the job (`control/<id>.json`). */
export interface ControlRequest {
  action: 'cancel' | 'resume';
  job_id: string;
  at: string;
}

export interface ControlReply {
  ok: boolean;
  message: string;
  by_pid: number;
}

export interface LivePublisherOptions {
  stateDir: string;
  pid: number;
  start?: string;
  version: string;
  log: Logger;
  /** Each kind's live figures, read every beat (cheap: counters the pools keep anyway). */
  figures(): Record<string, unknown>;
  /**
   * Whether this server should act on a request about `jobId`: it runs the job, or no live server
   * does (a dead server's job, which any server can take over, as resume_job does).
   */
  handles(jobId: string): Promise<boolean>;
  act(request: ControlRequest): Promise<ControlReply>;
  now?: () => Date;
  intervalMs?: number;
}

export const liveDir = (stateDir: string): string => path.join(stateDir, 'live');
export const controlDir = (stateDir: string): string => path.join(stateDir, 'control');

/**
 * A running server's heartbeat: every second it rewrites `live/<pid>.json` (one small atomic
 * write) and looks in `control/` for a dashboard's cancel or resume of a job it handles. A request
 * is taken by renaming it (one server wins), answered in `<id>.reply.json`.
 */
export class LivePublisher {
  private readonly options: LivePublisherOptions;
  private readonly file: string;
  private readonly startedAt: string;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private closed = false;

  constructor(options: LivePublisherOptions) {
    this.options = options;
    this.file = path.join(liveDir(options.stateDir), `${options.pid}.json`);
    this.startedAt = this.now().toISOString();
  }

  async start(): Promise<void> {
    await mkdir(liveDir(this.options.stateDir), { recursive: true, mode: 0o700 });
    await mkdir(controlDir(this.options.stateDir), { recursive: true, mode: 0o700 });
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
    const dir = controlDir(this.options.stateDir);
    const names = (await readdir(dir).catch(() => [])).filter((name) => /^req-[\w-]+\.json$/.test(name));
    for (const name of names) {
      const request = await readFile(path.join(dir, name), 'utf8')
        .then((text) => JSON.parse(text) as ControlRequest)
        .catch(() => undefined);
      if (!request || !(await this.options.handles(request.job_id).catch(() => false))) continue;
      const taken = path.join(dir, `${name.slice(0, -'.json'.length)}.taken-${this.options.pid}`);
      // Renamed by one server only: another that read it too finds it gone.
      if (
        !(await rename(path.join(dir, name), taken).then(
          () => true,
          () => false,
        ))
      )
        continue;
      const reply = await this.options.act(request).catch((error: unknown) => ({
        ok: false,
        message: error instanceof Error ? error.message : String(error),
        by_pid: this.options.pid,
      }));
      await writeFile(path.join(dir, `${name.slice(0, -'.json'.length)}.reply.json`), JSON.stringify(reply), {
        mode: 0o600,
      });
      await rm(taken, { force: true });
    }
  }
}

/** The live files of the servers that beat recently (a killed server's file goes stale). */
export async function readLiveServers(stateDir: string, now: number): Promise<LiveFile[]> {
  const dir = liveDir(stateDir);
  const names = (await readdir(dir).catch(() => [])).filter((name) => /^\d+\.json$/.test(name));
  const live: LiveFile[] = [];
  for (const name of names) {
    const file = await readFile(path.join(dir, name), 'utf8')
      .then((text) => JSON.parse(text) as LiveFile)
      .catch(() => undefined);
    if (file && now - Date.parse(file.heartbeat_at) <= LIVE_STALE_MS) live.push(file);
  }
  return live;
}
