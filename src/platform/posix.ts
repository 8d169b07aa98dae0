import path from 'node:path';
import { readProcInfo } from './proc.js';
import type { Folders, OsName, Platform, ProcessState, SystemCommands } from './types.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Start tokens outside Linux: `t<epoch seconds>`, known to a second or two (ps shows elapsed seconds). */
export const START_TOLERANCE_SECONDS = 3;

export function startTokenAt(ms: number): string {
  return `t${Math.round(ms / 1000)}`;
}

/** Exact tokens (Linux's clock ticks) must be equal; `t` tokens may differ by the tolerance. */
export function sameStart(a: string, b: string): boolean {
  if (a.startsWith('t') && b.startsWith('t'))
    return Math.abs(Number(a.slice(1)) - Number(b.slice(1))) <= START_TOLERANCE_SECONDS;
  return a === b;
}

/** `ps -o etime=`: `[[dd-]hh:]mm:ss`, the same on macOS, the BSDs and Linux. Seconds, or undefined. */
export function parseElapsed(text: string): number | undefined {
  const match = /^\s*(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)\s*$/.exec(text);
  if (!match) return undefined;
  const [, days, hours, minutes, seconds] = match;
  return ((Number(days ?? 0) * 24 + Number(hours ?? 0)) * 60 + Number(minutes)) * 60 + Number(seconds);
}

function xdgFolders(env: Env, home: string): Folders {
  return {
    stateDir: path.posix.join(env.XDG_STATE_HOME || path.posix.join(home, '.local', 'state'), 'monitor-mcp'),
    configFile: path.posix.join(env.XDG_CONFIG_HOME || path.posix.join(home, '.config'), 'monitor-mcp', 'config.json'),
    claudeDesktopConfig: undefined,
  };
}

/** macOS: ~/Library/Application Support/monitor-mcp, unless the user set the XDG folders. */
function macFolders(env: Env, home: string): Folders {
  const support = path.posix.join(home, 'Library', 'Application Support', 'monitor-mcp');
  return {
    stateDir: env.XDG_STATE_HOME
      ? path.posix.join(env.XDG_STATE_HOME, 'monitor-mcp')
      : path.posix.join(support, 'state'),
    configFile: env.XDG_CONFIG_HOME
      ? path.posix.join(env.XDG_CONFIG_HOME, 'monitor-mcp', 'config.json')
      : path.posix.join(support, 'config.json'),
    claudeDesktopConfig: path.posix.join(
      home,
      'Library',
      'Application Support',
      'Claude',
      'claude_desktop_config.json',
    ),
  };
}

/**
 * Linux, macOS and other Unixes: workers lead a process group of their own (detached: setsid), so
 * `kill(-pgid)` reaches their children. Linux tells a process's start from /proc (exact, in memory);
 * elsewhere `ps -o etime=` does (one short run, only when a recorded pid must be checked).
 */
export function posixPlatform(
  os: Exclude<OsName, 'win32'>,
  commands: SystemCommands,
  hasProc = os === 'linux',
): Platform {
  const procDir = hasProc ? '/proc' : undefined;
  return {
    os,
    pathRules: { flavor: 'posix', caseInsensitive: os === 'darwin' },
    path: path.posix,
    procDir,
    spawnHelper: hasProc,
    runsShebangs: true,
    folders: os === 'darwin' ? macFolders : xdgFolders,
    workerSpawnOptions: { detached: true, windowsHide: true },
    commandLine: (file, args) => ({ file, args }),
    isRunnable: (_file, mode) => (mode & 0o111) !== 0,
    interpreterCandidates: (name) => [name],
    missingInterpreterHint: () => undefined,
    isStandIn: () => false,
    executableNames: (name) => [name],
    processState(pid): ProcessState | undefined {
      if (hasProc) {
        const info = readProcInfo(pid);
        return info && { token: info.startTime, zombie: info.zombie };
      }
      if (!(Number.isInteger(pid) && pid > 0)) return undefined;
      const line = commands.runSync('ps', ['-o', 'stat=,etime=', '-p', String(pid)], 5000);
      const match = line === undefined ? null : /^\s*(\S+)\s+(\S+)\s*$/.exec(line);
      const elapsed = match?.[2] === undefined ? undefined : parseElapsed(match[2]);
      if (!match || elapsed === undefined) return undefined;
      return { token: startTokenAt(Date.now() - elapsed * 1000), zombie: match[1]?.startsWith('Z') ?? false };
    },
    spawnToken: (pid, nowMs) => (hasProc ? readProcInfo(pid)?.startTime : startTokenAt(nowMs)),
    ownStartToken: (pid, startedAtMs) => (hasProc ? readProcInfo(pid)?.startTime : startTokenAt(startedAtMs)),
    // ps costs a few ms a run; a dashboard asks for every job's server four times a second.
    processStateCacheMs: hasProc ? 0 : 1000,
    sameStart,
    signalTree(kill, pgid, signal) {
      // -0 and -1 would address this server's own group and every process there is.
      if (!(Number.isInteger(pgid) && pgid > 1)) return false;
      try {
        kill(-pgid, signal);
        return true;
      } catch {
        // ESRCH: nothing left in the group (EPERM: not ours to signal).
        return false;
      }
    },
    openUrl: (url) => ({ file: os === 'darwin' ? 'open' : 'xdg-open', args: [url] }),
  };
}
