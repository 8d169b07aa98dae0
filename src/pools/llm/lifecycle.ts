import { setTimeout as sleep } from 'node:timers/promises';
import { MonitorError } from '../../errors.js';
import type { EndpointClient } from './client.js';
import type { Endpoints } from './endpoints.js';
import { LlmError } from './errors.js';
import { matchModel } from './models.js';
import { lmStudioInstances, routerStatus } from './probe-parse.js';
import { MOST_CONTEXT_TOKENS, type ServerFlavor } from './server-facts.js';
import type { ModelInfo } from './types.js';

/** What lmstudio_models' `action` asks for. */
export interface ModelChange {
  action: 'load' | 'unload';
  model: string;
  /** Only this endpoint; else every endpoint listing the model. */
  endpoint?: string | undefined;
  /** Context of the loaded instance, in tokens. */
  contextLength?: number | undefined;
  /** Unload after this many idle seconds (LM Studio `ttl`, Ollama `keep_alive`); default: kept loaded. */
  ttlSeconds?: number | undefined;
}

/** What one endpoint did, read back from its model list afterwards. */
export interface ModelChangeResult {
  endpoint: string;
  flavor: ServerFlavor;
  /** The id the endpoint knows the model by. */
  model: string;
  action: 'load' | 'unload';
  state?: 'loaded' | 'not-loaded' | undefined;
  contextLength?: number | undefined;
  /** What the server could not do as asked, and how to do it by hand. */
  notes: string[];
}

/** Router-mode llama-server loads in the background: its status is read this often until it settles. */
const STATUS_POLL_MS = 250;

/**
 * Loads or unloads a model on each endpoint serving it (or the one named), the way its server
 * does it: LM Studio's REST API, llama-server's router (`--models-dir`), Ollama's `keep_alive`.
 * Servers that cannot (vLLM, plain OpenAI-compatible ones, llama-server serving one model) are
 * refused with the way to do it there. The lists are read again afterwards.
 */
/**
 * A context asked for (a model's tool call, hostile or wrong): past any real model's it would have
 * a server try to allocate it (Ollama's num_ctx is taken as it comes), so it is refused here.
 */
export function checkAskedContext(tokens: number | undefined): void {
  if (tokens !== undefined && tokens > MOST_CONTEXT_TOKENS)
    throw new MonitorError('INVALID_INPUT', `context_length ${tokens} is more than any model takes.`, {
      hint: `Ask for at most ${MOST_CONTEXT_TOKENS} tokens; lmstudio_models shows each model's largest context.`,
    });
}

export async function changeModel(
  endpoints: Endpoints,
  change: ModelChange,
  signal: AbortSignal,
): Promise<ModelChangeResult[]> {
  checkAskedContext(change.contextLength);
  const targets = await targetsOf(endpoints, change, signal);
  const results: ModelChangeResult[] = [];
  for (const { name, id } of targets) {
    // Probed first: an endpoint whose models the config pins may not have been asked yet.
    const router = (await endpoints.discover(name, 'cached', signal)).facts?.router === true;
    const flavor = endpoints.client(name).flavor;
    const notes: string[] = [];
    try {
      await changeOn(endpoints, { name, id, flavor, router }, change, notes, signal);
    } finally {
      endpoints.invalidate(name);
    }
    const after = await endpoints.discover(name, 'fresh', signal);
    const info = after.models?.find((m) => m.id === id);
    results.push({
      endpoint: name,
      flavor,
      model: id,
      action: change.action,
      state: info?.state,
      contextLength: info?.contextLength,
      notes,
    });
  }
  return results;
}

/** The endpoints to act on and the id each knows the model by: the one named, else all listing it. */
async function targetsOf(
  endpoints: Endpoints,
  change: ModelChange,
  signal: AbortSignal,
): Promise<Array<{ name: string; id: string }>> {
  if (change.endpoint !== undefined) {
    if (!endpoints.endpointNames.includes(change.endpoint))
      throw new MonitorError('INVALID_INPUT', `No endpoint named "${change.endpoint}".`, {
        hint: `Configured endpoints: ${endpoints.endpointNames.join(', ')}.`,
      });
    const found = await endpoints.discover(change.endpoint, 'fresh', signal);
    if (found.error) throw found.error;
    return [{ name: change.endpoint, id: servedId(change.model, found.models ?? [], change.endpoint) }];
  }
  const { endpoints: serving, served, error } = await endpoints.candidatesFor(change.model, 'fresh', signal);
  if (serving.length === 0)
    throw (
      error ??
      new LlmError('MODEL_NOT_FOUND', `No endpoint lists the model "${change.model}".`, {
        hint: 'lmstudio_models lists each endpoint’s models; download it first (`lms get <model>`, `ollama pull <model>`), or name the endpoint.',
      })
    );
  return serving.map((name) => ({ name, id: served[name] ?? change.model }));
}

function servedId(model: string, models: readonly ModelInfo[], endpoint: string): string {
  const match = matchModel(
    model,
    models.map((m) => m.id),
  );
  if (match && 'id' in match) return match.id;
  const known = models.map((m) => m.id).join(', ') || 'none';
  throw new LlmError(
    'MODEL_NOT_FOUND',
    match
      ? `"${model}" matches several models on ${endpoint}: ${match.ambiguous.join(', ')}.`
      : `${endpoint} does not list the model "${model}".`,
    { hint: `Its models: ${known}. Pass one of them exactly.` },
  );
}

interface Target {
  name: string;
  id: string;
  flavor: ServerFlavor;
  router: boolean;
}

async function changeOn(
  endpoints: Endpoints,
  target: Target,
  change: ModelChange,
  notes: string[],
  signal: AbortSignal,
): Promise<void> {
  const client = endpoints.client(target.name);
  const timeoutMs = endpoints.settings.requestTimeoutSeconds * 1000;
  endpoints.log.info(`${change.action} ${target.id} on ${target.name} (${target.flavor})`);
  switch (target.flavor) {
    case 'lmstudio':
      return change.action === 'load'
        ? lmStudioLoad(client, target.id, change, notes, signal, timeoutMs)
        : lmStudioUnload(client, target.id, signal, timeoutMs);
    case 'ollama':
      return ollamaChange(client, target.id, change, notes, signal, timeoutMs);
    case 'llama-server':
      if (target.router) return routerChange(client, target.id, change, notes, signal, timeoutMs);
      throw cannotChange(
        target,
        'llama-server serving one model (started with -m)',
        'restart it with the model you want (`-m FILE -c N --parallel N`), or start it in router mode (`--models-dir DIR`) to load and unload models over HTTP',
      );
    default:
      throw cannotChange(
        target,
        target.flavor === 'vllm' ? 'vLLM' : 'this OpenAI-compatible server',
        target.flavor === 'vllm'
          ? 'restart vLLM with the model (`vllm serve MODEL --max-model-len N`)'
          : 'load the model with the server’s own tools',
      );
  }
}

function cannotChange(target: Target, what: string, how: string): MonitorError {
  return new MonitorError('INVALID_INPUT', `${target.name} is ${what}: it cannot load or unload models over HTTP.`, {
    hint: `On that server, ${how}.`,
  });
}

/**
 * LM Studio 0.4: `POST /api/v1/models/load`. Loading a model that is loaded already makes a second
 * instance (`id:2`), so a loaded one is left as it is, or unloaded first when another context is
 * asked. Parallel slots cannot be set over REST.
 */
async function lmStudioLoad(
  client: EndpointClient,
  id: string,
  change: ModelChange,
  notes: string[],
  signal: AbortSignal,
  timeoutMs: number,
): Promise<void> {
  const instances = lmStudioInstances(await client.probe('/api/v1/models', signal, timeoutMs, true), id);
  const current = instances[0]?.contextLength;
  if (instances.length > 0 && (change.contextLength === undefined || change.contextLength === current)) {
    notes.push(`${id} was loaded already${current === undefined ? '' : ` with context ${current}`}: left as it is.`);
    return;
  }
  await unloadInstances(client, id, instances, signal, timeoutMs);
  const body: Record<string, unknown> = { model: id, echo_load_config: true };
  if (change.contextLength !== undefined) body.context_length = change.contextLength;
  if (change.ttlSeconds !== undefined) body.ttl = change.ttlSeconds;
  await client.postJson('/api/v1/models/load', body, signal, timeoutMs, id);
  notes.push(
    `Parallel slots cannot be set over LM Studio's REST API (it loads with 4): for N, run \`lms load ${id} --parallel N\`${change.contextLength === undefined ? '' : ` --context-length ${change.contextLength}`}.`,
  );
}

/** LM Studio 0.4: every loaded instance of the model (`id`, `id:2`, …) through `POST /api/v1/models/unload`. */
async function lmStudioUnload(
  client: EndpointClient,
  id: string,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<void> {
  const instances = lmStudioInstances(await client.probe('/api/v1/models', signal, timeoutMs, true), id);
  if (instances.length === 0)
    throw new LlmError('MODEL_NOT_LOADED', `${id} is not loaded on ${client.name}: nothing to unload.`);
  await unloadInstances(client, id, instances, signal, timeoutMs);
}

/** LM Studio 0.4: each instance through `POST /api/v1/models/unload`, one after another. */
async function unloadInstances(
  client: EndpointClient,
  id: string,
  instances: ReadonlyArray<{ id: string }>,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<void> {
  for (const instance of instances)
    await client.postJson('/api/v1/models/unload', { instance_id: instance.id }, signal, timeoutMs, id);
}

/**
 * Ollama: an empty `/api/generate` loads (`keep_alive` seconds, -1 = kept; `options.num_ctx`), and
 * `keep_alive: 0` unloads. keep_alive goes as a number: Ollama refuses the string "-1" (no unit).
 */
async function ollamaChange(
  client: EndpointClient,
  id: string,
  change: ModelChange,
  notes: string[],
  signal: AbortSignal,
  timeoutMs: number,
): Promise<void> {
  const body: Record<string, unknown> = { model: id, prompt: '', stream: false };
  if (change.action === 'unload') body.keep_alive = 0;
  else {
    body.keep_alive = change.ttlSeconds ?? -1;
    if (change.contextLength !== undefined) {
      body.options = { num_ctx: change.contextLength };
      notes.push(
        `Ollama's OpenAI-compatible API (which jobs use) cannot ask for a context: its next request reloads ${id} at the server's default unless Ollama runs with OLLAMA_CONTEXT_LENGTH=${change.contextLength} (or the model's Modelfile sets PARAMETER num_ctx ${change.contextLength}).`,
      );
    }
  }
  await client.postJson('/api/generate', body, signal, timeoutMs, id);
}

/**
 * llama-server in router mode: `POST /models/load|unload {model}`. A load answers at once and
 * goes on in a child process: its status in `/models` says when it is loaded or that it failed.
 */
async function routerChange(
  client: EndpointClient,
  id: string,
  change: ModelChange,
  notes: string[],
  signal: AbortSignal,
  timeoutMs: number,
): Promise<void> {
  if (change.action === 'unload') {
    await client.postJson('/models/unload', { model: id }, signal, timeoutMs, id);
    return;
  }
  if (change.contextLength !== undefined || change.ttlSeconds !== undefined)
    notes.push(
      "llama-server's router loads a model with the arguments of its preset: set the context there (`c = N` in the --models-preset file, or -c when starting the router); it has no idle unload time.",
    );
  if (routerStatus(await client.probe('/models', signal, timeoutMs, true), id)?.value === 'loaded') {
    notes.push(`${id} was loaded already: left as it is.`);
    return;
  }
  await client.postJson('/models/load', { model: id }, signal, timeoutMs, id);
  const until = Date.now() + timeoutMs;
  for (;;) {
    const status = routerStatus(await client.probe('/models', signal, timeoutMs, true), id);
    if (status?.value === 'loaded') return;
    if (status?.failed === true)
      throw new LlmError(
        'MODEL_NOT_LOADED',
        `llama-server on ${client.name} could not load ${id}: its child process exited${status.exitCode === undefined ? '' : ` with code ${status.exitCode}`}.`,
        {
          hint: "Read the router's log (it prints the child's error); check the model file and the preset's arguments, then load it again.",
        },
      );
    if (Date.now() >= until)
      throw new MonitorError(
        'TIMEOUT',
        `${id} was still not loaded on ${client.name} after ${Math.round(timeoutMs / 1000)} s.`,
        {
          hint: 'A large model can take long: call lmstudio_models again to see its state.',
        },
      );
    await sleep(STATUS_POLL_MS, undefined, { signal });
  }
}
