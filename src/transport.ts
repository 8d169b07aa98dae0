import type { Readable, Writable } from 'node:stream';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { JSONRPCMessageSchema, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import { CORE_SETTINGS } from './config/core.js';
import type { Logger } from './log.js';

/** JSON-RPC 2.0 error codes this transport answers with. */
export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;

const MIB = 1024 * 1024;
const NEWLINE = 0x0a;
/** How much of an oversize line's start and end is kept to find its id; the rest is dropped unread. */
const ID_SEARCH_BYTES = 4096;
/** How much of a rejected line the log shows. */
const PREVIEW_BYTES = 120;

/** A failure of the input or output stream, reported to `onerror`; the transport closes after it. */
export class StreamError extends Error {
  constructor(
    readonly stream: 'input' | 'output',
    override readonly cause: Error,
  ) {
    super(`${stream === 'input' ? 'reading the input' : 'writing the output'} failed: ${cause.message}`);
    this.name = 'StreamError';
  }
}

export interface LineTransportOptions {
  input: Readable;
  output: Writable;
  /** A line (one message) longer than this is answered with an error and skipped, never held. */
  maxMessageBytes: number;
  log: Logger;
  /**
   * The tools' file forms of their inline lists, in a phrase ("run_script_batch's inputs_file, …"),
   * named in the oversize error: the server derives it from its tools' schemas.
   */
  fileArguments?: string;
}

interface Rejection {
  code: number;
  message: string;
  /** The id to answer with; undefined: do not answer (a notification or a response). */
  replyId: RequestId | null | undefined;
}

/**
 * MCP over newline-delimited JSON (one message per line, as the SDK's stdio transport), with what
 * the SDK's lacks: a configurable size limit that skips an oversize line instead of closing, and a
 * JSON-RPC error for every line it cannot take (the SDK drops those silently). Every rejected line
 * is logged.
 */
export class LineTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: Transport['onmessage'];

  private readonly input: Readable;
  private readonly output: Writable;
  private readonly maxMessageBytes: number;
  private readonly log: Logger;
  private readonly fileArguments: string | undefined;
  private started = false;
  private closed = false;
  /** The current line's pieces: joined once, when its newline arrives (no quadratic concatenation). */
  private pieces: Buffer[] = [];
  private pieceBytes = 0;
  /** Set while skipping the rest of an oversize line. */
  private oversize: { head: Buffer; tail: Buffer; bytes: number; answered: boolean } | undefined;

  constructor(options: LineTransportOptions) {
    this.input = options.input;
    this.output = options.output;
    this.maxMessageBytes = options.maxMessageBytes;
    this.log = options.log;
    this.fileArguments = options.fileArguments;
  }

  start(): Promise<void> {
    if (this.started) return Promise.reject(new Error('LineTransport already started'));
    this.started = true;
    this.input.on('data', this.onData);
    this.input.on('end', this.onEnd);
    this.input.on('close', this.onEnd);
    // Kept after close(): a stream error with no listener would crash the process.
    this.input.on('error', this.onInputError);
    this.output.on('error', this.onOutputError);
    return Promise.resolve();
  }

  send(message: JSONRPCMessage): Promise<void> {
    return this.writeLine(message);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.input.off('data', this.onData);
    this.input.off('end', this.onEnd);
    this.input.off('close', this.onEnd);
    this.input.pause();
    this.pieces = [];
    this.pieceBytes = 0;
    this.oversize = undefined;
    this.onclose?.();
    return Promise.resolve();
  }

  /**
   * Resolves at once while the output's buffer has room; when it is full, once this line has been
   * written out (backpressure). The write's callback rather than 'drain': many waiting replies add
   * no listeners, and a failed write rejects instead of waiting for a drain that never comes.
   */
  private writeLine(value: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      const accepted = this.output.write(`${JSON.stringify(value)}\n`, (error) => {
        if (error) reject(error);
        else resolve();
      });
      if (accepted) resolve();
    });
  }

  private readonly onData = (chunk: Buffer | string): void => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    let start = 0;
    while (start < bytes.length && !this.closed) {
      const newline = bytes.indexOf(NEWLINE, start);
      const end = newline === -1 ? bytes.length : newline;
      this.take(bytes.subarray(start, end));
      if (newline === -1) return;
      this.endLine();
      start = newline + 1;
    }
  };

  /** Adds part of the current line: buffered while under the limit, else only counted. */
  private take(piece: Buffer): void {
    if (piece.length === 0) return;
    if (this.oversize) {
      this.oversize.bytes += piece.length;
      this.oversize.tail = lastBytes([this.oversize.tail, piece], ID_SEARCH_BYTES);
      return;
    }
    if (this.pieceBytes + piece.length <= this.maxMessageBytes) {
      this.pieces.push(piece);
      this.pieceBytes += piece.length;
      return;
    }
    const parts = [...this.pieces, piece];
    this.oversize = {
      head: firstBytes(parts, ID_SEARCH_BYTES),
      tail: lastBytes(parts, ID_SEARCH_BYTES),
      bytes: this.pieceBytes + piece.length,
      answered: false,
    };
    this.pieces = [];
    this.pieceBytes = 0;
    const id = idAtStart(this.oversize.head.toString('utf8'));
    this.log.warn(
      `skipping a message over the ${this.limitText()} limit${id === undefined ? '' : ` (id ${JSON.stringify(id)})`} up to its newline; it starts ${preview(this.oversize.head)}`,
    );
    // Answered now when its id is known: the client's request fails at once, not after the upload.
    if (id !== undefined) {
      this.oversize.answered = true;
      this.reply(id, INVALID_REQUEST, this.oversizeMessage());
    }
  }

  private endLine(): void {
    const skipped = this.oversize;
    if (skipped) {
      this.oversize = undefined;
      this.log.debug(`skipped the rest of the oversize message: ${skipped.bytes} bytes in all`);
      if (!skipped.answered)
        this.reply(idAtEnd(skipped.tail.toString('utf8')) ?? null, INVALID_REQUEST, this.oversizeMessage());
      return;
    }
    const line = Buffer.concat(this.pieces, this.pieceBytes);
    this.pieces = [];
    this.pieceBytes = 0;
    this.handleLine(line);
  }

  private handleLine(line: Buffer): void {
    const text = line.toString('utf8').replace(/\r$/, '');
    // A blank line carries no message (some clients end with one); nothing to answer.
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      // V8's message quotes the line: escaped, like a preview.
      this.reject(line, {
        code: PARSE_ERROR,
        message: `Parse error: the line is not JSON (${escapeControls((error as Error).message)}). Send one JSON-RPC message per line.`,
        replyId: null,
      });
      return;
    }
    const parsed = JSONRPCMessageSchema.safeParse(value);
    if (!parsed.success) {
      this.reject(line, invalidRequest(value));
      return;
    }
    try {
      this.onmessage?.(parsed.data);
    } catch (error) {
      this.onerror?.(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private reject(line: Buffer, rejection: Rejection): void {
    const answer = rejection.replyId === undefined ? 'not answered' : `answered with ${rejection.code}`;
    this.log.warn(
      `rejected an input line (${answer}): ${rejection.message} The line (${line.length} bytes): ${preview(line)}`,
    );
    if (rejection.replyId !== undefined) this.reply(rejection.replyId, rejection.code, rejection.message);
  }

  private reply(id: RequestId | null, code: number, message: string): void {
    this.writeLine({ jsonrpc: '2.0', id, error: { code, message } }).catch((error: unknown) => {
      // The output's 'error' event reports a broken stream; this only says which reply was lost.
      this.log.debug(`could not send the error reply to id ${JSON.stringify(id)}: ${String(error)}`);
    });
  }

  private limitText(): string {
    const mib = this.maxMessageBytes / MIB;
    return Number.isInteger(mib) ? `${mib} MiB` : `${this.maxMessageBytes}-byte`;
  }

  private oversizeMessage(): string {
    const setting = CORE_SETTINGS.maxMessageMB;
    return (
      `Invalid Request: the message is over the server's ${this.limitText()} size limit, so it was skipped unread. ` +
      (this.fileArguments
        ? `For large batches, pass a JSONL file inside the allowed roots instead of the inline list: ${this.fileArguments}. `
        : '') +
      `The limit is raised with ${setting.flags[0]?.name ?? ''} N, the ${setting.env[0]?.name ?? ''} environment variable or "maxMessageMB" in the config file.`
    );
  }

  private readonly onEnd = (): void => {
    if (this.closed) return;
    const unfinished = this.pieceBytes + (this.oversize?.bytes ?? 0);
    if (unfinished > 0)
      this.log.warn(
        `the input ended in the middle of a line (${unfinished} bytes without a newline); that message was ignored`,
      );
    void this.close();
  };

  private readonly onInputError = (error: Error): void => {
    if (this.closed) return;
    this.onerror?.(new StreamError('input', error));
    void this.close();
  };

  private readonly onOutputError = (error: Error): void => {
    if (this.closed) return;
    this.onerror?.(new StreamError('output', error));
    void this.close();
  };
}

/** Why a parsed line is not a JSON-RPC message, and whether and with which id to answer it. */
function invalidRequest(value: unknown): Rejection {
  if (Array.isArray(value)) {
    return {
      code: INVALID_REQUEST,
      message:
        'Invalid Request: batches (JSON arrays) are not supported by this MCP version; send each message on its own line.',
      replyId: null,
    };
  }
  if (typeof value !== 'object' || value === null) {
    return {
      code: INVALID_REQUEST,
      message: `Invalid Request: a JSON-RPC message is an object, not ${value === null ? 'null' : typeof value}.`,
      replyId: null,
    };
  }
  const message = value as Record<string, unknown>;
  const id = message.id;
  const validId = typeof id === 'string' || (typeof id === 'number' && Number.isInteger(id));
  const unknownKeys = Object.keys(message).filter(
    (k) => !['jsonrpc', 'id', 'method', 'params', 'result', 'error'].includes(k),
  );
  const why =
    message.jsonrpc !== '2.0'
      ? `"jsonrpc" must be "2.0", got ${short(message.jsonrpc)}.`
      : 'id' in message && !validId
        ? `"id" must be a string or an integer (MCP forbids null), got ${short(id)}.`
        : 'method' in message && typeof message.method !== 'string'
          ? `"method" must be a string, got ${short(message.method)}.`
          : unknownKeys.length > 0
            ? `unexpected member${unknownKeys.length > 1 ? 's' : ''} ${unknownKeys
                .slice(0, 5)
                .map((k) => short(k))
                .join(', ')}.`
            : !('method' in message) && !('result' in message) && !('error' in message)
              ? 'it has no "method" (nor "result" or "error").'
              : 'it matches no JSON-RPC request, notification or response (check "params", "result" or "error").';
  const isResponse = !('method' in message) && ('result' in message || 'error' in message);
  const isNotification = !('id' in message) && typeof message.method === 'string';
  // A response or a notification is never answered (answering a response could loop between peers).
  const replyId = isResponse || isNotification ? undefined : validId ? (id as RequestId) : null;
  return { code: INVALID_REQUEST, message: `Invalid Request: ${why}`, replyId };
}

/** A value for a message, cut short. */
function short(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/**
 * The start of a line for the log, quoted and escaped so that control characters (a NUL, a
 * terminal escape) never reach stderr raw.
 */
function preview(start: Buffer): string {
  const escaped = escapeControls(JSON.stringify(start.subarray(0, PREVIEW_BYTES).toString('utf8')));
  return start.length > PREVIEW_BYTES ? `${escaped}…` : escaped;
}

/** Control characters as `\uXXXX` (JSON.stringify leaves DEL, the C1 range and line separators raw). */
function escapeControls(text: string): string {
  return text.replace(
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** The first `n` bytes of the pieces, copied (the pieces' large buffers are not kept alive). */
function firstBytes(pieces: readonly Buffer[], n: number): Buffer {
  const out: Buffer[] = [];
  let left = n;
  for (const piece of pieces) {
    if (left <= 0) break;
    out.push(piece.subarray(0, left));
    left -= Math.min(left, piece.length);
  }
  return Buffer.concat(out);
}

/** The last `n` bytes of the pieces, copied. */
function lastBytes(pieces: readonly Buffer[], n: number): Buffer {
  const out: Buffer[] = [];
  let left = n;
  for (let i = pieces.length - 1; i >= 0 && left > 0; i--) {
    const piece = pieces[i] ?? Buffer.alloc(0);
    out.unshift(piece.subarray(Math.max(0, piece.length - left)));
    left -= Math.min(left, piece.length);
  }
  return Buffer.concat(out);
}

const ID_VALUE = String.raw`(-?\d+|"(?:[^"\\]|\\.)*")`;
/** `"id"` among the first members, after only members with plain scalar values: surely the top-level id. */
const ID_AT_START = new RegExp(
  String.raw`^\s*\{(?:\s*"[^"\\]*"\s*:\s*(?:"[^"\\]*"|-?\d+|true|false|null)\s*,)*?\s*"id"\s*:\s*${ID_VALUE}\s*[,}]`,
);
/** `"id"` as the last member, closed by the outermost brace (the SDK's clients write the id last). */
const ID_AT_END = new RegExp(String.raw`[{,]\s*"id"\s*:\s*${ID_VALUE}\s*\}\s*$`);

function idAtStart(head: string): RequestId | undefined {
  return idFrom(ID_AT_START.exec(head)?.[1]);
}

function idAtEnd(tail: string): RequestId | undefined {
  return idFrom(ID_AT_END.exec(tail.replace(/\r$/, ''))?.[1]);
}

function idFrom(text: string | undefined): RequestId | undefined {
  if (text === undefined) return undefined;
  try {
    const id: unknown = JSON.parse(text);
    return typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)) ? id : undefined;
  } catch {
    return undefined;
  }
}
