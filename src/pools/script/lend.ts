import { tmpdir } from 'node:os';
import path from 'node:path';
import { isMonitorError, MonitorError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { resolveInsideRoots } from '../../paths.js';
import type { Platform } from '../../platform/index.js';
import { WorkerCatalog } from './catalog.js';
import { ScriptError } from './errors.js';
import type { InterpreterResolver } from './interpreters.js';
import { prepareRun } from './job-options.js';
import type { RunPlan } from './launch.js';
import { decodeUtf8, tailUtf8 } from './output.js';
import type { ScriptPool } from './pool.js';
import { packageRoot } from './spawn-helper.js';
import type { WarmServed } from './warm.js';
import type { LogSink } from './warm-process.js';
import type { WarmRequest } from './warm-protocol.js';

/**
 * The bundled outline worker lent to other kinds (the LLM agent's `outline` tool): served warm by
 * the script pool, one request per call, several files packed in it (`pack: files`).
 */

const OUTLINE_WORKER = 'outline.py';
/** The warm group its processes form: no job id looks like this. */
const LENT_KEY = 'lent:outline';
/** One call: waiting for a slot, starting a process and outlining the files. */
export const OUTLINE_TIMEOUT_MS = 20_000;
/** Files one call may outline. */
export const OUTLINE_MAX_FILES = 64;
/** The JSON one call may give back: a model's context takes far less. */
export const OUTLINE_MAX_BYTES = 4 * 1024 * 1024;
/** The end of the worker's log kept for an error message. */
const LOG_TAIL_BYTES = 2048;

export interface OutlineLenderOptions {
  pool: Pick<ScriptPool, 'lentRequest'>;
  allowedRoots: readonly string[];
  /** The same resolver as the pool's catalog: the interpreter is resolved once for both. */
  resolver: InterpreterResolver;
  interpreters: Readonly<Record<string, string>>;
  /** The environment workers start from (the server's own less its secrets). */
  baseEnv: Readonly<Record<string, string | undefined>>;
  searchPath: string;
  log: Logger;
  platform?: Platform;
  /** The folder holding outline.py (default: the package's own workers/, never a user's folder). */
  workersDir?: string;
  /** Default OUTLINE_TIMEOUT_MS. */
  timeoutMs?: number;
}

/** The lent `outline` service: see LentServices.outline. */
export class OutlineLender {
  private readonly options: OutlineLenderOptions;
  /** Worked out once (interpreter, flags, cwd, env); dropped when it failed, so a fix is seen. */
  private plan: Promise<RunPlan> | undefined;
  private requests = 0;

  constructor(options: OutlineLenderOptions) {
    this.options = options;
  }

  /** `{"files": [...]}` as outline.py prints it, each entry's `file` as the caller named it. */
  async outline(files: readonly string[], signal: AbortSignal): Promise<unknown> {
    const deadline = Date.now() + (this.options.timeoutMs ?? OUTLINE_TIMEOUT_MS);
    try {
      signal.throwIfAborted();
      const args = await this.checked(files);
      const plan = await this.planned();
      // Cancelled meanwhile: an idle process handed a request already cancelled would be killed for nothing.
      signal.throwIfAborted();
      const log = new LogTail(LOG_TAIL_BYTES);
      const id = ++this.requests;
      const message: WarmRequest = {
        id,
        args,
        env: { MONITOR_TASK_INDEX: String(id), MONITOR_ATTEMPT: '1', MONITOR_STDIN_FORMAT: 'none' },
      };
      // The worker writes nothing; its output folder is only named (MONITOR_OUTPUT_DIR), as every worker's is.
      const who = { jobId: LENT_KEY, outputDir: tmpdir(), signal };
      const served = await this.options.pool.lentRequest(LENT_KEY, plan, message, log, deadline, who);
      // acquire's only error: the process did not start.
      if ('error' in served) throw new ScriptError('SPAWN_FAILED', served.error.message, { hint: served.error.hint });
      return answerOf(served, files, log.text(), this.options.timeoutMs ?? OUTLINE_TIMEOUT_MS);
    } catch (error) {
      if (signal.aborted && !(isMonitorError(error) && error.code === 'CANCELLED'))
        throw new MonitorError('CANCELLED', 'The outline was cancelled.');
      throw error;
    }
  }

  /** Each file inside the allowed roots, symlinks followed: the real paths the worker gets. */
  private async checked(files: readonly string[]): Promise<string[]> {
    if (files.length === 0) throw new MonitorError('INVALID_INPUT', 'Name at least one file to outline.');
    if (files.length > OUTLINE_MAX_FILES)
      throw new MonitorError('INVALID_INPUT', `At most ${OUTLINE_MAX_FILES} files are outlined in one call.`);
    const rules = this.options.platform?.pathRules;
    return Promise.all(
      files.map((file) => resolveInsideRoots(file, this.options.allowedRoots, { what: 'file', rules })),
    );
  }

  private planned(): Promise<RunPlan> {
    if (this.plan) return this.plan;
    const plan = this.makePlan();
    this.plan = plan;
    plan.catch(() => {
      if (this.plan === plan) this.plan = undefined;
    });
    return plan;
  }

  /** As a warm run_script_batch job of outline.py would run, its cwd the first allowed folder. */
  private async makePlan(): Promise<RunPlan> {
    const { options } = this;
    const dir = options.workersDir ?? path.join(await packageRoot(), 'workers');
    // Only the bundled folder: a user's outline.py in a later folder is never the one run.
    const catalog = new WorkerCatalog({
      workersDirs: [dir],
      allowCommands: [],
      interpreters: options.interpreters,
      searchPath: options.searchPath,
      resolver: options.resolver,
      log: options.log,
      ...(options.platform ? { platform: options.platform } : {}),
    });
    const cwd = options.allowedRoots[0];
    if (cwd === undefined)
      throw new MonitorError('PATH_OUTSIDE_ROOT', 'No folder is allowed: there is nothing to outline.');
    const timeout_seconds = (options.timeoutMs ?? OUTLINE_TIMEOUT_MS) / 1000;
    const plan = await prepareRun(
      { worker: OUTLINE_WORKER, cwd, timeout_seconds, warm: true },
      { catalog, allowedRoots: options.allowedRoots, baseEnv: options.baseEnv, searchPath: options.searchPath },
    );
    if (!plan.warm) throw new MonitorError('INTERNAL', `The bundled ${OUTLINE_WORKER} does not declare warm: yes.`);
    return plan;
  }
}

/** The reply's JSON, or why there is none, as a MonitorError. */
function answerOf(served: WarmServed, files: readonly string[], log: string, timeoutMs: number): unknown {
  const { outcome } = served;
  const lastLine = log.trim().split('\n').at(-1)?.slice(0, 300);
  const said = lastLine ? `: ${lastLine}` : '';
  switch (outcome.kind) {
    case 'stopped':
      if (outcome.reason === 'cancel') throw new MonitorError('CANCELLED', 'The outline was cancelled.');
      throw new MonitorError('TIMEOUT', `The outline took longer than ${timeoutMs / 1000} s.`, {
        hint: 'Outline fewer or smaller files.',
      });
    case 'exited':
      throw new ScriptError('NON_ZERO_EXIT', `The outline worker died mid-request${said}`);
    case 'protocol':
      throw new ScriptError('WORKER_PROTOCOL', `The outline worker ${outcome.problem}`);
    case 'reply':
      break;
  }
  const { reply } = outcome;
  if (reply.exit_code !== 0)
    throw new ScriptError('NON_ZERO_EXIT', `The outline worker failed (exit ${reply.exit_code})${said}`);
  const bytes = reply.output?.length ?? JSON.stringify(reply.result ?? null).length;
  if (bytes > OUTLINE_MAX_BYTES)
    throw new MonitorError('INVALID_INPUT', `The outline is ${bytes} bytes, over ${OUTLINE_MAX_BYTES}.`, {
      hint: 'Outline fewer files at a time.',
    });
  const value = reply.output !== undefined ? parsedOrUndefined(reply.output) : reply.result;
  const entries = (value as { files?: unknown } | undefined)?.files;
  if (!Array.isArray(entries) || entries.length !== files.length)
    throw new ScriptError('WORKER_PROTOCOL', `The outline worker did not give one entry per file${said}`);
  // pack: files keeps argument order: each entry is named as the caller named it, not by its real path.
  entries.forEach((entry: unknown, at) => {
    if (entry !== null && typeof entry === 'object') (entry as { file?: unknown }).file = files[at];
  });
  return value;
}

function parsedOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** A lent call's log: only its end, in memory (nothing of it goes to disk). */
class LogTail implements LogSink {
  private tail = Buffer.alloc(0);

  constructor(private readonly keep: number) {}

  accept(chunk: Buffer): void {
    const joined = Buffer.concat([this.tail, chunk]);
    this.tail = joined.subarray(Math.max(0, joined.length - this.keep));
  }

  text(): string {
    return decodeUtf8(tailUtf8(this.tail, this.keep)).text;
  }
}
