import { MonitorError } from '../../errors.js';
import { LlmError } from './errors.js';
import type { ModelLists } from './model-lists.js';
import { isChatModel, matchModel } from './models.js';
import type { LlmSettings } from './settings.js';

export interface ResolvedModel {
  model: string;
  endpoints: string[];
  /** Smallest known context (tokens) among the endpoints serving it. */
  contextLength?: number;
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

/** What the search for a model's endpoints met besides them: for the error when none serves it. */
interface Misses {
  unreachable: Array<MonitorError<string>>;
  ambiguous: string[];
  available: Set<string>;
}

/** Which endpoints serve a model, which model a job gets, and the context it has there. */
export class ModelResolver {
  private readonly settings: LlmSettings;
  private readonly lists: ModelLists;

  constructor(settings: LlmSettings, lists: ModelLists) {
    this.settings = settings;
    this.lists = lists;
  }

  private get endpointNames(): string[] {
    return this.settings.endpoints.map((e) => e.name);
  }

  /**
   * Endpoints serving `model`. An endpoint with a configured model list serves exactly those (no
   * request needed); others serve what they last listed. Endpoints whose list was never read are
   * returned apart (`unverified`), so a caller may still try them.
   */
  async candidatesFor(model: string, mode: 'fresh' | 'cached', signal?: AbortSignal): Promise<Candidates> {
    const found: Candidates = { endpoints: [], unverified: [], served: {} };
    const misses: Misses = { unreachable: [], ambiguous: [], available: new Set() };
    const consider = (name: string, ids: readonly string[]): void => {
      const match = matchModel(model, ids);
      if (match && 'id' in match) {
        found.endpoints.push(name);
        found.served[name] = match.id;
      } else if (match) misses.ambiguous.push(`${match.ambiguous.join(', ')} (${name})`);
      else for (const id of ids) misses.available.add(id);
    };
    await Promise.all(
      this.settings.endpoints.map(async (endpoint) => {
        if (endpoint.models.length > 0) return consider(endpoint.name, endpoint.models);
        const list = await this.lists.discover(endpoint.name, mode, signal);
        if (list.error) misses.unreachable.push(list.error);
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
    if (found.endpoints.length === 0) found.error = noEndpointServes(model, misses);
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
      (name) => this.endpointIsConfiguredFor(name) || !this.lists.latest(name)?.error,
    );
    if (live.length === 0) {
      const down = found.endpoints.map((name) => this.lists.latest(name)?.error).find((e) => e !== undefined);
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
      const models = this.lists.latest(name)?.models ?? [];
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
      const found = await this.lists.discover(endpoint.name, 'fresh', signal);
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
    throw noModelChosen(ambiguous, notLoaded, unreachable);
  }
}

/** Why no endpoint is known to serve `model`: an ambiguous name, the endpoints down, or not there (with what is). */
function noEndpointServes(model: string, misses: Misses): MonitorError<string> {
  const { unreachable, ambiguous, available } = misses;
  if (ambiguous.length > 0) {
    return new MonitorError('INVALID_INPUT', `Model "${model}" is ambiguous: it could be ${ambiguous.join('; ')}.`, {
      hint: 'Pass the full model id as `model` (lmstudio_models lists them).',
    });
  }
  const firstUnreachable = unreachable[0];
  if (firstUnreachable && available.size === 0) return firstUnreachable;
  const list = [...available].slice(0, 30);
  const down =
    unreachable.length > 0
      ? ` (${unreachable.length} endpoint(s) did not answer: ${unreachable.map((e) => e.message).join(' ')})`
      : '';
  return new LlmError(
    'MODEL_NOT_FOUND',
    `No endpoint serves model "${model}". Available: ${list.length > 0 ? list.join(', ') : 'none'}${down}.`,
    {
      hint: 'Pass one of the available models as `model` (lmstudio_models lists them per endpoint), download it in LM Studio (`lms get <model>`), or add it to an endpoint\'s "models" in the config file.',
    },
  );
}

/** Why no model could be picked for a request without one. */
function noModelChosen(
  ambiguous: readonly string[],
  notLoaded: readonly string[],
  unreachable: ReadonlyArray<MonitorError<string>>,
): MonitorError<string> {
  if (ambiguous.length > 0) {
    return new MonitorError(
      'INVALID_INPUT',
      `Several models are available and none is set as default: ${ambiguous.slice(0, 20).join(', ')}.`,
      {
        hint: 'Pass `model`, or set a default with --model / "llm.defaultModel".',
      },
    );
  }
  if (notLoaded.length > 0) {
    return new LlmError('MODEL_NOT_LOADED', `No LLM is loaded. Downloaded: ${notLoaded.slice(0, 20).join(', ')}.`, {
      hint: "Pass `model` with one of these (LM Studio loads it just in time), load one (`lms load <model>` or LM Studio's Developer tab), or set a default with --model.",
    });
  }
  return (
    unreachable[0] ??
    new LlmError('MODEL_NOT_LOADED', 'No endpoint lists any LLM.', {
      hint: 'Download and load a model in LM Studio, or pass `model`.',
    })
  );
}
