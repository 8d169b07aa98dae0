import { toTaskError, type TaskError } from '../../errors.js';
import type { AdaptiveView } from './adaptive.js';
import type { Discovery } from './model-lists.js';
import { ASSUMED_CONTEXT_TOKENS } from './plan-chunks.js';
import type { FigureSource, ServerFlavor, SlotFacts } from './server-facts.js';
import type { EndpointConfig } from './settings.js';
import type { ModelInfo } from './types.js';

/** Where an endpoint's limit came from: its server's slots, the user's setting, learned by measuring, or the default. */
export type LimitSource = FigureSource | 'config';

/** One endpoint as lmstudio_models, doctor and the dashboard show it. */
export interface EndpointReport {
  name: string;
  url: string;
  /** What the server turned out to be (undefined when it never answered a probe). */
  flavor: ServerFlavor | undefined;
  /** Requests sent at once now, and where that figure came from. */
  limit: number;
  limitSource: LimitSource;
  /** How the measured limit stands, where the server tells no slots (adaptive.ts). */
  adaptive?: { phase: string; best?: number; tokensPerSecond?: number };
  /** Parallel slots as the server reports them (total, busy). */
  slots?: SlotFacts;
  /** An HTTP answer came back (a 401 counts: the server is there, it refused). */
  reachable: boolean;
  /** Why the model list could not be read (unreachable, or the server's error answer). */
  error?: TaskError;
  /** Set when the config pins the models this endpoint may serve. */
  configuredModels?: string[];
  models: ReportedModel[];
  /** The server listed more models than were kept (probe.ts): how many it listed. */
  modelsListed?: number;
  /** Requests in flight now, and the most seen at once since the server started. */
  active: number;
  peak: number;
  tokenEnv?: string;
  tokenSet: boolean;
  /** When the server was last asked (ms since the epoch). */
  checkedAt: number;
}

/** A model as reported: a served one's context per slot says where it came from (the server, or assumed). */
export interface ReportedModel extends ModelInfo {
  contextSource?: FigureSource;
}

/** The context assumed for a served model whose server tells none (chunks and packs are sized to it). */
function withContextSource(model: ModelInfo): ReportedModel {
  if (model.contextLength !== undefined) return { ...model, contextSource: 'server' };
  if (model.state === 'not-loaded') return { ...model };
  return { ...model, contextLength: ASSUMED_CONTEXT_TOKENS, contextSource: 'default' };
}

/** An endpoint's report from its last probe and the router's figures. */
export function reportOf(
  endpoint: EndpointConfig,
  found: Discovery,
  now: {
    stats: { active: number; limit: number; peak: number } | undefined;
    limitSource: LimitSource;
    tokenSet: boolean;
    adaptive?: AdaptiveView | undefined;
  },
): EndpointReport {
  const report: EndpointReport = {
    name: endpoint.name,
    url: endpoint.url,
    flavor: found.facts?.flavor,
    limit: now.stats?.limit ?? endpoint.concurrency,
    limitSource: now.limitSource,
    reachable: found.error ? found.answered : true,
    models: found.error ? [] : (found.models ?? []).map(withContextSource),
    active: now.stats?.active ?? 0,
    peak: now.stats?.peak ?? 0,
    tokenSet: now.tokenSet,
    checkedAt: found.at,
  };
  if (found.facts?.slots && !found.error) report.slots = found.facts.slots;
  if (found.facts?.modelsListed !== undefined && !found.error) report.modelsListed = found.facts.modelsListed;
  if (now.adaptive) {
    const { phase, best, tokensPerSecond } = now.adaptive;
    report.adaptive = {
      phase,
      ...(best === undefined ? {} : { best }),
      ...(tokensPerSecond === undefined ? {} : { tokensPerSecond }),
    };
  }
  if (found.error) report.error = toTaskError(found.error);
  if (endpoint.models.length > 0) report.configuredModels = [...endpoint.models];
  if (endpoint.apiKeyEnv) report.tokenEnv = endpoint.apiKeyEnv;
  return report;
}
