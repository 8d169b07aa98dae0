import { rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { Config } from '../../../src/registry.js';
import type { TaskContext, TaskResult } from '../../../src/engine/types.js';
import type { Logger } from '../../../src/log.js';
import { HttpPool } from '../../../src/pools/http/pool.js';
import type { HttpJobOptions, HttpTaskInput } from '../../../src/pools/http/request.js';
import { type Handler, startHttpServer, type TestHttpServer } from '../../fixtures/http-server.js';
import { makeTempDir, testConfig } from '../../helpers/client.js';

/** A secret value that must never show in a result, a file or a log. */
export const SECRET = 'tok_9f8e7d6c5b4a3210_SECRET';

export interface Setup {
  pool: HttpPool;
  logLines: string[];
  run(input: HttpTaskInput, options?: HttpJobOptions, signal?: AbortSignal, index?: number): Promise<TaskResult>;
}

export interface HttpHarness {
  /** Where tasks write their files (one folder for the test file). */
  readonly outputDir: string;
  /** A local HTTP server, closed after the test. */
  server(handler: Handler): Promise<TestHttpServer>;
  /** An HttpPool over the test config's http settings with `edit` applied, closed after the test. */
  setup(edit: Partial<Config['http']>, env?: Record<string, string>): Setup;
}

/** Pools and servers for a test file of the HTTP kind; registers the hooks that clean them up. */
export function httpHarness(): HttpHarness {
  let outputDir = '';
  let baseSettings: Config['http'] | undefined;
  const servers: TestHttpServer[] = [];
  const pools: HttpPool[] = [];

  beforeAll(async () => {
    outputDir = await makeTempDir('monitor-http-out-');
    const config = await testConfig();
    baseSettings = config.http;
    await rm(config.stateDir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await rm(outputDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const pool of pools.splice(0)) await pool.close();
    for (const server of servers.splice(0)) await server.close();
  });

  return {
    get outputDir() {
      return outputDir;
    },
    async server(handler) {
      const s = await startHttpServer(handler);
      servers.push(s);
      return s;
    },
    setup(edit, env = {}) {
      if (!baseSettings) throw new Error('setup() runs inside a test, after beforeAll');
      const logLines: string[] = [];
      const log: Logger = {
        debug: (m) => logLines.push(m),
        info: (m) => logLines.push(m),
        warn: (m) => logLines.push(m),
        error: (m) => logLines.push(m),
      };
      const pool = new HttpPool({ settings: { ...baseSettings, ...edit }, env, log });
      pools.push(pool);
      let counter = 0;
      return {
        pool,
        logLines,
        run: (input, options = {}, signal = new AbortController().signal, index = counter++) => {
          const task: TaskContext = { jobId: 'job_test', index, input, options, outputDir, attempt: 1, signal };
          return pool.run(task);
        },
      };
    },
  };
}

/** A result's value as a plain record (it fails the test when there is none). */
export function valueOf(result: TaskResult): Record<string, unknown> {
  const value = result.value;
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new Error(`no value in ${JSON.stringify(result)}`);
  return Object.fromEntries(Object.entries(value));
}
