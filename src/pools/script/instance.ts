import type { CoreConfig } from '../../config/core.js';
import type { JobPlan } from '../../engine/types.js';
import type { KindDeps, KindInstance, LentServices } from '../kind.js';
import { WorkerCatalog, type WorkerEntry, type WorkersFolder } from './catalog.js';
import { AnswerChecker } from './check-lend.js';
import { InterpreterResolver } from './interpreters.js';
import { OutlineLender } from './lend.js';
import { Descendants } from './descendants.js';
import { GroupRecords } from './orphans.js';
import { planScriptJob, type ScriptJobRequest } from './plan.js';
import { ScriptPool } from './pool.js';
import { createSpawner } from './relay-spawner.js';
import { type Adopter, DirectSpawner, type Spawner } from './spawner.js';
import type { ScriptConfig } from './settings.js';
import { StateLayout } from '../../store/layout.js';

/** What the script tools use. */
export interface ScriptServices {
  /** Checks a run_script_batch request and makes its job (nothing is submitted). */
  plan(request: ScriptJobRequest): Promise<JobPlan>;
  /** The workers run_script_batch can run, as list_workers shows them. */
  workers(): Promise<WorkerEntry[]>;
  readonly workerDirs: readonly string[];
  /** The workers and each workers folder in search order, with whether it exists and how many workers it holds. */
  survey(): Promise<{ workers: WorkerEntry[]; folders: WorkersFolder[] }>;
  /** The bundled workers folder and the user's (see settings.ts). */
  readonly bundledWorkersDir: string;
  readonly userWorkersDir: string;
  /** Executables the user allowed as `command`. */
  readonly allowCommands: readonly string[];
}

/** The script kind as a server runs it: its pool, its services and what it lends (see index.ts). */
export function createScriptInstance(config: CoreConfig & ScriptConfig, deps: KindDeps): KindInstance<ScriptServices> {
  const { script } = config;
  const { log, processes, platform } = deps;
  const resolver = new InterpreterResolver({
    searchPath: script.searchPath,
    nodePath: script.nodePath,
    env: deps.env,
    log,
    lookup: { platform },
  });
  const catalog = new WorkerCatalog({
    workersDirs: config.workersDirs,
    allowCommands: config.allowCommands,
    interpreters: script.interpreters,
    searchPath: script.searchPath,
    resolver,
    log,
    platform,
    helpersDir: config.bundledWorkersDir,
  });
  // A worker script has no business with the secrets the server uses itself.
  const baseEnv = Object.fromEntries(Object.entries(deps.env).filter(([name]) => !deps.secretEnv.has(name)));
  const { spawner, descendants } = startersFor(config, deps, resolver, baseEnv);
  const pool = new ScriptPool({
    catalog,
    allowedRoots: config.allowedRoots,
    concurrency: script.maxConcurrency,
    outputCapBytes: script.outputCapBytes,
    inlineBytes: script.inlineBytes,
    maxTaskOutputBytes: script.maxTaskOutputBytes,
    maxJobOutputBytes: script.maxJobOutputBytes,
    killGraceSeconds: script.killGraceSeconds,
    warmMaxTasks: script.warmMaxTasks,
    warmMaxRssMB: script.warmMaxRssMB,
    baseEnv,
    searchPath: script.searchPath,
    log,
    processes,
    platform,
    groupRecords: new GroupRecords({
      dir: new StateLayout(config.stateDir).processGroupsDir,
      processes,
      killGraceMs: script.killGraceSeconds * 1000,
      log,
    }),
    descendants,
    spawner,
  });
  const lent = lentServices({ pool, catalog, resolver, config, baseEnv, deps });
  return {
    pool,
    live: () => pool.liveCards(),
    lends: lent.lends,
    services: {
      plan: (request) => planScriptJob(request, { config, catalog }),
      workers: () => catalog.list(),
      workerDirs: catalog.dirs,
      survey: () => catalog.survey(),
      bundledWorkersDir: config.bundledWorkersDir,
      userWorkersDir: config.userWorkersDir,
      allowCommands: catalog.allowCommands,
    },
    // What a first run_script_batch reads (the workers folders, python3's place on PATH: files only, no
    // process), and the process library its first task loads to ask Python where it lives.
    warmUp: async () => {
      await catalog.list().catch(() => undefined);
      await resolver.locate(script.interpreters['.py'] ?? 'python3').catch(() => undefined);
      await import('execa').catch(() => undefined);
    },
    close: async () => {
      await pool.close();
      await lent.close();
    },
  };
}

/**
 * How tasks' processes start and what they leave behind is found: cold tasks start through the
 * spawn helper (a warm Python process) unless the user turned it off; strays without a run token
 * are found by their parent, the helper that adopted them.
 */
function startersFor(
  config: CoreConfig & ScriptConfig,
  { log, processes, platform }: KindDeps,
  resolver: InterpreterResolver,
  env: Record<string, string | undefined>,
): { spawner: Spawner; descendants: Descendants } {
  const { script } = config;
  const spawner: Spawner = script.spawnHelper
    ? createSpawner({
        python: () => resolver.resolve(script.interpreters['.py'] ?? 'python3'),
        log,
        processes,
        env,
        platform,
      })
    : new DirectSpawner(platform);
  const adopter = (): Adopter | undefined => spawner.adopter;
  const descendants = new Descendants({
    stateDir: config.stateDir,
    processes,
    log,
    procDir: platform.procDir,
    adopter,
  });
  return { spawner, descendants };
}

/** What the kind lends the others: the bundled outline, and any worker as an answer checker. */
function lentServices(made: {
  pool: ScriptPool;
  catalog: WorkerCatalog;
  resolver: InterpreterResolver;
  config: CoreConfig & ScriptConfig;
  baseEnv: Record<string, string | undefined>;
  deps: KindDeps;
}): { lends: LentServices; close(): Promise<void> } {
  const { pool, catalog, resolver, config, baseEnv } = made;
  const { log, platform } = made.deps;
  const shared = { pool, allowedRoots: config.allowedRoots, baseEnv, searchPath: config.script.searchPath, log };
  const outline = new OutlineLender({ ...shared, resolver, interpreters: config.script.interpreters, platform });
  // Any worker of any workers folder may check an answer, as run_script_batch may run it.
  const checker = new AnswerChecker({ ...shared, catalog });
  return {
    lends: {
      outline: (files, signal) => outline.outline(files, signal),
      checkAnswer: (request, signal) => checker.checkAnswer(request, signal),
      checkerExists: (worker) => checker.checkerExists(worker),
    },
    close: () => checker.close(),
  };
}
