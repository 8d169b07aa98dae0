import type { AgentJobOptions, AgentTaskInput } from './agent/types.js';
import type { ChecksOptions } from './checks/types.js';
/** Shapes shared by the LLM pool's parts. Field names of stored inputs/options are snake_case JSON. */

/** The roles a user may write in lmstudio_complete's prompts (the wire knows `tool` too). */
export type ChatRole = 'system' | 'user' | 'assistant';

/** One message on the wire: an agent's conversation adds the assistant's tool calls and their results. */
export interface ChatMessage {
  role: ChatRole | 'tool';
  content: string;
  /** An assistant message that called tools (OpenAI shape, arguments as a JSON string). */
  tool_calls?: WireToolCall[];
  /** A `tool` message: the id of the call it answers. */
  tool_call_id?: string;
}

/** A tool call as OpenAI-compatible servers send and take it back in the conversation. */
export interface WireToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A tool offered to the model (`tools` of a chat request, OpenAI format). */
export interface ToolSpec {
  type: 'function';
  function: { name: string; description: string; parameters: Record<string, unknown> };
}

/** A tool call as the server sent it, before it is read: `arguments` exactly as sent (a string). */
export interface NativeToolCall {
  id?: string;
  name: string;
  arguments: string;
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
  /** Sent as `tools`; a server that refuses them answers 400 (see agent/calls.ts toolsRejected). */
  tools?: readonly ToolSpec[];
  /** Sent as `tool_choice` (only with tools). */
  toolChoice?: 'auto' | 'required' | 'none';
  /** Prefix reuse (slots.ts): llama-server gets `cache_prompt` and, when given, `id_slot`; other servers nothing. */
  prefixCache?: { slot?: number };
}

/** What came back, before reasoning is split off and JSON is validated. */
export interface ChatAnswer {
  content: string;
  /** `reasoning_content` or `reasoning`, when the server puts reasoning in its own field. */
  reasoning: string;
  /** The model id the server reports (may differ from the one asked for, e.g. `name:2`). */
  model: string;
  finishReason: string | null;
  /** Native tool calls (`message.tool_calls`, or streamed `delta.tool_calls` put together). */
  toolCalls?: NativeToolCall[];
  promptTokens?: number;
  completionTokens?: number;
  /** Time to the first streamed token (streaming only). */
  ttftMs?: number;
  durationMs: number;
  /** What was wrong with the answer as sent (invalid UTF-8, a token count that is none): the task's value shows them. */
  notes?: string[];
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
  /** Requests the loaded instance decodes together (LM Studio's `parallel`). */
  parallel?: number;
}

/**
 * Task input as stored in inputs.jsonl: ready messages, a template fill (files read at run time),
 * a later stage's task filled from its upstream task's output, or a reduce over a whole job's answers.
 */
export type LlmTaskInput = PromptTaskInput | TemplateTaskInput | UpstreamTaskInput | ReduceTaskInput | AgentTaskInput;

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

/** A job of investigations (lmstudio_investigate): how its agents run. */
export type { AgentJobOptions, AgentTaskInput } from './agent/types.js';

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
  /** A job of investigations: each task is an agent loop, not one prompt. */
  agent?: AgentJobOptions;
  /** What each answer must pass to be called verified; what fails is asked again, then escalated. */
  checks?: ChecksOptions;
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
