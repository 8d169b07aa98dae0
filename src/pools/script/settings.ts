import path from 'node:path';
import { MAX_TIMEOUT_SECONDS } from '../../config/core.js';
import {
  atMost,
  bool,
  type Constraint,
  derived,
  int,
  num,
  platformOf,
  type SettingContext,
  type SettingsTree,
  type ValuesOf,
} from '../../config/settings.js';
import { list, record } from '../../config/collections.js';

/** The bundled workers/ folder: its workers, and the helpers any worker may import (_common.py, _serve.mjs). */
export function bundledWorkersFolder(ctx: Pick<SettingContext, 'packageRoot'>): string {
  return path.join(ctx.packageRoot, 'workers');
}

/** The user's own workers: `workers/` in the folder of the default config file (computed from env, as that is). */
export function userWorkersFolder(ctx: Pick<SettingContext, 'env' | 'home' | 'platform'>): string {
  const platform = platformOf(ctx);
  const configFile = platform.folders(ctx.env, ctx.home).configFile;
  return platform.path.join(platform.path.dirname(configFile), 'workers');
}

export const SCRIPT_SETTINGS = {
  workersDirs: list({
    help: 'More folders of worker scripts, after the bundled one and the user workers folder',
    details:
      'File, env and flags add up. The user workers folder (Linux: $XDG_CONFIG_HOME/monitor-mcp/workers; macOS: ~/Library/Application Support/monitor-mcp/workers; Windows: %APPDATA%\\monitor-mcp\\workers) may be missing. When two folders hold the same name, the earlier one wins',
    item: 'folder',
    paths: true,
    combine: 'add',
    default: (ctx) => [bundledWorkersFolder(ctx), userWorkersFolder(ctx)],
    defaultText: 'the bundled workers/, then the user workers folder (workers/ beside the default config file)',
    env: { name: 'MONITOR_WORKERS_DIRS', separator: 'path' },
    flag: '--workers-dir DIR',
  }),
  bundledWorkersDir: derived(
    'The bundled workers folder: its helpers (_common.py, _serve.mjs) are importable by every worker',
    bundledWorkersFolder,
  ),
  userWorkersDir: derived(
    'The user workers folder (searched after the bundled one; `monitor-mcp new-worker` writes there)',
    userWorkersFolder,
  ),
  allowCommands: list({
    help: 'Executables run_script_batch may run directly as `command`',
    details: 'Names on PATH or absolute paths; file, env and flags add up',
    item: 'command',
    combine: 'add',
    default: [],
    env: { name: 'MONITOR_ALLOW_COMMANDS', separator: ',' },
    flag: '--allow-command NAME',
  }),
  allowEnv: list({
    help: "Variables run_script_batch's `env` may set, besides the harmless ones (LANG, TZ, thread counts, …)",
    details: 'Exact names, or a prefix ending in * (MYTOOL_*); file, env and flags add up',
    item: 'variable name',
    combine: 'add',
    default: [],
    env: { name: 'MONITOR_ALLOW_ENV', separator: ',' },
    flag: '--allow-env NAME',
  }),
  script: {
    maxConcurrency: int({
      help: 'Ceiling for one script job and for all script tasks together',
      default: 64,
      min: 1,
      max: 1024,
      flag: '--max-concurrency N',
    }),
    defaultConcurrency: int({
      help: 'Default tasks at once per script job',
      default: (ctx) => Math.max(1, ctx.cpus),
      defaultText: 'number of CPUs',
      min: 1,
      flag: '--concurrency N',
    }),
    defaultTimeoutSeconds: num({
      help: 'Default per-task timeout of scripts, in seconds',
      default: 300,
      min: 0.001,
      max: MAX_TIMEOUT_SECONDS,
      flag: '--timeout SECONDS',
    }),
    killGraceSeconds: num({
      help: "After SIGTERM (timeout or cancel), seconds a task's process group gets before SIGKILL",
      default: 2,
      min: 0,
      max: 60,
    }),
    outputCapBytes: int({
      help: "stdout/stderr kept in memory per task; the rest streams to the task's output file",
      default: 1024 * 1024,
      min: 1,
    }),
    maxTaskOutputBytes: int({
      help: 'Bytes of stdout and stderr together one task may write to disk; the rest is counted, not kept',
      default: 64 * 1024 * 1024,
      min: 1024,
      flag: '--max-task-output-bytes N',
    }),
    maxJobOutputBytes: int({
      help: 'Bytes of output all tasks of one job together may write to disk',
      default: 1024 * 1024 * 1024,
      min: 1024,
      flag: '--max-job-output-bytes N',
    }),
    spawnHelper: bool({
      help: 'Start cold workers through a small long-lived Python helper instead of forking the server for each task',
      details:
        'Linux only; forking the server copies its page tables per task. Without a usable python3, tasks start directly',
      default: true,
      env: 'MONITOR_SPAWN_HELPER',
    }),
    warmMaxTasks: int({
      help: 'A warm worker process is replaced after serving this many tasks',
      default: 1000,
      min: 1,
    }),
    warmMaxRssMB: int({
      help: 'A warm worker process whose memory (RSS) is over this many MB after a task is replaced',
      details: 'Read from /proc after each task: Linux only',
      default: 1024,
      min: 1,
    }),
    inlineBytes: int({
      help: 'stdout up to this size comes back whole in a result (parsed JSON or text); above it a preview and a file',
      default: 16 * 1024,
      min: 1,
      max: 1024 * 1024,
    }),
    interpreters: record({
      help: 'Interpreter by file extension',
      details: 'Resolved once to a real path at start: version-manager shims cost ~300 ms a start',
      default: { '.py': 'python3', '.js': 'node', '.mjs': 'node', '.cjs': 'node', '.sh': 'bash' },
      defaultText: '.py python3, .js/.mjs/.cjs node, .sh bash',
      key: /^\.[A-Za-z0-9]+$/,
      keyText: 'extensions (".py")',
      valueText: 'interpreter names or paths',
    }),
    nodePath: derived('The node binary for `.js` workers: the one running the server', (ctx) => ctx.execPath ?? 'node'),
    searchPath: derived(
      "Folders searched for interpreters and commands: the server's PATH",
      (ctx) => ctx.env.PATH || '/usr/local/bin:/usr/bin:/bin',
    ),
  },
} satisfies SettingsTree;

export const SCRIPT_CONSTRAINTS: readonly Constraint[] = [
  atMost('script.defaultConcurrency', 'script.maxConcurrency'),
  atMost('script.inlineBytes', 'script.outputCapBytes'),
  atMost('script.maxTaskOutputBytes', 'script.maxJobOutputBytes'),
];

export type ScriptConfig = ValuesOf<typeof SCRIPT_SETTINGS>;
