import path from 'node:path';
import type { CoreConfig } from '../../config/core.js';
import { errorText } from '../../errors.js';
import type { DoctorReport, KindDeps } from '../kind.js';
import { WorkerCatalog } from './catalog.js';
import { InterpreterResolver } from './interpreters.js';
import { createSpawner } from './relay-spawner.js';
import type { ScriptConfig } from './settings.js';

/** `doctor`: Python for the bundled workers, and every workers folder. */
export async function checkScripts(
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
    const { execa } = await import('execa');
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
  await checkWorkersFolders(config, resolver, deps, report);
}

/** Each workers folder: there (or, for the user's, not yet: that is fine), how many workers, and names one hides from another. */
async function checkWorkersFolders(
  config: CoreConfig & ScriptConfig,
  resolver: InterpreterResolver,
  deps: Pick<KindDeps, 'log' | 'platform'>,
  report: DoctorReport,
): Promise<void> {
  const catalog = new WorkerCatalog({
    workersDirs: config.workersDirs,
    allowCommands: [],
    interpreters: config.script.interpreters,
    searchPath: config.script.searchPath,
    resolver,
    log: deps.log,
    platform: deps.platform,
  });
  const role = (dir: string): string =>
    dir === config.bundledWorkersDir
      ? 'bundled workers folder'
      : dir === config.userWorkersDir
        ? 'user workers folder'
        : 'workers folder';
  const { workers, folders } = await catalog.survey();
  for (const folder of folders) {
    if (folder.exists) report.ok(`${role(folder.dir)} ${folder.dir} (${folder.workers} worker(s))`);
    else if (folder.dir === config.userWorkersDir)
      report.ok(
        `user workers folder ${folder.dir} (not created yet: \`monitor-mcp new-worker NAME\` writes a first worker there)`,
      );
    else
      report.fail(
        `${role(folder.dir)} ${folder.dir} is not readable`,
        'Create it, or remove it from --workers-dir / "workersDirs".',
      );
  }
  for (const worker of workers) {
    if (worker.shadows)
      report.warn(
        `${worker.name} in ${worker.dir} hides the same-named worker in ${worker.shadows.join(', ')} (the earlier folder wins)`,
        'Rename the later one to run it.',
      );
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
