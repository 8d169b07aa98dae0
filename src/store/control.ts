import { lstat, readdir, rename, unlink } from 'node:fs/promises';
import * as z from 'zod';
import { type Logger, silentLogger } from '../log.js';
import { StateLayout } from './layout.js';
import { writeFileAtomic } from './atomic.js';
import { DamagedRecordError, parseRecord } from './records.js';
import { readStateFile, readStateFileAndTime } from './safe-read.js';

/** A cancel or resume asked by the dashboard, for the server that runs the job (in `control/`). */
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

/** A request or a reply is a few hundred bytes: a bigger file is not one, and is never read whole. */
export const CONTROL_FILE_MAX_BYTES = 4096;
/**
 * The dashboard withdraws a request nobody took within CONTROL_TIMEOUT_MS (5 s): one still there
 * after this long is left over (its dashboard is gone), removed and never acted on late.
 */
export const REQUEST_STALE_MS = 60_000;
/** Replies nobody read, and anything else left in `control/`, are removed after this long. */
export const CONTROL_STALE_MS = 10 * 60_000;
/** A request that is not JSON yet may still be being written (by a writer that does not rename it into place). */
const WRITING_MS = 2000;
/** Requests read per look: a flood of them costs bounded work a second (the newest names first, as a dashboard's is). */
const MAX_REQUESTS_PER_LOOK = 64;
/** Names remembered as not removable (a directory planted in `control/`), so each is said once. */
const MAX_REMEMBERED = 1000;

const requestSchema: z.ZodType<ControlRequest> = z.object({
  action: z.enum(['cancel', 'resume']),
  job_id: z.string().refine((id) => StateLayout.isJobId(id), 'not a job id'),
  at: z.string().max(64),
});

const replySchema: z.ZodType<ControlReply> = z.object({
  ok: z.boolean(),
  message: z.string(),
  by_pid: z.number(),
});

/** What one look at a request file found. */
type Look =
  | { request: ControlRequest }
  /** A request that is wrong (not JSON, an unknown action): taken, and answered with why. */
  | { refused: string }
  /** Not a request at all (a FIFO, a symlink, a huge file) or left over: removed. */
  | { junk: string }
  /** Gone (another server took it), or perhaps still being written: looked at next time. */
  | undefined;

/**
 * The control files: how the dashboard hands a cancel or resume to the server that runs the job.
 * A request is a file; a server takes it by renaming it (of several, one wins) and answers in a
 * reply file beside it, which the dashboard reads and removes. Everything in `control/` is
 * untrusted: read only as a small regular file, written only by renaming a new file into place
 * (a symlink planted there is replaced, never followed), and removed once it is bad or old.
 */
export class ControlFiles {
  private readonly layout: StateLayout;
  private readonly log: Logger;
  private readonly unremovable = new Set<string>();

  constructor(stateDir: string, log: Logger = silentLogger) {
    this.layout = new StateLayout(stateDir);
    this.log = log;
  }

  /** The dashboard's side: writes a request, and returns where its answer will come and how to withdraw it. */
  async ask(request: ControlRequest, now: number): Promise<{ request: string; reply: string }> {
    const files = this.layout.newControlRequest(now);
    // Renamed into place: a server never sees half a request.
    await writeFileAtomic(files.request, JSON.stringify(request), { durable: false });
    return files;
  }

  /** The answer in `file`, once it is there (and whole). */
  async reply(file: string): Promise<ControlReply | undefined> {
    return readStateFile(file, CONTROL_FILE_MAX_BYTES)
      .then((text) => parseRecord(replySchema, text, file))
      .catch(() => undefined);
  }

  /**
   * A server's side: the requests waiting. A bad one is dealt with once, with a log line naming it:
   * a wrong request is answered (taken by `pid`, as any request), anything else is removed.
   */
  async waiting(pid: number, now = Date.now()): Promise<Array<{ name: string; request: ControlRequest }>> {
    const names = (await readdir(this.layout.controlDir).catch(() => []))
      .filter((name) => StateLayout.isControlRequest(name) && !this.unremovable.has(name))
      .sort()
      .reverse()
      .slice(0, MAX_REQUESTS_PER_LOOK);
    const found: Array<{ name: string; request: ControlRequest }> = [];
    for (const name of names) {
      const look = await this.look(name, now);
      if (look === undefined) continue;
      if ('request' in look) found.push({ name, request: look.request });
      else if ('refused' in look) await this.refuse(name, pid, look.refused);
      else await this.discard(name, look.junk);
    }
    return found;
  }

  /**
   * Takes a waiting request for the server `pid`, runs `act` and writes its answer. False when
   * another server took it first.
   */
  async take(name: string, pid: number, act: () => Promise<ControlReply>): Promise<boolean> {
    const files = this.layout.controlFilesOf(name, pid);
    // Renamed by one server only: another that read it too finds it gone.
    const taken = await rename(files.request, files.taken).then(
      () => true,
      () => false,
    );
    if (!taken) return false;
    const reply = await act();
    await writeFileAtomic(files.reply, JSON.stringify(reply), { durable: false }).catch((error: unknown) =>
      this.log.warn(`control: could not answer ${files.reply}: ${String(error)}`),
    );
    await unlink(files.taken).catch(() => undefined);
    return true;
  }

  /**
   * Removes what nobody will use: requests nobody took (REQUEST_STALE_MS), replies nobody read and
   * anything else (CONTROL_STALE_MS). Only files: a directory planted here is left, and said once.
   */
  async sweep(now = Date.now()): Promise<void> {
    const entries = await readdir(this.layout.controlDir).catch(() => []);
    for (const name of entries) {
      if (this.unremovable.has(name)) continue;
      const file = this.layout.controlFile(name);
      const info = await lstat(file).catch(() => undefined);
      if (!info) continue;
      if (info.isDirectory()) {
        this.remember(name);
        this.log.warn(`control: ${file} is a directory, which nothing here makes: left alone, remove it by hand`);
        continue;
      }
      const request = StateLayout.isControlRequest(name);
      const age = now - info.mtimeMs;
      if (age <= (request ? REQUEST_STALE_MS : CONTROL_STALE_MS)) continue;
      const minutes = Math.round(age / 60_000);
      await this.discard(name, `${request ? 'a request nobody took' : 'left over'} (${minutes} min old)`, 'info');
    }
  }

  /** Reads one request file, as untrusted input. */
  private async look(name: string, now: number): Promise<Look> {
    const file = this.layout.controlFile(name);
    let read: { text: string; mtimeMs: number };
    try {
      read = await readStateFileAndTime(file, CONTROL_FILE_MAX_BYTES);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      return { junk: error instanceof DamagedRecordError ? error.reason : String(error) };
    }
    const age = now - read.mtimeMs;
    if (age > REQUEST_STALE_MS)
      return { junk: `nobody took it within ${REQUEST_STALE_MS / 1000} s (the dashboard that asked gave up)` };
    try {
      return { request: parseRecord(requestSchema, read.text, file) };
    } catch (error) {
      const reason = error instanceof DamagedRecordError ? error.reason : String(error);
      if (reason.startsWith('not JSON') && age < WRITING_MS) return undefined;
      return { refused: `${reason}${actionNamed(read.text)}` };
    }
  }

  /** Answers a wrong request with why (the one server that takes it). */
  private async refuse(name: string, pid: number, reason: string): Promise<void> {
    const message = `Refused: ${reason}. A control request is {"action": "cancel" or "resume", "job_id": "job_…", "at": "<time>"}.`;
    const took = await this.take(name, pid, () => Promise.resolve({ ok: false, message, by_pid: pid }));
    if (took) this.log.warn(`control: refused ${this.layout.controlFile(name)}: ${reason}`);
  }

  /** Removes a file (a symlink itself, never its target); said once, by the server that removed it. */
  private async discard(name: string, why: string, level: 'info' | 'warn' = 'warn'): Promise<void> {
    const file = this.layout.controlFile(name);
    try {
      await unlink(file);
      this.log[level](`control: removed ${file}: ${why}`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      this.remember(name);
      this.log.warn(`control: ${file} (${why}) cannot be removed, left alone: ${String(error)}`);
    }
  }

  private remember(name: string): void {
    if (this.unremovable.size >= MAX_REMEMBERED) this.unremovable.clear();
    this.unremovable.add(name);
  }
}

/** The unknown action a wrong request names, said in its refusal. */
function actionNamed(text: string): string {
  try {
    const action = (JSON.parse(text) as { action?: unknown } | null)?.action;
    if (typeof action === 'string' && action !== 'cancel' && action !== 'resume')
      return ` ("${action.slice(0, 40)}" is no action: only cancel and resume are)`;
  } catch {
    // Not JSON: the reason says so.
  }
  return '';
}
