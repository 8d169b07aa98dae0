import {
  looksLikeVllm,
  ollamaModels,
  parseLlamaProps,
  parseLlamaSlots,
  parseLmStudioV1,
  parseOllamaList,
  parseRouterModels,
} from './probe-parse.js';
import { parseLmStudioModels, parseOpenAiModels } from './responses.js';
import {
  MOST_CONTEXT_TOKENS,
  MOST_MODEL_ID_CHARS,
  MOST_MODELS,
  MOST_SLOTS,
  type ServerFacts,
  type ServerFlavor,
} from './server-facts.js';
import type { ModelInfo } from './types.js';
import { UpstreamAnswerError } from './upstream.js';

/**
 * One GET on the endpoint: its JSON, or undefined where the server has no such route
 * (EndpointClient.probe); `strict` passes every error answer on as it is.
 */
export type ProbeGet = (path: string, strict?: boolean) => Promise<unknown>;

/** What one probe found: the server's flavour, slots and models. */
export interface Probe {
  facts: ServerFacts;
  models: ModelInfo[];
}

/**
 * Asks the server what it is, by the routes only one kind of server answers (never by its port):
 * llama-server's `/props`, LM Studio's `/api/v1/models` (or `/api/v0/models` before 0.4), Ollama's
 * `/api/tags`; anything else is a plain OpenAI-compatible server (vLLM when its list says so).
 * `known` (the last probe's answer) is tried alone first: one request per refresh on a server
 * that has not changed.
 */
export async function probeServer(get: ProbeGet, name: string, known?: ServerFlavor): Promise<Probe> {
  return bounded(await detect(get, name, known));
}

async function detect(get: ProbeGet, name: string, known?: ServerFlavor): Promise<Probe> {
  if (known !== undefined) {
    const again = await probeAs(known, get);
    if (again) return again;
  }
  const [props, v1, tags] = await Promise.all([get('/props'), get('/api/v1/models'), get('/api/tags')]);
  const llama = parseLlamaProps(props);
  if (llama) return llamaServer(get, llama);
  const lmStudio = parseLmStudioV1(v1);
  if (lmStudio) return lmStudioProbe(lmStudio);
  const pulled = parseOllamaList(tags);
  if (pulled) return ollama(get, pulled);
  return (await lmStudioV0(get)) ?? openAi(get, name);
}

/**
 * What a server said, held to what a real one could say (server-facts.ts): slots and contexts
 * capped, models whose id is too long or carries control characters (they reach a terminal through
 * `monitor-mcp doctor`) dropped, the list cut.
 */
function bounded(probe: Probe): Probe {
  const facts: ServerFacts = { ...probe.facts };
  if (facts.slots) {
    const total = Math.min(facts.slots.total, MOST_SLOTS);
    facts.slots = facts.slots.busy === undefined ? { total } : { total, busy: Math.min(facts.slots.busy, total) };
  }
  const models = keptModels(probe.models.filter((m) => m.id.length <= MOST_MODEL_ID_CHARS && !CONTROL.test(m.id))).map(
    (m): ModelInfo => {
      const model = { ...m };
      if (model.contextLength !== undefined) model.contextLength = Math.min(model.contextLength, MOST_CONTEXT_TOKENS);
      if (model.maxContextLength !== undefined)
        model.maxContextLength = Math.min(model.maxContextLength, MOST_CONTEXT_TOKENS);
      if (model.parallel !== undefined) model.parallel = Math.min(model.parallel, MOST_SLOTS);
      return model;
    },
  );
  if (probe.models.length > models.length) facts.modelsListed = probe.models.length;
  return { facts, models };
}

/**
 * At most MOST_MODELS of a list, in the server's order: past the cap, loaded models are kept first,
 * then chat models, so the one a job can use now is never the one cut.
 */
function keptModels(models: ModelInfo[]): ModelInfo[] {
  if (models.length <= MOST_MODELS) return models;
  const rank = (m: ModelInfo): number => (m.state === 'loaded' ? 0 : m.type === 'embeddings' ? 2 : 1);
  const kept = new Set(
    models
      .map((m, i) => ({ i, rank: rank(m) }))
      .sort((a, b) => a.rank - b.rank || a.i - b.i)
      .slice(0, MOST_MODELS)
      .map((m) => m.i),
  );
  return models.filter((_, i) => kept.has(i));
}

// C0 and C1 controls, DEL, and the bidi overrides that make text read other than it is.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

/** The probe of a server already known to be `flavor`; undefined when it no longer answers as one. */
async function probeAs(flavor: ServerFlavor, get: ProbeGet): Promise<Probe | undefined> {
  switch (flavor) {
    case 'llama-server': {
      const llama = parseLlamaProps(await get('/props'));
      return llama && llamaServer(get, llama);
    }
    case 'lmstudio': {
      const v1 = parseLmStudioV1(await get('/api/v1/models'));
      return v1 ? lmStudioProbe(v1) : lmStudioV0(get);
    }
    case 'ollama': {
      const pulled = parseOllamaList(await get('/api/tags'));
      return pulled && ollama(get, pulled);
    }
    default:
      return undefined;
  }
}

/** LM Studio before 0.4: the v0 list (it tells no slots). */
async function lmStudioV0(get: ProbeGet): Promise<Probe | undefined> {
  const v0 = parseLmStudioModels(await get('/api/v0/models'));
  return v0 && { facts: { flavor: 'lmstudio' }, models: v0 };
}

function lmStudioProbe(found: { models: ModelInfo[]; slots?: number }): Probe {
  const facts: ServerFacts = { flavor: 'lmstudio' };
  if (found.slots !== undefined) facts.slots = { total: found.slots };
  return { facts, models: found.models };
}

/** llama-server: slots from /props, busy ones from /slots, models (context per slot) from /v1/models. */
async function llamaServer(get: ProbeGet, props: NonNullable<ReturnType<typeof parseLlamaProps>>): Promise<Probe> {
  const list = await get('/v1/models');
  if (props.router) return llamaRouter(get, list);
  const facts: ServerFacts = { flavor: 'llama-server' };
  // /slots may be off (--no-slots): then the total from /props stands alone.
  const slots = parseLlamaSlots(await get('/slots'));
  const total = slots?.total ?? props.slots;
  if (total !== undefined) facts.slots = slots ? { total, busy: slots.busy } : { total };
  const models = (parseOpenAiModels(list) ?? []).map((m): ModelInfo => {
    const info: ModelInfo = { ...m, state: 'loaded' };
    if (info.contextLength === undefined && props.contextPerSlot !== undefined)
      info.contextLength = props.contextPerSlot;
    if (total !== undefined) info.parallel = total;
    return info;
  });
  return { facts, models };
}

/** llama-server in router mode: each model's status from the list, slots and context of the loaded ones from /props?model=. */
async function llamaRouter(get: ProbeGet, list: unknown): Promise<Probe> {
  const models = parseRouterModels(list) ?? [];
  let total = 0;
  await Promise.all(
    models
      .filter((m) => m.state === 'loaded')
      // One request per loaded model: a router runs a few at once (--models-max, default 4).
      .slice(0, ROUTER_PROPS_ASKED)
      .map(async (m) => {
        const props = parseLlamaProps(await get(`/props?model=${encodeURIComponent(m.id)}`));
        if (props?.contextPerSlot !== undefined) m.contextLength = props.contextPerSlot;
        if (props?.slots !== undefined) {
          m.parallel = props.slots;
          total += props.slots;
        }
      }),
  );
  const facts: ServerFacts = { flavor: 'llama-server', router: true };
  if (total > 0) facts.slots = { total };
  return { facts, models };
}

const ROUTER_PROPS_ASKED = 16;

/** Ollama: pulled models from /api/tags, the loaded ones and their context from /api/ps. It tells no slot count. */
async function ollama(get: ProbeGet, pulled: ReadonlyArray<{ id: string }>): Promise<Probe> {
  const loaded = parseOllamaList(await get('/api/ps')) ?? [];
  return { facts: { flavor: 'ollama' }, models: ollamaModels(pulled, loaded) };
}

/** Any other OpenAI-compatible server: `/v1/models` (vLLM's carries max_model_len). */
async function openAi(get: ProbeGet, name: string): Promise<Probe> {
  const json = await get('/v1/models', true);
  const models = parseOpenAiModels(json);
  if (models === undefined) {
    throw new UpstreamAnswerError(
      'UPSTREAM_ERROR',
      `Endpoint ${name} answered /v1/models without a model list: ${JSON.stringify(json).slice(0, 200)}`,
      200,
      { hint: 'Check that the endpoint URL points at an OpenAI-compatible server (base address, without /v1).' },
    );
  }
  return { facts: { flavor: looksLikeVllm(json) ? 'vllm' : 'openai' }, models };
}
