/** Statuses that mean "not processed, try later": always safe to retry, whatever the method. */
export const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 503]);

/** Connection failures worth a retry (only for idempotent methods: the server may have acted). */
const RETRY_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
]);

const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

export function isRetryableError(error: unknown, method: string): boolean {
  if (!IDEMPOTENT.has(method)) return false;
  const code = error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
  return code !== undefined && RETRY_ERROR_CODES.has(code);
}
