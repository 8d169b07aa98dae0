import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TaskResult } from '../../engine/types.js';
import { readBody, type ReadBody } from './body.js';
import { applyExtract, type ExtractSpec } from './extract.js';
import { statusError, timedOut } from './failures.js';
import { headerText, KEPT_RESPONSE_HEADERS, type Target } from './request.js';
import type { HttpSettings } from './settings.js';
import type { Exchange, RequestRun } from './transfer.js';

/** The size limits a response is read and shown under. */
type ResponseSettings = Pick<HttpSettings, 'maxInlineBytes' | 'maxJsonBytes' | 'maxResponseBytes'>;

/** The body as the result shows it: the envelope's text or json, and what else was learned reading it. */
interface Content {
  fields: Record<string, unknown>;
  /** Where an extracted value too large to show was written whole. */
  extractedFile?: string;
}

/**
 * Reads the final response and builds the task's result: the status and a few headers, the body
 * as JSON or a text preview (the envelope's `json` / `text` / `cut`), the whole body in
 * `files.output` when it is larger than the preview.
 */
export async function responseResult(
  run: RequestRun,
  target: Target,
  exchange: Exchange,
  settings: ResponseSettings,
): Promise<TaskResult> {
  const { task } = run;
  const contentType = headerText(exchange.headers['content-type']) ?? '';
  const looksJson = /[/+]json\b/i.test(contentType);
  const limits = {
    inlineBytes: settings.maxInlineBytes,
    keepBytes: looksJson ? Math.max(settings.maxInlineBytes, settings.maxJsonBytes) : settings.maxInlineBytes,
    maxBytes: settings.maxResponseBytes,
  };
  let read: ReadBody;
  try {
    read = await readBody(exchange.body, limits, path.join(task.outputDir, `${task.index}.body`), run.redactor);
  } catch (error) {
    throw timedOut(error, exchange.timeout, run.timeoutMs, target);
  } finally {
    exchange.release();
  }

  const ok = exchange.status >= 200 && exchange.status < 300;
  const value: Record<string, unknown> = {
    status: exchange.status,
    ok,
    method: target.method,
    url: target.url.href,
    headers: keptHeaders(exchange.headers),
    bytes: read.bytes,
  };
  // Cut at the response size cap: even files.output is only the start of what the server sent
  // (the kind's own figure, as the LLM kind's `truncated` is for max_tokens), and so is any preview.
  if (read.truncated) {
    value.cut = true;
    value.truncated = true;
  }
  if (run.redirects.length > 0) value.redirects = run.redirects;
  value.attempts = run.attempts;
  const files: Record<string, string> = {};
  if (read.file) files.output = read.file;

  const content = await describeContent(run, read, contentType, looksJson, settings);
  Object.assign(value, content.fields);
  if (content.extractedFile) files.extracted = content.extractedFile;
  value.duration_ms = Date.now() - run.started;

  const result: TaskResult = { ok, value };
  if (Object.keys(files).length > 0) result.files = files;
  if (!ok) result.error = statusError(target, exchange.status, run.attempts);
  return result;
}

/** `json` (parsed, extracted) when the body is JSON and fits; otherwise a `text` preview, or `binary`. */
async function describeContent(
  run: Pick<RequestRun, 'task' | 'extract'>,
  read: ReadBody,
  contentType: string,
  looksJson: boolean,
  settings: ResponseSettings,
): Promise<Content> {
  const inline = settings.maxInlineBytes;
  const fields: Record<string, unknown> = {};
  if (read.bytes === 0) return { fields };
  const preview = read.kept.subarray(0, inline);
  const cut = read.kept.length > inline || !read.complete;

  if (
    read.complete &&
    (looksJson || (read.kept.length <= inline && /^\s*[[{]/.test(preview.toString('utf8', 0, 64))))
  ) {
    const json = parseJson(read.kept, run.extract, fields);
    if (json !== undefined) return jsonContent(json, run, read, inline, fields);
    if (looksJson) fields.json_error = 'The body is not valid JSON; see text.';
  } else if (looksJson && !read.complete) {
    fields.json_error = read.truncated
      ? 'The body was cut at the response size cap, so it was not parsed as JSON.'
      : `The body is larger than ${settings.maxJsonBytes} bytes (http.maxJsonBytes), so it was not parsed; it is in files.output.`;
  }

  if (isBinary(preview, contentType)) {
    fields.binary = true;
    return { fields };
  }
  fields.text = new TextDecoder('utf-8').decode(preview, { stream: cut });
  if (cut) fields.cut = true;
  return { fields };
}

/**
 * The body parsed, and what `extract` keeps of it (noting in `fields` a pointer that found
 * nothing), as `{ json }`; undefined when it is not JSON.
 */
function parseJson(
  body: Buffer,
  extract: ExtractSpec | undefined,
  fields: Record<string, unknown>,
): { json: unknown } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (extract === undefined) return { json: parsed };
  const extracted = applyExtract(parsed, extract);
  if (extracted.missing !== undefined) fields.extract_missing = `Nothing at ${extracted.missing} in the body.`;
  return { json: extracted.value };
}

/** JSON that fits is shown whole; larger, a preview here and all of it in a file (the body, or the extracted part). */
async function jsonContent(
  { json }: { json: unknown },
  run: Pick<RequestRun, 'task' | 'extract'>,
  read: ReadBody,
  inline: number,
  fields: Record<string, unknown>,
): Promise<Content> {
  const serialised = JSON.stringify(json) ?? 'null';
  if (Buffer.byteLength(serialised) <= inline) {
    fields.json = json;
    return { fields };
  }
  fields.text = cutText(serialised, inline);
  fields.cut = true;
  if (run.extract === undefined && read.file) return { fields };
  const extractedFile = path.join(run.task.outputDir, `${run.task.index}.extracted.json`);
  await writeFile(extractedFile, serialised, { mode: 0o600 });
  return { fields, extractedFile };
}

function keptHeaders(headers: Readonly<Record<string, string | string[] | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of KEPT_RESPONSE_HEADERS) {
    const value = headerText(headers[name]);
    if (value !== undefined) out[name] = value.length > 500 ? `${value.slice(0, 500)}…` : value;
  }
  return out;
}

/** The first `maxBytes` of `text`, never splitting a character. */
function cutText(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length <= maxBytes
    ? text
    : new TextDecoder('utf-8').decode(bytes.subarray(0, maxBytes), { stream: true });
}

const BINARY_TYPES = /^(image|audio|video|font)\/|^application\/(octet-stream|pdf|zip|gzip|x-tar|x-7z|wasm|vnd\.)/i;

function isBinary(preview: Buffer, contentType: string): boolean {
  if (BINARY_TYPES.test(contentType) && !/json|xml/i.test(contentType)) return true;
  return preview.includes(0);
}
