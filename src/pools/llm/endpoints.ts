import { MonitorError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { EndpointClient } from './client.js';
import { Deadline } from './deadline.js';
import { LlmError } from './errors.js';
import { RateBuckets } from '../rates.js';
import type { LiveCard } from '../kind.js';
import { endpointLiveCards } from './live-figures.js';
import { type Discovery, ModelLists } from './model-lists.js';
import { isChatModel } from './models.js';
import { OUTAGE_WAIT_MS, type OutageView, Outages } from './outages.js';
import { PromptUsage } from './prompt-usage.js';
import { raceSignal } from './race.js';
import { type Candidates, ModelResolver, type ResolvedModel } from './resolve.js';
import { ADAPTIVE_MAX, AdaptiveLimits, type AdaptiveView } from './adaptive.js';
import { Router } from './router.js';
import type { ServerFacts, ServerFlavor, SlotFacts } from './server-facts.js';
import type { LlmSettings } from './settings.js';
import { type EndpointReport, type LimitSource, reportOf } from './endpoint-report.js';
import { withModelList } from './upstream.js';

export interface EndpointsDeps {
  log: Logger;
  /** The process environment (or a test's): bearer tokens are read from the vars named by `apiKeyEnv`. */
  env: Readonly<Record<string, string | undefined>>;
  now?: () => number;
  /** How long tasks wait for an endpoint that stopped taking connections (default OUTAGE_WAIT_MS). */
  outageWaitMs?: number;
  /** The adaptive limit's shortest measuring window (default 10 s; tests shorten it). */
  adaptiveWindowMs?: number;
}

/** How old a live card's probe may be while the endpoint works, and while it is idle. */
const LIVE_PROBE_BUSY_MS = 10_000;
const LIVE_PROBE_IDLE_MS = 60_000;

/** How long an endpoint that refused a connection is avoided while another serves the model. */
export const DOWN_FOR_MS = 5_000;

/**
 * The LLM endpoints: one client per endpoint, the router (limits, least busy, failover), their
 * model lists (model-lists.ts), which of them serve a model (resolve.ts), their outages
 * (outages.ts), what they taught about tokens (prompt-usage.ts), their live figures
 * (live-figures.ts) and LM Studio warm-up. The pool sends prompts through it; the planner resolves
 * models with it; lmstudio_models and doctor report from it.
 */
export class Endpoints {
  readonly settings: LlmSettings;
  readonly router: Router;
  readonly log: Logger;
  readonly now: () => number;
  readonly outageWaitMs: number;
  private readonly clients = new Map<string, EndpointClient>();
  private readonly lists: ModelLists;
  private readonly resolver: ModelResolver;
  private readonly outages: Outages;
  private readonly rates: RateBuckets;
  private readonly usage = new PromptUsage();
  private readonly warming = new Map<string, Promise<void>>();
  private readonly lifetime = new AbortController();
  /** Where each endpoint's limit came from: its server's slots, the user, or the default before either. */
  private readonly limitSources = new Map<string, LimitSource>();
  /** Limits of endpoints whose server tells no slots and whose user set none: measured (adaptive.ts). */
  private readonly adaptive: AdaptiveLimits;

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
    this.lists = new ModelLists({
      client: (name) => this.client(name),
      requestTimeoutMs: settings.requestTimeoutSeconds * 1000,
      now: this.now,
      lifetime: this.lifetime.signal,
      onAnswer: (name) => this.noteReachable(name),
      onFacts: (name, facts) => this.followServer(name, facts),
    });
    this.resolver = new ModelResolver(settings, this.lists);
    this.outages = new Outages({
      now: this.now,
      waitMs: this.outageWaitMs,
      lifetime: this.lifetime.signal,
      refresh: (name) => this.lists.refresh(name),
    });
    this.rates = new RateBuckets(this.now);
    this.adaptive = new AdaptiveLimits({
      router: this.router,
      log: this.log,
      now: this.now,
      ...(deps.adaptiveWindowMs === undefined ? {} : { windowMs: deps.adaptiveWindowMs }),
    });
  }

  get endpointNames(): string[] {
    return [...this.clients.keys()];
  }

  client(name: string): EndpointClient {
    const client = this.clients.get(name);
    if (!client) throw new MonitorError('INTERNAL', `No LLM endpoint named "${name}".`);
    return client;
  }

  /** An endpoint's model list, from the cache or asked now (see ModelLists.discover). */
  discover(name: string, mode: 'fresh' | 'cached', signal?: AbortSignal): Promise<Discovery> {
    return this.lists.discover(name, mode, signal);
  }

  /** Forget cached lists (after a warm-up, or when a model turned out to be gone). */
  invalidate(name?: string): void {
    this.lists.invalidate(name === undefined ? this.endpointNames : [name]);
  }

  /** Endpoints serving `model` (see ModelResolver.candidatesFor). */
  candidatesFor(model: string, mode: 'fresh' | 'cached', signal?: AbortSignal): Promise<Candidates> {
    return this.resolver.candidatesFor(model, mode, signal);
  }

  /** Which model a job uses, and where (see ModelResolver.resolveModel). */
  resolveModel(requested: string | undefined, signal?: AbortSignal): Promise<ResolvedModel> {
    return this.resolver.resolveModel(requested, signal);
  }

  /** What the server at `name` turned out to be (undefined until it answered a probe). */
  serverFlavor(name: string): ServerFlavor | undefined {
    return this.lists.latest(name)?.facts?.flavor;
  }

  /** Parallel slots the server at `name` reported on its last probe (undefined where it tells none). */
  slotsOf(name: string): SlotFacts | undefined {
    return this.lists.latest(name)?.facts?.slots;
  }

  /** Smallest known context length of `model` among `endpoints` (from the cached lists). */
  contextLength(model: string, endpoints?: readonly string[]): number | undefined {
    return this.resolver.contextLength(model, endpoints);
  }

  /** A task could not connect to `name`: an outage starts (or goes on) until the endpoint answers again. */
  noteUnreachable(name: string, error: MonitorError<string>): void {
    this.outages.noteUnreachable(name, error);
  }

  /** Any HTTP answer (an error answer too) ends an outage: the server is there. */
  noteReachable(name: string): void {
    this.outages.end(name);
    this.router.markUp(name);
  }

  /** True while `name` has refused connections and not answered since. */
  isAway(name: string): boolean {
    return this.outages.isAway(name);
  }

  /** The failure an outage of `name` started with, for tasks that fail without sending anything. */
  awayError(name: string): MonitorError<string> | undefined {
    return this.outages.errorOf(name);
  }

  outage(name: string): OutageView | undefined {
    return this.outages.view(name);
  }

  /** Waits until one of `names` (all away) answers again (see Outages.waitForAny). */
  waitForAny(names: readonly string[], until: number, signal: AbortSignal): Promise<boolean> {
    return this.outages.waitForAny(names, until, signal);
  }

  /** Tokens an endpoint generated just now (an answer's completion tokens). */
  noteTokens(name: string, tokens: number): void {
    this.rates.note(name, tokens);
    this.adaptive.noteTokens(name, tokens);
  }

  /** Each endpoint as it is now, for the live dashboard (see live-figures.ts). */
  liveCards(): LiveCard[] {
    const now = this.now();
    for (const name of this.endpointNames) {
      const last = this.lists.latest(name);
      const working = (this.router.stats(name)?.active ?? 0) > 0 || this.router.waitingFor(name) > 0;
      // The card probes by itself: often while work runs, now and then while idle (a probe shows in the server's log).
      if (!last || now - last.at > (working ? LIVE_PROBE_BUSY_MS : LIVE_PROBE_IDLE_MS)) void this.lists.refresh(name);
    }
    return endpointLiveCards(this.settings.endpoints, {
      router: this.router,
      rates: this.rates,
      latest: (name) => this.lists.latest(name),
      now,
      isAway: (name) => this.outages.isAway(name),
    });
  }

  /** An answered prompt: its size and the tokens the server counted for it (usage.prompt_tokens). */
  noteUsage(name: string, model: string, promptBytes: number, promptTokens: number): void {
    this.usage.note(name, model, promptBytes, promptTokens);
  }

  /** Bytes a token of `model` on `name`, learned from the prompts it answered (see PromptUsage). */
  learnedBytesPerToken(name: string, model: string): { bytes: number; prompts: number } | undefined {
    return this.usage.bytesPerToken(name, model);
  }

  /** Every endpoint as its server says it is now (asked now): flavour, slots, models, how busy, and where each figure came from. */
  async report(signal?: AbortSignal): Promise<EndpointReport[]> {
    return Promise.all(
      this.settings.endpoints.map(async (endpoint) =>
        reportOf(endpoint, await this.discover(endpoint.name, 'fresh', signal), {
          stats: this.router.stats(endpoint.name),
          limitSource: this.limitSourceOf(endpoint.name),
          tokenSet: this.client(endpoint.name).hasToken,
          adaptive: this.adaptive.view(endpoint.name),
        }),
      ),
    );
  }

  /**
   * Requests `names` may take at once at most: a measured endpoint counts its ceiling (the router
   * holds it to what it has measured so far), so a job planned now is not held to the first guess.
   */
  capacityOf(names: readonly string[]): number {
    let total = 0;
    for (const name of names) total += this.adaptive.view(name)?.max ?? this.router.stats(name)?.limit ?? 0;
    return total;
  }

  /** How the adaptive limit of `name` stands, when it is measured. */
  adaptiveView(name: string): AdaptiveView | undefined {
    return this.adaptive.view(name);
  }

  /** Where `name`'s limit came from (see followServer). */
  limitSourceOf(name: string): LimitSource {
    const endpoint = this.settings.endpoints.find((e) => e.name === name);
    return this.limitSources.get(name) ?? (endpoint?.concurrencyAuto ? 'default' : 'config');
  }

  /**
   * The router's limit on `name` follows its server: as many at once as it has slots when the
   * user set no concurrency, else the user's figure capped at the slots. A server that tells no
   * slots keeps the user's figure, or the default.
   */
  private followServer(name: string, facts: ServerFacts): void {
    const endpoint = this.settings.endpoints.find((e) => e.name === name);
    if (!endpoint) return;
    const slots = facts.slots?.total;
    if (slots === undefined && endpoint.concurrencyAuto) {
      // Nothing to read: measure. Once started, the measuring owns the limit (a new probe must not reset it).
      this.limitSources.set(name, 'learned');
      if (!this.adaptive.isActive(name)) this.adaptive.activate(name, endpoint.concurrency, ADAPTIVE_MAX);
      return;
    }
    this.adaptive.deactivate(name);
    let limit = endpoint.concurrency;
    let source: LimitSource = endpoint.concurrencyAuto ? 'default' : 'config';
    if (slots !== undefined && (endpoint.concurrencyAuto || slots < endpoint.concurrency)) {
      limit = slots;
      source = 'server';
    }
    const before = this.router.stats(name)?.limit;
    this.limitSources.set(name, source);
    if (before === limit) return;
    this.router.setLimit(name, limit);
    this.log.info(
      `endpoint ${name} (${facts.flavor}): ${limit} request(s) at once${source === 'server' ? `, the ${slots} slot(s) its server reports` : ''}${!endpoint.concurrencyAuto && source === 'server' ? ` (below the configured ${endpoint.concurrency})` : ''}`,
    );
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
        .filter((name) => this.client(name).flavor === 'lmstudio')
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
    this.adaptive.close();
    this.lifetime.abort(new MonitorError('SHUTTING_DOWN', 'The server is shutting down.'));
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }
}
