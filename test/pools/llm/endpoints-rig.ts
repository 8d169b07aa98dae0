import { rm } from 'node:fs/promises';
import type { Config } from '../../../src/registry.js';
import { silentLogger } from '../../../src/log.js';
import type { Endpoints } from '../../../src/pools/llm/endpoints.js';
import { createLlmParts } from '../../../src/pools/llm/instance.js';
import type { LlmPool } from '../../../src/pools/llm/pool.js';
import type { EndpointConfig } from '../../../src/pools/llm/settings.js';
import { LmStudioDouble, type DoubleOptions } from '../../fixtures/lmstudio-double.js';
import { testConfig } from '../../helpers/client.js';

/** What the Endpoints tests build: LM Studio doubles and Endpoints objects over them, closed after each test. */
export interface EndpointsRig {
  double(options?: DoubleOptions): Promise<LmStudioDouble>;
  /** Endpoints over `endpoints` (through createLlmParts, as the kind builds them). */
  service(endpoints: EndpointConfig[], options?: ServiceOptions, edit?: (c: Config) => void): Promise<Endpoints>;
  /** The pool and state dir behind an Endpoints object service() made. */
  partsOf(endpoints: Endpoints): { pool: LlmPool; stateDir: string } | undefined;
}

export interface ServiceOptions {
  env?: Record<string, string>;
  now?: () => number;
}

export function endpoint(name: string, url: string, extra: Partial<EndpointConfig> = {}): EndpointConfig {
  return { name, url, concurrency: 4, models: [], flavor: 'lmstudio', apiKeyEnv: 'LM_API_TOKEN', ...extra };
}

/** Model-list requests the double has seen. */
export const listRequests = (d: LmStudioDouble): number => d.requests.filter((q) => q.path.endsWith('/models')).length;

/** A rig whose doubles and endpoints `cleanups` closes (see cleanupsAfterEach). */
export function endpointsRig(cleanups: Array<() => Promise<void>>): EndpointsRig {
  const parts = new WeakMap<Endpoints, { pool: LlmPool; stateDir: string }>();
  return {
    async double(options = {}) {
      const d = await LmStudioDouble.start(options);
      cleanups.push(() => d.close());
      return d;
    },
    async service(endpoints, options = {}, edit = () => {}) {
      const config = await testConfig((c) => {
        c.llm.endpoints = endpoints;
        edit(c);
      });
      const built = createLlmParts(config, {
        log: silentLogger,
        env: options.env ?? {},
        ...(options.now ? { now: options.now } : {}),
      });
      parts.set(built.endpoints, { pool: built.pool, stateDir: config.stateDir });
      cleanups.push(async () => {
        await built.endpoints.close();
        await rm(config.stateDir, { recursive: true, force: true });
      });
      return built.endpoints;
    },
    partsOf: (endpoints) => parts.get(endpoints),
  };
}
