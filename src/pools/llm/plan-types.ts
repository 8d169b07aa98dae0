import type { JobPlan } from '../../engine/types.js';
import type { PathRules } from '../../paths.js';
import type { LentServices } from '../kind.js';
import type { ChecksRequest } from './checks/plan.js';
import type { Endpoints } from './endpoints.js';
import type { SchemaValidator } from './schema.js';
import type { LlmSettings } from './settings.js';
import type { ChatMessage } from './types.js';

export type ItemValues = Record<string, string | number | boolean>;

/** What lmstudio_complete asks for, before any of it is checked. */
export interface LlmJobRequest {
  prompts?:
    | ReadonlyArray<{ id?: string | undefined; prompt?: string | undefined; messages?: ChatMessage[] | undefined }>
    | undefined;
  template?: string | undefined;
  items?: readonly ItemValues[] | undefined;
  files?: readonly string[] | undefined;
  system?: string | undefined;
  model?: string | undefined;
  temperature?: number | undefined;
  maxTokens?: number | undefined;
  stop?: string[] | undefined;
  seed?: number | undefined;
  jsonSchema?: Record<string, unknown> | undefined;
  includeReasoning?: boolean | undefined;
  chunk?: boolean | undefined;
  chunkTokens?: number | undefined;
  /** Context the job needs, in tokens: said up front when the loaded model holds less (plan-context.ts). */
  contextLength?: number | undefined;
  concurrency?: number | undefined;
  timeoutSeconds?: number | undefined;
  /** Pack the files into as few prompts as fit the context: all together, or per folder. */
  group?: 'all' | 'folder' | undefined;
  /** Merge the answers on the model once they are in (a reduce stage). */
  reduce?: { prompt: string; maxTokens?: number | undefined } | undefined;
  /** A later stage: one task per task of this job, filled from its output (labels name them). */
  upstream?: { jobId: string; labels: readonly string[] } | undefined;
  /** What each answer must pass to be verified, and where one that keeps failing goes. */
  checks?: ChecksRequest | undefined;
  escalateModel?: string | undefined;
}

/** The job, and what the caller should know about how it will run (model, endpoints, chunking). */
export interface LlmJobPlan extends JobPlan {
  notes: string[];
}

export interface LlmPlanContext {
  settings: LlmSettings;
  allowedRoots: readonly string[];
  /** How this system compares paths (Linux's when not given). */
  pathRules?: PathRules;
  endpoints: Endpoints;
  schemas: SchemaValidator;
  /** What other kinds lend (the checker scripts of `checks.script`). */
  lent?: LentServices | undefined;
  signal: AbortSignal;
}

/** Where the job's model runs: the endpoints serving it and its smallest known context there. */
export interface ServedModel {
  contextLength: number | undefined;
  endpoints: readonly string[];
}
