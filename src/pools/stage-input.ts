import { open } from 'node:fs/promises';
import type { TaskRecord } from '../engine/types.js';

/**
 * What a finished task produced, whole, for the stage after it: a result's value holds only a
 * preview of a long output (the rest is in its stdout or answer file), so that file is read.
 */
export interface StageOutput {
  /** The output as text: the JSON re-serialised, the answer, or stdout. */
  text: string;
  /** The parsed JSON output, when the task printed (or answered) JSON. */
  json?: unknown;
  /** Only the first `maxBytes` were read. */
  cut: boolean;
}

/** The whole output of `record` (at most `maxBytes` of it). */
export async function stageOutput(record: Pick<TaskRecord, 'value' | 'files'>, maxBytes: number): Promise<StageOutput> {
  const value =
    record.value !== null && typeof record.value === 'object' && !Array.isArray(record.value)
      ? (record.value as Record<string, unknown>)
      : {};
  if (value.json !== undefined) return { text: JSON.stringify(value.json, null, 1), json: value.json, cut: false };
  const file = record.files?.answer ?? record.files?.stdout;
  if (file !== undefined) {
    const read = await readHead(file, maxBytes).catch(() => undefined);
    if (read !== undefined) return read;
  }
  const text =
    typeof value.text === 'string' ? value.text : record.value === undefined ? '' : JSON.stringify(record.value);
  return {
    text,
    cut:
      value.text_cut === true ||
      (typeof value.truncated === 'object' && (value.truncated as { stdout?: unknown }).stdout === true),
  };
}

async function readHead(file: string, maxBytes: number): Promise<StageOutput> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(Math.min(size, maxBytes));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, bytesRead).toString('utf8').replace(/\n$/, '');
    const cut = size > maxBytes;
    // A JSON output too large to inline is still JSON for the next stage.
    if (!cut && /^\s*[[{]/.test(text)) {
      try {
        const json: unknown = JSON.parse(text);
        return { text, json, cut };
      } catch {
        // Text that only looks like JSON.
      }
    }
    return { text, cut };
  } finally {
    await handle.close();
  }
}

/** A finished task as a later stage names it: its label (file, id), else its index. */
export function provenanceOf(record: Pick<TaskRecord, 'label' | 'index'>): string {
  return record.label ?? `task #${record.index}`;
}
