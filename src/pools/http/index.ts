import type { WorkerKind } from '../kind.js';
import { HTTP_ERROR_CODES } from './errors.js';
import { HTTP_KIND } from './facts.js';
import type { HttpServices } from './instance.js';
import { HTTP_CONSTRAINTS, HTTP_SETTINGS } from './settings.js';

// What the kind's tools use, from here: tools never import a kind's insides.
export { DEFAULT_HTTP_CONCURRENCY } from './facts.js';
export { extractSchema, METHODS } from './request.js';
export type { HttpServices } from './instance.js';

/** Most requests in one http_batch job (inline or in requests_file). */
export const HTTP_MAX_TASKS = 1000;

/**
 * The `http` kind: requests to external APIs, each checked against the allowlist and the address
 * rules on every hop, limited per host, retried on 429/503, their bodies streamed to files.
 */
export const httpKind: WorkerKind<typeof HTTP_SETTINGS, HttpServices> = {
  name: HTTP_KIND,
  summary: 'external HTTP APIs',
  settings: HTTP_SETTINGS,
  constraints: HTTP_CONSTRAINTS,
  errorCodes: HTTP_ERROR_CODES,
  taskCap: () => ({ max: HTTP_MAX_TASKS }),
  secretEnv: (config) => config.http.secretEnv,
  // The pool loads here, after the handshake: not on the way to answering initialize.
  async create(config, deps) {
    const { createHttpInstance } = await import('./instance.js');
    return createHttpInstance(config, deps);
  },
};
