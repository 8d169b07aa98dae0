import { realpath, stat } from 'node:fs/promises';
import type { Platform } from './platform/index.js';

/** Where the demo runs and how it was started: enough to print a command the user can copy as is. */
export interface DemoShell {
  /** The node binary and the built cli.js running now. */
  nodePath: string;
  cliPath: string;
  /** The folder the demo was started in (`npm run demo`: the package's). */
  cwd: string;
  /** The user's PATH: `monitor-mcp` and `node` are named bare only when they are these very files there. */
  searchPath: string;
  platform: Platform;
}

/**
 * The words that run this CLI from the user's terminal: `monitor-mcp` when PATH has it and it is
 * this cli.js (installed or linked), else `node dist/src/cli.js` (relative to the folder the demo ran
 * in; absolute outside it), `node` bare when PATH's is this one.
 */
export async function cliCommand(shell: DemoShell): Promise<string[]> {
  const api = shell.platform.path;
  const same = async (name: string, file: string): Promise<boolean> => {
    const found = await onPath(name, shell);
    if (found === undefined) return false;
    const [a, b] = await Promise.all([realpath(found).catch(() => found), realpath(file).catch(() => file)]);
    return a === b;
  };
  if (await same('monitor-mcp', shell.cliPath)) return ['monitor-mcp'];
  const node = (await same('node', shell.nodePath)) ? 'node' : shell.nodePath;
  const relative = api.relative(shell.cwd, shell.cliPath);
  const inside = relative !== '' && !relative.startsWith('..') && !api.isAbsolute(relative);
  return [node, inside ? relative : shell.cliPath];
}

/** The file a shell runs for `name`: the first runnable one on PATH (with PATHEXT's extensions on Windows). */
async function onPath(name: string, shell: DemoShell): Promise<string | undefined> {
  const { platform } = shell;
  for (const dir of shell.searchPath.split(platform.path.delimiter)) {
    if (!platform.path.isAbsolute(dir)) continue;
    for (const candidate of platform.executableNames(name)) {
      const file = platform.path.join(dir, candidate);
      const info = await stat(file).catch(() => undefined);
      if (info?.isFile() && platform.isRunnable(file, info.mode)) return file;
    }
  }
  return undefined;
}

/** A command line as a person types it: a word with a space or a shell's special character in double quotes. */
export function commandLine(words: readonly string[]): string {
  // A backslash stays as it is: it separates Windows paths.
  return words
    .map((word) => (/^[\w@%+=:,./\\-]+$/.test(word) ? word : `"${word.replace(/(["$`])/g, '\\$1')}"`))
    .join(' ');
}

/** How to watch the demo's state directory, printed first (the folder stays after the demo, so the lines hold then too). */
export function watchLines(cli: readonly string[], stateDir: string): string {
  const dashboard = commandLine([...cli, 'dashboard', '--state-dir', stateDir]);
  const jobs = commandLine([...cli, 'jobs', '--watch', '--state-dir', stateDir]);
  return `Watch it live, in another terminal (its jobs stay there after the demo):\n  ${dashboard}\n      a web page: open the URL it prints\n  ${jobs}\n      the job table, redrawn every second\n`;
}

/** Where the demo's jobs stay, and how to remove them. */
export function keptLines(cli: readonly string[], stateDir: string, platform: Platform): string {
  const remove =
    platform.os === 'win32' ? commandLine(['rmdir', '/s', '/q', stateDir]) : commandLine(['rm', '-rf', stateDir]);
  return `\nThe demo's jobs stay in ${stateDir}: ${commandLine([...cli, 'jobs', '--state-dir', stateDir])} lists them, ${commandLine([...cli, 'dashboard', '--state-dir', stateDir])} shows them. Remove the folder when done: ${remove}\n`;
}
