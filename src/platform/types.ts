import type path from 'node:path';
import type { PathRules } from '../paths.js';

/** The operating systems the server knows; any other Unix is treated as `darwin` is (posix, no /proc). */
export type OsName = 'linux' | 'darwin' | 'win32';

/** A process as this system tells it: a start token (to tell it from a later process given its pid). */
export interface ProcessState {
  /** Exact on Linux (clock ticks since boot); `t<epoch seconds>` elsewhere, compared within a few seconds. */
  token: string;
  /** It has exited and waits to be reaped (Linux only says so). */
  zombie: boolean;
}

/** Where the server keeps its state and reads its config by default. */
export interface Folders {
  stateDir: string;
  configFile: string;
  /** Claude Desktop's config file here (it has no Linux build). */
  claudeDesktopConfig: string | undefined;
}

/** How a worker is spawned: argv and the spawn options that make it stoppable as a tree. */
export interface CommandLine {
  file: string;
  args: readonly string[];
  /** The arguments are already quoted for cmd.exe (Windows batch files). */
  windowsVerbatimArguments?: boolean;
}

/** The system tools the platform runs (injected, so every OS's code runs in tests on Linux). */
export interface SystemCommands {
  /** Runs `file` and returns its stdout, or undefined when it could not run or failed. Synchronous: rare, bounded calls. */
  runSync(file: string, args: readonly string[], timeoutMs: number): string | undefined;
  /** Starts `file` and does not wait for it (a tree kill); never throws. */
  startDetached(file: string, args: readonly string[]): void;
}

/**
 * Everything that differs between Linux, macOS and Windows, in one place: nothing else in the code
 * asks which system it runs on.
 */
export interface Platform {
  readonly os: OsName;
  /** How paths are compared here (case, separators, drive letters). */
  readonly pathRules: PathRules;
  /** `path.posix` or `path.win32`: this system's separators and PATH delimiter. */
  readonly path: typeof path.posix;
  /** Where /proc is (Linux): worker descendants by environment, memory of warm workers. */
  readonly procDir: string | undefined;
  /** Whether forking a spawn helper pays (Linux: Node's spawn forks the whole server there). */
  readonly spawnHelper: boolean;
  /** Whether the system itself runs a script's `#!` line (not on Windows: the server reads it). */
  readonly runsShebangs: boolean;

  folders(env: Readonly<Record<string, string | undefined>>, home: string): Folders;

  /** Spawn options that make a worker's whole tree stoppable, without a console window. */
  readonly workerSpawnOptions: { detached: boolean; windowsHide: boolean };
  /** How to start `file` with `args` (a batch file goes through cmd.exe, quoted). Cheap: called per task. */
  commandLine(file: string, args: readonly string[]): CommandLine;
  /** Whether a file of this mode and name may be run directly. */
  isRunnable(file: string, mode: number): boolean;
  /** The names to look for when `name` is asked for as an interpreter (python3 is `py` on Windows). */
  interpreterCandidates(name: string): string[];
  /** What to say when none of the candidates exists (undefined: the general hint). */
  missingInterpreterHint(name: string): string | undefined;
  /** A path found on PATH that is a stand-in which must not be used (Windows Store stubs, WSL's bash). */
  isStandIn(file: string): boolean;
  /** Names a command may have on disk (`py` → `py.exe`, `py.com`, … on Windows). */
  executableNames(name: string): string[];

  /** The state of process `pid`, or undefined when there is none (or the system will not say). */
  processState(pid: number): ProcessState | undefined;
  /** How long an answer of processState may be reused: 0 where it is a read of memory (/proc), longer where it runs a tool. */
  readonly processStateCacheMs: number;
  /** A start token for the process `pid` this server just spawned (cheap: called per task). */
  spawnToken(pid: number, nowMs: number): string | undefined;
  /** This server's own start token. */
  ownStartToken(pid: number, startedAtMs: number): string | undefined;
  /** Whether two start tokens name the same start. */
  sameStart(a: string, b: string): boolean;
  /**
   * Signals a worker's whole tree: its process group on Linux and macOS, its process tree on
   * Windows (`taskkill /T`, `/F` for SIGKILL). Signal 0 only checks. False when nothing got it.
   */
  signalTree(kill: (pid: number, signal: NodeJS.Signals | 0) => void, pid: number, signal: NodeJS.Signals | 0): boolean;
  /** The command that opens `url` in the user's browser (no shell). */
  openUrl(url: string): CommandLine;
}
