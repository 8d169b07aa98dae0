import type { TaskContext, TaskResult } from '../../engine/types.js';
import { isMonitorError, MonitorError } from '../../errors.js';
import { decideRetry, type RetryPolicy, sleep } from '../retry.js';
import { type Completion, failure, type Outcome, startCompletion } from './completion-state.js';
import { Deadline } from './deadline.js';
import { DOWN_FOR_MS, type Endpoints } from './endpoints.js';
import { LlmError } from './errors.js';
import { judge, type JudgeDeps } from './judge.js';
import type { Lease } from './router.js';
import { conversationKey, PrefixSlots, type SlotChoice } from './slots.js';
import { type StallBoard, stalledError, StallWatch } from './stall.js';
import type { ChatAnswer, ChatMessage, ChatParams, LlmJobOptions, ToolSpec } from './types.js';
import {
  answeredStatus,
  isConnectionFailure,
  isEndpointAway,
  retriedOnlyOnce,
  retryAfterMs,
  retryAfterTooLong,
} from './upstream.js';

/** What an answer that came back becomes: judged as a prompt's answer by default, or taken as it is (an agent's step). */
export type Settle = (run: Completion, endpoint: string, answer: ChatAnswer) => Promise<Outcome>;

/** What a request carries beyond the messages: the tools offered (an agent's step). */
export interface RequestExtras {
  tools?: readonly ToolSpec[] | undefined;
  settle?: Settle | undefined;
  /** Errors not worth a retry for this request (a server refusing `tools`: the caller changes the request instead). */
  final?: ((error: unknown) => boolean) | undefined;
  /** What this request shares with others (slots.ts); by default its conversation but the last message, when long. */
  prefixKey?: string | undefined;
}

/** How long a streamed answer may be silent (0 = no limit), and where the endpoint cards read the silences. */
export interface StallDeps {
  stallMs?: number | undefined;
  stallBoard?: StallBoard | undefined;
}

/** Backoff between retries of one prompt: short, since a local server recovers fast; its Retry-After wins up to 30 s (a longer one fails at once). */
export const LLM_BACKOFF = { baseMs: 250, capMs: 8_000, maxRetryAfterMs: 30_000 } as const;

/**
 * The request path of one prompt: routes it to the least busy endpoint serving the model, fails
 * over on connection failures, waits (bounded) for endpoints that went away, retries transient
 * errors with backoff, and has each answer judged (judge.ts).
 */
export class Completer {
  private readonly endpoints: Endpoints;
  private readonly policy: RetryPolicy;
  private readonly judgeDeps: JudgeDeps;
  private readonly stalls: StallDeps;
  private readonly slots: PrefixSlots;

  constructor(deps: JudgeDeps & { maxRetries: number } & StallDeps) {
    this.endpoints = deps.endpoints;
    this.policy = { maxRetries: deps.maxRetries, ...LLM_BACKOFF };
    this.judgeDeps = { endpoints: deps.endpoints, schemas: deps.schemas, maxInlineChars: deps.maxInlineChars };
    this.stalls = { stallMs: deps.stallMs, stallBoard: deps.stallBoard };
    this.slots = new PrefixSlots(deps.endpoints, deps.endpoints.settings.prefixReuse);
  }

  /** Asks the model `messages` until an answer or a final failure: routing, failover, retries, schema checks. */
  async complete(
    task: TaskContext,
    options: LlmJobOptions,
    messages: ChatMessage[],
    base: Record<string, unknown>,
    stem: string,
    extras: RequestExtras = {},
  ): Promise<TaskResult> {
    const run = startCompletion(task, options, messages, base, stem);
    for (;;) {
      task.signal.throwIfAborted();
      const outcome = await this.attempt(run, extras);
      if (outcome.kind === 'done') return outcome.result;
      if (outcome.kind === 'again' || outcome.kind === 'failover') continue;
      if (outcome.kind === 'away') {
        if (await this.waitForEndpoints(run, outcome.endpoints)) continue;
        return failure(run, this.stillAway(run, outcome.error));
      }
      if (outcome.kind === 'fail' || extras.final?.(outcome.error) || !this.mayRetry(run, outcome.error))
        return failure(run, outcome.error, outcome.extra);
      const decision = decideRetry(run.retries, this.policy, retryAfterMs(outcome.error));
      if (!decision.retry) {
        const error =
          decision.reason === 'retry-after-too-long' && isMonitorError(outcome.error)
            ? retryAfterTooLong(outcome.error, decision.retryAfterMs, this.policy.maxRetryAfterMs)
            : outcome.error;
        return failure(run, error, outcome.extra);
      }
      run.retries++;
      await sleep(decision.delayMs, task.signal);
    }
  }

  /** Transient failures go again while retries last; an empty answer or a 500 only once. */
  private mayRetry(run: Completion, error: unknown): boolean {
    if (!(isMonitorError(error) && error.retryable) || run.retries >= this.policy.maxRetries) return false;
    const once = retriedOnlyOnce(error);
    if (once === undefined) return true;
    if (run.retriedOnce.has(once)) return false;
    run.retriedOnce.add(once);
    return true;
  }

  /**
   * Waits for one of `endpoints` to take connections again (no retry spent): true when one did;
   * false once the outage outlasted llm's outage bound, or this task's timeout_seconds, whichever
   * is shorter. A cancel ends the wait at once.
   */
  private async waitForEndpoints(run: Completion, endpoints: readonly string[]): Promise<boolean> {
    run.outageUntil ??= this.endpoints.now() + this.outageLimitMs(run);
    this.endpoints.log.debug(
      `task ${run.task.index} of ${run.task.jobId}: ${endpoints.join(', ')} not taking connections, waiting for it to come back`,
    );
    if (!(await this.endpoints.waitForAny(endpoints, run.outageUntil, run.task.signal))) return false;
    run.excluded.clear();
    return true;
  }

  private outageLimitMs(run: Completion): number {
    return Math.min(this.endpoints.outageWaitMs, run.options.timeout_seconds * 1000);
  }

  /** ENDPOINT_UNREACHABLE after the wait: the connection failure, how long it waited, and what to do. */
  private stillAway(run: Completion, error: unknown): unknown {
    if (!isMonitorError(error)) return error;
    const seconds = Math.round(this.outageLimitMs(run) / 100) / 10;
    return new LlmError('ENDPOINT_UNREACHABLE', `${error.message} It did not come back within ${seconds} s.`, {
      hint: `${error.hint ?? 'Start the server.'} Then run the failed prompts again with resume_job (include_failed: true).`,
      cause: error,
    });
  }

  /** One request: pick an endpoint serving the model, send, and judge the answer. */
  private async attempt(run: Completion, extras: RequestExtras): Promise<Outcome> {
    const { task, options } = run;
    const found = await this.endpoints.candidatesFor(options.model, run.discovery, task.signal);
    // No list known at all (the server was down when asked): let the request itself find out.
    const candidates = found.endpoints.length > 0 ? found.endpoints : found.unverified;
    if (candidates.length === 0) {
      const error = found.error ?? new LlmError('MODEL_NOT_FOUND', `No endpoint serves model "${options.model}".`);
      // A cached list may be out of date: look again once before giving up, without waiting.
      if (run.discovery === 'cached') {
        run.discovery = 'fresh';
        return { kind: 'again' };
      }
      return { kind: 'retry', error };
    }
    // Every endpoint serving the model refused connections just now: wait for one with the other
    // tasks (one shared probe) rather than send a request each.
    const first = candidates[0];
    if (first !== undefined && candidates.every((e) => this.endpoints.isAway(e))) {
      return { kind: 'away', endpoints: candidates, error: this.endpoints.awayError(first) };
    }
    let choices = candidates.filter((e) => !run.excluded.has(e));
    if (choices.length === 0) {
      run.excluded.clear();
      choices = candidates;
    }
    // A prefix's requests beyond its slots wait before the router, holding no lease another prefix could use.
    const turn = await this.slots.enter(
      extras.prefixKey ?? conversationKey(options.model, run.conversation),
      choices,
      task.signal,
    );
    let lease: Lease;
    try {
      lease = await this.endpoints.router.acquire(choices, task.signal);
    } catch (error) {
      turn.release();
      throw error;
    }
    run.lastEndpoint = lease.endpoint;
    const model = found.served[lease.endpoint] ?? options.model;
    const sent = await this.send(run, lease.endpoint, model, extras, turn.on(lease.endpoint), () => {
      lease.release();
      turn.release();
    });
    if (sent.answer === undefined) {
      if (task.signal.aborted) throw task.signal.reason;
      if (answeredStatus(sent.error) !== undefined) this.endpoints.noteReachable(lease.endpoint);
      return this.afterRequestFailure(run, lease.endpoint, candidates, sent.error);
    }
    this.endpoints.noteReachable(lease.endpoint);
    if (extras.settle) return extras.settle(run, lease.endpoint, sent.answer);
    return judge(run, lease.endpoint, sent.answer, this.judgeDeps);
  }

  /** Sends the conversation to `endpoint` within the task's timeout; `release` frees its slot as soon as it is over. */
  private async send(
    run: Completion,
    endpoint: string,
    model: string,
    extras: RequestExtras,
    prefixCache: SlotChoice | undefined,
    release: () => void,
  ): Promise<{ answer: ChatAnswer; error?: undefined } | { answer?: undefined; error: unknown }> {
    const { task, options } = run;
    const timeoutMs = options.timeout_seconds * 1000;
    const watch = new StallWatch({
      endpoint,
      stallMs: this.stalls.stallMs ?? 0,
      note: task.note,
      board: this.stalls.stallBoard,
    });
    const deadline = new Deadline(
      timeoutMs,
      [task.signal, watch.signal],
      () =>
        new MonitorError('TIMEOUT', `No complete answer from ${endpoint} within ${options.timeout_seconds} s.`, {
          hint: 'Raise timeout_seconds, lower max_tokens, or send less per prompt.',
        }),
    );
    run.requests++;
    try {
      const params: ChatParams = { model, messages: run.conversation };
      if (options.temperature !== undefined) params.temperature = options.temperature;
      if (options.max_tokens !== undefined) params.maxTokens = options.max_tokens;
      if (options.stop !== undefined) params.stop = options.stop;
      if (options.seed !== undefined) params.seed = options.seed;
      if (options.json_schema !== undefined) params.jsonSchema = options.json_schema;
      if (extras.tools !== undefined && extras.tools.length > 0) params.tools = extras.tools;
      if (prefixCache !== undefined) params.prefixCache = prefixCache;
      const client = this.endpoints.client(endpoint);
      // A resend on a fresh connection after a stale kept-alive one is one of this prompt's retries.
      const mayResend = (): boolean => {
        if (run.retries >= this.policy.maxRetries) return false;
        run.retries++;
        run.requests++;
        return true;
      };
      return { answer: await client.chat(params, { signal: deadline.signal, timeoutMs, watch, mayResend }) };
    } catch (caught) {
      return { error: deadline.expired ? deadline.signal.reason : caught };
    } finally {
      // The slot is free before anything else happens (backoff, failover, reading a model list).
      watch.clear();
      deadline.clear();
      release();
    }
  }

  /**
   * A request that failed: another endpoint at once after a connection failure, else a wait for
   * the endpoints to come back (nothing listening there), else retry (or fail).
   */
  private async afterRequestFailure(
    run: Completion,
    endpoint: string,
    candidates: readonly string[],
    error: unknown,
  ): Promise<Outcome> {
    if (isMonitorError(error) && error.code === 'STALLED') return this.afterStall(run, endpoint, candidates);
    if (isConnectionFailure(error)) {
      this.endpoints.router.markDown(endpoint, DOWN_FOR_MS);
      run.excluded.add(endpoint);
      const away = isEndpointAway(error) && isMonitorError(error);
      if (away) this.endpoints.noteUnreachable(endpoint, error);
      // Another endpoint serving the model takes it at once, without backoff.
      if (candidates.some((e) => !run.excluded.has(e)) && run.failovers < candidates.length) {
        run.failovers++;
        this.endpoints.log.debug(`task ${run.task.index} of ${run.task.jobId}: ${endpoint} unreachable, failing over`);
        return { kind: 'failover' };
      }
      if (away) return { kind: 'away', endpoints: [...candidates], error };
    }
    if (isMonitorError(error) && error.code === 'MODEL_NOT_FOUND')
      return { kind: 'retry', error: await this.endpoints.explainUnknownModel(endpoint, error, run.task.signal) };
    return { kind: 'retry', error };
  }

  /**
   * A request that went silent: sent again at once, once per prompt, and not out of maxRetries (a
   * hung slot says nothing of the prompt), to another endpoint serving the model when there is one
   * (else the same, where another slot takes it); a second stall fails the prompt STALLED.
   */
  private afterStall(run: Completion, endpoint: string, candidates: readonly string[]): Outcome {
    const seconds = (this.stalls.stallMs ?? 0) / 1000;
    const where = `task ${run.task.index} of ${run.task.jobId}: no token from ${endpoint} for ${seconds} s`;
    if (run.stalledOn !== undefined) {
      this.endpoints.log.warn(`${where} again, failing it STALLED`);
      return { kind: 'fail', error: stalledError(endpoint, seconds, run.stalledOn) };
    }
    run.stalledOn = endpoint;
    if (candidates.some((e) => e !== endpoint)) run.excluded.add(endpoint);
    this.endpoints.log.warn(`${where}, aborted and sent again`);
    return { kind: 'failover' };
  }
}
