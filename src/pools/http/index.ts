import type { JobPlan } from '../../engine/types.js';
import type { WorkerKind } from '../kind.js';
import { HTTP_ERROR_CODES } from './errors.js';
import { type HttpJobRequest, planHttpJob } from './plan.js';
import { HTTP_KIND, HttpPool } from './pool.js';
import { HTTP_CONSTRAINTS, HTTP_SETTINGS } from './settings.js';

// What the kind's tools use, from here: tools never import a kind's insides.
export { DEFAULT_HTTP_CONCURRENCY } from './plan.js';
export { extractSchema, METHODS } from './request.js';

/** Most requests in one http_batch job (inline or in requests_file). */
export const HTTP_MAX_TASKS = 1000;

/** What http_batch uses. */
export interface HttpServices {
  /** Checks an http_batch request against the allowlist and secret rules and makes its job (nothing is sent). */
  plan(request: HttpJobRequest): JobPlan;
}

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
  create(config, deps) {
    const pool = new HttpPool({ settings: config.http, env: deps.env, log: deps.log });
    return {
      pool,
      live: () => pool.liveCards(),
      services: { plan: (request) => planHttpJob(request, config.http, pool) },
      close: () => pool.close(),
    };
  },
};
