import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { platformFor, type SystemCommands } from '../../src/platform/index.js';
import { quoteForCmd } from '../../src/platform/win32.js';

/** What the Windows code runs, recorded: these tests run it on Linux, with the tools faked. */
function recorder(
  answers: Record<string, string | undefined> = {},
): SystemCommands & { ran: string[][]; started: string[][] } {
  const ran: string[][] = [];
  const started: string[][] = [];
  return {
    ran,
    started,
    runSync(file, args) {
      ran.push([file, ...args]);
      const script = args.at(-1) ?? '';
      return Object.entries(answers).find(([pid]) => script.includes(`-Id ${pid} `))?.[1];
    },
    startDetached(file, args) {
      started.push([file, ...args]);
    },
  };
}

const env = {
  SystemRoot: 'C:\\Windows',
  ComSpec: 'C:\\Windows\\system32\\cmd.exe',
  PATHEXT: '.COM;.EXE;.BAT;.CMD;.PY',
  ProgramFiles: 'C:\\Program Files',
};
const require = createRequire(import.meta.url);
const crossSpawnEscape = require('cross-spawn/lib/util/escape.js') as {
  command(arg: string): string;
  argument(arg: string, doubleEscape: boolean): string;
};

describe('the Windows platform (run on Linux with its tools faked)', () => {
  it('stops a worker as a tree with taskkill /T, forcing with /F, never through a shell; signal 0 only checks', () => {
    const commands = recorder();
    const win = platformFor('win32', env, commands);
    const alive = new Set([4242]);
    const kill = (pid: number): void => {
      if (!alive.has(pid)) throw Object.assign(new Error('ESRCH'), { code: 'ESRCH' });
    };
    expect(win.signalTree(kill, 4242, 0)).toBe(true);
    expect(commands.started).toEqual([]);
    expect(win.signalTree(kill, 4242, 'SIGTERM')).toBe(true);
    expect(win.signalTree(kill, 4242, 'SIGKILL')).toBe(true);
    expect(commands.started).toEqual([
      ['C:\\Windows\\System32\\taskkill.exe', '/PID', '4242', '/T'],
      ['C:\\Windows\\System32\\taskkill.exe', '/PID', '4242', '/T', '/F'],
    ]);
    // Gone, or a pid that would name this server's own group or every process: nothing is run.
    expect(win.signalTree(kill, 77, 'SIGKILL')).toBe(false);
    expect(win.signalTree(kill, 1, 'SIGKILL')).toBe(false);
    expect(win.signalTree(kill, 0, 'SIGKILL')).toBe(false);
    expect(commands.started).toHaveLength(2);
  });

  it('starts workers without a console window of their own and without a process group', () => {
    expect(platformFor('win32', env, recorder()).workerSpawnOptions).toEqual({ detached: false, windowsHide: true });
  });

  it('tells a process by its start time from PowerShell, within seconds, and a gone one by no answer', () => {
    const commands = recorder({ '4242': '1764460800\r\n', '5000': '' });
    const win = platformFor('win32', env, commands);
    expect(win.processState(4242)).toEqual({ token: 't1764460800', zombie: false });
    expect(win.processState(5000)).toBeUndefined();
    expect(win.processState(6000)).toBeUndefined();
    const [powershell] = commands.ran;
    expect(powershell?.[0]).toBe('C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe');
    expect(powershell).toContain('-NonInteractive');
    // The recorded token of a worker is its spawn time; the check allows the few seconds between.
    const recorded = win.spawnToken(4242, 1764460801_400);
    expect(recorded).toBe('t1764460801');
    expect(win.sameStart('t1764460800', recorded ?? '')).toBe(true);
    expect(win.sameStart('t1764460800', 't1764460900')).toBe(false);
  });

  it('runs a batch file through cmd.exe with every argument quoted exactly as cross-spawn quotes it', () => {
    const win = platformFor('win32', env, recorder());
    const nasty = ['plain', 'two words', 'a"quote', 'trail\\', '%PATH%', 'a&b|c>d', '^caret!', 'back\\\\"slash', ''];
    const line = win.commandLine('C:\\tools\\my worker.cmd', nasty);
    const expected = [
      crossSpawnEscape.command('C:\\tools\\my worker.cmd'),
      ...nasty.map((arg) => crossSpawnEscape.argument(arg, false)),
    ].join(' ');
    expect(line).toEqual({
      file: 'C:\\Windows\\system32\\cmd.exe',
      args: ['/d', '/s', '/c', `"${expected}"`],
      windowsVerbatimArguments: true,
    });
    // An npm cmd shim runs its line through cmd.exe twice: metacharacters escaped twice.
    for (const arg of nasty) expect(quoteForCmd(arg, true)).toBe(crossSpawnEscape.argument(arg, true));
    // An executable is started as it is: no cmd.exe, no quoting (Node quotes for CreateProcess).
    expect(win.commandLine('C:\\Python312\\python.exe', ['x y'])).toEqual({
      file: 'C:\\Python312\\python.exe',
      args: ['x y'],
    });
    expect(win.commandLine('C:\\tools\\RUN.BAT', []).file).toBe('C:\\Windows\\system32\\cmd.exe');
  });

  it("finds commands by PATHEXT, prefers the py launcher for python3, passes over Store stubs and WSL's bash", () => {
    const win = platformFor('win32', env, recorder());
    expect(win.executableNames('py')).toEqual(['py.com', 'py.exe', 'py.bat', 'py.cmd', 'py.py']);
    expect(win.executableNames('tool.exe')).toEqual(['tool.exe']);
    expect(win.interpreterCandidates('python3')).toEqual(['py', 'python', 'python3']);
    expect(win.interpreterCandidates('bash')).toEqual(['bash', 'C:\\Program Files\\Git\\bin\\bash.exe']);
    expect(win.interpreterCandidates('node')).toEqual(['node']);
    expect(win.isStandIn('C:\\Users\\ann\\AppData\\Local\\Microsoft\\WindowsApps\\python3.exe')).toBe(true);
    expect(win.isStandIn('c:\\windows\\system32\\bash.exe')).toBe(true);
    expect(win.isStandIn('C:\\Program Files\\Git\\bin\\bash.exe')).toBe(false);
    expect(win.isRunnable('C:\\w\\job.CMD', 0o666)).toBe(true);
    expect(win.isRunnable('C:\\w\\job', 0o777)).toBe(false);
    expect(win.missingInterpreterHint('bash')).toMatch(/Git for Windows.*Git Bash.*WSL's bash is not used/s);
    expect(win.runsShebangs).toBe(false);
    expect(win.spawnHelper).toBe(false);
    expect(win.procDir).toBeUndefined();
  });

  it('keeps state under %LOCALAPPDATA% and the config under %APPDATA%, and opens a URL without a shell', () => {
    const win = platformFor('win32', env, recorder());
    expect(
      win.folders(
        {
          LOCALAPPDATA: 'C:\\Users\\ann\\AppData\\Local',
          APPDATA: 'C:\\Users\\ann\\AppData\\Roaming',
          XDG_STATE_HOME: '/ignored',
        },
        'C:\\Users\\ann',
      ),
    ).toMatchObject({
      stateDir: 'C:\\Users\\ann\\AppData\\Local\\monitor-mcp\\state',
      configFile: 'C:\\Users\\ann\\AppData\\Roaming\\monitor-mcp\\config.json',
    });
    expect(win.folders({}, 'C:\\Users\\bob')).toMatchObject({
      stateDir: 'C:\\Users\\bob\\AppData\\Local\\monitor-mcp\\state',
      configFile: 'C:\\Users\\bob\\AppData\\Roaming\\monitor-mcp\\config.json',
    });
    expect(win.openUrl('http://127.0.0.1:1/?token=x')).toEqual({
      file: 'C:\\Windows\\System32\\rundll32.exe',
      args: ['url.dll,FileProtocolHandler', 'http://127.0.0.1:1/?token=x'],
    });
    expect(win.pathRules).toEqual({ flavor: 'win32', caseInsensitive: true });
  });
});
