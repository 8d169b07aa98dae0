import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { isMonitorError, MonitorError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { AnswerCheckReply, AnswerCheckRequest } from '../kind.js';
import type { WorkerCatalog } from './catalog.js';
import type { ProcessRun } from './cold.js';
import { ScriptError } from './errors.js';
import { prepareRun } from './job-options.js';
import { type RunPlan, spawnFailure } from './launch.js';
import { decodeUtf8, headUtf8, tailUtf8 } from './output.js';
import type { ScriptPool } from './pool.js';
import { lastLineOf } from './task-value.js';
import type { WarmServed } from './warm.js';
import type { LogSink } from './warm-process.js';
import type { WarmRequest } from './warm-protocol.js';

/**
 * A worker lent to other kinds as an answer checker (the LLM kind's `checks: {script}`): the answer
 * on its stdin, exit 0 accepts, else its stdout says why. Any worker of the pool's catalog (every
 * workers folder), run warm when it declares `warm: yes`, else one cold process per answer; either
 * way in one of the pool's slots.
 */

/** Warm groups of checkers: no job id looks like this. */
const LENT_PREFIX = 'lent:check:';
/** What a checker's stdout may hold for its reason; the rest is read and dropped. */
export const CHECK_STDOUT_BYTES = 64 * 1024;
/** A reason's length: it is shown to a model when the answer is asked again. */
export const CHECK_REASON_CHARS = 1000;
/** The largest answer a checker is given (an LLM's answer is far smaller). */
export const CHECK_MAX_ANSWER_CHARS = 16 * 1024 * 1024;
/** The longest a check may be given (a timer's range is ~24.8 days; nobody waits that long for a verdict). */
const MAX_TIMEOUT_MS = 60 * 60 * 1000;
/** The end of its log kept for a reason. */
const LOG_TAIL_BYTES = 2048;
/** Only a placeholder for the cached plan: each call's timeoutMs is what bounds its run. */
const PLAN_TIMEOUT_SECONDS = 60;

export interface AnswerCheckerOptions {
  pool: Pick<ScriptPool, 'lentRequest' | 'lentProcess'>;
  /** The pool's catalog: every workers folder, as list_workers shows them. */
  catalog: WorkerCatalog;
  allowedRoots: readonly string[];
  /** The environment workers start from (the server's own less its secrets). */
  baseEnv: Readonly<Record<string, string | undefined>>;
  searchPath: string;
  log: Logger;
}

/** How one check's process (or warm request) ended, whatever the mode. */
interface CheckEnd {
  stdout: string;
  log: string;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  stopped: 'timeout' | 'cancel' | undefined;
  /** A warm reply that broke the protocol. */
  problem?: string;
}

/** The lent `checkAnswer` and `checkerExists`: see LentServices. */
export class AnswerChecker {
  private readonly options: AnswerCheckerOptions;
  /** Per worker, worked out once; dropped when it failed (or its process could not start), so a fix is seen. */
  private readonly plans = new Map<string, Promise<RunPlan>>();
  /** A private folder named as the checkers' MONITOR_OUTPUT_DIR: never one of the user's; removed by close(). */
  private privateDir: Promise<string> | undefined;
  private calls = 0;

  constructor(options: AnswerCheckerOptions) {
    this.options = options;
  }

  async checkerExists(worker: string): Promise<void> {
    try {
      await this.options.catalog.resolveWorker(worker);
    } catch (error) {
      throw await this.unknown(worker, error);
    }
  }

  async checkAnswer(request: AnswerCheckRequest, signal: AbortSignal): Promise<AnswerCheckReply> {
    const started = Date.now();
    try {
      signal.throwIfAborted();
      checked(request);
      const plan = await this.planned(request.worker);
      signal.throwIfAborted();
      const end = plan.warm ? await this.warmCheck(plan, request, signal) : await this.coldCheck(plan, request, signal);
      if (end.stopped === 'cancel' || signal.aborted) throw cancelled();
      return verdict(end, request.timeoutMs, Date.now() - started);
    } catch (error) {
      if (signal.aborted && !(isMonitorError(error) && error.code === 'CANCELLED')) throw cancelled();
      throw error;
    }
  }

  /** Removes the private folder (after the pool has closed: no checker runs any more). */
  async close(): Promise<void> {
    const dir = await this.privateDir?.catch(() => undefined);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  }

  /** On a warm process of the worker's own group, kept between calls until its idle timeout. */
  private async warmCheck(plan: RunPlan, request: AnswerCheckRequest, signal: AbortSignal): Promise<CheckEnd> {
    const id = ++this.calls;
    const input = stdinOf(request.answer);
    const message: WarmRequest = {
      id,
      args: [...(request.args ?? [])],
      env: { MONITOR_TASK_INDEX: String(id), MONITOR_ATTEMPT: '1', MONITOR_STDIN_FORMAT: input.format },
    };
    if (input.format === 'json') message.json = request.answer.json;
    else message.stdin = input.text;
    const log = new TailBytes(LOG_TAIL_BYTES);
    const key = `${LENT_PREFIX}${request.worker}`;
    const who = { jobId: key, outputDir: await this.outputDir(), signal };
    const deadline = Date.now() + request.timeoutMs;
    const served = await this.options.pool.lentRequest(key, plan, message, log, deadline, who, request.timeoutMs);
    if ('error' in served) {
      this.plans.delete(request.worker);
      throw new ScriptError('SPAWN_FAILED', served.error.message, { hint: served.error.hint });
    }
    return warmEnd(served, log.text());
  }

  /** One process of its own, its output bounded, in a folder of its own removed afterwards. */
  private async coldCheck(plan: RunPlan, request: AnswerCheckRequest, signal: AbortSignal): Promise<CheckEnd> {
    const id = ++this.calls;
    const input = stdinOf(request.answer);
    const stdout = new HeadBytes(CHECK_STDOUT_BYTES);
    const stderr = new TailBytes(LOG_TAIL_BYTES);
    const outputDir = await mkdtemp(path.join(await this.outputDir(), 'cold-'));
    let ran: ProcessRun;
    try {
      const spec = {
        args: request.args ?? [],
        perProcessEnv: { MONITOR_TASK_INDEX: String(id), MONITOR_ATTEMPT: '1', MONITOR_STDIN_FORMAT: input.format },
        stdinText: input.text,
        timeoutMs: request.timeoutMs,
        signal,
      };
      const where = { jobId: `${LENT_PREFIX}${request.worker}`, outputDir };
      const deadline = Date.now() + request.timeoutMs;
      ran = await this.options.pool.lentProcess(plan, spec, { stdout, stderr }, deadline, where);
    } finally {
      await rm(outputDir, { recursive: true, force: true });
    }
    if (ran.spawnError) {
      this.plans.delete(request.worker);
      const failure = spawnFailure(plan.launch, ran.spawnError);
      throw new ScriptError('SPAWN_FAILED', failure.message, { hint: failure.hint });
    }
    return { stdout: stdout.text(), log: stderr.text(), exit: ran.exit, stopped: ran.stopReason };
  }

  private planned(worker: string): Promise<RunPlan> {
    let plan = this.plans.get(worker);
    if (plan) return plan;
    plan = this.makePlan(worker);
    const cached = plan;
    this.plans.set(worker, cached);
    cached.catch(() => {
      if (this.plans.get(worker) === cached) this.plans.delete(worker);
    });
    return cached;
  }

  /** As a run_script_batch job of the worker would run, warm when it declares it, its cwd the first allowed folder. */
  private async makePlan(worker: string): Promise<RunPlan> {
    const { options } = this;
    const cwd = options.allowedRoots[0];
    if (cwd === undefined)
      throw new MonitorError('PATH_OUTSIDE_ROOT', 'No folder is allowed: there is nowhere to run a checker.');
    try {
      return await prepareRun(
        { worker, cwd, timeout_seconds: PLAN_TIMEOUT_SECONDS, warm: true },
        {
          catalog: options.catalog,
          allowedRoots: options.allowedRoots,
          baseEnv: options.baseEnv,
          searchPath: options.searchPath,
        },
      );
    } catch (error) {
      throw await this.unknown(worker, error);
    }
  }

  /** A worker the catalog does not have, as INVALID_INPUT naming those it has; any other error as it is. */
  private async unknown(worker: string, error: unknown): Promise<unknown> {
    if (!isMonitorError(error) || !['WORKER_NOT_FOUND', 'PATH_OUTSIDE_ROOT'].includes(error.code)) return error;
    const names = await this.options.catalog.names().catch(() => [] as string[]);
    const there = names.length > 0 ? `the workers are ${names.join(', ')}` : 'there are no workers';
    return new MonitorError('INVALID_INPUT', `No checker worker "${worker}": ${there} (list_workers describes each).`, {
      hint: 'Name a worker as list_workers shows it (e.g. check_patch.py) in checks: {script: {worker}}.',
      cause: error,
    });
  }

  private outputDir(): Promise<string> {
    this.privateDir ??= mkdtemp(path.join(tmpdir(), 'monitor-check-'));
    const dir = this.privateDir;
    dir.catch(() => {
      if (this.privateDir === dir) this.privateDir = undefined;
    });
    return dir;
  }
}

function cancelled(): MonitorError {
  return new MonitorError('CANCELLED', 'The answer check was cancelled.');
}

function checked(request: AnswerCheckRequest): void {
  const { timeoutMs, answer, args } = request;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS))
    throw new MonitorError(
      'INVALID_INPUT',
      `A check's timeout is from 1 ms to ${MAX_TIMEOUT_MS / 1000} s, not ${timeoutMs} ms.`,
    );
  if (typeof answer.text !== 'string' || answer.text.length > CHECK_MAX_ANSWER_CHARS)
    throw new MonitorError(
      'INVALID_INPUT',
      `An answer to check is text of at most ${CHECK_MAX_ANSWER_CHARS} characters.`,
    );
  if (args !== undefined && !args.every((arg) => typeof arg === 'string'))
    throw new MonitorError('INVALID_INPUT', "A checker's args are strings.");
}

/** The answer as a later pipeline stage gets its upstream's output: a JSON answer as one JSON line, else its text. */
function stdinOf(answer: AnswerCheckRequest['answer']): { format: 'json' | 'text'; text: string } {
  if (answer.json !== undefined) return { format: 'json', text: `${JSON.stringify(answer.json)}\n` };
  return { format: 'text', text: `${answer.text}\n` };
}

/** A warm request's end in the shape a cold one has. */
function warmEnd(served: WarmServed, log: string): CheckEnd {
  const { outcome, worker } = served;
  switch (outcome.kind) {
    case 'reply': {
      const { reply } = outcome;
      const said = reply.output ?? (reply.result === undefined ? '' : JSON.stringify(reply.result));
      return {
        stdout: said.slice(0, CHECK_STDOUT_BYTES),
        log,
        exit: { code: reply.exit_code, signal: null },
        stopped: undefined,
      };
    }
    case 'stopped':
      return { stdout: '', log, exit: worker.exit, stopped: outcome.reason };
    case 'exited':
      return { stdout: '', log, exit: worker.exit ?? { code: null, signal: null }, stopped: undefined };
    case 'protocol':
      return { stdout: '', log, exit: undefined, stopped: undefined, problem: outcome.problem };
  }
}

/** Accepted on exit 0; else why not: stdout, else the log's last line, else how it ended. */
function verdict(end: CheckEnd, timeoutMs: number, durationMs: number): AnswerCheckReply {
  const exitCode = end.exit?.code ?? null;
  if (end.stopped === 'timeout')
    return { accepted: false, reason: `timed out after ${timeoutMs / 1000} s`, exitCode, durationMs };
  if (end.problem !== undefined)
    return { accepted: false, reason: cut(`the checker ${end.problem}`), exitCode, durationMs };
  if (exitCode === 0 && !end.exit?.signal) return { accepted: true, exitCode, durationMs };
  const how = end.exit?.signal ? `killed by ${end.exit.signal}` : `exit ${String(exitCode)}`;
  const reason = cut(end.stdout.trim()) || lastLineOf(end.log) || how;
  return { accepted: false, reason, exitCode, durationMs };
}

/** At most CHECK_REASON_CHARS, never ending in half a surrogate pair. */
function cut(text: string): string {
  if (text.length <= CHECK_REASON_CHARS) return text;
  const head = text.slice(0, CHECK_REASON_CHARS - 1).replace(/[\uD800-\uDBFF]$/, '');
  return `${head}…`;
}

/** The first bytes of a stream (all of it read, the rest dropped, so the process never blocks on a full pipe). */
class HeadBytes {
  private readonly chunks: Buffer[] = [];
  private kept = 0;

  constructor(private readonly keep: number) {}

  attach(stream: Readable | null | undefined): void {
    stream?.on('data', (chunk: Buffer) => {
      const room = this.keep - this.kept;
      if (room <= 0) return;
      const part = Buffer.from(chunk.subarray(0, room));
      this.chunks.push(part);
      this.kept += part.length;
    });
  }

  text(): string {
    return decodeUtf8(headUtf8(Buffer.concat(this.chunks), this.keep)).text;
  }
}

/** The last bytes of a log, in memory (nothing of it goes to disk). */
class TailBytes implements LogSink {
  private tail = Buffer.alloc(0);

  constructor(private readonly keep: number) {}

  attach(stream: Readable | null | undefined): void {
    stream?.on('data', (chunk: Buffer) => this.accept(chunk));
  }

  accept(chunk: Buffer): void {
    const joined = Buffer.concat([this.tail, chunk]);
    this.tail = joined.subarray(Math.max(0, joined.length - this.keep));
  }

  text(): string {
    return decodeUtf8(tailUtf8(this.tail, this.keep)).text;
  }
}
