/** Shapes shared by the LLM pool's parts. Field names of stored inputs/options are snake_case JSON. */

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** One request to an OpenAI-compatible `/v1/chat/completions`. */
export interface ChatParams {
  model: string;
  messages: readonly ChatMessage[];
  temperature?: number;
  maxTokens?: number;
  stop?: readonly string[];
  seed?: number;
  /** Sent as `response_format: {type: "json_schema", ...}`. */
  jsonSchema?: Record<string, unknown>;
}

/** What came back, before reasoning is split off and JSON is validated. */
export interface ChatAnswer {
  content: string;
  /** `reasoning_content` or `reasoning`, when the server puts reasoning in its own field. */
  reasoning: string;
  /** The model id the server reports (may differ from the one asked for, e.g. `name:2`). */
  model: string;
  finishReason: string | null;
  promptTokens?: number;
  completionTokens?: number;
  /** Time to the first streamed token (streaming only). */
  ttftMs?: number;
  durationMs: number;
}

/** A model as one endpoint describes it; fields are set only when the server tells. */
export interface ModelInfo {
  id: string;
  type?: 'llm' | 'vlm' | 'embeddings';
  state?: 'loaded' | 'not-loaded';
  /** Context of the loaded instance (per slot on llama-server). */
  contextLength?: number;
  /** Largest context the model supports. */
  maxContextLength?: number;
}

/**
 * Task input as stored in inputs.jsonl: ready messages, a template fill (files read at run time),
 * a later stage's task filled from its upstream task's output, or a reduce over a whole job's answers.
 */
export type LlmTaskInput = PromptTaskInput | TemplateTaskInput | UpstreamTaskInput | ReduceTaskInput;

export interface UpstreamTaskInput {
  id: string;
  upstream: true;
}

export interface ReduceTaskInput {
  id: string;
  reduce: true;
}

export interface PromptTaskInput {
  id: string;
  messages: ChatMessage[];
}

export interface TemplateTaskInput {
  id: string;
  values?: Record<string, string | number | boolean>;
  file?: FileRef;
  /** Files packed into one prompt (group), each under a `### path` header. */
  files?: FileRef[];
}

/** A file (or one chunk of it) that the pool reads when the task runs, so contents never sit in the job store. */
export interface FileRef {
  /** Real absolute path (checked against the allowed roots again at run time). */
  path: string;
  /** Path as shown to the model in `{{path}}` (relative to the first allowed root when inside it). */
  display: string;
  /** 1-based chunk number and count; absent when the file is sent whole. */
  chunk?: number;
  chunks?: number;
  /** Byte range of the chunk and the file size it was cut from. */
  start?: number;
  end?: number;
  size?: number;
}

/** Job options as stored in job.json (no secrets: tokens come from the environment at run time). */
export interface LlmJobOptions {
  model: string;
  system?: string;
  template?: string;
  temperature?: number;
  max_tokens?: number;
  stop?: string[];
  seed?: number;
  json_schema?: Record<string, unknown>;
  include_reasoning?: boolean;
  timeout_seconds: number;
  /** A reduce stage: how its one task merges the map answers. */
  reduce?: ReduceOptions;
}

/** How a reduce stage merges its map answers (stored with the job: the same after a restart). */
export interface ReduceOptions {
  prompt: string;
  max_tokens?: number;
  /** The model's context, per request (llama-server: per slot). */
  context_tokens: number;
  /** Bytes a token, measured with the endpoint's tokenizer less a margin, or the estimate. */
  bytes_per_token: number;
  /** Requests of one level at once. */
  parallel: number;
}
