import { MonitorError } from '../../errors.js';

/** What a script task or its planning fails with, besides the core codes (INVALID_INPUT, TIMEOUT, CANCELLED, …). */
export const SCRIPT_ERROR_CODES = [
  'WORKER_NOT_FOUND',
  'COMMAND_NOT_ALLOWED',
  'NON_ZERO_EXIT',
  'SPAWN_FAILED',
  /** A warm worker's reply broke the protocol (not JSON, another id, too long): see warm.ts. */
  'WORKER_PROTOCOL',
] as const;
export type ScriptErrorCode = (typeof SCRIPT_ERROR_CODES)[number];

export class ScriptError extends MonitorError<ScriptErrorCode> {
  override readonly name: string = 'ScriptError';
}
