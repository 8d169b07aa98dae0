import path from 'node:path';
import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import type { ProcessControl } from '../../processes.js';
import { WorkerCatalog } from './catalog.js';
import { InterpreterResolver } from './interpreters.js';
import { GroupRecords } from './orphans.js';
import { ScriptPool } from './pool.js';

/**
 * The script worker kind: its pool and the catalog its tools use. Builds objects only, no I/O.
 * With `processes`, running process groups are recorded under the state dir and the pool's
 * recover() ends those of servers that died (see orphans.ts).
 */
export function createScriptWorkers(
  config: Config,
  env: Readonly<Record<string, string | undefined>>,
  log: Logger,
  processes?: ProcessControl,
): { pool: ScriptPool; catalog: WorkerCatalog } {
  const { script } = config;
  const resolver = new InterpreterResolver({ searchPath: script.searchPath, nodePath: script.nodePath, env, log });
  const catalog = new WorkerCatalog({
    workersDirs: config.workersDirs,
    allowCommands: config.allowCommands,
    interpreters: script.interpreters,
    searchPath: script.searchPath,
    resolver,
    log,
  });
  const pool = new ScriptPool({
    catalog,
    allowedRoots: config.allowedRoots,
    concurrency: script.maxConcurrency,
    outputCapBytes: script.outputCapBytes,
    inlineBytes: script.inlineBytes,
    killGraceSeconds: script.killGraceSeconds,
    baseEnv: env,
    searchPath: script.searchPath,
    log,
    ...(processes
      ? { groupRecords: new GroupRecords({ dir: path.join(config.stateDir, 'pids'), processes, killGraceMs: script.killGraceSeconds * 1000, log }) }
      : {}),
  });
  return { pool, catalog };
}
