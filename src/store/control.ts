import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import * as z from 'zod';
import { StateLayout } from './layout.js';
import { parseRecord } from './records.js';

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

const requestSchema: z.ZodType<ControlRequest> = z.object({
  action: z.enum(['cancel', 'resume']),
  job_id: z.string(),
  at: z.string(),
});

const replySchema: z.ZodType<ControlReply> = z.object({ ok: z.boolean(), message: z.string(), by_pid: z.number() });

/**
 * The control files: how the dashboard hands a cancel or resume to the server that runs the job.
 * A request is a file; a server takes it by renaming it (of several, one wins) and answers in a
 * reply file beside it, which the dashboard reads and removes.
 */
export class ControlFiles {
  private readonly layout: StateLayout;

  constructor(stateDir: string) {
    this.layout = new StateLayout(stateDir);
  }

  /** The dashboard's side: writes a request, and returns where its answer will come and how to withdraw it. */
  async ask(request: ControlRequest, now: number): Promise<{ request: string; reply: string }> {
    const files = this.layout.newControlRequest(now);
    await writeFile(files.request, JSON.stringify(request), { mode: 0o600 });
    return files;
  }

  /** The answer in `file`, once it is there (and whole). */
  async reply(file: string): Promise<ControlReply | undefined> {
    return readFile(file, 'utf8')
      .then((text) => parseRecord(replySchema, text, file))
      .catch(() => undefined);
  }

  /** A server's side: the requests waiting (one unreadable, being written, is left for the next look). */
  async waiting(): Promise<Array<{ name: string; request: ControlRequest }>> {
    const dir = this.layout.controlDir;
    const names = (await readdir(dir).catch(() => [])).filter((name) => StateLayout.isControlRequest(name));
    const found: Array<{ name: string; request: ControlRequest }> = [];
    for (const name of names) {
      const file = this.layout.controlFile(name);
      const request = await readFile(file, 'utf8')
        .then((text) => parseRecord(requestSchema, text, file))
        .catch(() => undefined);
      if (request) found.push({ name, request });
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
    await writeFile(files.reply, JSON.stringify(reply), { mode: 0o600 });
    await rm(files.taken, { force: true });
    return true;
  }
}
