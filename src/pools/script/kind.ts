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
 * `processes` signals worker process groups; running groups are recorded under the state dir and
 * the pool's recover() ends those of servers that died (see orphans.ts).
 */
export function createScriptWorkers(
  config: Config,
  env: Readonly<Record<string, string | undefined>>,
  log: Logger,
  processes: ProcessControl,
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
    baseEnv: withoutSecrets(env, config),
    searchPath: script.searchPath,
    log,
    processes,
    groupRecords: new GroupRecords({ dir: path.join(config.stateDir, 'pids'), processes, killGraceMs: script.killGraceSeconds * 1000, log }),
  });
  return { pool, catalog };
}

/**
 * The server's environment minus the variables that hold secrets the server uses itself (http
 * `${env:NAME}` names, LLM API key vars): a worker script has no business with them.
 */
export function withoutSecrets(env: Readonly<Record<string, string | undefined>>, config: Config): Record<string, string | undefined> {
  const secrets = new Set<string>([...config.http.secretEnv, ...config.llm.endpoints.flatMap((e) => (e.apiKeyEnv === undefined ? [] : [e.apiKeyEnv]))]);
  return Object.fromEntries(Object.entries(env).filter(([name]) => !secrets.has(name)));
}
