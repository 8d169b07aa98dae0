#!/usr/bin/env node
// The only module that touches `process`: argv, env, stdio, signals and the exit code.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { renderJobTable } from './commands/jobs.js';
import { configFilePath, parseConfig, type Config } from './config.js';
import { errorText } from './errors.js';
import { createLogger } from './log.js';
import { processControl } from './processes.js';
import { createServer, SERVER_VERSION } from './server.js';

const HELP = `monitor-mcp ${SERVER_VERSION} — an MCP stdio server that runs batches on real parallel workers
(worker scripts, local LLMs, HTTP APIs) as durable jobs for one orchestrating model.

Usage:
  monitor-mcp [options]          run the MCP server on stdio (what an MCP client starts)
  monitor-mcp jobs [options]     print the job table from the state directory
  monitor-mcp doctor [options]   check LLM endpoints, python3, workers and state directory
  monitor-mcp demo               a real MCP client runs two batch jobs over this package's sources
  monitor-mcp --help | --version

Options (also settable in the config file and environment; see the README):
  --config FILE                 JSON config file (default: $XDG_CONFIG_HOME/monitor-mcp/config.json)
  --state-dir DIR               where jobs are kept (default: $XDG_STATE_HOME/monitor-mcp)
  --retention-days N            remove jobs N days after they finish (default 7)
  --workers-dir DIR             another folder of worker scripts (repeatable)
  --root DIR                    folder that paths must stay inside (repeatable; default: the cwd,
                                none when that is /, as under Claude Desktop: then pass --root)
  --allow-command NAME          let run_script_batch run this executable directly (repeatable)
  --concurrency N               default tasks at once per script job (default: CPUs)
  --max-concurrency N           ceiling for script concurrency (default 64)
  --timeout SECONDS             default per-task timeout for scripts (default 300)
  --lmstudio-url URL            LM Studio base URL (default http://127.0.0.1:1234)
  --lmstudio-concurrency N      parallel predictions sent to LM Studio (default 4)
  --endpoint [NAME=]URL[@N]     an OpenAI-compatible endpoint (repeatable; replaces the default list)
  --model ID                    default model for lmstudio_complete
  --http-allow-host HOST        host http_batch may call (repeatable)
  --http-allow-private          let http_batch reach loopback and private addresses
  --http-secret-env NAME        env var http_batch headers may use as \${env:NAME} (repeatable)
  --wait-seconds N              default wait of collect_results (default 20)
  --max-wait-seconds N          longest wait of any call (default 50)
  --budget-tokens N             default page size of collect_results (default 8000)
  --log-level LEVEL             debug | info | warn | error (stderr only)
`;

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function loadConfig(argv: readonly string[]): Config {
  const env = process.env;
  const home = homedir();
  const file = configFilePath(argv, env, home);
  let fileText: string | undefined;
  try {
    fileText = readFileSync(file.path, 'utf8');
  } catch (error) {
    if (file.explicit) throw new Error(`Cannot read the config file ${file.path}: ${(error as Error).message}`);
  }
  const sources = { argv, env, home, cpus: cpus().length, packageRoot, cwd: process.cwd(), filePath: file.path };
  const config = parseConfig(fileText === undefined ? sources : { ...sources, fileText });
  config.script.nodePath = process.execPath;
  return config;
}

async function serve(config: Config): Promise<void> {
  const log = createLogger((line) => process.stderr.write(line), config.logLevel);
  const processes = processControl(process.pid, (pid, signal) => {
    process.kill(pid, signal);
  });
  const app = createServer(config, { log, env: process.env, processes });
  await app.start();
  const transport = new StdioServerTransport();
  let closing = false;
  const shutdown = (why: string): void => {
    if (closing) return;
    closing = true;
    log.info(`shutting down (${why}); running tasks will show as interrupted and can be resumed`);
    // Bounded: a wedged close must not keep an orphan server alive after the client left.
    const force = setTimeout(() => process.exit(0), 8000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error(`close failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  // The client died: writing a reply fails (EPIPE). Without a handler that would crash the server
  // before close() stops its workers.
  process.stdout.on('error', () => shutdown('stdout closed'));
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGHUP', () => shutdown('SIGHUP'));
  await app.server.connect(transport);
  log.info(`ready; state in ${config.stateDir}`);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // Anywhere on the line (`monitor-mcp jobs --help`, `--state-dir x -h`): help, not "unknown option".
  if (command === 'help' || argv.some((arg) => arg === '--help' || arg === '-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${SERVER_VERSION}\n`);
    return 0;
  }
  if (command === 'jobs') {
    const config = loadConfig(rest);
    process.stdout.write(await renderJobTable(config.stateDir, Date.now()));
    return 0;
  }
  if (command === 'demo') {
    const { runDemo } = await import('./demo.js');
    const stateDir = mkdtempSync(path.join(tmpdir(), 'monitor-demo-'));
    try {
      return await runDemo({
        nodePath: process.execPath,
        cliPath: fileURLToPath(import.meta.url),
        repoRoot: packageRoot,
        stateDir,
        cpus: cpus().length,
        write: (text) => process.stdout.write(text),
      });
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  }
  if (command === 'doctor') {
    const config = loadConfig(rest);
    const { runDoctor } = await import('./doctor.js');
    return runDoctor(config, { write: (line: string) => process.stdout.write(line), env: process.env });
  }
  if (command !== undefined && !command.startsWith('--')) {
    process.stderr.write(`Unknown command "${command}".\n\n${HELP}`);
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
    process.stderr.write(`monitor-mcp: ${errorText(error)}\n`);
    process.exit(2);
  },
);
