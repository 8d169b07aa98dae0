import path from 'node:path';
import * as z from 'zod';
import { MonitorError } from './errors.js';
import { parseHostPatterns } from './pools/http/hosts.js';
import type { LogLevel } from './log.js';

/** One OpenAI-compatible server the LLM pool may send prompts to. */
export interface EndpointConfig {
  /** Short name shown in results and `lmstudio_models`. */
  name: string;
  /** Base URL without `/v1`, e.g. `http://127.0.0.1:1234`. */
  url: string;
  /** Requests in flight at once (LM Studio's "Max Concurrent Predictions" defaults to 4). */
  concurrency: number;
  /** Models served here; empty = ask the server. */
  models: string[];
  /** `lmstudio` enables the native `/api/v0` and `/api/v1` calls; `openai` uses `/v1` only. */
  flavor: 'lmstudio' | 'openai';
  /** Name of the env var holding the bearer token (never the token itself). */
  apiKeyEnv?: string;
}

export interface Config {
  /** Where jobs live: one folder per job. */
  stateDir: string;
  /** Jobs older than this are removed when the server starts. */
  retentionDays: number;
  /** Folders whose scripts `run_script_batch` may run; the bundled `workers/` comes first. */
  workersDirs: string[];
  /** Folders that `cwd` and file arguments must stay inside. */
  allowedRoots: string[];
  /** Executables (names or absolute paths) that run_script_batch may run as `command`; empty = none. */
  allowCommands: string[];
  logLevel: LogLevel;
  script: {
    /** Default tasks at once per job (number of CPUs). */
    defaultConcurrency: number;
    /** Ceiling for any job's `concurrency` and for all script tasks together. */
    maxConcurrency: number;
    defaultTimeoutSeconds: number;
    /** stdout/stderr kept in memory per task; the rest goes to the task's output file. */
    outputCapBytes: number;
    /** Interpreters by extension; resolved once to a real path at start (shims cost ~300 ms a start). */
    interpreters: Record<string, string>;
    /** stdout up to this size comes back whole in a task's value (parsed JSON or text); above it, a preview and a file. */
    inlineBytes: number;
    /** After SIGTERM (timeout or cancel), a worker's process group gets this long before SIGKILL. */
    killGraceSeconds: number;
    /** The node binary for `.js` workers (the CLI sets the running node's own path). */
    nodePath: string;
    /** Folders searched for interpreter and command names (the server's PATH). */
    searchPath: string;
  };
  collect: {
    defaultWaitSeconds: number;
    /** Never wait past the client's patience (Claude Code backgrounds calls after 2 minutes). */
    maxWaitSeconds: number;
    /** Default page size in tokens (≈ 4 characters each). */
    defaultBudgetTokens: number;
    /** Claude Code refuses tool output above 25,000 tokens by default. */
    maxBudgetTokens: number;
  };
  llm: {
    endpoints: EndpointConfig[];
    /** Model used when a request names none; empty = the endpoint's loaded LLM. */
    defaultModel?: string;
    defaultConcurrency: number;
    requestTimeoutSeconds: number;
    maxRetries: number;
    /**
     * Stream answers (SSE): adds time to first token to each result. Off by default: on a machine
     * where the model shares the CPU, per-token events cost throughput (see the README's benchmark).
     */
    stream: boolean;
    /** Largest file (or chunk) read into one prompt. */
    maxFileBytes: number;
    /** Most files one lmstudio_complete call may match. */
    maxFiles: number;
    /** Most tasks (prompts, files × items, chunks) in one lmstudio_complete job. */
    maxTasks: number;
    /** Answer characters kept in a result; longer answers go whole to the task's output file. */
    maxInlineChars: number;
  };
  http: {
    /** Hosts http_batch may call (`api.github.com`, `*.example.com`, `127.0.0.1:8080`). Empty = none. */
    allowHosts: string[];
    /** Allow loopback and private addresses (off: a name resolving there is refused). */
    allowPrivateAddresses: boolean;
    /** Env var names header templates may use (`Bearer ${env:GITHUB_TOKEN}`); empty = none. */
    secretEnv: string[];
    /** Requests in flight at once to one host:port, over all jobs. */
    perHostConcurrency: number;
    /** Requests in flight at once over all hosts and jobs. */
    maxConcurrency: number;
    /** Per attempt, from sending to the last body byte. */
    timeoutSeconds: number;
    /** Response bytes kept inline per request; the full body goes to the result file. */
    maxInlineBytes: number;
    /** JSON bodies up to this size are parsed (and extracted from); larger ones stay in the file. */
    maxJsonBytes: number;
    /** Hard cap on bytes read from one response; the rest is never read. */
    maxResponseBytes: number;
    /** Retries on 429/503 and connection failures. */
    maxRetries: number;
    /** A Retry-After longer than this fails the request instead of waiting. */
    maxRetryAfterSeconds: number;
  };
}

export interface ConfigSources {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
  /** Text of the config file, if one was found (see configFilePath). */
  fileText?: string;
  /** Where the file came from, for error messages and relative paths in it. */
  filePath?: string;
  home: string;
  cpus: number;
  /** The folder holding the bundled `workers/`. */
  packageRoot: string;
  cwd: string;
}

export const DEFAULT_LMSTUDIO_URL = 'http://127.0.0.1:1234';

/** Longest timeout anywhere (a day): Node timers overflow past 2^31-1 ms (~24.8 days) and fire at once. */
export const MAX_TIMEOUT_SECONDS = 86_400;
/** Longest wait of one tool call: Claude Code backgrounds a call after 2 minutes, so stay under it. */
export const MAX_WAIT_SECONDS = 110;

export function defaultConfig(src: Pick<ConfigSources, 'env' | 'home' | 'cpus' | 'packageRoot' | 'cwd'>): Config {
  const stateHome = src.env.XDG_STATE_HOME || path.join(src.home, '.local', 'state');
  return {
    stateDir: path.join(stateHome, 'monitor-mcp'),
    retentionDays: 7,
    workersDirs: [path.join(src.packageRoot, 'workers')],
    // The folder the client started the server in is the project, except the filesystem root:
    // Claude Desktop may start servers in "/", and that would allow every file. Then no folder is
    // allowed until the user names one (--root), and path-taking tools say so.
    allowedRoots: path.parse(path.resolve(src.cwd)).root === path.resolve(src.cwd) ? [] : [src.cwd],
    allowCommands: [],
    logLevel: 'info',
    script: {
      defaultConcurrency: Math.max(1, src.cpus),
      maxConcurrency: 64,
      defaultTimeoutSeconds: 300,
      outputCapBytes: 1024 * 1024,
      interpreters: { '.py': 'python3', '.js': 'node', '.mjs': 'node', '.cjs': 'node', '.sh': 'bash' },
      inlineBytes: 16 * 1024,
      killGraceSeconds: 2,
      nodePath: 'node',
      searchPath: src.env.PATH || '/usr/local/bin:/usr/bin:/bin',
    },
    collect: { defaultWaitSeconds: 20, maxWaitSeconds: 50, defaultBudgetTokens: 8000, maxBudgetTokens: 25000 },
    llm: {
      endpoints: [{ name: 'lmstudio', url: DEFAULT_LMSTUDIO_URL, concurrency: 4, models: [], flavor: 'lmstudio', apiKeyEnv: 'LM_API_TOKEN' }],
      defaultConcurrency: 4,
      requestTimeoutSeconds: 600,
      maxRetries: 3,
      stream: false,
      maxFileBytes: 4 * 1024 * 1024,
      maxFiles: 5000,
      maxTasks: 20000,
      maxInlineChars: 16000,
    },
    http: {
      allowHosts: [],
      allowPrivateAddresses: false,
      secretEnv: [],
      perHostConcurrency: 4,
      maxConcurrency: 64,
      timeoutSeconds: 30,
      maxInlineBytes: 16 * 1024,
      maxJsonBytes: 8 * 1024 * 1024,
      maxResponseBytes: 100 * 1024 * 1024,
      maxRetries: 3,
      maxRetryAfterSeconds: 60,
    },
  };
}

const positiveInt = z.number().int().min(1);
const endpointSchema = z.strictObject({
  name: z.string().min(1).optional(),
  url: z.url(),
  concurrency: positiveInt.max(256).optional(),
  models: z.array(z.string().min(1)).optional(),
  flavor: z.enum(['lmstudio', 'openai']).optional(),
  apiKeyEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
});

/** The config file's shape: every field optional; unknown keys are an error (typos must not pass). */
const fileSchema = z.strictObject({
  stateDir: z.string().min(1).optional(),
  retentionDays: z.number().min(0).optional(),
  workersDirs: z.array(z.string().min(1)).optional(),
  allowedRoots: z.array(z.string().min(1)).optional(),
  allowCommands: z.array(z.string().min(1)).optional(),
  logLevel: z.enum(['debug', 'info', 'warn', 'error']).optional(),
  script: z
    .strictObject({
      defaultConcurrency: positiveInt.optional(),
      maxConcurrency: positiveInt.max(1024).optional(),
      defaultTimeoutSeconds: z.number().positive().max(MAX_TIMEOUT_SECONDS).optional(),
      outputCapBytes: positiveInt.optional(),
      interpreters: z.record(z.string().regex(/^\.[A-Za-z0-9]+$/), z.string().min(1)).optional(),
      inlineBytes: positiveInt.max(1024 * 1024).optional(),
      killGraceSeconds: z.number().min(0).max(60).optional(),
    })
    .optional(),
  collect: z
    .strictObject({
      defaultWaitSeconds: z.number().min(0).optional(),
      maxWaitSeconds: z.number().min(0).max(MAX_WAIT_SECONDS).optional(),
      defaultBudgetTokens: positiveInt.optional(),
      maxBudgetTokens: positiveInt.optional(),
    })
    .optional(),
  llm: z
    .strictObject({
      endpoints: z.array(endpointSchema).min(1).optional(),
      defaultModel: z.string().min(1).optional(),
      defaultConcurrency: positiveInt.optional(),
      requestTimeoutSeconds: z.number().positive().max(MAX_TIMEOUT_SECONDS).optional(),
      maxRetries: z.number().int().min(0).max(10).optional(),
      stream: z.boolean().optional(),
      maxFileBytes: positiveInt.optional(),
      maxFiles: positiveInt.optional(),
      maxTasks: positiveInt.optional(),
      maxInlineChars: positiveInt.optional(),
    })
    .optional(),
  http: z
    .strictObject({
      allowHosts: z.array(z.string().min(1)).optional(),
      allowPrivateAddresses: z.boolean().optional(),
      secretEnv: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/)).optional(),
      perHostConcurrency: positiveInt.max(256).optional(),
      maxConcurrency: positiveInt.max(1024).optional(),
      timeoutSeconds: z.number().positive().max(MAX_TIMEOUT_SECONDS).optional(),
      maxInlineBytes: positiveInt.max(1024 * 1024).optional(),
      maxJsonBytes: positiveInt.max(256 * 1024 * 1024).optional(),
      maxResponseBytes: positiveInt.optional(),
      maxRetries: z.number().int().min(0).max(10).optional(),
      maxRetryAfterSeconds: z.number().min(0).max(3600).optional(),
    })
    .optional(),
});
export type ConfigFile = z.infer<typeof fileSchema>;

/** Which config file to read: --config, else $MONITOR_MCP_CONFIG, else the XDG default (if it exists). */
export function configFilePath(argv: readonly string[], env: ConfigSources['env'], home: string): { path: string; explicit: boolean } {
  const flag = readFlags(argv).config?.at(-1);
  if (flag) return { path: flag, explicit: true };
  if (env.MONITOR_MCP_CONFIG) return { path: env.MONITOR_MCP_CONFIG, explicit: true };
  const configHome = env.XDG_CONFIG_HOME || path.join(home, '.config');
  return { path: path.join(configHome, 'monitor-mcp', 'config.json'), explicit: false };
}

const LIST_FLAGS = ['workers-dir', 'root', 'allow-command', 'http-allow-host', 'http-secret-env', 'endpoint'] as const;
const VALUE_FLAGS = [
  'config', 'state-dir', 'retention-days', 'log-level', 'lmstudio-url', 'model', 'concurrency',
  'max-concurrency', 'timeout', 'wait-seconds', 'max-wait-seconds', 'budget-tokens', 'lmstudio-concurrency',
] as const;
const BOOL_FLAGS = ['http-allow-private'] as const;
type FlagName = (typeof LIST_FLAGS)[number] | (typeof VALUE_FLAGS)[number] | (typeof BOOL_FLAGS)[number];

/** `--name value` and `--name=value`; every flag may repeat (the last wins for single values). */
function readFlags(argv: readonly string[]): Partial<Record<FlagName, string[]>> {
  const known = new Set<string>([...LIST_FLAGS, ...VALUE_FLAGS, ...BOOL_FLAGS]);
  const out: Partial<Record<FlagName, string[]>> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    if (!known.has(name)) {
      throw new MonitorError('INVALID_INPUT', `Unknown option --${name}.`, { hint: 'Run `monitor-mcp --help` for the options.' });
    }
    const key = name as FlagName;
    let value: string;
    if ((BOOL_FLAGS as readonly string[]).includes(name)) value = eq === -1 ? 'true' : arg.slice(eq + 1);
    else if (eq !== -1) value = arg.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new MonitorError('INVALID_INPUT', `Option --${name} needs a value.`);
      value = next;
      i++;
    }
    (out[key] ??= []).push(value);
  }
  return out;
}

function splitList(value: string, separator: string | RegExp): string[] {
  return value.split(separator).map((s) => s.trim()).filter((s) => s.length > 0);
}

function toNumber(value: string, what: string, { integer = false, min = 0, max = Number.POSITIVE_INFINITY } = {}): number {
  const n = Number(value);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    const range = max === Number.POSITIVE_INFINITY ? `≥ ${min}` : `from ${min} to ${max}`;
    throw new MonitorError('INVALID_INPUT', `Expected ${what} to be ${integer ? 'an integer' : 'a number'} ${range}, got "${value}".`);
  }
  return n;
}

function toLogLevel(value: string): LogLevel {
  if (value === 'debug' || value === 'info' || value === 'warn' || value === 'error') return value;
  throw new MonitorError('INVALID_INPUT', `Expected log level debug, info, warn or error, got "${value}".`);
}

/** Port 1234 is LM Studio's; anything else is taken for a plain OpenAI-compatible server. */
function guessFlavor(url: string): EndpointConfig['flavor'] {
  return new URL(url).port === '1234' ? 'lmstudio' : 'openai';
}

/**
 * `[NAME=]URL[@N][#FLAVOR]`: `gpu2=http://10.0.0.2:1234@2`, `ollama=http://127.0.0.1:11434#openai`.
 * FLAVOR is `lmstudio` or `openai`; without it, port 1234 means LM Studio.
 */
function parseEndpointSpec(spec: string, index: number, defaultConcurrency: number): EndpointConfig {
  let rest = spec.trim();
  let flavor: EndpointConfig['flavor'] | undefined;
  const hash = rest.lastIndexOf('#');
  if (hash !== -1) {
    const word = rest.slice(hash + 1).toLowerCase();
    if (word !== 'lmstudio' && word !== 'openai') {
      throw new MonitorError('INVALID_INPUT', `Expected #lmstudio or #openai at the end of --endpoint "${spec}", got "#${word}".`, {
        hint: 'Syntax: --endpoint [NAME=]URL[@CONCURRENCY][#lmstudio|#openai], e.g. gpu2=http://10.0.0.2:1234@2#lmstudio.',
      });
    }
    flavor = word;
    rest = rest.slice(0, hash);
  }
  // Only a number after the last "@" is a concurrency: "user:pass@host" is refused by normaliseUrl.
  const count = /@(\d+)$/.exec(rest);
  const concurrency = count ? toNumber(count[1] ?? '', 'endpoint concurrency', { integer: true, min: 1 }) : defaultConcurrency;
  if (count) rest = rest.slice(0, count.index);
  const eq = rest.indexOf('=');
  const named = eq > 0 && !rest.slice(0, eq).includes('/');
  const name = named ? rest.slice(0, eq) : `endpoint${index + 1}`;
  const url = normaliseUrl(named ? rest.slice(eq + 1) : rest);
  return { name, url, concurrency, models: [], flavor: flavor ?? guessFlavor(url) };
}

function normaliseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new MonitorError('INVALID_INPUT', `Expected an http(s) URL for an endpoint, got "${url}".`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new MonitorError('INVALID_INPUT', `Expected an http(s) URL for an endpoint, got "${url}".`);
  }
  if (parsed.username || parsed.password) {
    // Never echo the password: show the URL without its credentials.
    throw new MonitorError('INVALID_INPUT', `The endpoint URL ${parsed.protocol}//…@${parsed.host}${parsed.pathname} has a user name or password in it; monitor-mcp does not send URL credentials.`, {
      hint: 'Remove them from the URL, put the token in an environment variable and name it with "apiKeyEnv" on the endpoint in the config file (LM Studio endpoints read LM_API_TOKEN by default).',
    });
  }
  // Users paste LM Studio's ".../v1" base URL; the pool appends the paths itself.
  return parsed.href.replace(/\/+$/, '').replace(/\/v1$/, '');
}

/**
 * defaults < config file < environment < command-line flags. Pure: everything it reads comes in
 * through `src`, so tests cover every layer without touching the process.
 */
export function parseConfig(src: ConfigSources): Config {
  const config = defaultConfig(src);
  const fileDir = src.filePath ? path.dirname(src.filePath) : src.cwd;
  const resolveFrom = (base: string, p: string): string => path.resolve(base, expandHome(p, src.home));

  if (src.fileText !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(src.fileText);
    } catch (error) {
      throw new MonitorError('INVALID_INPUT', `Config file ${src.filePath ?? ''} is not valid JSON: ${(error as Error).message}`);
    }
    const parsed = fileSchema.safeParse(raw);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
      throw new MonitorError('INVALID_INPUT', `Config file ${src.filePath ?? ''} is invalid: ${issues}`, {
        hint: 'Fix the file, or see the configuration table in the README.',
      });
    }
    applyFile(config, parsed.data, (p) => resolveFrom(fileDir, p));
  }

  const env = src.env;
  const fromCwd = (p: string): string => resolveFrom(src.cwd, p);
  if (env.MONITOR_STATE_DIR) config.stateDir = fromCwd(env.MONITOR_STATE_DIR);
  if (env.MONITOR_RETENTION_DAYS) config.retentionDays = toNumber(env.MONITOR_RETENTION_DAYS, 'MONITOR_RETENTION_DAYS');
  // List settings add up over file, env and flags (allowedRoots excepted: a root given replaces the cwd default).
  if (env.MONITOR_WORKERS_DIRS) config.workersDirs = [...config.workersDirs, ...splitList(env.MONITOR_WORKERS_DIRS, path.delimiter).map(fromCwd)];
  if (env.MONITOR_ALLOWED_ROOTS) config.allowedRoots = splitList(env.MONITOR_ALLOWED_ROOTS, path.delimiter).map(fromCwd);
  if (env.MONITOR_ALLOW_COMMANDS) config.allowCommands = [...config.allowCommands, ...splitList(env.MONITOR_ALLOW_COMMANDS, ',')];
  if (env.MONITOR_LOG_LEVEL) config.logLevel = toLogLevel(env.MONITOR_LOG_LEVEL);
  if (env.MONITOR_LMSTUDIO_URL) setLmStudioUrl(config, env.MONITOR_LMSTUDIO_URL);
  if (env.MONITOR_MODEL) config.llm.defaultModel = env.MONITOR_MODEL;
  if (env.MONITOR_HTTP_ALLOW_HOSTS) config.http.allowHosts = [...config.http.allowHosts, ...splitList(env.MONITOR_HTTP_ALLOW_HOSTS, ',')];
  if (env.MONITOR_HTTP_ALLOW_PRIVATE) config.http.allowPrivateAddresses = env.MONITOR_HTTP_ALLOW_PRIVATE === '1' || env.MONITOR_HTTP_ALLOW_PRIVATE === 'true';
  if (env.MONITOR_HTTP_SECRET_ENV) config.http.secretEnv = [...config.http.secretEnv, ...splitList(env.MONITOR_HTTP_SECRET_ENV, ',')];
  if (env.MONITOR_BUDGET_TOKENS) config.collect.defaultBudgetTokens = toNumber(env.MONITOR_BUDGET_TOKENS, 'MONITOR_BUDGET_TOKENS', { integer: true, min: 1 });

  const flags = readFlags(src.argv);
  const last = (name: FlagName): string | undefined => flags[name]?.at(-1);
  const stateDir = last('state-dir');
  if (stateDir) config.stateDir = fromCwd(stateDir);
  const retention = last('retention-days');
  if (retention) config.retentionDays = toNumber(retention, '--retention-days');
  if (flags['workers-dir']) config.workersDirs = [...config.workersDirs, ...flags['workers-dir'].map(fromCwd)];
  if (flags.root) config.allowedRoots = flags.root.map(fromCwd);
  if (flags['allow-command']) config.allowCommands = [...config.allowCommands, ...flags['allow-command']];
  const logLevel = last('log-level');
  if (logLevel) config.logLevel = toLogLevel(logLevel);
  const lmUrl = last('lmstudio-url');
  if (lmUrl) setLmStudioUrl(config, lmUrl);
  const lmConcurrency = last('lmstudio-concurrency');
  if (lmConcurrency) {
    const n = toNumber(lmConcurrency, '--lmstudio-concurrency', { integer: true, min: 1 });
    config.llm.endpoints = config.llm.endpoints.map((e) => (e.flavor === 'lmstudio' ? { ...e, concurrency: n } : e));
  }
  if (flags.endpoint) config.llm.endpoints = flags.endpoint.map((spec, i) => parseEndpointSpec(spec, i, config.llm.defaultConcurrency));
  const model = last('model');
  if (model) config.llm.defaultModel = model;
  const concurrency = last('concurrency');
  if (concurrency) config.script.defaultConcurrency = toNumber(concurrency, '--concurrency', { integer: true, min: 1 });
  const maxConcurrency = last('max-concurrency');
  if (maxConcurrency) config.script.maxConcurrency = toNumber(maxConcurrency, '--max-concurrency', { integer: true, min: 1 });
  const timeout = last('timeout');
  if (timeout) config.script.defaultTimeoutSeconds = toNumber(timeout, '--timeout', { min: 0.001, max: MAX_TIMEOUT_SECONDS });
  const wait = last('wait-seconds');
  if (wait) config.collect.defaultWaitSeconds = toNumber(wait, '--wait-seconds', { max: MAX_WAIT_SECONDS });
  const maxWait = last('max-wait-seconds');
  if (maxWait) config.collect.maxWaitSeconds = toNumber(maxWait, '--max-wait-seconds', { max: MAX_WAIT_SECONDS });
  const budget = last('budget-tokens');
  if (budget) config.collect.defaultBudgetTokens = toNumber(budget, '--budget-tokens', { integer: true, min: 1 });
  if (flags['http-allow-host']) config.http.allowHosts = [...config.http.allowHosts, ...flags['http-allow-host']];
  if (flags['http-secret-env']) config.http.secretEnv = [...config.http.secretEnv, ...flags['http-secret-env']];
  const allowPrivate = last('http-allow-private');
  if (allowPrivate) config.http.allowPrivateAddresses = allowPrivate !== 'false';

  return validate(config);
}

function expandHome(p: string, home: string): string {
  return p === '~' ? home : p.startsWith('~/') ? path.join(home, p.slice(2)) : p;
}

function setLmStudioUrl(config: Config, url: string): void {
  const normalised = normaliseUrl(url);
  const existing = config.llm.endpoints.find((e) => e.flavor === 'lmstudio');
  if (existing) existing.url = normalised;
  else config.llm.endpoints.unshift({ name: 'lmstudio', url: normalised, concurrency: 4, models: [], flavor: 'lmstudio' });
}

function applyFile(config: Config, file: ConfigFile, resolve: (p: string) => string): void {
  if (file.stateDir) config.stateDir = resolve(file.stateDir);
  if (file.retentionDays !== undefined) config.retentionDays = file.retentionDays;
  if (file.workersDirs) config.workersDirs = [...config.workersDirs, ...file.workersDirs.map(resolve)];
  if (file.allowedRoots) config.allowedRoots = file.allowedRoots.map(resolve);
  if (file.allowCommands) config.allowCommands = [...config.allowCommands, ...file.allowCommands];
  if (file.logLevel) config.logLevel = file.logLevel;
  if (file.script) {
    const { interpreters, ...rest } = file.script;
    Object.assign(config.script, rest);
    if (interpreters) config.script.interpreters = { ...config.script.interpreters, ...interpreters };
  }
  if (file.collect) Object.assign(config.collect, file.collect);
  if (file.llm) {
    const { endpoints, ...rest } = file.llm;
    Object.assign(config.llm, rest);
    if (endpoints) {
      config.llm.endpoints = endpoints.map((e, i) => {
        const url = normaliseUrl(e.url);
        const endpoint: EndpointConfig = {
          name: e.name ?? `endpoint${i + 1}`,
          url,
          concurrency: e.concurrency ?? config.llm.defaultConcurrency,
          models: e.models ?? [],
          flavor: e.flavor ?? guessFlavor(url),
        };
        if (e.apiKeyEnv) endpoint.apiKeyEnv = e.apiKeyEnv;
        return endpoint;
      });
    }
  }
  if (file.http) Object.assign(config.http, file.http);
}

function validate(config: Config): Config {
  // Sources add up, so the same entry may come twice.
  config.workersDirs = [...new Set(config.workersDirs)];
  config.allowCommands = [...new Set(config.allowCommands)];
  config.http.allowHosts = [...new Set(config.http.allowHosts)];
  config.http.secretEnv = [...new Set(config.http.secretEnv)];
  if (config.collect.maxBudgetTokens > 25000) config.collect.maxBudgetTokens = 25000;
  config.collect.defaultBudgetTokens = Math.min(config.collect.defaultBudgetTokens, config.collect.maxBudgetTokens);
  config.collect.defaultWaitSeconds = Math.min(config.collect.defaultWaitSeconds, config.collect.maxWaitSeconds);
  config.script.defaultConcurrency = Math.min(config.script.defaultConcurrency, config.script.maxConcurrency);
  // A typo in an allowlist entry must fail at start, not silently allow nothing (or too much).
  parseHostPatterns(config.http.allowHosts);
  for (const name of config.http.secretEnv) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new MonitorError('INVALID_INPUT', `Expected http secretEnv entries to be env var names, got "${name}".`);
  }
  config.http.maxJsonBytes = Math.max(config.http.maxJsonBytes, config.http.maxInlineBytes);
  config.script.inlineBytes = Math.min(config.script.inlineBytes, config.script.outputCapBytes);
  const names = new Set<string>();
  for (const e of config.llm.endpoints) {
    // LM Studio's SDK and CLI read the token from LM_API_TOKEN: every LM Studio endpoint does too.
    if (e.flavor === 'lmstudio' && e.apiKeyEnv === undefined) e.apiKeyEnv = 'LM_API_TOKEN';
    if (names.has(e.name)) throw new MonitorError('INVALID_INPUT', `Two LLM endpoints are named "${e.name}"; names must be unique.`);
    names.add(e.name);
  }
  return config;
}
