import { randomBytes } from 'node:crypto';
import path from 'node:path';

/**
 * The names of the state directory's files, here and nowhere else (test/architecture.test.ts
 * checks it): every other module asks for a path.
 *   jobs/<id>/job.json       metadata, replaced atomically
 *   jobs/<id>/owner.<N>      the job's Nth owner ({pid, start}); created exclusively, so of two
 *                            servers taking a job over at once exactly one succeeds
 *   jobs/<id>/inputs.jsonl   one task input per line, written once (atomically) at submit
 *   jobs/<id>/results.jsonl  one finished task per line, appended; a torn last line is ignored
 *   jobs/<id>/runs.log       one line per task start (its index): attempts count every run
 *   jobs/<id>/requeued.log   one line per task a resume queued again over its record (its index):
 *                            such a task is unfinished until it has one record more than lines here
 *   jobs/<id>/out/           full outputs named by task index
 *   jobs/<id>/damaged.json   a quarantined job: which file failed and why; the file itself was
 *                            moved aside to `<name>.damaged-<time>` (see JobStore.quarantine)
 *   changes.log              `<job id>` per change of any job folder, appended by every server: how
 *                            the others notice new jobs and new owners without reading every folder
 *   live/<pid>.json          each running server's heartbeat and live pool figures
 *   control/req-*.json       a dashboard's cancel or resume, taken by renaming it to
 *                            `.taken-<pid>`, answered in `req-*.reply.json`
 */
export class StateLayout {
  readonly stateDir: string;
  readonly jobsDir: string;
  readonly changesFile: string;
  readonly liveDir: string;
  readonly controlDir: string;
  /** Worker process groups each server runs, so the next start ends what a crashed one left (the script kind's). */
  readonly processGroupsDir: string;

  constructor(stateDir: string) {
    this.stateDir = stateDir;
    this.jobsDir = path.join(stateDir, 'jobs');
    this.changesFile = path.join(stateDir, 'changes.log');
    this.liveDir = path.join(stateDir, 'live');
    this.controlDir = path.join(stateDir, 'control');
    this.processGroupsDir = path.join(stateDir, 'pids');
  }

  static isJobId(id: string): boolean {
    return /^job_[A-Za-z0-9_-]{22}$/.test(id);
  }

  jobDir(id: string): string {
    return path.join(this.jobsDir, id);
  }

  metaFile(id: string): string {
    return path.join(this.jobDir(id), 'job.json');
  }

  inputsFile(id: string): string {
    return path.join(this.jobDir(id), 'inputs.jsonl');
  }

  resultsFile(id: string): string {
    return path.join(this.jobDir(id), 'results.jsonl');
  }

  runsFile(id: string): string {
    return path.join(this.jobDir(id), 'runs.log');
  }

  requeuedFile(id: string): string {
    return path.join(this.jobDir(id), 'requeued.log');
  }

  /** A quarantined job's note: which file was damaged, why, and where it was moved (see JobStore.quarantine). */
  damagedNoteFile(id: string): string {
    return path.join(this.jobDir(id), 'damaged.json');
  }

  /** Where a damaged file is moved aside to, in its own folder. */
  static quarantinedName(file: string, now: Date): string {
    return `${file}.damaged-${now.toISOString().replace(/[:.]/g, '-')}`;
  }

  outputDir(id: string): string {
    return path.join(this.jobDir(id), 'out');
  }

  ownerFile(id: string, generation: number): string {
    return path.join(this.jobDir(id), `owner.${generation}`);
  }

  /** The generation an entry of a job's folder claims, when it is an owner file. */
  static ownerGeneration(name: string): number | undefined {
    const match = /^owner\.(\d+)$/.exec(name);
    return match ? Number(match[1]) : undefined;
  }

  liveFile(pid: number): string {
    return path.join(this.liveDir, `${pid}.json`);
  }

  static isLiveFile(name: string): boolean {
    return /^\d+\.json$/.test(name);
  }

  /** The files of a new control request: where it is written, and where its answer will come. */
  newControlRequest(now: number): { request: string; reply: string } {
    const name = `req-${now}-${randomBytes(6).toString('hex')}`;
    return {
      request: path.join(this.controlDir, `${name}.json`),
      reply: path.join(this.controlDir, `${name}.reply.json`),
    };
  }

  static isControlRequest(name: string): boolean {
    return /^req-[\w-]+\.json$/.test(name);
  }

  controlFile(name: string): string {
    return path.join(this.controlDir, name);
  }

  /** A request file taken by the server `pid` (renamed: one server wins), and where it answers. */
  controlFilesOf(name: string, pid: number): { request: string; taken: string; reply: string } {
    const stem = name.slice(0, -'.json'.length);
    return {
      request: this.controlFile(name),
      taken: path.join(this.controlDir, `${stem}.taken-${pid}`),
      reply: path.join(this.controlDir, `${stem}.reply.json`),
    };
  }
}
