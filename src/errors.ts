/**
 * Codes any layer may raise. Each worker kind declares its own codes beside these, in its folder
 * (`pools/<kind>/errors.ts`), with an error class that takes them.
 */
export const CORE_ERROR_CODES = [
  'INVALID_INPUT',
  'PATH_OUTSIDE_ROOT',
  'JOB_NOT_FOUND',
  'JOB_NOT_RESUMABLE',
  'JOB_OWNED_ELSEWHERE',
  'JOB_DAMAGED',
  'TIMEOUT',
  'CANCELLED',
  'UPSTREAM_FAILED',
  'SHUTTING_DOWN',
  'INTERNAL',
] as const;
export type CoreErrorCode = (typeof CORE_ERROR_CODES)[number];

export interface MonitorErrorOptions {
  hint?: string | undefined;
  cause?: unknown;
  retryable?: boolean;
}

/**
 * One error type for everything below the MCP layer. `code` is stable (tests and the model can rely
 * on it); `hint` says what to do next and ends up in the tool's isError text; `cause` keeps the
 * error it was made from. `Code` is the codes of a kind besides the core ones: a kind subclasses
 * it (`class LlmError extends MonitorError<LlmErrorCode>`), so a code nobody declared does not compile.
 */
export class MonitorError<Code extends string = CoreErrorCode> extends Error {
  override readonly name: string = 'MonitorError';
  readonly code: Code | CoreErrorCode;
  readonly hint: string | undefined;
  /** Transient failures (connection reset, 429, 503) may be retried; permanent ones never are. */
  readonly retryable: boolean;

  constructor(code: NoInfer<Code> | CoreErrorCode, message: string, options: MonitorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
    this.retryable = options.retryable ?? false;
  }
}

export function isMonitorError(error: unknown): error is MonitorError<string> {
  return error instanceof MonitorError;
}

/** The plain, serialisable form stored with a failed task. */
export interface TaskError {
  code: string;
  message: string;
  hint?: string;
}

export function toTaskError(error: unknown): TaskError {
  if (isMonitorError(error)) {
    return error.hint === undefined
      ? { code: error.code, message: error.message }
      : { code: error.code, message: error.message, hint: error.hint };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'INTERNAL', message };
}

/** Text for an isError tool result: what was wrong, then what to do next. */
export function errorText(error: unknown): string {
  const { code, message, hint } = toTaskError(error);
  const text = hint === undefined ? `${code}: ${message}` : `${code}: ${message}\nNext: ${hint}`;
  return readable(text);
}

/** Longest run of non-space characters an error text repeats (an id, a path, a value) before it is shortened. */
const LONGEST_WORD = 160;

/**
 * Error texts echo what the caller sent (ids, names, values): control characters (a NUL byte)
 * are shown escaped, and a 5 KB "id" is shortened to its ends, so the text stays readable.
 */
export function readable(text: string): string {
  const escaped = text.replace(
    /[\u0000-\u0008\u000b-\u001f\u007f]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return escaped.replace(
    new RegExp(`[^\\s]{${LONGEST_WORD + 1},}`, 'g'),
    (word) => `${word.slice(0, 100)}…(${word.length} characters)…${word.slice(-40)}`,
  );
}

/**
 * The same error with `where` in front of its message (`requests[3]: …`), its code, hint and
 * retryability kept and the original as its cause; anything else is returned as it is.
 */
export function withContext(where: string, error: unknown): unknown {
  if (!isMonitorError(error)) return error;
  return new MonitorError<string>(error.code, `${where}: ${error.message}`, {
    hint: error.hint,
    retryable: error.retryable,
    cause: error,
  });
}
