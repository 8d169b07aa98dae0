import * as z from 'zod';
import { positive } from './responses.js';
import type { ModelInfo } from './types.js';

// What each kind of server says about itself, read leniently: a field of the wrong type is left
// out, never a failed probe (servers add and rename fields between builds).
const count = z.number().nullish().catch(undefined);
const text = z.string().nullish().catch(undefined);
const absent = (value: unknown): boolean => value === null || value === undefined;

const llamaPropsSchema = z.looseObject({
  total_slots: count,
  role: text,
  default_generation_settings: z.looseObject({ n_ctx: count }).nullish().catch(undefined),
});

/** What llama-server's `/props` tells: slots, context per slot, and whether it is a router over many models. */
export interface LlamaProps {
  slots?: number;
  contextPerSlot?: number;
  router: boolean;
}

/** llama-server's `/props`, or undefined when the answer is not one (another server, an error answer). */
export function parseLlamaProps(json: unknown): LlamaProps | undefined {
  const parsed = llamaPropsSchema.safeParse(json);
  if (!parsed.success) return undefined;
  const props = parsed.data;
  const router = props.role === 'router';
  if (!router && absent(props.total_slots) && absent(props.default_generation_settings)) return undefined;
  const out: LlamaProps = { router };
  const slots = positive(props.total_slots);
  const context = positive(props.default_generation_settings?.n_ctx);
  if (slots !== undefined) out.slots = Math.floor(slots);
  if (context !== undefined) out.contextPerSlot = context;
  return out;
}

const slotSchema = z.looseObject({ is_processing: z.boolean().nullish().catch(undefined), state: count });

/** llama-server's `/slots`: how many there are and how many work now (`is_processing`, or `state` 1 on older builds). */
export function parseLlamaSlots(json: unknown): { total: number; busy: number } | undefined {
  if (!Array.isArray(json) || json.length === 0) return undefined;
  let busy = 0;
  for (const item of json) {
    const slot = slotSchema.safeParse(item);
    if (!slot.success) return undefined;
    if (slot.data.is_processing === true || (absent(slot.data.is_processing) && slot.data.state === 1)) busy++;
  }
  return { total: json.length, busy };
}

const instanceSchema = z.looseObject({
  id: text,
  config: z.looseObject({ context_length: count, parallel: count }).nullish().catch(undefined),
});
const lmStudioV1Schema = z.looseObject({
  models: z.array(
    z.looseObject({
      key: z.string(),
      type: text,
      max_context_length: count,
      loaded_instances: z.array(instanceSchema).nullish().catch(undefined),
    }),
  ),
});

/** LM Studio 0.4's `/api/v1/models`: each model, loaded or not, and per loaded instance its context and parallel slots. */
export function parseLmStudioV1(json: unknown): { models: ModelInfo[]; slots?: number } | undefined {
  const parsed = lmStudioV1Schema.safeParse(json);
  if (!parsed.success) return undefined;
  const models: ModelInfo[] = [];
  let slots = 0;
  for (const m of parsed.data.models) {
    const info: ModelInfo = { id: m.key };
    if (m.type === 'llm' || m.type === 'vlm') info.type = m.type;
    else if (m.type === 'embedding' || m.type === 'embeddings') info.type = 'embeddings';
    const instances = m.loaded_instances ?? [];
    info.state = instances.length > 0 ? 'loaded' : 'not-loaded';
    const max = positive(m.max_context_length);
    if (max !== undefined) info.maxContextLength = max;
    const first = instances[0]?.config;
    const context = positive(first?.context_length);
    const parallel = positive(first?.parallel);
    if (context !== undefined) info.contextLength = context;
    if (parallel !== undefined) info.parallel = Math.floor(parallel);
    // Embedding instances decode no chat requests: only LLM instances add chat slots.
    if (info.type !== 'embeddings')
      for (const instance of instances) slots += Math.floor(positive(instance.config?.parallel) ?? 0);
    models.push(info);
  }
  return slots > 0 ? { models, slots } : { models };
}

/** The loaded instances of `key` in LM Studio's `/api/v1/models` (`key`, `key:2`, …), with their context. */
export function lmStudioInstances(json: unknown, key: string): Array<{ id: string; contextLength?: number }> {
  const parsed = lmStudioV1Schema.safeParse(json);
  const model = parsed.success ? parsed.data.models.find((m) => m.key === key) : undefined;
  return (model?.loaded_instances ?? []).flatMap((instance) => {
    if (typeof instance.id !== 'string') return [];
    const context = positive(instance.config?.context_length);
    return [context === undefined ? { id: instance.id } : { id: instance.id, contextLength: context }];
  });
}

const ollamaListSchema = z.looseObject({
  models: z.array(z.looseObject({ name: z.string(), model: text, digest: text, context_length: count })),
});

/** Ollama's `/api/tags` (every pulled model) or `/api/ps` (the loaded ones, with their context). */
export function parseOllamaList(json: unknown): Array<{ id: string; contextLength?: number }> | undefined {
  const parsed = ollamaListSchema.safeParse(json);
  if (!parsed.success) return undefined;
  return parsed.data.models.map((m) => {
    const context = positive(m.context_length);
    return context === undefined ? { id: m.name } : { id: m.name, contextLength: context };
  });
}

/** Ollama's models: pulled ones from /api/tags, loaded (and their context) from /api/ps. */
export function ollamaModels(
  pulled: ReadonlyArray<{ id: string }>,
  loaded: ReadonlyArray<{ id: string; contextLength?: number }>,
): ModelInfo[] {
  return pulled.map(({ id }) => {
    const running = loaded.find((m) => m.id === id);
    const info: ModelInfo = { id, state: running ? 'loaded' : 'not-loaded' };
    if (running?.contextLength !== undefined) info.contextLength = running.contextLength;
    return info;
  });
}

const routerModelSchema = z.looseObject({
  data: z.array(
    z.looseObject({
      id: z.string(),
      status: z
        .looseObject({ value: text, failed: z.boolean().nullish().catch(undefined), exit_code: count })
        .nullish()
        .catch(undefined),
      context_length: count,
    }),
  ),
});

/** One model's status in a router-mode llama-server's `/models` (after a load: did its child start?). */
export function routerStatus(
  json: unknown,
  id: string,
): { value: string | undefined; failed: boolean; exitCode?: number } | undefined {
  const parsed = routerModelSchema.safeParse(json);
  const status = parsed.success ? parsed.data.data.find((m) => m.id === id)?.status : undefined;
  if (!status) return undefined;
  const out: { value: string | undefined; failed: boolean; exitCode?: number } = {
    value: status.value ?? undefined,
    failed: status.failed === true,
  };
  if (typeof status.exit_code === 'number') out.exitCode = status.exit_code;
  return out;
}

/** llama-server in router mode lists every model of its folder with its status (`loaded`, `unloaded`, `loading`). */
export function parseRouterModels(json: unknown): ModelInfo[] | undefined {
  const parsed = routerModelSchema.safeParse(json);
  if (!parsed.success) return undefined;
  return parsed.data.data.map((m) => {
    const info: ModelInfo = { id: m.id, state: m.status?.value === 'loaded' ? 'loaded' : 'not-loaded' };
    // The listed context is the model's trained one; the loaded instance's comes from /props?model=.
    const max = positive(m.context_length);
    if (max !== undefined) info.maxContextLength = max;
    return info;
  });
}

/** vLLM names itself in `/v1/models` (`owned_by: "vllm"`, `max_model_len`). */
export function looksLikeVllm(json: unknown): boolean {
  const items = (json as { data?: unknown } | null)?.data;
  return (
    Array.isArray(items) &&
    items.some((item) => {
      const m = item as Record<string, unknown> | null;
      return m !== null && typeof m === 'object' && (m.owned_by === 'vllm' || typeof m.max_model_len === 'number');
    })
  );
}
