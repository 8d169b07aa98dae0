#!/usr/bin/env node
// The only module that touches `process`: argv, env, stdio, signals and the exit code.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { type Config, configFilePath, configHelp, KINDS, kindTotals, parseConfig } from './registry.js';
import { errorText } from './errors.js';
import { createLogger } from './log.js';
import { platformFor } from './platform/index.js';
import { processControl, type ProcessControl } from './processes.js';
import { createServer, SERVER_VERSION } from './server.js';
import { fileArgumentsPhrase } from './tools/arguments.js';
import type { AnyTool } from './tools/tool.js';
import { terminalJson, terminalText } from './terminal.js';
import { LineTransport, StreamError } from './transport.js';

/** All the CLI prints goes through these: what came from outside cannot steer the terminal (terminal.ts). */
const toStdout = (text: string): boolean => process.stdout.write(terminalText(text));
const toStderr = (text: string): boolean => process.stderr.write(terminalText(text));
function help(): string {
  return `monitor-mcp ${SERVER_VERSION} — an MCP stdio server that runs batches on real parallel workers
(worker scripts, local LLMs, HTTP APIs) as durable jobs for one orchestrating model.

Usage:
  monitor-mcp [options]          run the MCP server on stdio (what an MCP client starts)
  monitor-mcp jobs [JOB_ID] [--watch] [--json] [options]
                                 the job table from the state directory (every server's jobs),
                                 one job's tasks, redrawn every second (--watch), or as JSON
  monitor-mcp dashboard [--port N] [--host ADDR] [--allow-host NAME]... [--open] [options]
                                 a live web page of every job and LLM endpoint on the state
                                 directory (loopback, with a token; prints its URL first).
                                 --host 0.0.0.0 serves other machines over plain HTTP (the token
                                 in clear), answering to this machine's addresses and each
                                 --allow-host name; safer: ssh -L PORT:127.0.0.1:PORT to a
                                 dashboard on loopback
  monitor-mcp doctor [options]   check LLM endpoints, python3, workers and state directory
  monitor-mcp config --client claude-code|claude-desktop|cursor|vscode [--root DIR]
                                 print a ready config for that client, with absolute paths
  monitor-mcp new-worker NAME [--node] [--dir DIR]
                                 write a working warm worker NAME.py (NAME.mjs with --node) to the
                                 user workers folder (or DIR) and print how to try it
  monitor-mcp demo [options]     a real MCP client runs two batch jobs over this package's sources
                                 (and a small LLM job when an endpoint answers; options go to its server)
  monitor-mcp --help | --version

Options (also settable in the config file and environment; see the README):
${configHelp()}
`;
}

/** How long after the client's `initialized` the server builds its pools and recovers its jobs. */
const START_AFTER_HANDSHAKE_MS = 100;
/** When to build them for a client that never sends `initialized`. */
const START_FALLBACK_MS = 2000;
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The system this runs on: everything that differs between Linux, macOS and Windows asks it. */
const platform = platformFor(process.platform, process.env);

/** This process, able to check and stop others (the only real `process.kill`). */
function thisProcess(): ProcessControl {
  return processControl(
    process.pid,
    (pid, signal) => {
      process.kill(pid, signal);
    },
    { platform, startedAtMs: Date.now() - process.uptime() * 1000 },
  );
}

function loadConfig(argv: readonly string[]): Config {
  const env = process.env;
  const home = homedir();
  const file = configFilePath(argv, env, home, platform);
  let fileText: string | undefined;
  try {
    fileText = readFileSync(file.path, 'utf8');
  } catch (error) {
    if (file.explicit) throw new Error(`Cannot read the config file ${file.path}: ${(error as Error).message}`);
  }
  const sources = {
    argv,
    env,
    home,
    cpus: cpus().length,
    packageRoot,
    cwd: process.cwd(),
    execPath: process.execPath,
    filePath: file.path,
    platform,
  };
  return parseConfig(fileText === undefined ? sources : { ...sources, fileText });
}

/**
 * With MONITOR_EVENT_LOOP_STATS=FILE the server writes its event-loop delay (p50, p99, max in ms,
 * from node:perf_hooks) to FILE when it shuts down: how `npm run bench` sees that the server stays
 * responsive under load.
 */
function recordEventLoopDelay(): (() => void) | undefined {
  const file = process.env.MONITOR_EVENT_LOOP_STATS;
  if (!file) return undefined;
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  return () => {
    histogram.disable();
    const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
    writeFileSync(
      file,
      JSON.stringify({ p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max) }),
    );
  };
}

async function serve(config: Config): Promise<void> {
  const log = createLogger((line) => toStderr(line), config.logLevel);
  const writeLoopStats = recordEventLoopDelay();
  const processes = thisProcess();
  const app = createServer(config, { log, env: process.env, processes, platform });
  const transport = new LineTransport({
    input: process.stdin,
    output: process.stdout,
    maxMessageBytes: config.maxMessageMB * 1024 * 1024,
    log,
    fileArguments: fileArgumentsPhrase(KINDS.flatMap(({ tools }): readonly AnyTool[] => tools)),
  });
  let closing = false;
  /** `exitCode` 1 when the shutdown is for an error: a client or supervisor must not read it as a clean end. */
  const shutdown = (why: string, exitCode = 0): void => {
    if (closing) return;
    closing = true;
    log.info(`shutting down (${why}); running tasks will show as interrupted and can be resumed`);
    // Bounded: a wedged close must not keep an orphan server alive after the client left.
    const force = setTimeout(() => process.exit(exitCode), 8000);
    force.unref();
    app.close().then(
      () => {
        writeLoopStats?.();
        process.exit(exitCode);
      },
      (error: unknown) => {
        log.error(`close failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  // The transport listens for stdin's end and for stdout's errors (without a listener, the EPIPE of
  // a dead client would crash the server before close() stops its workers); it reports a broken
  // stream to onerror before it closes.
  transport.onerror = (error) => {
    if (!(error instanceof StreamError)) {
      log.error(`transport: ${error.message}`);
      return;
    }
    // The client died: its end of stdout is gone. That is how a session ends, not a failure.
    const code = (error.cause as NodeJS.ErrnoException).code;
    if (error.stream === 'output' && (code === 'EPIPE' || code === 'ECONNRESET')) {
      shutdown('stdout closed');
      return;
    }
    log.error(error.message);
    shutdown(error.stream === 'input' ? 'stdin failed' : 'stdout failed', 1);
  };
  transport.onclose = () => shutdown('stdin closed');
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGHUP', () => shutdown('SIGHUP'));
  await app.server.connect(transport);
  // Built after the handshake, so its imports do not slow the answers to initialize and tools/list:
  // a moment after the client's `initialized` (or later, for a client that never sends it). A tool
  // call that comes first starts it itself and waits for it.
  await new Promise<void>((resolve) => {
    const fallback = setTimeout(resolve, START_FALLBACK_MS);
    app.server.oninitialized = () => {
      clearTimeout(fallback);
      setTimeout(resolve, START_AFTER_HANDSHAKE_MS);
    };
  });
  if (closing) return;
  await app.start();
  log.info(`ready; state in ${config.stateDir}`);
}

/** `monitor-mcp jobs`: the table, one job (a job id), `--json`, and `--watch` (every second until Ctrl-C). */
async function jobsCommand(argv: readonly string[]): Promise<number> {
  const watch = argv.includes('--watch');
  const json = argv.includes('--json');
  const jobId = argv.find((arg) => /^job_[A-Za-z0-9_-]{22}$/.test(arg));
  const config = loadConfig(argv.filter((arg) => arg !== '--watch' && arg !== '--json' && arg !== jobId));
  const owners = thisProcess();
  // Damaged jobs are left out of the table, and said on stderr.
  const log = createLogger((line) => toStderr(line), config.logLevel);
  const [{ DashboardData }, { renderJobDetail, renderJobTable }] = await Promise.all([
    import('./dashboard/data.js'),
    import('./commands/jobs.js'),
  ]);
  const data = new DashboardData(config.stateDir, (pid, start) => owners.isAlive(pid, start), log, kindTotals());
  const frame = async (): Promise<string | undefined> => {
    const now = Date.now();
    if (jobId !== undefined) {
      const detail = await data.tasks(jobId, 0, Number.MAX_SAFE_INTEGER);
      if (!detail) return undefined;
      return json ? `${JSON.stringify({ job: detail.job, tasks: detail.tasks })}\n` : renderJobDetail(detail, now);
    }
    const { jobs, state_dir_note: note } = await data.snapshot(now);
    return json
      ? `${JSON.stringify({ state_dir: config.stateDir, ...(note === undefined ? {} : { state_dir_note: note }), jobs })}\n`
      : renderJobTable(jobs, config.stateDir, now, note);
  };
  const first = await frame();
  if (first === undefined) {
    toStderr(`No job ${jobId ?? ''} in ${config.stateDir}. \`monitor-mcp jobs\` lists the jobs there.\n`);
    return 1;
  }
  // A terminal is redrawn in place (our clear-screen raw, the frame escaped); a pipe or --json gets frame after frame.
  const redraw = (text: string): boolean => {
    if (!json && process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
    return process.stdout.write(json ? terminalJson(text) : terminalText(text));
  };
  redraw(first);
  if (!watch) return 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      frame().then(
        (text) => redraw(text ?? `No job ${jobId ?? ''} any more.\n`),
        (error: unknown) => toStderr(`monitor-mcp jobs: ${errorText(error)}\n`),
      );
    }, 1000);
    const stop = (): void => {
      clearInterval(timer);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

/** `monitor-mcp dashboard`: serves the live page until Ctrl-C; its first line on stdout is the URL. */
async function dashboardCommand(argv: readonly string[]): Promise<number> {
  const rest = [...argv];
  const take = (flag: string): string | undefined => {
    const at = rest.indexOf(flag);
    if (at === -1) return undefined;
    const value = rest[at + 1];
    if (value === undefined || value.startsWith('--')) throw new Error(`${flag} needs a value.`);
    rest.splice(at, 2);
    return value;
  };
  const portText = take('--port');
  const host = take('--host') ?? '127.0.0.1';
  const allowHosts: string[] = [];
  for (let name = take('--allow-host'); name !== undefined; name = take('--allow-host')) allowHosts.push(name);
  const open = rest.includes('--open');
  const config = loadConfig(rest.filter((arg) => arg !== '--open'));
  const port = portText === undefined ? 0 : Number(portText);
  if (!(Number.isInteger(port) && port >= 0 && port < 65536))
    throw new Error(`--port must be a whole number from 0 to 65535, got ${portText ?? ''}.`);
  const log = createLogger((line) => toStderr(line), config.logLevel);
  const owners = thisProcess();
  const { Dashboard } = await import('./dashboard/http.js');
  const { dashboardAssets } = await import('./dashboard/assets.js');
  const { DashboardData } = await import('./dashboard/data.js');
  const dashboard = new Dashboard({
    data: new DashboardData(config.stateDir, (pid, start) => owners.isAlive(pid, start), log, kindTotals()),
    stateDir: config.stateDir,
    host,
    port,
    allowHosts,
    assets: dashboardAssets(packageRoot),
    log,
  });
  await dashboard.start();
  toStdout(`Dashboard: ${dashboard.url}\n`);
  if (!isLoopbackHost(host))
    toStderr(
      `Warning: the dashboard listens on ${host}, not on loopback, over plain HTTP: its token (in the URL, then in a cookie) travels in clear text, and anyone who sees it can read every job's output and cancel or resume jobs. It answers to the Host names ${dashboard.allowedHosts.join(', ')} (more with --allow-host NAME). From another machine, prefer SSH port forwarding to a loopback dashboard: ssh -L PORT:127.0.0.1:PORT this-machine, then monitor-mcp dashboard --port PORT here.\n`,
    );
  if (open) openBrowser(dashboard.url);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await dashboard.close();
  return 0;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** The user's browser, without a shell: the URL is one argument. */
function openBrowser(url: string): void {
  const command = platform.openUrl(url);
  try {
    const child = spawn(command.file, command.args, { stdio: 'ignore', detached: true, windowsHide: true });
    child.on('error', () =>
      toStderr(`Could not open a browser; open ${url.split('?')[0] ?? url} with the printed URL.\n`),
    );
    child.unref();
  } catch {
    toStderr('Could not open a browser; open the printed URL.\n');
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // Anywhere on the line (`monitor-mcp jobs --help`, `--state-dir x -h`): help, not "unknown option".
  if (command === 'help' || argv.some((arg) => arg === '--help' || arg === '-h')) {
    toStdout(help());
    return 0;
  }
  if (command === '--version' || command === '-v') {
    toStdout(`${SERVER_VERSION}\n`);
    return 0;
  }
  if (command === 'jobs') return jobsCommand(rest);
  if (command === 'dashboard') return dashboardCommand(rest);
  if (command === 'demo') {
    const { runDemo } = await import('./demo.js');
    // Kept after the demo (its last lines say how to remove it): the commands it prints show its jobs.
    const stateDir = mkdtempSync(path.join(tmpdir(), 'monitor-demo-'));
    return runDemo({
      nodePath: process.execPath,
      cliPath: fileURLToPath(import.meta.url),
      repoRoot: packageRoot,
      stateDir,
      cpus: cpus().length,
      cwd: process.cwd(),
      searchPath: process.env.PATH ?? '',
      platform,
      serverArgs: rest,
      write: (text) => toStdout(text),
    });
  }
  if (command === 'config') {
    const { clientConfig, parseConfigCommand } = await import('./commands/client-config.js');
    const options = parseConfigCommand(rest, process.cwd());
    const config = clientConfig({
      ...options,
      node: process.execPath,
      cli: fileURLToPath(import.meta.url),
      desktopConfigFile: platform.folders(process.env, homedir()).claudeDesktopConfig,
      ...(options.root === undefined ? {} : { root: options.root }),
      ...(options.name === undefined ? {} : { name: options.name }),
    });
    toStderr(`Put this in ${config.where}:\n`);
    process.stdout.write(terminalJson(`${JSON.stringify(config.json, null, 2)}\n`));
    return 0;
  }
  if (command === 'new-worker') {
    const { parseNewWorkerCommand, writeNewWorker } = await import('./commands/new-worker.js');
    const parsed = parseNewWorkerCommand(rest, process.cwd());
    const config = loadConfig(parsed.configArgs);
    const { report } = await writeNewWorker({
      command: parsed,
      workersDirs: config.workersDirs,
      bundledDir: config.bundledWorkersDir,
      userDir: config.userWorkersDir,
      os: platform.os,
    });
    toStdout(report);
    return 0;
  }
  if (command === 'doctor') {
    const config = loadConfig(rest);
    const { runDoctor } = await import('./doctor.js');
    return runDoctor(config, { write: (line: string) => toStdout(line), env: process.env, platform });
  }
  if (command !== undefined && !command.startsWith('--')) {
    toStderr(`Unknown command "${command}".\n\n${help()}`);
    return 2;
  }
  await serve(loadConfig(argv));
  return -1;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    toStderr(`monitor-mcp: ${errorText(error)}\n`);
    process.exit(2);
  },
);
