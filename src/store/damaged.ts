import { lstat } from 'node:fs/promises';
import type { Logger } from '../log.js';
import type { StateLayout } from './layout.js';
import { type DamagedJob, damagedNoteSchema, DamagedRecordError, parseRecord } from './records.js';
import { readStateFile, STATE_CAPS } from './safe-read.js';

/**
 * Why a job is damaged, when it is: its quarantine note (damaged.json, see JobStore.quarantine),
 * or a job folder that is no folder (a symlink or a file in its place). Undefined for a job not
 * known to be damaged.
 */
export async function readDamagedNote(layout: StateLayout, id: string): Promise<DamagedJob | undefined> {
  const dir = layout.jobDir(id);
  const info = await lstat(dir).catch(() => undefined);
  if (info && !info.isDirectory())
    return { id, path: dir, reason: info.isSymbolicLink() ? 'the job folder is a symlink' : 'it is not a folder' };
  const file = layout.damagedNoteFile(id);
  try {
    return { id, ...parseRecord(damagedNoteSchema, await readStateFile(file, STATE_CAPS.note), file) };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { id, path: file, reason: `quarantined, and its note cannot be read (${messageOf(error)})` };
  }
}

/** Why a read failed, in words: a damaged record's reason, else the error's message. */
export function messageOf(error: unknown): string {
  return error instanceof DamagedRecordError ? error.reason : error instanceof Error ? error.message : String(error);
}

/** A state file's text, or '' when it is missing or refused (a FIFO, a symlink, too large: told to `say`). */
export async function readOrEmpty(file: string, maxBytes: number, say: (line: string) => void): Promise<string> {
  return readStateFile(file, maxBytes).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') say(`${file} not read: ${messageOf(error)}`);
    return '';
  });
}

/** A warning said once: a reader polling a damaged file several times a second logs it once. */
export function sayOnce(log: Logger, remember = 1000): (line: string) => void {
  const said = new Set<string>();
  return (line) => {
    if (said.has(line)) return;
    if (said.size >= remember) said.clear();
    said.add(line);
    log.warn(line);
  };
}
