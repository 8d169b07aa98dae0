import type { CoreConfig } from '../../config/core.js';
import type { KindDeps, KindInstance } from '../kind.js';
import type { EndpointReport } from './endpoint-report.js';
import { Endpoints } from './endpoints.js';
import { changeModel, type ModelChange, type ModelChangeResult } from './lifecycle.js';
import { type InvestigateRequest, planInvestigation } from './agent/plan.js';
import { type LlmJobPlan, type LlmJobRequest, type LlmPlanContext, planLlmJob } from './plan.js';
import { LlmPool } from './pool.js';
import { SchemaValidator } from './schema.js';
import { StallBoard } from './stall.js';
import type { LlmConfig } from './settings.js';

/** What the LLM tools use. */
export interface LlmServices {
  /** Checks an lmstudio_complete request, resolves its model and makes its job (nothing is submitted). */
  plan(request: LlmJobRequest, signal: AbortSignal): Promise<LlmJobPlan>;
  /** Checks an lmstudio_investigate request and makes its job of investigations (nothing is submitted). */
  investigate(request: InvestigateRequest, signal: AbortSignal): Promise<LlmJobPlan>;
  /** Every endpoint: reachable or not (why), its models, how busy it is. */
  report(signal: AbortSignal): Promise<EndpointReport[]>;
  /** Loads or unloads a model on the endpoint(s) serving it (lifecycle.ts). */
  changeModel(change: ModelChange, signal: AbortSignal): Promise<ModelChangeResult[]>;
  readonly endpointNames: readonly string[];
  /** The model a request without `model` gets, when the user set one. */
  readonly defaultModel: string | undefined;
}

/** The LLM kind as a server runs it: its endpoints, pool and services (see index.ts). */
export function createLlmInstance(config: CoreConfig & LlmConfig, deps: KindDeps): KindInstance<LlmServices> {
  const settings = config.llm;
  const { endpoints, schemas, pool, stallBoard } = createLlmParts(config, deps);
  const planContext = (signal: AbortSignal): LlmPlanContext => ({
    settings,
    allowedRoots: config.allowedRoots,
    pathRules: config.pathRules,
    endpoints,
    schemas,
    lent: deps.lent,
    signal,
  });
  return {
    pool,
    live: () => stallBoard.withNotes(endpoints.liveCards()),
    services: {
      plan: (request, signal) => planLlmJob(request, planContext(signal)),
      investigate: (request, signal) => planInvestigation(request, planContext(signal)),
      report: (signal) => endpoints.report(signal),
      changeModel: (change, signal) => changeModel(endpoints, change, signal),
      endpointNames: endpoints.endpointNames,
      defaultModel: settings.defaultModel,
    },
    // The HTTP client (client.ts loads it on first use): a first dispatch asks the endpoints for their models.
    warmUp: async () => {
      await import('undici').catch(() => undefined);
    },
    close: () => endpoints.close(),
  };
}

/** The kind's parts, wired: the endpoints (clients, router, model lists), the JSON-schema checker and the pool. */
export function createLlmParts(
  config: CoreConfig & LlmConfig,
  deps: Pick<KindDeps, 'log' | 'env'> &
    Partial<Pick<KindDeps, 'lent'>> & { now?: () => number; outageWaitMs?: number; adaptiveWindowMs?: number },
): { endpoints: Endpoints; schemas: SchemaValidator; pool: LlmPool; stallBoard: StallBoard } {
  const settings = config.llm;
  const endpoints = new Endpoints(settings, deps);
  const schemas = new SchemaValidator();
  const stallBoard = new StallBoard(settings.stallSeconds * 1000);
  const pool = new LlmPool({
    endpoints,
    schemas,
    allowedRoots: config.allowedRoots,
    pathRules: config.pathRules,
    maxRetries: settings.maxRetries,
    maxFileBytes: settings.maxFileBytes,
    maxInlineChars: settings.maxInlineChars,
    lent: deps.lent ?? {},
    stallMs: settings.stallSeconds * 1000,
    stallBoard,
  });
  return { endpoints, schemas, pool, stallBoard };
}
