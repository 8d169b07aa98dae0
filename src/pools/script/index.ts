import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { CoreConfig } from '../../config/core.js';
import type { JobPlan } from '../../engine/types.js';
import { errorText } from '../../errors.js';
import type { DoctorReport, KindDeps, LentServices, WorkerKind } from '../kind.js';
import { WorkerCatalog, type WorkerEntry } from './catalog.js';
import { AnswerChecker } from './check-lend.js';
import { SCRIPT_ERROR_CODES } from './errors.js';
import { InterpreterResolver } from './interpreters.js';
import { OutlineLender } from './lend.js';
import { Descendants } from './descendants.js';
import { GroupRecords } from './orphans.js';
import { planScriptJob, type ScriptJobRequest } from './plan.js';
import { SCRIPT_KIND, ScriptPool } from './pool.js';
import { createSpawner } from './relay-spawner.js';
import { DirectSpawner } from './spawner.js';
import { SCRIPT_CONSTRAINTS, SCRIPT_SETTINGS, type ScriptConfig } from './settings.js';
import { StateLayout } from '../../store/layout.js';

// What the kind's tools use, from here: tools never import a kind's insides.
export { MAX_PACK } from './pack.js';
export { type ScriptTaskInput, scriptTaskInputSchema } from './job-options.js';
export type { WorkerEntry } from './catalog.js';

/** Most tasks in one run_script_batch job (inputs, inline or in inputs_file). */
export const SCRIPT_MAX_TASKS = 10_000;

/** What the script tools use. */
export interface ScriptServices {
  /** Checks a run_script_batch request and makes its job (nothing is submitted). */
  plan(request: ScriptJobRequest): Promise<JobPlan>;
  /** The workers run_script_batch can run, as list_workers shows them. */
  workers(): Promise<WorkerEntry[]>;
  readonly workerDirs: readonly string[];
  /** Executables the user allowed as `command`. */
  readonly allowCommands: readonly string[];
}

/**
 * The `script` kind: worker scripts (or allowed commands) run once per input in a subprocess pool,
 * each task in its own process group, or served by long-lived warm processes (see warm.ts). Running groups are recorded under the state dir, so the
 * next start ends those of a server that died (see orphans.ts).
 */
export const scriptKind: WorkerKind<typeof SCRIPT_SETTINGS, ScriptServices> = {
  name: SCRIPT_KIND,
  summary: 'worker scripts in a subprocess pool',
  settings: SCRIPT_SETTINGS,
  constraints: SCRIPT_CONSTRAINTS,
  errorCodes: SCRIPT_ERROR_CODES,
  taskCap: () => ({ max: SCRIPT_MAX_TASKS }),
  create(config, deps) {
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
    });
    // A worker script has no business with the secrets the server uses itself.
    const baseEnv = Object.fromEntries(Object.entries(deps.env).filter(([name]) => !deps.secretEnv.has(name)));
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
      descendants: new Descendants({ stateDir: config.stateDir, processes, log, procDir: platform.procDir }),
      spawner: script.spawnHelper
        ? createSpawner({
            python: () => resolver.resolve(script.interpreters['.py'] ?? 'python3'),
            log,
            processes,
            env: baseEnv,
            platform,
          })
        : new DirectSpawner(platform),
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
        allowCommands: catalog.allowCommands,
      },
      close: async () => {
        await pool.close();
        await lent.close();
      },
    };
  },
  doctor: checkScripts,
};

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

/** `doctor`: Python for the bundled workers, and every workers folder. */
async function checkScripts(
  config: CoreConfig & ScriptConfig,
  deps: Pick<KindDeps, 'log' | 'env' | 'platform'>,
  report: DoctorReport,
): Promise<void> {
  report.section('Scripts');
  const resolver = new InterpreterResolver({
    searchPath: config.script.searchPath,
    nodePath: config.script.nodePath,
    env: deps.env,
    log: deps.log,
    lookup: { platform: deps.platform },
  });
  const name = config.script.interpreters['.py'] ?? 'python3';
  let executable: string | undefined;
  try {
    executable = await resolver.resolve(name);
  } catch (error) {
    report.fail(
      `${name} not found: ${firstLine(error)}`,
      'Install Python 3 (python.org, your package manager or pyenv), or set "script.interpreters" {".py": "/path/to/python3"} in the config file.',
    );
  }
  if (executable !== undefined) {
    const result = await execa(executable, ['--version'], {
      reject: false,
      timeout: 15_000,
      stdin: 'ignore',
      env: { ...deps.env },
      extendEnv: false,
    });
    const version = `${String(result.stdout ?? '')} ${String(result.stderr ?? '')}`.trim();
    if (result.exitCode === 0 && /^Python 3\./.test(version)) report.ok(`${version} at ${executable}`);
    else if (result.exitCode === 0)
      report.warn(
        `${executable} reports "${version}"; worker scripts expect Python 3`,
        'Point ".py" at a Python 3 interpreter in "script.interpreters".',
      );
    else
      report.fail(
        `${executable} --version failed (exit ${String(result.exitCode)}): ${version.slice(0, 200)}`,
        'Repair or reinstall that Python, or point ".py" at another interpreter.',
      );
    if (config.script.spawnHelper) await checkSpawnHelper(executable, deps, report);
  }
  for (const dir of config.workersDirs) {
    try {
      const names = (await readdir(dir)).filter((n) => !n.startsWith('.') && !n.startsWith('_'));
      report.ok(`workers folder ${dir} (${names.length} entries)`);
    } catch (error) {
      report.fail(
        `workers folder ${dir} is not readable: ${firstLine(error)}`,
        'Create it, or remove it from --workers-dir / "workersDirs".',
      );
    }
  }
}

/** Starts one process through the spawn helper, as the pool would start a cold task. */
async function checkSpawnHelper(
  python: string,
  deps: Pick<KindDeps, 'log' | 'env' | 'platform'>,
  report: DoctorReport,
): Promise<void> {
  // Nothing runs long enough to need ending: a helper that dies here has started nothing.
  const spawner = createSpawner({
    python: () => Promise.resolve(python),
    log: deps.log,
    processes: { signalTree: () => false },
    platform: deps.platform,
  });
  if (spawner.mode === 'direct') return;
  let timer: NodeJS.Timeout | undefined;
  try {
    const probe = spawner
      .start({ file: python, args: ['-c', 'pass'], cwd: path.parse(python).root, env: {} })
      .then(async (started) => {
        started.stdout.resume();
        started.stderr.resume();
        return started.exited;
      });
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), 15_000);
    });
    const exit = await Promise.race([probe, timedOut]);
    if (spawner.mode === 'relay' && exit?.code === 0)
      report.ok('spawn helper: cold tasks start through it, not by forking the server');
    else {
      report.warn(
        `the spawn helper did not work (${exit === undefined ? 'no answer in 15 s' : 'it could not run'}): cold tasks start directly from the server, ~15% slower at one process per task`,
        'Check that this Python runs `python3 -I -S -c pass`; or set "script": {"spawnHelper": false} to silence this.',
      );
    }
  } catch (error) {
    report.warn(
      `the spawn helper could not start a process: ${firstLine(error)}`,
      'Set "script": {"spawnHelper": false} in the config file if this persists.',
    );
  } finally {
    clearTimeout(timer);
    await spawner.close();
  }
}

function firstLine(error: unknown): string {
  return errorText(error).split('\n')[0] ?? '';
}
