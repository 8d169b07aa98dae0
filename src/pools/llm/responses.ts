import * as z from 'zod';
import { INVALID_UTF8_NOTE, usageCounts, wasLossy } from './decoding.js';
import type { ChatAnswer, ModelInfo, NativeToolCall } from './types.js';
import { UpstreamAnswerError } from './upstream.js';

// Response shapes, loose: unknown fields pass, a field of the wrong type reads as absent.
const maybeText = z.string().nullish().catch(undefined);
const maybeNumber = z.number().nullish().catch(undefined);
// Token counts are read by usageCounts (decoding.ts): one that is no count is noted, not dropped silently.
const usageSchema = z.looseObject({}).nullish().catch(undefined);
const maybeList = z.array(z.unknown()).nullish().catch(undefined);
const textFields = { content: maybeText, reasoning_content: maybeText, reasoning: maybeText, tool_calls: maybeList };
const completionSchema = z.looseObject({
  model: maybeText,
  choices: z
    .array(z.looseObject({ message: z.looseObject(textFields).nullish().catch(undefined), finish_reason: maybeText }))
    .nullish()
    .catch(undefined),
  usage: usageSchema,
});
/** One event of a streamed chat completion. */
export const streamChunkSchema = z.looseObject({
  model: maybeText,
  choices: z
    .array(z.looseObject({ delta: z.looseObject(textFields).nullish().catch(undefined), finish_reason: maybeText }))
    .nullish()
    .catch(undefined),
  usage: usageSchema,
});
const listSchema = z.looseObject({ data: z.array(z.unknown()) });
const lmStudioModelSchema = z.looseObject({
  id: z.string(),
  type: maybeText,
  state: maybeText,
  loaded_context_length: maybeNumber,
  max_context_length: maybeNumber,
});
const openAiModelSchema = z.looseObject({
  id: z.string(),
  meta: z.looseObject({ n_ctx: maybeNumber, n_ctx_train: maybeNumber }).nullish().catch(undefined),
  max_model_len: maybeNumber,
  context_length: maybeNumber,
  context_window: maybeNumber,
});

/** A whole (not streamed) chat completion as an answer; one without choices is an UPSTREAM_ERROR. */
export function answerFromCompletion(
  json: unknown,
  requested: string,
  durationMs: number,
  endpoint: string,
  status: number,
): ChatAnswer {
  const body = completionSchema.safeParse(json);
  const choice = body.success ? body.data.choices?.[0] : undefined;
  if (!body.success || !choice) {
    throw new UpstreamAnswerError(
      'UPSTREAM_ERROR',
      `Endpoint ${endpoint} answered without choices: ${JSON.stringify(json).slice(0, 300)}`,
      status,
      {
        hint: 'Check that the endpoint is an OpenAI-compatible chat completions server.',
      },
    );
  }
  const message = choice.message;
  const answer: ChatAnswer = {
    content: message?.content ?? '',
    reasoning: message?.reasoning_content || message?.reasoning || '',
    model: body.data.model || requested,
    finishReason: choice.finish_reason ?? null,
    durationMs,
  };
  const toolCalls = nativeToolCalls(message?.tool_calls);
  if (toolCalls.length > 0) answer.toolCalls = toolCalls;
  const usage = usageCounts(body.data.usage);
  if (usage.prompt !== undefined) answer.promptTokens = usage.prompt;
  if (usage.completion !== undefined) answer.completionTokens = usage.completion;
  const notes = wasLossy(json) ? [INVALID_UTF8_NOTE, ...usage.notes] : usage.notes;
  if (notes.length > 0) answer.notes = notes;
  return answer;
}

/** More calls than this in one answer is not a model at work: the rest are dropped. */
export const MAX_TOOL_CALLS = 64;

/** One element of `tool_calls` (whole, or a streamed fragment of one): every field may be absent or wrong. */
export interface ToolCallPart {
  index?: number;
  id?: string;
  name?: string;
  /** A string as sent; an object (some servers) as its JSON text. */
  arguments?: string;
}

/** Reads one `tool_calls` element loosely: a wrong-typed field is absent, a non-object is undefined. */
export function toolCallPart(raw: unknown): ToolCallPart | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const item = raw as Record<string, unknown>;
  const part: ToolCallPart = {};
  if (typeof item.index === 'number' && Number.isInteger(item.index) && item.index >= 0) part.index = item.index;
  if (typeof item.id === 'string' && item.id !== '') part.id = item.id;
  const fn = item.function;
  if (typeof fn === 'object' && fn !== null && !Array.isArray(fn)) {
    const { name, arguments: args } = fn as Record<string, unknown>;
    if (typeof name === 'string' && name !== '') part.name = name;
    if (typeof args === 'string') part.arguments = args;
    else if (typeof args === 'object' && args !== null) part.arguments = safeJson(args);
  }
  return part;
}

function safeJson(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined; // a cycle cannot come out of JSON.parse; kept for safety
  }
}

/** `message.tool_calls` of a whole answer; elements without a function name are dropped. */
export function nativeToolCalls(raw: readonly unknown[] | null | undefined): NativeToolCall[] {
  const calls: NativeToolCall[] = [];
  for (const item of raw ?? []) {
    if (calls.length >= MAX_TOOL_CALLS) break;
    const part = toolCallPart(item);
    if (part?.name === undefined) continue;
    const call: NativeToolCall = { name: part.name, arguments: part.arguments ?? '' };
    if (part.id !== undefined) call.id = part.id;
    calls.push(call);
  }
  return calls;
}

export function positive(value: number | null | undefined): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
}

/** The items of `{data: [...]}`, or undefined when the body has no such list. */
function listItems(json: unknown): unknown[] | undefined {
  const list = listSchema.safeParse(json);
  return list.success ? list.data.data : undefined;
}

/** LM Studio `/api/v0/models`: id, type, state, max_context_length, loaded_context_length. Undefined without a list. */
export function parseLmStudioModels(json: unknown): ModelInfo[] | undefined {
  const items = listItems(json);
  if (items === undefined) return undefined;
  const models: ModelInfo[] = [];
  for (const item of items) {
    const parsed = lmStudioModelSchema.safeParse(item);
    if (!parsed.success) continue;
    const m = parsed.data;
    const info: ModelInfo = { id: m.id };
    if (m.type === 'llm' || m.type === 'vlm') info.type = m.type;
    else if (m.type === 'embeddings' || m.type === 'embedding') info.type = 'embeddings';
    if (m.state === 'loaded' || m.state === 'not-loaded') info.state = m.state;
    const loaded = positive(m.loaded_context_length);
    const max = positive(m.max_context_length);
    if (loaded !== undefined) info.contextLength = loaded;
    if (max !== undefined) info.maxContextLength = max;
    models.push(info);
  }
  return models;
}

/** `/v1/models` of any OpenAI-compatible server; llama-server adds `meta.n_ctx`, vLLM `max_model_len`. Undefined without a list. */
export function parseOpenAiModels(json: unknown): ModelInfo[] | undefined {
  const items = listItems(json);
  if (items === undefined) return undefined;
  const models: ModelInfo[] = [];
  for (const item of items) {
    const parsed = openAiModelSchema.safeParse(item);
    if (!parsed.success) continue;
    const m = parsed.data;
    const info: ModelInfo = { id: m.id };
    const context =
      positive(m.meta?.n_ctx) ?? positive(m.max_model_len) ?? positive(m.context_length) ?? positive(m.context_window);
    if (context !== undefined) info.contextLength = context;
    const trained = positive(m.meta?.n_ctx_train);
    if (trained !== undefined) info.maxContextLength = trained;
    models.push(info);
  }
  return models;
}
