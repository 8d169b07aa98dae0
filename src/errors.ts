/**
 * One error type for everything below the MCP layer. `code` is stable (tests and the model can rely
 * on it); `hint` says what to do next and ends up in the tool's isError text.
 */
export type ErrorCode =
  | 'INVALID_INPUT'
  | 'WORKER_NOT_FOUND'
  | 'PATH_OUTSIDE_ROOT'
  | 'COMMAND_NOT_ALLOWED'
  | 'JOB_NOT_FOUND'
  | 'JOB_NOT_RESUMABLE'
  | 'TIMEOUT'
  | 'CANCELLED'
  | 'NON_ZERO_EXIT'
  | 'SPAWN_FAILED'
  | 'OUTPUT_TRUNCATED'
  | 'ENDPOINT_UNREACHABLE'
  | 'MODEL_NOT_LOADED'
  | 'MODEL_NOT_FOUND'
  | 'CONTEXT_OVERFLOW'
  | 'AUTH_REQUIRED'
  | 'EMPTY_ANSWER'
  | 'SCHEMA_INVALID'
  | 'UPSTREAM_ERROR'
  | 'HOST_NOT_ALLOWED'
  | 'ADDRESS_NOT_ALLOWED'
  | 'REDIRECT_NOT_ALLOWED'
  | 'SECRET_NOT_SET'
  | 'HTTP_ERROR'
  | 'RESPONSE_TOO_LARGE'
  | 'INTERNAL';

export class MonitorError extends Error {
  override readonly name = 'MonitorError';
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  /** Transient failures (connection reset, 429, 503) may be retried; permanent ones never are. */
  readonly retryable: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    options: { hint?: string; cause?: unknown; retryable?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
    this.retryable = options.retryable ?? false;
  }
}

export function isMonitorError(error: unknown): error is MonitorError {
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
  return hint === undefined ? `${code}: ${message}` : `${code}: ${message}\nNext: ${hint}`;
}
