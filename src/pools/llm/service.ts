import type { Config, EndpointConfig } from '../../config.js';
import { MonitorError, toTaskError, type TaskError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { EndpointClient } from './client.js';
import { LlmPool } from './pool.js';
import { Router } from './router.js';
import { SchemaValidator } from './schema.js';
import type { ModelInfo } from './types.js';

export interface LlmDeps {
  log: Logger;
  /** The process environment (or a test's): bearer tokens are read from the vars named by `apiKeyEnv`. */
  env: Readonly<Record<string, string | undefined>>;
  now?: () => number;
}

/** One endpoint as lmstudio_models and doctor show it. */
export interface EndpointReport {
  name: string;
  url: string;
  flavor: EndpointConfig['flavor'];
  concurrency: number;
  reachable: boolean;
  error?: TaskError;
  /** Set when the config pins the models this endpoint may serve. */
  configuredModels?: string[];
  models: ModelInfo[];
  active: number;
  tokenEnv?: string;
  tokenSet: boolean;
}

export interface ResolvedModel {
  model: string;
  endpoints: string[];
  /** Smallest known context (tokens) among the endpoints serving it. */
  contextLength?: number;
}

interface Discovery {
  at: number;
  models?: ModelInfo[];
  error?: MonitorError;
}

/** Model lists are cached this long; a failure is retried sooner. */
const DISCOVERY_TTL_MS = 30_000;
const FAILURE_TTL_MS = 3_000;
/** How long an endpoint that refused a connection is avoided while another serves the model. */
export const DOWN_FOR_MS = 5_000;

/** `name`, `NAME`, `name:2` (LM Studio's second instance), `name:latest` (Ollama), `name@q4_k_m`. */
export function modelMatches(requested: string, served: string): boolean {
  const a = requested.toLowerCase();
  const b = served.toLowerCase();
  return a === b || b.startsWith(`${a}:`) || b.startsWith(`${a}@`);
}

function isChatModel(model: ModelInfo): boolean {
  if (model.type !== undefined) return model.type === 'llm' || model.type === 'vlm';
  return !/embed/i.test(model.id);
}

/**
 * Everything the LLM tools need: one client per endpoint, the router (limits, least busy,
 * failover), cached model lists, model resolution and LM Studio pre-loading, and the pool.
 */
export class LlmService {
  readonly config: Config;
  readonly router: Router;
  readonly schemas = new SchemaValidator();
  readonly pool: LlmPool;
  readonly log: Logger;
  private readonly clients = new Map<string, EndpointClient>();
  private readonly discovery = new Map<string, Discovery>();
  private readonly pendingDiscovery = new Map<string, Promise<Discovery>>();
  private readonly loading = new Map<string, Promise<void>>();
  private readonly lifetime = new AbortController();
  private readonly now: () => number;

  constructor(config: Config, deps: LlmDeps) {
    this.config = config;
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
    for (const endpoint of config.llm.endpoints) {
      const token = endpoint.apiKeyEnv ? deps.env[endpoint.apiKeyEnv] : undefined;
      const options: ConstructorParameters<typeof EndpointClient>[0] = {
        endpoint,
        requestTimeoutMs: config.llm.requestTimeoutSeconds * 1000,
        stream: config.llm.stream,
      };
      if (token) options.token = token;
      this.clients.set(endpoint.name, new EndpointClient(options));
    }
    this.router = new Router(config.llm.endpoints.map((e) => ({ name: e.name, limit: e.concurrency })), this.now);
    this.pool = new LlmPool(this);
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
    const age = cached ? this.now() - cached.at : Infinity;
    const ttl = cached?.error ? FAILURE_TTL_MS : DISCOVERY_TTL_MS;
    if (mode === 'cached' && cached) {
      if (age > ttl && !this.pendingDiscovery.has(name)) void this.refresh(name).catch(() => undefined);
      return cached;
    }
    return raceSignal(this.pendingDiscovery.get(name) ?? this.refresh(name), signal);
  }

  private refresh(name: string): Promise<Discovery> {
    const client = this.client(name);
    const signal = AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(Math.min(10_000, this.config.llm.requestTimeoutSeconds * 1000))]);
    const pending = client
      .models(signal)
      .then((models): Discovery => ({ at: this.now(), models }))
      .catch((error: unknown): Discovery => {
        const mapped = error instanceof MonitorError ? error : new MonitorError('ENDPOINT_UNREACHABLE', `Endpoint ${name} did not answer in time.`, { cause: error, retryable: true });
        return { at: this.now(), error: mapped };
      })
      .then((result) => {
        this.discovery.set(name, result);
        this.pendingDiscovery.delete(name);
        if (result.models) this.router.markUp(name);
        return result;
      });
    this.pendingDiscovery.set(name, pending);
    return pending;
  }

  /** Forget cached lists (after a load, or when lmstudio_models asks for fresh data). */
  invalidate(name?: string): void {
    if (name === undefined) this.discovery.clear();
    else this.discovery.delete(name);
  }

  /** Every endpoint: reachable or not (why), its models, and how busy it is. */
  async report(signal?: AbortSignal): Promise<EndpointReport[]> {
    return Promise.all(
      this.config.llm.endpoints.map(async (endpoint) => {
        const found = await this.discover(endpoint.name, 'fresh', signal);
        const stats = this.router.stats(endpoint.name);
        const report: EndpointReport = {
          name: endpoint.name,
          url: endpoint.url,
          flavor: endpoint.flavor,
          concurrency: endpoint.concurrency,
          reachable: found.models !== undefined,
          models: found.models ?? [],
          active: stats?.active ?? 0,
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
   * request needed); others serve what they list. `error` explains an empty answer.
   */
  async candidatesFor(model: string, mode: 'fresh' | 'cached', signal?: AbortSignal): Promise<{ endpoints: string[]; error?: MonitorError }> {
    const endpoints: string[] = [];
    const unreachable: MonitorError[] = [];
    const available = new Set<string>();
    await Promise.all(
      this.config.llm.endpoints.map(async (endpoint) => {
        if (endpoint.models.length > 0) {
          if (endpoint.models.some((m) => modelMatches(model, m))) endpoints.push(endpoint.name);
          else for (const m of endpoint.models) available.add(m);
          return;
        }
        const found = await this.discover(endpoint.name, mode, signal);
        if (!found.models) {
          if (found.error) unreachable.push(found.error);
          return;
        }
        if (found.models.some((m) => modelMatches(model, m.id))) endpoints.push(endpoint.name);
        else for (const m of found.models) if (isChatModel(m)) available.add(m.id);
      }),
    );
    const order = this.endpointNames;
    endpoints.sort((a, b) => order.indexOf(a) - order.indexOf(b));
    if (endpoints.length > 0) return { endpoints };
    const firstUnreachable = unreachable[0];
    if (firstUnreachable && available.size === 0) return { endpoints, error: firstUnreachable };
    const list = [...available].slice(0, 30);
    const down = unreachable.length > 0 ? ` (${unreachable.length} endpoint(s) did not answer: ${unreachable.map((e) => e.message).join(' ')})` : '';
    return {
      endpoints,
      error: new MonitorError('MODEL_NOT_FOUND', `No endpoint serves model "${model}". Available: ${list.length > 0 ? list.join(', ') : 'none'}${down}.`, {
        hint: 'Pass one of the available models as `model` (lmstudio_models lists them per endpoint), download it in LM Studio (`lms get <model>`), or add it to an endpoint\'s "models" in the config file.',
      }),
    };
  }

  /** Which model a job uses: the one asked for, else the configured default, else the loaded LLM. */
  async resolveModel(requested: string | undefined, signal?: AbortSignal): Promise<ResolvedModel> {
    const model = requested ?? this.config.llm.defaultModel ?? (await this.loadedModel(signal));
    const { endpoints, error } = await this.candidatesFor(model, 'fresh', signal);
    if (endpoints.length === 0) throw error ?? new MonitorError('MODEL_NOT_FOUND', `No endpoint serves model "${model}".`);
    const resolved: ResolvedModel = { model, endpoints };
    const context = this.contextLength(model, endpoints);
    if (context !== undefined) resolved.contextLength = context;
    return resolved;
  }

  /** Smallest known context length of `model` among `endpoints` (from the cached lists). */
  contextLength(model: string, endpoints: readonly string[] = this.endpointNames): number | undefined {
    let smallest: number | undefined;
    for (const name of endpoints) {
      const info = this.discovery.get(name)?.models?.find((m) => modelMatches(model, m.id));
      const context = info?.contextLength ?? (info?.state === 'loaded' ? info.maxContextLength : undefined);
      if (context !== undefined && (smallest === undefined || context < smallest)) smallest = context;
    }
    return smallest;
  }

  /** The loaded LLM of the first endpoint that has one (or the only LLM of a single-model server). */
  private async loadedModel(signal?: AbortSignal): Promise<string> {
    const unreachable: MonitorError[] = [];
    const notLoaded: string[] = [];
    const ambiguous: string[] = [];
    for (const endpoint of this.config.llm.endpoints) {
      const first = endpoint.models[0];
      if (first !== undefined) return first;
      const found = await this.discover(endpoint.name, 'fresh', signal);
      if (!found.models) {
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
      throw new MonitorError('INVALID_INPUT', `Several models are available and none is set as default: ${ambiguous.slice(0, 20).join(', ')}.`, {
        hint: 'Pass `model`, or set a default with --model / "llm.defaultModel".',
      });
    }
    if (notLoaded.length > 0) {
      throw new MonitorError('MODEL_NOT_LOADED', `No LLM is loaded. Downloaded: ${notLoaded.slice(0, 20).join(', ')}.`, {
        hint: 'Pass `model` with one of these (LM Studio loads it just in time), load one (`lms load <model>` or LM Studio\'s Developer tab), or set a default with --model.',
      });
    }
    const first = unreachable[0];
    if (first) throw first;
    throw new MonitorError('MODEL_NOT_LOADED', 'No endpoint lists any LLM.', { hint: 'Download and load a model in LM Studio, or pass `model`.' });
  }

  /**
   * Makes sure `model` is loaded on every LM Studio endpoint serving it, once, before a batch fans
   * out: concurrent first requests would otherwise each trigger a just-in-time load (duplicate
   * instances `name:2`, `name:3`, LM Studio bug #1751). Concurrent callers share one load.
   */
  async ensureLoaded(model: string, signal: AbortSignal): Promise<void> {
    const { endpoints } = await this.candidatesFor(model, 'cached', signal);
    await Promise.all(
      endpoints
        .filter((name) => this.client(name).endpoint.flavor === 'lmstudio')
        .map((name) => {
          const key = `${name}\0${model}`;
          let pending = this.loading.get(key);
          if (!pending) {
            pending = this.load(name, model).finally(() => this.loading.delete(key));
            this.loading.set(key, pending);
          }
          return raceSignal(pending, signal);
        }),
    );
  }

  private async load(name: string, model: string): Promise<void> {
    const found = await this.discover(name, 'fresh');
    const info = found.models?.find((m) => modelMatches(model, m.id));
    if (!found.models || info?.state === 'loaded' || (info && info.state === undefined)) return;
    const client = this.client(name);
    const signal = AbortSignal.any([this.lifetime.signal, AbortSignal.timeout(this.config.llm.requestTimeoutSeconds * 1000)]);
    this.log.info(`loading model ${model} on ${name} before the batch starts`);
    const loaded = await client.loadModel(model, signal);
    // Builds before 0.4 have no load endpoint: one tiny request loads the model just in time, once.
    if (!loaded) await client.chat({ model, messages: [{ role: 'user', content: 'Hi' }], maxTokens: 1 }, { signal });
    this.invalidate(name);
  }

  async close(): Promise<void> {
    this.lifetime.abort(new MonitorError('CANCELLED', 'Server shutting down.'));
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }
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
