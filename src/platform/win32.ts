import path from 'node:path';
import { sameStart, startTokenAt } from './posix.js';
import type { CommandLine, Folders, Platform, ProcessState, SystemCommands } from './types.js';

type Env = Readonly<Record<string, string | undefined>>;

/** cmd.exe's metacharacters (cross-spawn's list, after https://qntm.org/cmd). */
const CMD_META = /([()\][%!^"`<>&|;, *?])/g;
/** npm's cmd shims run the command line through cmd.exe a second time. */
const CMD_SHIM = /node_modules[\\/]\.bin[\\/][^\\/]+\.cmd$/i;
const BATCH_FILE = /\.(cmd|bat)$/i;

/** `arg` as one argument of a cmd.exe command line (cross-spawn's escaping, kept byte for byte). */
export function quoteForCmd(arg: string, doubleEscape: boolean): string {
  let quoted = arg.replace(/(?=(\\+?)?)\1"/g, '$1$1\\"').replace(/(?=(\\+?)?)\1$/, '$1$1');
  quoted = `"${quoted}"`.replace(CMD_META, '^$1');
  return doubleEscape ? quoted.replace(CMD_META, '^$1') : quoted;
}

/** Windows PowerShell's answer for `pid`: its start in epoch seconds, or nothing when it is gone. */
const START_QUERY = (pid: number): string =>
  `$p = Get-Process -Id ${pid} -ErrorAction SilentlyContinue; if ($p -and $p.StartTime) { [DateTimeOffset]::new($p.StartTime).ToUnixTimeSeconds() }`;

/** Where Windows keeps what the platform runs, read once from the environment. */
interface WindowsPlaces {
  system32: string;
  /** PATHEXT's extensions, as written (".COM", ".EXE"…). */
  pathExt: string[];
  /** The same, lower case: the extensions a file may be run by. */
  runnable: ReadonlySet<string>;
  gitBash: string;
  comSpec: string;
}

function windowsPlaces(env: Env): WindowsPlaces {
  const systemRoot = env.SystemRoot ?? env.SYSTEMROOT ?? 'C:\\Windows';
  const system32 = path.win32.join(systemRoot, 'System32');
  const pathExt = (env.PATHEXT ?? '.COM;.EXE;.BAT;.CMD').split(';').filter((ext) => ext.startsWith('.'));
  const programFiles = env.ProgramFiles ?? env.PROGRAMFILES ?? 'C:\\Program Files';
  return {
    system32,
    pathExt,
    runnable: new Set(pathExt.map((ext) => ext.toLowerCase())),
    gitBash: path.win32.join(programFiles, 'Git', 'bin', 'bash.exe'),
    comSpec: env.ComSpec ?? env.COMSPEC ?? path.win32.join(system32, 'cmd.exe'),
  };
}

/**
 * Windows: no process groups and no signals. A worker is started in the server's console without a
 * window of its own (detached would open one) and stopped as a tree with `taskkill /T` (`/F` to
 * force), which follows parent links the system keeps. A process's start time comes from
 * PowerShell's Get-Process (only when a recorded pid must be checked, never per task). Batch files
 * are run through cmd.exe with every argument quoted as cross-spawn quotes it; executables found on
 * PATH with PATHEXT; `#!` lines are read by the server (see catalog.ts).
 */
export function win32Platform(env: Env, commands: SystemCommands): Platform {
  const places = windowsPlaces(env);
  const isRunnable = (file: string): boolean => places.runnable.has(path.win32.extname(file).toLowerCase());
  return {
    os: 'win32',
    pathRules: { flavor: 'win32', caseInsensitive: true },
    path: path.win32,
    procDir: undefined,
    spawnHelper: false,
    runsShebangs: false,
    folders: windowsFolders,
    // detached would give each worker a console window; the tree is found by taskkill /T instead.
    workerSpawnOptions: { detached: false, windowsHide: true },
    commandLine: (file, args) => windowsCommandLine(file, args, places.comSpec),
    isRunnable,
    interpreterCandidates: (name) => interpreterCandidates(name, places.gitBash),
    missingInterpreterHint: (name) => missingInterpreterHint(name, places.gitBash),
    isStandIn: (file) => isStandIn(file, places.system32),
    executableNames: (name) => (isRunnable(name) ? [name] : places.pathExt.map((ext) => name + ext.toLowerCase())),
    processState: (pid) => processState(pid, commands, places.system32),
    // Windows PowerShell takes a good part of a second to start.
    processStateCacheMs: 5000,
    spawnToken: (_pid, nowMs) => startTokenAt(nowMs),
    ownStartToken: (_pid, startedAtMs) => startTokenAt(startedAtMs),
    sameStart,
    signalTree: (kill, pid, signal) => signalTree(kill, pid, signal, commands, places.system32),
    openUrl: (url) => ({
      file: path.win32.join(places.system32, 'rundll32.exe'),
      args: ['url.dll,FileProtocolHandler', url],
    }),
  };
}

function windowsFolders(folderEnv: Env, home: string): Folders {
  const local = folderEnv.LOCALAPPDATA || path.win32.join(home, 'AppData', 'Local');
  const roaming = folderEnv.APPDATA || path.win32.join(home, 'AppData', 'Roaming');
  return {
    stateDir: path.win32.join(local, 'monitor-mcp', 'state'),
    configFile: path.win32.join(roaming, 'monitor-mcp', 'config.json'),
    claudeDesktopConfig: path.win32.join(roaming, 'Claude', 'claude_desktop_config.json'),
  };
}

/** A batch file goes through cmd.exe, every argument quoted (twice for npm's shims); anything else runs as it is. */
function windowsCommandLine(file: string, args: readonly string[], comSpec: string): CommandLine {
  if (!BATCH_FILE.test(file)) return { file, args };
  const doubleEscape = CMD_SHIM.test(file);
  const line = [
    path.win32.normalize(file).replace(CMD_META, '^$1'),
    ...args.map((arg) => quoteForCmd(arg, doubleEscape)),
  ].join(' ');
  return { file: comSpec, args: ['/d', '/s', '/c', `"${line}"`], windowsVerbatimArguments: true };
}

function interpreterCandidates(name: string, gitBash: string): string[] {
  const base = name.toLowerCase();
  // python3.exe is seldom on PATH, and when it is, often a Microsoft Store stub: the py launcher first.
  if (base === 'python3' || base === 'python') return ['py', 'python', 'python3'];
  if (base === 'bash') return ['bash', gitBash];
  return [name];
}

function missingInterpreterHint(name: string, gitBash: string): string | undefined {
  if (name.toLowerCase() === 'bash') {
    return `A .sh worker on Windows needs bash: install Git for Windows (it brings Git Bash at ${gitBash}), or map ".sh" to a bash.exe in the config file. WSL's bash is not used: it cannot open Windows paths as given.`;
  }
  if (/^python3?$/i.test(name))
    return 'Install Python 3 from python.org (it brings the py launcher), or map ".py" to a python.exe in the config file.';
  return undefined;
}

function isStandIn(file: string, system32: string): boolean {
  const lower = file.toLowerCase();
  // The Store's app-execution aliases open the Store instead of running; WSL's bash runs Linux.
  return lower.includes('\\microsoft\\windowsapps\\') || lower === path.win32.join(system32, 'bash.exe').toLowerCase();
}

function processState(pid: number, commands: SystemCommands, system32: string): ProcessState | undefined {
  if (!(Number.isInteger(pid) && pid > 0)) return undefined;
  const powershell = path.win32.join(system32, 'WindowsPowerShell', 'v1.0', 'powershell.exe');
  const out = commands.runSync(
    powershell,
    ['-NoLogo', '-NoProfile', '-NonInteractive', '-Command', START_QUERY(pid)],
    15_000,
  );
  const seconds = out === undefined ? NaN : Number(out.trim());
  return Number.isFinite(seconds) && out?.trim() !== '' ? { token: `t${seconds}`, zombie: false } : undefined;
}

function signalTree(
  kill: (pid: number, signal: NodeJS.Signals | 0) => void,
  pid: number,
  signal: NodeJS.Signals | 0,
  commands: SystemCommands,
  system32: string,
): boolean {
  if (!(Number.isInteger(pid) && pid > 1)) return false;
  try {
    kill(pid, 0);
  } catch {
    return false;
  }
  if (signal === 0) return true;
  // Without /F, taskkill asks windowed programs to close; console programs need the forced kill.
  commands.startDetached(path.win32.join(system32, 'taskkill.exe'), [
    '/PID',
    String(pid),
    '/T',
    ...(signal === 'SIGKILL' ? ['/F'] : []),
  ]);
  return true;
}
