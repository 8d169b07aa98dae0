import { open } from 'node:fs/promises';
import type { TaskRecord } from './records.js';
import { SAFE_READ_FLAGS } from './safe-read.js';

/**
 * The one reader of result values and output files. Every kind writes the ResultEnvelope (text /
 * json / cut) in its value and names the file of the whole output `files.output`; everything that
 * reads a result (stages, collect_results, the dashboard) comes here instead of knowing a kind's
 * field names.
 */

/** A result's output as every kind writes it. */
export interface Envelope {
  /** The output as text; when `cut`, only its start. */
  text?: string;
  /** The output parsed as JSON, when it is JSON. */
  json?: unknown;
  /** `text` is only the start of a longer output (the whole of it is `outputFile`). */
  cut: boolean;
  /** The file holding the whole output, when the kind kept one. */
  outputFile?: string;
}

type RecordFields = Pick<TaskRecord, 'value' | 'files'>;

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The envelope of `record`'s value, read with type checks (a damaged value yields an empty envelope). */
export function envelopeOf(record: RecordFields): Envelope {
  const value: Record<string, unknown> = isObject(record.value) ? record.value : {};
  const envelope: Envelope = { cut: value.cut === true || legacyCut(value) };
  if (typeof value.text === 'string') envelope.text = value.text;
  if (value.json !== undefined) envelope.json = value.json;
  const outputFile = record.files?.output ?? legacyOutputFile(record.files);
  if (outputFile !== undefined) envelope.outputFile = outputFile;
  return envelope;
}

/*
 * Records written before the envelope (issue 19) stay readable, mapped here and nowhere else:
 * - the LLM kind said `text_cut: true`, the script kind `truncated: { stdout: true }`, the HTTP kind
 *   `truncated: true` (its body cut). The LLM kind's own `truncated: true` (max_tokens cut the
 *   answer) is not a cut preview: an HTTP value is told apart by its `status` and `url`.
 * - the whole output was `files.answer` (LLM), `files.stdout` (script) or `files.body` (HTTP).
 */
function legacyCut(value: Record<string, unknown>): boolean {
  if (value.text_cut === true) return true;
  const truncated = value.truncated;
  if (isObject(truncated)) return truncated.stdout === true;
  return truncated === true && typeof value.status === 'number' && typeof value.url === 'string';
}

function legacyOutputFile(files: Record<string, string> | undefined): string | undefined {
  return files?.answer ?? files?.stdout ?? files?.body;
}

/**
 * What a finished task produced, whole, for the stage after it: a result's value holds only the
 * start of a long output, so its output file is read.
 */
export interface WholeOutput {
  /** The output as text: the JSON re-serialised, else the file's or the value's text. */
  text: string;
  /** The parsed JSON output, when the task printed (or answered) JSON. */
  json?: unknown;
  /** Only the first `maxBytes` were read (or only a preview was left). */
  cut: boolean;
}

/** The whole output of `record` (at most `maxBytes` of it). */
export async function wholeOutput(record: RecordFields, maxBytes: number): Promise<WholeOutput> {
  const envelope = envelopeOf(record);
  if (envelope.json !== undefined)
    return { text: JSON.stringify(envelope.json, null, 1), json: envelope.json, cut: false };
  if (envelope.outputFile !== undefined) {
    // A file gone (cleaned up, never written) leaves the preview in the value.
    const read = await readHead(envelope.outputFile, maxBytes).catch(() => undefined);
    if (read !== undefined) return read;
  }
  const text = envelope.text ?? (record.value === undefined ? '' : JSON.stringify(record.value));
  return { text, cut: envelope.cut };
}

async function readHead(file: string, maxBytes: number): Promise<WholeOutput> {
  // The path comes from a record: no symlink followed, no FIFO waited on, nothing but a regular file read.
  const handle = await open(file, SAFE_READ_FLAGS);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new Error(`${file} is not a regular file`);
    const { size } = info;
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

/**
 * The start of a result's output for a glance (the dashboard's task list): its text, else its
 * JSON, else the script kind's stderr tail; at most `chars` characters, `…` marking a cut.
 */
export function previewOf(record: RecordFields, chars: number): string | undefined {
  const envelope = envelopeOf(record);
  const stderrTail = isObject(record.value) ? record.value.stderr_tail : undefined;
  const output =
    envelope.text ??
    (envelope.json !== undefined
      ? JSON.stringify(envelope.json)
      : typeof stderrTail === 'string'
        ? stderrTail
        : undefined);
  if (output === undefined) return undefined;
  return output.length > chars ? `${output.slice(0, chars)}…` : output;
}

/** A finished task as later stages and merges name it: its label (file, id, URL), else its index. */
export function provenanceOf(record: Pick<TaskRecord, 'label' | 'index'>): string {
  return record.label ?? `task #${record.index}`;
}

/** Reasons shown for an unverified answer in a merge, at most this long. */
const UNVERIFIED_NOTE_CHARS = 300;

/**
 * Why a succeeded answer is not verified (it failed its checks: `verified: false` with each failed
 * check's reason), or undefined for one verified or never checked.
 */
export function unverifiedNote(record: Pick<TaskRecord, 'value'>): string | undefined {
  const value = record.value as { verified?: unknown; checks?: unknown } | undefined;
  if (value?.verified !== false) return undefined;
  const failed = Array.isArray(value.checks)
    ? value.checks.flatMap((c: unknown) => {
        const check = (c ?? {}) as { name?: unknown; ok?: unknown; reason?: unknown };
        return check.ok === false ? [`${String(check.name)}: ${String(check.reason ?? 'failed')}`] : [];
      })
    : [];
  const text = failed.join('; ') || 'failed its checks';
  return text.length > UNVERIFIED_NOTE_CHARS ? `${text.slice(0, UNVERIFIED_NOTE_CHARS - 1)}…` : text;
}
