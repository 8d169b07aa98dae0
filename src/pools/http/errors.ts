import { MonitorError } from '../../errors.js';

/** What an HTTP request or its planning fails with, besides the core codes (INVALID_INPUT, TIMEOUT, CANCELLED, …). */
export const HTTP_ERROR_CODES = [
  'HOST_NOT_ALLOWED',
  'ADDRESS_NOT_ALLOWED',
  'REDIRECT_NOT_ALLOWED',
  'SECRET_NOT_SET',
  'HTTP_ERROR',
  'RESPONSE_TOO_LARGE',
  'ENDPOINT_UNREACHABLE',
  'UPSTREAM_ERROR',
] as const;
export type HttpErrorCode = (typeof HTTP_ERROR_CODES)[number];

export class HttpError extends MonitorError<HttpErrorCode> {
  override readonly name: string = 'HttpError';
}
