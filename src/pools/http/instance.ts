import type { CoreConfig } from '../../config/core.js';
import type { JobPlan } from '../../engine/types.js';
import type { KindDeps, KindInstance } from '../kind.js';
import { type HttpJobRequest, planHttpJob } from './plan.js';
import { HttpPool } from './pool.js';
import type { HttpConfig } from './settings.js';

/** What http_batch uses. */
export interface HttpServices {
  /** Checks an http_batch request against the allowlist and secret rules and makes its job (nothing is sent). */
  plan(request: HttpJobRequest): JobPlan;
}

/** The http kind as a server runs it: its pool (one connection pool, limits per host) and services (see index.ts). */
export function createHttpInstance(config: CoreConfig & HttpConfig, deps: KindDeps): KindInstance<HttpServices> {
  const pool = new HttpPool({ settings: config.http, env: deps.env, log: deps.log });
  return {
    pool,
    live: () => pool.liveCards(),
    services: { plan: (request) => planHttpJob(request, config.http, pool) },
    close: () => pool.close(),
  };
}
