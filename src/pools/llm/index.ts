import type { WorkerKind } from '../kind.js';
import { LLM_ERROR_CODES } from './errors.js';
import { LLM_KIND } from './facts.js';
import type { LlmServices } from './instance.js';
import { LLM_SETTINGS } from './settings.js';
import { llmTotals } from './totals.js';

// What the kind's tools use, from here: tools never import a kind's insides.
export type { EndpointReport, ReportedModel } from './endpoint-report.js';
export type { ModelInfo } from './types.js';
export type { ModelChange, ModelChangeResult } from './lifecycle.js';
export type { InvestigateRequest } from './agent/plan.js';
export type { ChecksRequest } from './checks/plan.js';
export { DEFAULT_MAX_STEPS, MOST_STEPS } from './agent/types.js';
export type { LlmServices } from './instance.js';

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
  // The endpoints, the pool and its services load here, after the handshake: not on the way to answering initialize.
  async create(config, deps) {
    const { createLlmInstance } = await import('./instance.js');
    return createLlmInstance(config, deps);
  },
  async doctor(config, deps, report, signal) {
    const { checkLlm } = await import('./doctor.js');
    await checkLlm(config, deps, report, signal);
  },
};
