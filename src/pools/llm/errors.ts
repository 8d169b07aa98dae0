import { MonitorError } from '../../errors.js';

/** What an LLM task or its planning fails with, besides the core codes (INVALID_INPUT, TIMEOUT, CANCELLED, …). */
export const LLM_ERROR_CODES = [
  'ENDPOINT_UNREACHABLE',
  'MODEL_NOT_LOADED',
  'MODEL_NOT_FOUND',
  'CONTEXT_OVERFLOW',
  'AUTH_REQUIRED',
  'EMPTY_ANSWER',
  'SCHEMA_INVALID',
  'UPSTREAM_ERROR',
  'RESPONSE_TOO_LARGE',
  'STALLED',
] as const;
export type LlmErrorCode = (typeof LLM_ERROR_CODES)[number];

export class LlmError extends MonitorError<LlmErrorCode> {
  override readonly name: string = 'LlmError';
}
