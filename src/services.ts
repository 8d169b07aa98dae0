/**
 * The worker-side objects tools need besides the engine (catalogs, routers, clients). Each worker
 * kind adds one field here and builds it in createServer.
 */
import type { HttpPool } from './pools/http/pool.js';
import type { LlmService } from './pools/llm/service.js';
import type { WorkerCatalog } from './pools/script/catalog.js';

export interface Services {
  /** The http_batch pool: its allowlist and secret checks run at submit time too. */
  http: HttpPool;
  /** The worker scripts run_script_batch may run, and how each is started. */
  workers: WorkerCatalog;
  /** lmstudio_complete / lmstudio_models: endpoints, router, model lists and the llm pool. */
  llm: LlmService;
  /** Extra cleanup (closing HTTP pools, …) run by createServer's close(), in order. */
  closers: Array<() => Promise<void>>;
}
