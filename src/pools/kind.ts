import type { CoreConfig } from '../config/core.js';
import type { Constraint, SettingsTree, ValuesOf } from '../config/settings.js';
import type { JobTotals, Pool } from '../engine/types.js';
import type { Logger } from '../log.js';
import type { Platform } from '../platform/index.js';
import type { ProcessControl } from '../processes.js';

/** What every kind is built with. */
export interface KindDeps {
  log: Logger;
  /**
   * The environment secrets are read from (bearer tokens, `${env:NAME}` headers): the CLI passes
   * process.env, tests their own map. Values are read when needed, never stored.
   */
  env: Readonly<Record<string, string | undefined>>;
  /** Signals process groups and tells whether a process lives (only the CLI or a test holds `process`). */
  processes: ProcessControl;
  /** The system it runs on: how workers are started and stopped, how paths compare. */
  platform: Platform;
  /** Env vars holding secrets that some kind uses: never handed to worker processes. */
  secretEnv: ReadonlySet<string>;
  /**
   * What the other kinds lend this one: one object shared by every kind, filled by the wiring after
   * every kind is created (kinds import no other kind). Read it at run time only, never in create().
   */
  lent: LentServices;
}

/**
 * Services one kind lends the others through the wiring. Each is optional: the kind that offers it
 * may be absent, and a borrower says so when it is.
 */
export interface LentServices {
  /**
   * The bundled `outline.py` over `files` (paths inside the allowed roots), served by a warm
   * worker: the JSON it prints, `{"files": [{file, language, lines, symbols, error?}]}`. Throws a
   * MonitorError (outside the roots, timed out, failed); `signal` ends the call.
   */
  outline?(files: readonly string[], signal: AbortSignal): Promise<unknown>;
  /**
   * Runs worker `worker` (a name list_workers shows) with `args` on an LLM answer: the answer on stdin as
   * an LLM → script pipeline stage gets its upstream's output (a JSON answer as one line of JSON, else the
   * text and a newline). Exit 0 accepts. Never throws for what the worker does (crash, timeout, non-zero
   * exit, killed): that is a rejection with its reason. Throws MonitorError CANCELLED when `signal` aborts,
   * INVALID_INPUT when the worker is unknown. It also throws when the check could not run at all, which
   * says nothing of the answer: TIMEOUT (no script slot freed within `timeoutMs`), SPAWN_FAILED (the
   * worker's interpreter cannot start), SHUTTING_DOWN.
   */
  checkAnswer?(request: AnswerCheckRequest, signal: AbortSignal): Promise<AnswerCheckReply>;
  /** Throws INVALID_INPUT (naming the workers there are, and list_workers) when no worker has this name. */
  checkerExists?(worker: string): Promise<void>;
}

/** One answer for LentServices.checkAnswer: `timeoutMs` bounds the worker's run (and, apart, its wait for a slot). */
export interface AnswerCheckRequest {
  worker: string;
  args?: readonly string[];
  answer: { text: string; json?: unknown };
  timeoutMs: number;
}

/** A checker's verdict on one answer. */
export interface AnswerCheckReply {
  accepted: boolean;
  /** Why not, in one short text: the worker's stdout trimmed (≤ 1,000 chars); else its stderr's last line; else "exit 3" / "timed out after 30 s" / "killed by SIGSEGV". Absent when accepted. */
  reason?: string;
  exitCode: number | null;
  durationMs: number;
}

/** `monitor-mcp doctor`'s report: each kind adds its own checks. */
export interface DoctorReport {
  section(title: string): void;
  ok(text: string): void;
  warn(text: string, fix?: string): void;
  fail(text: string, fix?: string): void;
  /** A line under the last check (e.g. a model an endpoint lists). */
  detail(text: string): void;
}

/** Most tasks one job of a kind may hold, and the setting that changes it (none: fixed). */
export interface TaskCap {
  max: number;
  /** e.g. `llm.maxTasks`, named in the error that refuses a longer list. */
  setting?: string;
}

/**
 * How busy a kind is now, in the one shape the dashboard draws for every kind: a card per unit of
 * capacity (an LLM endpoint, the script pool, the HTTP pool). Published in each server's live file.
 */
export interface LiveCard {
  /** The unit's name: an endpoint's, or the pool's ("scripts"). */
  name: string;
  /** One line under the name: the models loaded, what runs. */
  detail?: string;
  /** Work in flight, out of `limit` (drawn as slots). */
  busy: number;
  limit: number;
  /** Work waiting for a slot, where the kind keeps a queue of its own. */
  waiting?: number;
  /** false while it cannot be reached. */
  reachable?: boolean;
  /** Drawn as a chart: [bucket start (ms), amount per second] over the last minutes, and its unit. */
  rate?: { unit: string; series: Array<[number, number]> };
}

/** A kind as the server runs it: its pool for the engine, services for its tools, checks, close. */
export interface KindInstance<Services> {
  readonly pool: Pool;
  /** What the kind's tools use: a narrow interface (planning, listings), never the pool's insides. */
  readonly services: Services;
  /** Its live cards now: cheap (called every second while live figures are on), JSON. */
  live?(): LiveCard[];
  /** What it offers the other kinds (their `deps.lent`), merged in by the wiring. */
  readonly lends?: LentServices;
  /**
   * What a first dispatch or task would otherwise wait for (a client library to load), done in the
   * background once the server has recovered its state: no process started, nothing sent. Never throws.
   */
  warmUp?(): Promise<void>;
  /** After the engine has stopped its tasks: sockets, journals, timers. */
  close(): Promise<void>;
}

/**
 * A kind of worker: one folder under `src/pools/<kind>/` whose `index.ts` exports this. Adding a
 * kind = that folder + its tool file + one line in `src/registry.ts`.
 */
export interface WorkerKind<Settings extends SettingsTree, Services> {
  /** The job kind, as jobs record it. */
  readonly name: string;
  /** What it runs, for the server's instructions ("worker scripts in a subprocess pool"). */
  readonly summary: string;
  /** Sentences of its own for the server's instructions (how to use its tools well), after the general ones. */
  readonly instructions?: readonly string[];
  /**
   * Running totals over a job's results (tokens processed, say), read from its own result values;
   * shown with the job by collect_results, list_jobs, the dashboard and `monitor-mcp jobs`.
   */
  readonly totals?: JobTotals<unknown>;
  /** Its settings, each declared once (config file keys, env, flags, help, range). */
  readonly settings: Settings;
  readonly constraints?: readonly Constraint[];
  /** Most tasks in one of its jobs: its tools refuse longer lists, inline or in a file. */
  taskCap(config: CoreConfig & ValuesOf<Settings>): TaskCap;
  /** The error codes it raises besides the core ones. */
  readonly errorCodes: readonly string[];
  /** Env vars its settings name as holding secrets (kept from every kind's worker processes). */
  secretEnv?(config: ValuesOf<Settings>): string[];
  /**
   * Builds the kind: objects only, no I/O. Async because it loads the kind's pool (a dynamic
   * import): index.ts, what the server needs to answer initialize and tools/list, stays light.
   */
  create(config: CoreConfig & ValuesOf<Settings>, deps: KindDeps): Promise<KindInstance<Services>>;
  /** Checks for `monitor-mcp doctor`, in a section of its own: what the kind needs to work here. */
  doctor?(
    config: CoreConfig & ValuesOf<Settings>,
    deps: Pick<KindDeps, 'log' | 'env' | 'platform'>,
    report: DoctorReport,
    signal: AbortSignal,
  ): Promise<void>;
}

/** Labels stay short: a result's provenance, not its content. */
const LABEL_CHARS = 160;

/** `text` cut to a label's length (its first line only). */
export function shortLabel(text: string): string {
  const line = text.split('\n', 1)[0] ?? '';
  return line.length > LABEL_CHARS ? `${line.slice(0, LABEL_CHARS - 1)}…` : line;
}
