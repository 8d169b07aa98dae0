import { MonitorError, toTaskError, type TaskError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { backoffMs, sleep } from '../retry.js';
import { EndpointClient } from './client.js';
import { Deadline } from './deadline.js';
import { LlmError } from './errors.js';
import { Router } from './router.js';
import type { EndpointConfig, LlmConfig } from './settings.js';
import type { ModelInfo } from './types.js';
import { answeredStatus, withModelList } from './upstream.js';

export interface EndpointsDeps {
  log: Logger;
  /** The process environment (or a test's): bearer tokens are read from the vars named by `apiKeyEnv`. */
  env: Readonly<Record<string, string | undefined>>;
  now?: () => number;
  /** How long tasks wait for an endpoint that stopped taking connections (default OUTAGE_WAIT_MS). */
  outageWaitMs?: number;
}

export type LlmSettings = LlmConfig['llm'];

/** One endpoint as lmstudio_models and doctor show it. */
export interface EndpointReport {
  name: string;
  url: string;
  flavor: EndpointConfig['flavor'];
  concurrency: number;
  /** An HTTP answer came back (a 401 counts: the server is there, it refused). */
  reachable: boolean;
  /** Why the model list could not be read (unreachable, or the server's error answer). */
  error?: TaskError;
  /** Set when the config pins the models this endpoint may serve. */
  configuredModels?: string[];
  models: ModelInfo[];
  /** Requests in flight now, and the most seen at once since the server started. */
  active: number;
  peak: number;
  tokenEnv?: string;
  tokenSet: boolean;
}

export interface ResolvedModel {
  model: string;
  endpoints: string[];
  /** Smallest known context (tokens) among the endpoints serving it. */
  contextLength?: number;
}

/** What one endpoint's model list is known to be. */
export interface Discovery {
  /** When the last refresh finished. */
  at: number;
  /** The last list read successfully; kept when a later refresh fails. */
  models?: ModelInfo[];
  /** Set when the last refresh failed. */
  error?: MonitorError<string>;
  /** The last refresh got an HTTP answer (even an error answer). */
  answered: boolean;
}

/** Endpoints for one model, and the id each of them knows it by. */
export interface Candidates {
  /** Endpoints known to serve the model (config or their last good list), in config order. */
  endpoints: string[];
  /** Endpoints whose list was never read (discovery failed): the request itself finds out. */
  unverified: string[];
  /** The id to send to each endpoint (`qwen3` is `qwen3:latest` on Ollama). */
  served: Record<string, string>;
  /** Why no endpoint is known to serve it. */
  error?: MonitorError<string>;
}

/** Model lists are cached this long; after a failure, the next "cached" caller refreshes sooner. */
const DISCOVERY_TTL_MS = 30_000;
const FAILURE_TTL_MS = 3_000;
/** How long an endpoint that refused a connection is avoided while another serves the model. */
export const DOWN_FOR_MS = 5_000;
/**
 * How long tasks wait, from the start of an outage, for an endpoint that stopped taking connections
 * (LM Studio restarting, a model server being swapped) before they fail with ENDPOINT_UNREACHABLE.
 */
export const OUTAGE_WAIT_MS = 30_000;
/** Probes of an endpoint that is away: the first soon, then further apart, with jitter, at most 2 s. */
const OUTAGE_PROBE_BACKOFF = { baseMs: 250, capMs: 2_000 } as const;

/** An endpoint that refused connections and has not answered since. */
interface Outage {
  since: number;
  /** The connection failure that tasks fail with if it does not come back. */
  error: MonitorError<string>;
  /** Requests of tasks that failed to connect during it (probes not counted). */
  refused: number;
  probes: number;
  lastProbeAt: number;
  /** The probe under way, shared by every task waiting. */
  probe?: Promise<boolean> | undefined;
}

/** An outage as tests and reports see it. */
export interface OutageView {
  since: number;
  refused: number;
  probes: number;
  /** Tasks waiting for the endpoint now. */
  waiting: number;
}

export type ModelMatch = { id: string } | { ambiguous: string[] };

/**
 * Which served id a requested name means: the same id (any case), else Ollama's `name:latest`,
 * else the one id that extends it (`name:tag`, LM Studio's `name@q4_k_m`, or instances `name:2`,
 * `name:3` of one model). Several different extensions are ambiguous.
 */
export function matchModel(requested: string, served: readonly string[]): ModelMatch | undefined {
  const a = requested.toLowerCase();
  const exact = served.find((id) => id.toLowerCase() === a) ?? served.find((id) => id.toLowerCase() === `${a}:latest`);
  if (exact !== undefined) return { id: exact };
  const extended = served.filter((id) => id.toLowerCase().startsWith(`${a}:`) || id.toLowerCase().startsWith(`${a}@`));
  const first = extended[0];
  if (first === undefined) return undefined;
  if (extended.length === 1 || extended.every((id) => /:\d+$/.test(id))) return { id: first };
  return { ambiguous: extended };
}

/** True when `requested` names `served` (see matchModel). */
export function modelMatches(requested: string, served: string): boolean {
  const match = matchModel(requested, [served]);
  return match !== undefined && 'id' in match;
}

function isChatModel(model: ModelInfo): boolean {
  if (model.type !== undefined) return model.type === 'llm' || model.type === 'vlm';
  return !/embed/i.test(model.id);
}

/** The tokens/s chart: 30 buckets of 10 s. */
const TOKEN_BUCKET_MS = 10_000;
const TOKEN_BUCKETS = 30;

/** Answered prompts, and their tokens, before their usage stands for a model's bytes a token. */
const MIN_LEARNED_PROMPTS = 3;
const MIN_LEARNED_TOKENS = 256;

/**
 * The LLM endpoints: one client per endpoint, the router (limits, least busy, failover), cached
 * model lists, model resolution and LM Studio warm-up. The pool sends prompts through it; the
 * planner resolves models with it; lmstudio_models and doctor report from it.
 */
export class Endpoints {
  readonly settings: LlmSettings;
  readonly router: Router;
  readonly log: Logger;
  private readonly clients = new Map<string, EndpointClient>();
  private readonly discovery = new Map<string, Discovery>();
  /** Bumped by invalidate(): a refresh started before then neither fills the cache nor is shared after. */
  private readonly generations = new Map<string, number>();
  private readonly pendingDiscovery = new Map<string, { generation: number; promise: Promise<Discovery> }>();
  private readonly warming = new Map<string, Promise<void>>();
  private readonly lifetime = new AbortController();
  private readonly outages = new Map<string, Outage>();
  private readonly waiting = new Map<string, number>();
  /** Completion tokens per endpoint in 10-second buckets, for the dashboard's tokens/s chart. */
  private readonly tokenBuckets = new Map<string, Map<number, number>>();
  /** Prompt bytes and the tokens the server counted for them, per endpoint and model (see learnedBytesPerToken). */
  private readonly usage = new Map<string, { bytes: number; tokens: number; prompts: number }>();
  readonly now: () => number;
  readonly outageWaitMs: number;

  constructor(settings: LlmSettings, deps: EndpointsDeps) {
    this.settings = settings;
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
    this.outageWaitMs = deps.outageWaitMs ?? OUTAGE_WAIT_MS;
    for (const endpoint of settings.endpoints) {
      const token = endpoint.apiKeyEnv ? deps.env[endpoint.apiKeyEnv] : undefined;
      const options: ConstructorParameters<typeof EndpointClient>[0] = {
        endpoint,
        requestTimeoutMs: settings.requestTimeoutSeconds * 1000,
        stream: settings.stream,
      };
      if (token !== undefined) options.token = token;
      this.clients.set(endpoint.name, new EndpointClient(options));
    }
    this.router = new Router(
      settings.endpoints.map((e) => ({ name: e.name, limit: e.concurrency })),
      this.now,
    );
  }

  get endpointNames(): string[] {
    return [...this.clients.keys()];
  }

  client(name: string): EndpointClient {
    const client = this.clients.get(name);
    if (!client) throw new MonitorError('INTERNAL', `No LLM endpoint named "${name}".`);
    return client;
  }

  /**
   * An endpoint's model list. `fresh` asks the server now (sharing a request already under way);
   * `cached` answers from the cache when there is one, refreshing it in the background when old.
   */
  async discover(name: string, mode: 'fresh' | 'cached', signal?: AbortSignal): Promise<Discovery> {
    const cached = this.discovery.get(name);
    if (mode === 'cached' && cached) {
      const ttl = cached.error ? FAILURE_TTL_MS : DISCOVERY_TTL_MS;
      if (this.now() - cached.at > ttl) void this.refresh(name).catch(() => undefined);
      return cached;
    }
    return raceSignal(this.refresh(name), signal);
  }

  private generationOf(name: string): number {
    return this.generations.get(name) ?? 0;
  }

  /** Reads the list now, or joins a read of the current generation already under way. Never rejects. */
  private refresh(name: string): Promise<Discovery> {
    const generation = this.generationOf(name);
    const pending = this.pendingDiscovery.get(name);
    if (pending && pending.generation === generation) return pending.promise;
    const client = this.client(name);
    const deadline = new Deadline(
      Math.min(10_000, this.settings.requestTimeoutSeconds * 1000),
      [this.lifetime.signal],
      () =>
        new LlmError('ENDPOINT_UNREACHABLE', `Endpoint ${name} did not list its models within 10 s.`, {
          retryable: true,
        }),
    );
    const promise: Promise<Discovery> = client
      .models(deadline.signal)
      .then(
        (models): Discovery => ({ at: this.now(), models, answered: true }),
        (error: unknown): Discovery => {
          const mapped =
            error instanceof MonitorError
              ? error
              : new LlmError('ENDPOINT_UNREACHABLE', `Endpoint ${name} did not list its models.`, {
                  cause: error,
                  retryable: true,
                });
          const failed: Discovery = { at: this.now(), error: mapped, answered: answeredStatus(mapped) !== undefined };
          // A failed refresh keeps the last good list: one hiccup must not fail a batch while the server is up.
          const previous = this.discovery.get(name)?.models;
          if (previous && this.generationOf(name) === generation) failed.models = previous;
          return failed;
        },
      )
      .then((result) => {
        deadline.clear();
        if (this.generationOf(name) === generation) this.discovery.set(name, result);
        if (this.pendingDiscovery.get(name)?.promise === promise) this.pendingDiscovery.delete(name);
        if (!result.error || result.answered) this.noteReachable(name);
        return result;
      });
    this.pendingDiscovery.set(name, { generation, promise });
    return promise;
  }

  /** A task could not connect to `name`: an outage starts (or goes on) until the endpoint answers again. */
  noteUnreachable(name: string, error: MonitorError<string>): void {
    const now = this.now();
    const outage = this.outages.get(name) ?? { since: now, error, refused: 0, probes: 0, lastProbeAt: now };
    outage.error = error;
    outage.refused++;
    this.outages.set(name, outage);
  }

  /** Any HTTP answer (an error answer too) ends an outage: the server is there. */
  noteReachable(name: string): void {
    this.outages.delete(name);
    this.router.markUp(name);
  }

  /** Tokens an endpoint generated just now (an answer's completion tokens). */
  noteTokens(name: string, tokens: number): void {
    if (!(tokens > 0)) return;
    const bucket = Math.floor(this.now() / TOKEN_BUCKET_MS);
    const buckets = this.tokenBuckets.get(name) ?? new Map<number, number>();
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + tokens);
    for (const at of buckets.keys()) if (at <= bucket - TOKEN_BUCKETS) buckets.delete(at);
    this.tokenBuckets.set(name, buckets);
  }

  /**
   * Each endpoint as it is now, for the live dashboard: requests in flight and its limit, requests
   * waiting that it could take, models it lists, and tokens/s over the last five minutes.
   */
  liveFigures(): Array<Record<string, unknown>> {
    const bucket = Math.floor(this.now() / TOKEN_BUCKET_MS);
    return this.settings.endpoints.map((endpoint) => {
      const stats = this.router.stats(endpoint.name);
      const buckets = this.tokenBuckets.get(endpoint.name);
      const series: Array<[number, number]> = [];
      for (let at = bucket - TOKEN_BUCKETS + 1; at <= bucket; at++)
        series.push([at * TOKEN_BUCKET_MS, (buckets?.get(at) ?? 0) / (TOKEN_BUCKET_MS / 1000)]);
      const models = this.discovery.get(endpoint.name)?.models ?? [];
      return {
        name: endpoint.name,
        busy: stats?.active ?? 0,
        limit: stats?.limit ?? endpoint.concurrency,
        waiting: this.router.waitingFor(endpoint.name),
        peak: stats?.peak ?? 0,
        reachable: !this.isAway(endpoint.name),
        models: models
          .filter((m) => m.state !== 'not-loaded')
          .map((m) => m.id)
          .slice(0, 20),
        tokens_per_second: series,
      };
    });
  }

  /** An answered prompt: its size and the tokens the server counted for it (usage.prompt_tokens). */
  noteUsage(name: string, model: string, promptBytes: number, promptTokens: number): void {
    if (!(promptTokens > 0)) return;
    const key = `${name}\n${model}`;
    const seen = this.usage.get(key) ?? { bytes: 0, tokens: 0, prompts: 0 };
    seen.bytes += promptBytes;
    seen.tokens += promptTokens;
    seen.prompts++;
    this.usage.set(key, seen);
  }

  /**
   * Bytes a token of `model` on `name`, from the usage of prompts it answered: a measurement where
   * the server has no tokenizer to ask. The chat template's tokens count too, so it errs small.
   */
  learnedBytesPerToken(name: string, model: string): { bytes: number; prompts: number } | undefined {
    const seen = this.usage.get(`${name}\n${model}`);
    if (!seen || seen.prompts < MIN_LEARNED_PROMPTS || seen.tokens < MIN_LEARNED_TOKENS) return undefined;
    return { bytes: seen.bytes / seen.tokens, prompts: seen.prompts };
  }

  /** True while `name` has refused connections and not answered since. */
  isAway(name: string): boolean {
    return this.outages.has(name);
  }

  /** The failure an outage of `name` started with, for tasks that fail without sending anything. */
  awayError(name: string): MonitorError<string> | undefined {
    return this.outages.get(name)?.error;
  }

  outage(name: string): OutageView | undefined {
    const outage = this.outages.get(name);
    return (
      outage && {
        since: outage.since,
        refused: outage.refused,
        probes: outage.probes,
        waiting: this.waiting.get(name) ?? 0,
      }
    );
  }

  /**
   * Waits until one of `names` (all away) answers again: true then, false once its outage is older
   * than outageWaitMs or `until` (on this.now's clock) has passed. One probe at a time per endpoint
   * serves every waiting task, further apart each time, with jitter; past the bound a task only
   * joins a probe that is due, so a queue of tasks fails fast without a request each.
   * Rejects with the signal's reason when it aborts.
   */
  async waitForAny(names: readonly string[], until: number, signal: AbortSignal): Promise<boolean> {
    for (const name of names) this.waiting.set(name, (this.waiting.get(name) ?? 0) + 1);
    try {
      for (;;) {
        const away = names.flatMap((name) => {
          const outage = this.outages.get(name);
          return outage ? [{ name, outage }] : [];
        });
        if (away.length < names.length) return true;
        const now = this.now();
        const deadline = Math.min(until, Math.max(...away.map(({ outage }) => outage.since + this.outageWaitMs)));
        if (deadline <= now) {
          // Past the bound: look once more only where a probe is due (at most every capMs), else fail now.
          const due = away.filter(({ outage }) => now - outage.lastProbeAt >= OUTAGE_PROBE_BACKOFF.capMs);
          if (due.length === 0) return false;
          return await raceSignal(firstTrue(due.map(({ name, outage }) => this.probe(name, outage))), signal);
        }
        const timer = new Deadline(
          deadline - now,
          [signal],
          () => new MonitorError('TIMEOUT', 'The wait for the endpoint ran out.'),
        );
        try {
          if (await raceSignal(firstTrue(away.map(({ name, outage }) => this.probe(name, outage))), timer.signal))
            return true;
        } catch (error) {
          if (!timer.expired) throw error;
          return false;
        } finally {
          timer.clear();
        }
      }
    } finally {
      for (const name of names) this.waiting.set(name, (this.waiting.get(name) ?? 1) - 1);
    }
  }

  /** The probe of an outage under way, or the next one: after its backoff, a read of the model list. */
  private probe(name: string, outage: Outage): Promise<boolean> {
    outage.probe ??= this.runProbe(name, outage).finally(() => {
      outage.probe = undefined;
    });
    return outage.probe;
  }

  private async runProbe(name: string, outage: Outage): Promise<boolean> {
    const wait = outage.lastProbeAt + backoffMs(outage.probes + 1, OUTAGE_PROBE_BACKOFF) - this.now();
    if (wait > 0) await sleep(wait, this.lifetime.signal);
    await this.refresh(name);
    outage.probes++;
    outage.lastProbeAt = this.now();
    // refresh() ends the outage (noteReachable) when the server answers anything at all.
    return this.outages.get(name) !== outage;
  }

  /** Forget cached lists (after a warm-up, or when a model turned out to be gone). */
  invalidate(name?: string): void {
    for (const endpoint of name === undefined ? this.endpointNames : [name]) {
      this.generations.set(endpoint, this.generationOf(endpoint) + 1);
      this.discovery.delete(endpoint);
      this.pendingDiscovery.delete(endpoint);
    }
  }

  /** Chat model ids from an endpoint's last good list (for error messages). */
  knownModels(name: string): string[] {
    return (this.discovery.get(name)?.models ?? []).filter(isChatModel).map((m) => m.id);
  }

  /** Every endpoint: reachable or not (why), its models, and how busy it is. */
  async report(signal?: AbortSignal): Promise<EndpointReport[]> {
    return Promise.all(
      this.settings.endpoints.map(async (endpoint) => {
        const found = await this.discover(endpoint.name, 'fresh', signal);
        const stats = this.router.stats(endpoint.name);
        const report: EndpointReport = {
          name: endpoint.name,
          url: endpoint.url,
          flavor: endpoint.flavor,
          concurrency: endpoint.concurrency,
          reachable: found.error ? found.answered : true,
          models: found.error ? [] : (found.models ?? []),
          active: stats?.active ?? 0,
          peak: stats?.peak ?? 0,
          tokenSet: this.client(endpoint.name).hasToken,
        };
        if (found.error) report.error = toTaskError(found.error);
        if (endpoint.models.length > 0) report.configuredModels = [...endpoint.models];
        if (endpoint.apiKeyEnv) report.tokenEnv = endpoint.apiKeyEnv;
        return report;
      }),
    );
  }

  /**
   * Endpoints serving `model`. An endpoint with a configured model list serves exactly those (no
   * request needed); others serve what they last listed. Endpoints whose list was never read are
   * returned apart (`unverified`), so a caller may still try them.
   */
  async candidatesFor(model: string, mode: 'fresh' | 'cached', signal?: AbortSignal): Promise<Candidates> {
    const found: Candidates = { endpoints: [], unverified: [], served: {} };
    const unreachable: Array<MonitorError<string>> = [];
    const ambiguous: string[] = [];
    const available = new Set<string>();
    const consider = (name: string, ids: readonly string[]): void => {
      const match = matchModel(model, ids);
      if (match && 'id' in match) {
        found.endpoints.push(name);
        found.served[name] = match.id;
      } else if (match) ambiguous.push(`${match.ambiguous.join(', ')} (${name})`);
      else for (const id of ids) available.add(id);
    };
    await Promise.all(
      this.settings.endpoints.map(async (endpoint) => {
        if (endpoint.models.length > 0) return consider(endpoint.name, endpoint.models);
        const list = await this.discover(endpoint.name, mode, signal);
        if (list.error) unreachable.push(list.error);
        if (list.models)
          consider(
            endpoint.name,
            list.models.filter(isChatModel).map((m) => m.id),
          );
        else found.unverified.push(endpoint.name);
      }),
    );
    const order = this.endpointNames;
    const byConfig = (a: string, b: string): number => order.indexOf(a) - order.indexOf(b);
    found.endpoints.sort(byConfig);
    found.unverified.sort(byConfig);
    for (const name of found.unverified) found.served[name] = model;
    if (found.endpoints.length > 0) return found;
    if (ambiguous.length > 0) {
      found.error = new MonitorError(
        'INVALID_INPUT',
        `Model "${model}" is ambiguous: it could be ${ambiguous.join('; ')}.`,
        {
          hint: 'Pass the full model id as `model` (lmstudio_models lists them).',
        },
      );
      return found;
    }
    const firstUnreachable = unreachable[0];
    if (firstUnreachable && available.size === 0) {
      found.error = firstUnreachable;
      return found;
    }
    const list = [...available].slice(0, 30);
    const down =
      unreachable.length > 0
        ? ` (${unreachable.length} endpoint(s) did not answer: ${unreachable.map((e) => e.message).join(' ')})`
        : '';
    found.error = new LlmError(
      'MODEL_NOT_FOUND',
      `No endpoint serves model "${model}". Available: ${list.length > 0 ? list.join(', ') : 'none'}${down}.`,
      {
        hint: 'Pass one of the available models as `model` (lmstudio_models lists them per endpoint), download it in LM Studio (`lms get <model>`), or add it to an endpoint\'s "models" in the config file.',
      },
    );
    return found;
  }

  /**
   * Which model a job uses: the one asked for, else the configured default, else the loaded LLM.
   * Refuses when no endpoint serving it answered just now (the server is down: say so at submit).
   */
  async resolveModel(requested: string | undefined, signal?: AbortSignal): Promise<ResolvedModel> {
    const model = requested ?? this.settings.defaultModel ?? (await this.loadedModel(signal));
    const found = await this.candidatesFor(model, 'fresh', signal);
    const live = found.endpoints.filter(
      (name) => this.endpointIsConfiguredFor(name) || !this.discovery.get(name)?.error,
    );
    if (live.length === 0) {
      const down = found.endpoints.map((name) => this.discovery.get(name)?.error).find((e) => e !== undefined);
      throw down ?? found.error ?? new LlmError('MODEL_NOT_FOUND', `No endpoint serves model "${model}".`);
    }
    const resolved: ResolvedModel = { model, endpoints: found.endpoints };
    const context = this.contextLength(model, found.endpoints);
    if (context !== undefined) resolved.contextLength = context;
    return resolved;
  }

  private endpointIsConfiguredFor(name: string): boolean {
    return (this.settings.endpoints.find((e) => e.name === name)?.models.length ?? 0) > 0;
  }

  /** Smallest known context length of `model` among `endpoints` (from the cached lists). */
  contextLength(model: string, endpoints: readonly string[] = this.endpointNames): number | undefined {
    let smallest: number | undefined;
    for (const name of endpoints) {
      const models = this.discovery.get(name)?.models ?? [];
      const match = matchModel(
        model,
        models.map((m) => m.id),
      );
      const info = match && 'id' in match ? models.find((m) => m.id === match.id) : undefined;
      const context = info?.contextLength ?? (info?.state === 'loaded' ? info.maxContextLength : undefined);
      if (context !== undefined && (smallest === undefined || context < smallest)) smallest = context;
    }
    return smallest;
  }

  /** The loaded LLM of the first endpoint that has one (or the only LLM of a single-model server). */
  private async loadedModel(signal?: AbortSignal): Promise<string> {
    const unreachable: Array<MonitorError<string>> = [];
    const notLoaded: string[] = [];
    const ambiguous: string[] = [];
    for (const endpoint of this.settings.endpoints) {
      const first = endpoint.models[0];
      if (first !== undefined) return first;
      const found = await this.discover(endpoint.name, 'fresh', signal);
      if (found.error || !found.models) {
        if (found.error) unreachable.push(found.error);
        continue;
      }
      const llms = found.models.filter(isChatModel);
      const loaded = llms.find((m) => m.state === 'loaded');
      if (loaded) return loaded.id;
      if (llms.some((m) => m.state !== undefined)) {
        notLoaded.push(...llms.map((m) => m.id));
        continue;
      }
      const only = llms[0];
      if (llms.length === 1 && only) return only.id;
      ambiguous.push(...llms.map((m) => `${m.id} (${endpoint.name})`));
    }
    if (ambiguous.length > 0) {
      throw new MonitorError(
        'INVALID_INPUT',
        `Several models are available and none is set as default: ${ambiguous.slice(0, 20).join(', ')}.`,
        {
          hint: 'Pass `model`, or set a default with --model / "llm.defaultModel".',
        },
      );
    }
    if (notLoaded.length > 0) {
      throw new LlmError('MODEL_NOT_LOADED', `No LLM is loaded. Downloaded: ${notLoaded.slice(0, 20).join(', ')}.`, {
        hint: "Pass `model` with one of these (LM Studio loads it just in time), load one (`lms load <model>` or LM Studio's Developer tab), or set a default with --model.",
      });
    }
    const first = unreachable[0];
    if (first) throw first;
    throw new LlmError('MODEL_NOT_LOADED', 'No endpoint lists any LLM.', {
      hint: 'Download and load a model in LM Studio, or pass `model`.',
    });
  }

  /**
   * Makes sure `model` is loaded on every LM Studio endpoint serving it, once, before a batch fans
   * out: concurrent first requests would otherwise each trigger a just-in-time load (duplicate
   * instances `name:2`, `name:3`, LM Studio bug #1751). Concurrent callers share one warm-up.
   */
  async ensureLoaded(model: string, signal: AbortSignal): Promise<void> {
    const { endpoints, served } = await this.candidatesFor(model, 'cached', signal);
    await Promise.all(
      endpoints
        .filter((name) => this.client(name).endpoint.flavor === 'lmstudio')
        .map((name) => {
          const id = served[name] ?? model;
          const key = `${name}\0${id}`;
          let pending = this.warming.get(key);
          if (!pending) {
            pending = this.warmUp(name, id).finally(() => this.warming.delete(key));
            this.warming.set(key, pending);
          }
          return raceSignal(pending, signal);
        }),
    );
  }

  /**
   * One 1-token request while the model is not loaded: LM Studio loads it just in time, once. Not
   * `/api/v1/models/load`: that pins the model (no idle TTL, never auto-evicted), so batches on
   * model A then B would keep both in memory. The request takes a router slot like any other.
   */
  private async warmUp(name: string, model: string): Promise<void> {
    const found = await this.discover(name, 'fresh');
    const info = found.error ? undefined : found.models?.find((m) => m.id === model);
    if (info?.state !== 'not-loaded') return;
    const lease = await this.router.acquire([name], this.lifetime.signal);
    const deadline = new Deadline(
      this.settings.requestTimeoutSeconds * 1000,
      [this.lifetime.signal],
      () =>
        new LlmError(
          'TIMEOUT',
          `Loading ${model} on ${name} took longer than ${this.settings.requestTimeoutSeconds} s.`,
        ),
    );
    try {
      this.log.info(`loading model ${model} on ${name} with one short request before the batch starts`);
      await this.client(name).chat(
        { model, messages: [{ role: 'user', content: 'Hi' }], maxTokens: 1 },
        { signal: deadline.signal },
      );
    } finally {
      deadline.clear();
      lease.release();
      this.invalidate(name);
    }
  }

  /** An unknown-model error from a request, with the endpoint's models (read now) when the server did not list them. */
  async explainUnknownModel(
    name: string,
    error: MonitorError<string>,
    signal: AbortSignal,
  ): Promise<MonitorError<string>> {
    // The list that sent us there is evidently stale: the next tasks read it again.
    this.invalidate(name);
    const found = await this.discover(name, 'fresh', signal);
    return withModelList(
      error,
      (found.error ? [] : (found.models ?? [])).filter(isChatModel).map((m) => m.id),
    );
  }

  async close(): Promise<void> {
    this.lifetime.abort(new MonitorError('SHUTTING_DOWN', 'The server is shutting down.'));
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }
}

/** True as soon as one of the promises is; false once all are false; rejects when one rejects first. */
function firstTrue(promises: ReadonlyArray<Promise<boolean>>): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    let pending = promises.length;
    if (pending === 0) resolve(false);
    for (const promise of promises) {
      promise.then((value) => {
        if (value) resolve(true);
        else if (--pending === 0) resolve(false);
      }, reject);
    }
  });
}

/** Waits for `promise`, but stops waiting (rejecting with the reason) when `signal` aborts. */
export function raceSignal<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
