import type { CoreConfig } from '../../config/core.js';
import type { DoctorReport, KindDeps, WorkerKind } from '../kind.js';
import type { EndpointReport } from './endpoint-report.js';
import { Endpoints } from './endpoints.js';
import { modelMatches } from './models.js';
import { LLM_ERROR_CODES } from './errors.js';
import { changeModel, type ModelChange, type ModelChangeResult } from './lifecycle.js';
import { type InvestigateRequest, planInvestigation } from './agent/plan.js';
import { type LlmJobPlan, type LlmJobRequest, type LlmPlanContext, planLlmJob } from './plan.js';
import { LLM_KIND, LlmPool } from './pool.js';
import { SchemaValidator } from './schema.js';
import { StallBoard } from './stall.js';
import { LLM_SETTINGS, type LlmConfig } from './settings.js';
import { llmTotals } from './totals.js';

// What the kind's tools use, from here: tools never import a kind's insides.
export type { EndpointReport, ReportedModel } from './endpoint-report.js';
export type { ModelInfo } from './types.js';
export type { ModelChange, ModelChangeResult } from './lifecycle.js';
export type { InvestigateRequest } from './agent/plan.js';
export type { ChecksRequest } from './checks/plan.js';
export { DEFAULT_MAX_STEPS, MOST_STEPS } from './agent/types.js';

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

/**
 * The `llm` kind: prompts to local LLMs on LM Studio or any OpenAI-compatible server, routed to
 * the least busy endpoint serving the job's model, within each endpoint's limit.
 */
export const llmKind: WorkerKind<typeof LLM_SETTINGS, LlmServices> = {
  name: LLM_KIND,
  summary: 'local LLMs on LM Studio or any OpenAI-compatible server',
  instructions: [
    'To have the local model explore code itself (list, grep, read files) and come back with an answer whose citations the server checked, use lmstudio_investigate: one task per question, not a prompt per file.',
    'To rely on local answers without re-reading the sources, give checks (citations, schema, a checker script, agree) and escalate_model: each result says verified or why not.',
    'To merge many answers, let the local model do it: lmstudio_complete with reduce (and group: "all" for a whole module) returns one merged answer to collect; from_job runs a job on another job\'s results as they arrive (script → LLM → script) without a round trip through you.',
  ],
  settings: LLM_SETTINGS,
  errorCodes: LLM_ERROR_CODES,
  totals: llmTotals,
  taskCap: (config) => ({ max: config.llm.maxTasks, setting: 'llm.maxTasks' }),
  secretEnv: (config) => config.llm.endpoints.flatMap((e) => (e.apiKeyEnv === undefined ? [] : [e.apiKeyEnv])),
  create(config, deps) {
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
      close: () => endpoints.close(),
    };
  },
  async doctor(config, deps, report, signal) {
    const endpoints = new Endpoints(config.llm, deps);
    try {
      await checkEndpoints(config.llm, endpoints, report, signal);
    } finally {
      await endpoints.close();
    }
  },
};

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

/** `doctor`: every endpoint (reachable, models, loaded), and the default model. */
async function checkEndpoints(
  settings: LlmConfig['llm'],
  endpoints: Endpoints,
  report: DoctorReport,
  signal: AbortSignal,
): Promise<void> {
  report.section('LLM endpoints');
  const reports = await endpoints.report(signal);
  for (const endpoint of reports) checkEndpoint(endpoint, report);
  const wanted = settings.defaultModel;
  if (wanted === undefined) return;
  const servedBy = reports.filter((r) =>
    (r.configuredModels ?? r.models.map((m) => m.id)).some((id) => modelMatches(wanted, id)),
  );
  if (servedBy.length > 0) report.ok(`default model ${wanted} is served by ${servedBy.map((r) => r.name).join(', ')}`);
  else
    report.fail(
      `default model ${wanted} is not listed by any reachable endpoint`,
      'Download it (`lms get <model>`), or change --model / "llm.defaultModel".',
    );
}

function checkEndpoint(endpoint: EndpointReport, report: DoctorReport): void {
  const where = `${endpoint.name} (${endpoint.flavor ?? 'not identified'}, ${endpoint.url}, ${endpoint.slots ? `${endpoint.slots.total} slot(s), ` : ''}${endpoint.limit} at once)`;
  if (endpoint.error || !endpoint.reachable) {
    const code = endpoint.error?.code ?? 'ERROR';
    const message = endpoint.error?.message ?? 'no answer';
    // Reachable = an HTTP answer came back: a 401 means "there, but refused", not "down".
    const state = !endpoint.reachable
      ? `not reachable: ${message}`
      : `reachable, ${code === 'AUTH_REQUIRED' ? 'refused' : 'but answered with an error'} (${code}): ${message}`;
    report.fail(`${where}: ${state}`, endpoint.error?.hint);
    return;
  }
  const llms = endpoint.models.filter((m) => m.type === undefined || m.type === 'llm' || m.type === 'vlm');
  const loaded = llms.filter((m) => m.state === 'loaded');
  const knowsState = llms.some((m) => m.state !== undefined);
  const tokenNote = endpoint.tokenEnv ? (endpoint.tokenSet ? `; token from ${endpoint.tokenEnv}` : '') : '';
  report.ok(
    `${where}: reachable, ${endpoint.models.length} model(s)${knowsState ? `, ${loaded.length} LLM(s) loaded` : ''}${tokenNote}`,
  );
  for (const model of endpoint.models) {
    const facts = [model.type, model.state, model.contextLength ? `context ${model.contextLength}` : undefined].filter(
      (f) => f !== undefined,
    );
    report.detail(`- ${model.id}${facts.length > 0 ? ` (${facts.join(', ')})` : ''}`);
  }
  if (llms.length === 0)
    report.warn(`${endpoint.name} lists no LLM`, 'Download one (LM Studio: Discover tab, or `lms get <model>`).');
  else if (knowsState && loaded.length === 0) {
    report.warn(
      `${endpoint.name} has no LLM loaded: lmstudio_complete needs \`model\` (loaded just in time) or a default model`,
      'Load one with `lms load <model>` or in the Developer tab, or set --model.',
    );
  }
}
