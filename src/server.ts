import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { type Config, describeKinds, type KindFacts } from './registry.js';
import type { Engine } from './engine/engine.js';
import type { Ownership } from './engine/types.js';
import { silentLogger, type Logger } from './log.js';
import type { ProcessControl } from './processes.js';
import { LINUX, type Platform } from './platform/index.js';
import { registerPrompts } from './prompts/register.js';
import { ParamsCheckingServer } from './request-params.js';
import { handleToolCalls } from './server-calls.js';
import { LazyRuntime } from './server-start.js';
import { toolTable } from './server-tools.js';
import { serveJobsView } from './tools/ui.js';

export const SERVER_NAME = 'monitor-mcp';
export const SERVER_VERSION = '0.1.0';

export interface ServerDeps {
  log?: Logger;
  /**
   * The environment secrets are read from (`${env:NAME}` in http_batch headers, API key vars):
   * the CLI passes process.env, tests their own map. Values are read when needed, never stored.
   */
  env?: Readonly<Record<string, string | undefined>>;
  /** This process and a liveness check, so servers sharing a state dir leave each other's jobs alone. */
  ownership?: Ownership;
  /**
   * This process and the right to signal others: worker process groups are stopped through it,
   * ownership (when not given), and the recording of worker process groups, which lets the next
   * start end the workers of a server that was killed. createServer requires it: only the CLI (or
   * a test) holds `process`.
   */
  processes?: ProcessControl;
  /** The system the server runs on (the CLI's `process.platform`); Linux when not given. */
  platform?: Platform;
}

export interface MonitorServer {
  server: Server;
  /** The engine, once start() has finished (throws before). */
  readonly engine: Engine;
  /**
   * Builds the kinds and the engine and loads earlier jobs from the state directory. Call it right
   * after connecting a transport: the server answers initialize and tools/list without it, and every
   * tool call waits for it (a call that comes first starts it).
   */
  start(): Promise<void>;
  /** Stops running work (it loads as `interrupted` next time) and closes every kind. */
  close(): Promise<void>;
}

function instructions(config: Config, kinds: readonly KindFacts[]): string {
  const workers = kinds.map((k) => {
    const dispatch = k.tools.filter((t) => t.dispatch).map((t) => t.name);
    return dispatch.length > 0 ? `${k.summary} (${dispatch.join(', ')})` : k.summary;
  });
  const listed =
    workers.length > 1 ? `${workers.slice(0, -1).join(', ')}, and ${workers.at(-1) ?? ''}` : (workers[0] ?? '');
  return [
    `monitor-mcp runs work on real parallel workers on this machine: ${listed}.`,
    `Working pattern: 1) submit a whole batch with one dispatch tool; it returns a job_id at once. 2) Keep working on something else meanwhile. 3) Call collect_results with the job_id: it waits (bounded) for the job and returns status counts and a page of results within an output budget. Every reply's "next" says the exact call to make next (the next page, newer results, or resume_job for interrupted tasks). Merge the results yourself, or let merge "json"/"text" join them with their ids.`,
    `Results live on disk (${config.stateDir}) and survive a server restart; jobs are removed ${config.retentionDays} days after they finish. Tasks cut off by a restart are "interrupted": resume_job runs them again. list_jobs shows every job; cancel_job stops one.`,
    'Prefer sending file paths to workers over pasting file contents: the workers read the files, so their contents never pass through your context.',
    ...kinds.flatMap((k) => k.instructions),
  ].join('\n');
}

/**
 * Builds the MCP server: the kinds' tools and the job tools, listed from the kinds' facts; the
 * kinds themselves (their pools) and the engine are built by start(). Side-effect free: nothing is
 * read, written or listened to until start() and a transport's connect().
 */
export function createServer(
  config: Config,
  deps: ServerDeps & Required<Pick<ServerDeps, 'processes'>>,
): MonitorServer {
  const log = deps.log ?? silentLogger;
  const kinds = describeKinds(config);
  const runtime = new LazyRuntime({
    config,
    log,
    env: deps.env ?? {},
    processes: deps.processes,
    ownership: deps.ownership ?? deps.processes,
    platform: deps.platform ?? LINUX,
    version: SERVER_VERSION,
  });
  const table = toolTable(kinds);

  // Wrongly typed params answer -32602 with one line, not -32603 with zod's issue list.
  const server = new ParamsCheckingServer(
    { name: SERVER_NAME, version: SERVER_VERSION },
    { capabilities: { tools: {}, prompts: {}, resources: {}, logging: {} }, instructions: instructions(config, kinds) },
  );
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: table.listed }));
  registerPrompts(server, { roots: config.allowedRoots, rules: config.pathRules });
  handleToolCalls(server, { config, log, table, runtime: () => runtime.ready() });
  serveJobsView(server, log);

  return {
    server,
    get engine(): Engine {
      const built = runtime.current;
      if (!built) throw new Error('The engine is built by start(): await it first.');
      return built.engine;
    },
    async start() {
      await runtime.ready();
    },
    async close() {
      await runtime.close();
      await server.close().catch(() => undefined);
    },
  };
}
