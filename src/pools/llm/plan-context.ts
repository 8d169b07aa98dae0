import { MonitorError, toTaskError } from '../../errors.js';
import type { Endpoints } from './endpoints.js';
import { changeModel, checkAskedContext } from './lifecycle.js';
import type { LlmPlanContext } from './plan-types.js';
import type { ResolvedModel } from './resolve.js';
import type { ServerFlavor } from './server-facts.js';
import type { ModelInfo } from './types.js';

/**
 * A job loading a model leaves it to unload after this long idle, as LM Studio's just-in-time
 * loads do (a REST load without a TTL would stay pinned in memory).
 */
const JOB_LOAD_TTL_SECONDS = 3600;

/**
 * The job's model, resolved (and loaded with the context asked, see askedContext), and how many of
 * its tasks may run at once: `perSlot` for each request its endpoints take. A concurrency above
 * that is refused.
 */
export async function resolveForJob(
  request: { model?: string | undefined; contextLength?: number | undefined; concurrency?: number | undefined },
  perSlot: number,
  context: LlmPlanContext,
  notes: string[],
): Promise<{ resolved: ResolvedModel; capacity: number }> {
  const { endpoints } = context;
  checkAskedContext(request.contextLength);
  const resolved = await askedContext(
    request.contextLength,
    await endpoints.resolveModel(request.model, context.signal),
    context,
    notes,
  );
  const capacity = endpoints.capacityOf(resolved.endpoints) * perSlot;
  if (request.concurrency !== undefined && request.concurrency > capacity)
    throw concurrencyOverLimit(request.concurrency, capacity, resolved.model, resolved.endpoints, endpoints);
  return { resolved, capacity };
}

/** More prompts at once than the endpoints serving the model take is refused, naming their limits: never silently lowered. */
function concurrencyOverLimit(
  concurrency: number,
  capacity: number,
  model: string,
  names: readonly string[],
  endpoints: Endpoints,
): MonitorError {
  const limits = names.map((name) => `${name} ${endpoints.capacityOf([name])}`).join(', ');
  return new MonitorError(
    'INVALID_INPUT',
    `concurrency ${concurrency} is more than the endpoints serving ${model} take at once (${capacity}: ${limits}).`,
    {
      hint: `Pass a concurrency of at most ${capacity}, or leave it out (that is the default). An endpoint takes as many as its server has slots (llama-server --parallel, LM Studio \`lms load <model> --parallel N\`; measured where the server tells none), lowered only by the user's --lmstudio-concurrency N, --endpoint NAME=URL@N or "concurrency" in "llm.endpoints".`,
    },
  );
}

/**
 * A job's `context_length`: on each endpoint serving the model where the loaded instance holds less
 * (or the model is not loaded, so a just-in-time load would take the server's default), the job
 * says so up front in `notes`; with `llm.allowModelLoad` it loads the model with that context where
 * the server can (LM Studio). Returns the model as resolved afterwards (its context for chunking).
 */
export async function askedContext(
  wanted: number | undefined,
  resolved: ResolvedModel,
  context: LlmPlanContext,
  notes: string[],
): Promise<ResolvedModel> {
  if (wanted === undefined) return resolved;
  const { endpoints, signal } = context;
  const { served } = await endpoints.candidatesFor(resolved.model, 'cached', signal);
  let loaded = false;
  for (const name of resolved.endpoints) {
    const id = served[name] ?? resolved.model;
    const info = (await endpoints.discover(name, 'cached', signal)).models?.find((m) => m.id === id);
    if (info?.contextLength !== undefined && info.contextLength >= wanted) continue;
    const flavor = endpoints.client(name).flavor;
    const short = shortfall(id, name, info, wanted);
    if (info?.maxContextLength !== undefined && info.maxContextLength < wanted) {
      notes.push(`${short} Its largest context is ${info.maxContextLength}: the job runs with what is loaded.`);
      continue;
    }
    if (flavor !== 'lmstudio') {
      notes.push(`${short} ${manualFix(flavor, id, wanted, endpoints, name)}`);
      continue;
    }
    if (!context.settings.allowModelLoad) {
      notes.push(
        `${short} The job runs as it is. Set llm.allowModelLoad to let jobs load it, or load it now: lmstudio_models action "load" with context_length ${wanted} (or \`lms load ${id} --context-length ${wanted}\`).`,
      );
      continue;
    }
    loaded = (await loadFor(endpoints, { name, id, wanted }, short, notes, signal)) || loaded;
  }
  return loaded ? endpoints.resolveModel(resolved.model, signal) : resolved;
}

/** What the endpoint holds against what the job asks. */
function shortfall(id: string, name: string, info: ModelInfo | undefined, wanted: number): string {
  if (info?.contextLength !== undefined)
    return `${id} on ${name} is loaded with a context of ${info.contextLength} tokens, less than the ${wanted} asked.`;
  if (info?.state === 'not-loaded')
    return `${id} on ${name} is not loaded: a just-in-time load would give it the server's default context, not the ${wanted} asked.`;
  return `${name} does not say the context ${id} is loaded with; ${wanted} was asked.`;
}

/** How to give the model that context by hand, on a server that cannot set it over HTTP. */
function manualFix(flavor: ServerFlavor, id: string, wanted: number, endpoints: Endpoints, name: string): string {
  switch (flavor) {
    case 'ollama':
      return `Ollama's OpenAI-compatible API cannot ask for a context: run Ollama with OLLAMA_CONTEXT_LENGTH=${wanted} (or a Modelfile with PARAMETER num_ctx ${wanted}).`;
    case 'llama-server': {
      const slots = endpoints.slotsOf(name)?.total ?? 1;
      return `llama-server splits -c across its --parallel slots: restart it with -c ${wanted * slots} for ${slots} slot(s) of ${wanted} (router mode: set c in the model's preset).`;
    }
    case 'vllm':
      return `Restart vLLM with --max-model-len ${wanted}.`;
    default:
      return `Load ${id} with a context of ${wanted} with the server's own tools.`;
  }
}

/** Loads the model with the asked context for the job; a failure becomes a note, never a failed submit. */
async function loadFor(
  endpoints: Endpoints,
  target: { name: string; id: string; wanted: number },
  short: string,
  notes: string[],
  signal: AbortSignal,
): Promise<boolean> {
  const started = Date.now();
  try {
    const [result] = await changeModel(
      endpoints,
      {
        action: 'load',
        model: target.id,
        endpoint: target.name,
        contextLength: target.wanted,
        ttlSeconds: JOB_LOAD_TTL_SECONDS,
      },
      signal,
    );
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const now = result?.contextLength === undefined ? '' : ` (now ${result.contextLength})`;
    notes.push(`${short} Loaded it with context ${target.wanted}${now} in ${seconds} s (llm.allowModelLoad).`);
    return true;
  } catch (error) {
    if (signal.aborted) throw error;
    const failed = toTaskError(error);
    const hint = failed.hint === undefined ? '' : ` ${failed.hint}`;
    notes.push(
      `${short} Loading it with that context failed (${failed.code}: ${failed.message})${hint} The job runs as it is.`,
    );
    return false;
  }
}
