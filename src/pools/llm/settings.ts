import { MAX_TIMEOUT_SECONDS } from '../../config/core.js';
import {
  bool,
  int,
  invalid,
  num,
  optionalText,
  type Setting,
  type SettingsTree,
  type SourceContext,
  type ValuesOf,
} from '../../config/settings.js';
import { MonitorError } from '../../errors.js';

/** One OpenAI-compatible server the LLM pool may send prompts to. */
export interface EndpointConfig {
  /** Short name shown in results and `lmstudio_models`. */
  name: string;
  /** Base URL without `/v1`, e.g. `http://127.0.0.1:1234`. */
  url: string;
  /** Requests in flight at once: the user's cap, or (concurrencyAuto) where to start before the server says. */
  concurrency: number;
  /** True when the user set no concurrency: the server's slots decide, or the adaptive limit where it says none. */
  concurrencyAuto?: boolean;
  /** Models served here; empty = ask the server. */
  models: string[];
  /** `lmstudio` enables the native `/api/v0` and `/api/v1` calls; `openai` uses `/v1` only. */
  flavor: 'lmstudio' | 'openai';
  /** Name of the env var holding the bearer token (never the token itself). */
  apiKeyEnv?: string;
}

export const DEFAULT_LMSTUDIO_URL = 'http://127.0.0.1:1234';
/** LM Studio's SDK and CLI read the token from LM_API_TOKEN: every LM Studio endpoint does too. */
const LM_STUDIO_TOKEN_ENV = 'LM_API_TOKEN';
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENDPOINT_SYNTAX =
  'Syntax: --endpoint [NAME=]URL[@CONCURRENCY][#lmstudio|#openai], e.g. gpu2=http://10.0.0.2:1234@2#lmstudio.';

/** Port 1234 is LM Studio's; anything else is taken for a plain OpenAI-compatible server. */
function guessFlavor(url: string): EndpointConfig['flavor'] {
  return new URL(url).port === '1234' ? 'lmstudio' : 'openai';
}

/** An http(s) base URL without credentials, a trailing slash or the `/v1` users paste from LM Studio. */
function normaliseUrl(url: string, source: SourceContext): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(source, 'an http(s) URL', url);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw invalid(source, 'an http(s) URL', url);
  if (parsed.username || parsed.password) {
    // Never echo the password: show the URL without its credentials.
    throw new MonitorError(
      'INVALID_INPUT',
      `The endpoint URL ${parsed.protocol}//…@${parsed.host}${parsed.pathname} in ${source.name} has a user name or password in it; monitor-mcp does not send URL credentials.`,
      {
        hint: 'Remove them from the URL, put the token in an environment variable and name it with "apiKeyEnv" on the endpoint in the config file (LM Studio endpoints read LM_API_TOKEN by default).',
      },
    );
  }
  return parsed.href.replace(/\/+$/, '').replace(/\/v1$/, '');
}

function positiveInt(value: unknown, source: SourceContext, max: number): number {
  const n = typeof value === 'string' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > max)
    throw invalid(source, `an integer from 1 to ${max}`, value);
  return n;
}

/**
 * `[NAME=]URL[@N][#FLAVOR]`: `gpu2=http://10.0.0.2:1234@2`, `ollama=http://127.0.0.1:11434#openai`.
 * FLAVOR is `lmstudio` or `openai`; without it, port 1234 means LM Studio.
 */
function parseEndpointSpec(
  spec: string,
  index: number,
  defaultConcurrency: number,
  source: SourceContext,
): EndpointConfig {
  let rest = spec.trim();
  let flavor: EndpointConfig['flavor'] | undefined;
  const hash = rest.lastIndexOf('#');
  if (hash !== -1) {
    const word = rest.slice(hash + 1).toLowerCase();
    if (word !== 'lmstudio' && word !== 'openai')
      throw invalid(source, '#lmstudio or #openai at the end of the endpoint', `#${word}`, ENDPOINT_SYNTAX);
    flavor = word;
    rest = rest.slice(0, hash);
  }
  // Only a number after the last "@" is a concurrency: "user:pass@host" is refused by normaliseUrl.
  const count = /@(\d+)$/.exec(rest);
  const concurrency = count
    ? positiveInt(count[1], { ...source, name: `the concurrency in ${source.name}` }, 256)
    : defaultConcurrency;
  if (count) rest = rest.slice(0, count.index);
  const eq = rest.indexOf('=');
  const named = eq > 0 && !rest.slice(0, eq).includes('/');
  const url = normaliseUrl(named ? rest.slice(eq + 1) : rest, source);
  const endpoint: EndpointConfig = {
    name: named ? rest.slice(0, eq) : `endpoint${index + 1}`,
    url,
    concurrency,
    models: [],
    flavor: flavor ?? guessFlavor(url),
  };
  if (!count) endpoint.concurrencyAuto = true;
  return endpoint;
}

const ENDPOINT_KEYS = new Set(['name', 'url', 'concurrency', 'models', 'flavor', 'apiKeyEnv']);

/** One `llm.endpoints` entry of the config file. */
function endpointFromFile(
  raw: unknown,
  index: number,
  defaultConcurrency: number,
  source: SourceContext,
): EndpointConfig {
  const at = { ...source, name: `${source.name}[${index}]` };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw invalid(at, 'an object {name?, url, concurrency?, models?, flavor?, apiKeyEnv?}', raw);
  const entry = raw as Record<string, unknown>;
  const unknown = Object.keys(entry).find((key) => !ENDPOINT_KEYS.has(key));
  if (unknown !== undefined)
    throw new MonitorError('INVALID_INPUT', `unknown key ${at.name}.${unknown}.`, {
      hint: `Known keys: ${[...ENDPOINT_KEYS].join(', ')}.`,
    });
  if (typeof entry.url !== 'string') throw invalid({ ...at, name: `${at.name}.url` }, 'an http(s) URL', entry.url);
  const url = normaliseUrl(entry.url, { ...at, name: `${at.name}.url` });
  const name = entry.name === undefined ? `endpoint${index + 1}` : entry.name;
  if (typeof name !== 'string' || name === '')
    throw invalid({ ...at, name: `${at.name}.name` }, 'a non-empty name', name);
  const models = entry.models ?? [];
  if (!Array.isArray(models) || !models.every((m): m is string => typeof m === 'string' && m !== ''))
    throw invalid({ ...at, name: `${at.name}.models` }, 'a list of model ids', models);
  const flavor = entry.flavor ?? guessFlavor(url);
  if (flavor !== 'lmstudio' && flavor !== 'openai')
    throw invalid({ ...at, name: `${at.name}.flavor` }, '"lmstudio" or "openai"', flavor);
  const endpoint: EndpointConfig = {
    name,
    url,
    concurrency:
      entry.concurrency === undefined
        ? defaultConcurrency
        : positiveInt(entry.concurrency, { ...at, name: `${at.name}.concurrency` }, 256),
    models,
    flavor,
  };
  if (entry.concurrency === undefined) endpoint.concurrencyAuto = true;
  if (entry.apiKeyEnv !== undefined) {
    if (typeof entry.apiKeyEnv !== 'string' || !ENV_NAME.test(entry.apiKeyEnv))
      throw invalid({ ...at, name: `${at.name}.apiKeyEnv` }, 'an env var name', entry.apiKeyEnv);
    endpoint.apiKeyEnv = entry.apiKeyEnv;
  }
  return endpoint;
}

function setLmStudioUrl(endpoints: readonly EndpointConfig[], url: string, source: SourceContext): EndpointConfig[] {
  const normalised = normaliseUrl(url, source);
  const out = endpoints.map((e) => ({ ...e }));
  const existing = out.find((e) => e.flavor === 'lmstudio');
  if (existing) existing.url = normalised;
  else
    out.unshift({
      name: 'lmstudio',
      url: normalised,
      concurrency: 4,
      concurrencyAuto: true,
      models: [],
      flavor: 'lmstudio',
    });
  return out;
}

const defaultConcurrencyOf = (source: SourceContext): number => {
  const value = source.get('llm.defaultConcurrency');
  return typeof value === 'number' ? value : 4;
};

/** The endpoints: the config file's list, `MONITOR_LMSTUDIO_URL`, and three flags. */
const endpoints: Setting<EndpointConfig[]> = {
  isSetting: true,
  type: 'list of {name, url, concurrency, models?, flavor: "lmstudio"|"openai", apiKeyEnv?}',
  help: 'The OpenAI-compatible servers prompts go to',
  details:
    "What each server is (LM Studio, llama-server, Ollama, vLLM, other) is asked of the server, not read from its port; `flavor` (default `lmstudio` on port 1234, else `openai`) only picks the token variable and the start hint until it answers. Without `concurrency` an endpoint runs as many requests at once as its server reports slots (llama-server `/props`, LM Studio's loaded instance), or adapts from `llm.defaultConcurrency` where it reports none; a `concurrency` caps that. A pasted `/v1` is stripped; a URL with `user:password@` is refused (use `apiKeyEnv`); every `lmstudio` endpoint reads its token from LM_API_TOKEN unless `apiKeyEnv` names another variable (the token itself is never in config or jobs; an empty value counts as unset). `--endpoint` and `MONITOR_ENDPOINTS` replace the list; `--lmstudio-url` and `--lmstudio-concurrency` change the LM Studio entry",
  default: () => [
    {
      name: 'lmstudio',
      url: DEFAULT_LMSTUDIO_URL,
      concurrency: 4,
      concurrencyAuto: true,
      models: [],
      flavor: 'lmstudio',
      apiKeyEnv: LM_STUDIO_TOKEN_ENV,
    },
  ],
  defaultText: `LM Studio at ${DEFAULT_LMSTUDIO_URL}, 4 at once`,
  inFile: true,
  fromFile: (raw, _current, source) => {
    if (!Array.isArray(raw) || raw.length === 0) throw invalid(source, 'a non-empty list of endpoints', raw);
    return raw.map((entry, i) => endpointFromFile(entry, i, defaultConcurrencyOf(source), source));
  },
  env: [
    {
      // One text for several endpoints: what a Claude Desktop bundle's settings field can hold.
      name: 'MONITOR_ENDPOINTS',
      format: '`[NAME=]URL[@N]` entries, `,`- or space-separated',
      apply: (texts, current, source) => {
        const specs = (texts.at(-1) ?? '').split(/[\s,]+/).filter((spec) => spec !== '');
        return specs.length === 0
          ? current
          : specs.map((spec, i) => parseEndpointSpec(spec, i, defaultConcurrencyOf(source), source));
      },
    },
    {
      name: 'MONITOR_LMSTUDIO_URL',
      apply: (texts, current, source) =>
        texts.length === 0 ? current : setLmStudioUrl(current, texts.at(-1) ?? '', source),
    },
  ],
  flags: [
    {
      name: '--lmstudio-url',
      arg: 'URL',
      help: `LM Studio base URL (default ${DEFAULT_LMSTUDIO_URL})`,
      apply: (texts, current, source) =>
        texts.length === 0 ? current : setLmStudioUrl(current, texts.at(-1) ?? '', source),
    },
    {
      name: '--lmstudio-concurrency',
      arg: 'N',
      help: 'Parallel predictions sent to LM Studio (default 4)',
      apply: (texts, current, source) => {
        const last = texts.at(-1);
        if (last === undefined) return current;
        const n = positiveInt(last, source, 256);
        return current.map((e) => (e.flavor === 'lmstudio' ? { ...e, concurrency: n, concurrencyAuto: false } : e));
      },
    },
    {
      name: '--endpoint',
      arg: '[NAME=]URL[@N]',
      help: 'An OpenAI-compatible endpoint, replacing the default list',
      repeatable: true,
      apply: (texts, current, source) =>
        texts.length === 0
          ? current
          : texts.map((spec, i) => parseEndpointSpec(spec, i, defaultConcurrencyOf(source), source)),
    },
  ],
  finish: (value, source) => {
    const names = new Set<string>();
    return value.map((e) => {
      if (names.has(e.name))
        throw new MonitorError(
          'INVALID_INPUT',
          `Two LLM endpoints in ${source.name} are named "${e.name}"; names must be unique.`,
        );
      names.add(e.name);
      return e.flavor === 'lmstudio' && e.apiKeyEnv === undefined ? { ...e, apiKeyEnv: LM_STUDIO_TOKEN_ENV } : e;
    });
  },
};

export const LLM_SETTINGS = {
  llm: {
    defaultConcurrency: int({
      help: "Requests at once on an endpoint that names no concurrency, until its server's slots are read (a server that tells none: where the adaptive limit starts)",
      default: 4,
      min: 1,
      max: 256,
    }),
    endpoints,
    defaultModel: optionalText({
      help: 'Model used when a request names none',
      defaultText: 'the loaded LLM',
      env: 'MONITOR_MODEL',
      flag: '--model ID',
    }),
    requestTimeoutSeconds: num({
      help: 'Longest wait for one answer, in seconds',
      default: 600,
      min: 0.001,
      max: MAX_TIMEOUT_SECONDS,
    }),
    stallSeconds: num({
      help: 'Longest wait for the next token of a streamed answer (the first included), in seconds; 0 = never',
      details:
        'A request silent that long is aborted and retried once (on another endpoint serving the model when there is one; not counted in maxRetries), then fails STALLED. Only streamed answers (llm.stream): a non-streamed one sends nothing until it is complete, so it cannot be told from a long generation and keeps requestTimeoutSeconds',
      default: 60,
      min: 0,
      max: MAX_TIMEOUT_SECONDS,
    }),
    maxRetries: int({
      help: 'Retries of transient failures (connection closed, stream cut off, 429, 502, 503, 504; an empty answer at most once)',
      default: 3,
      min: 0,
      max: 10,
    }),
    stream: bool({
      help: 'Stream answers (SSE): adds time to first token, but costs ~5-10% throughput where the model shares the CPU',
      default: false,
    }),
    allowModelLoad: bool({
      help: 'Let a job that asks for a context_length the loaded model lacks load it with that context (LM Studio: unloads the smaller instance first)',
      details:
        'Off: the job runs on the model as loaded and its answer says how to load it by hand. Where the server cannot set a context over HTTP (llama-server, Ollama through its OpenAI-compatible API, vLLM) nothing is loaded either way',
      default: false,
      env: 'MONITOR_ALLOW_MODEL_LOAD',
    }),
    prefixReuse: bool({
      help: 'Put what prompts share (a file asked many questions) first, and on llama-server send prompts sharing it to the slots that hold it (cache_prompt, id_slot): its prefill is reused',
      default: true,
    }),
    maxFileBytes: int({
      help: 'Largest file (or chunk) read into one prompt, in bytes',
      default: 4 * 1024 * 1024,
      min: 1,
    }),
    maxFiles: int({ help: 'Most files one lmstudio_complete call may match', default: 5000, min: 1 }),
    maxTasks: int({
      help: 'Most tasks (prompts, files × items, chunks) in one lmstudio_complete job',
      default: 20000,
      min: 1,
    }),
    maxInlineChars: int({
      help: "Answer characters kept in a result; longer answers go whole to the task's output file",
      default: 16000,
      min: 1,
    }),
  },
} satisfies SettingsTree;

export type LlmConfig = ValuesOf<typeof LLM_SETTINGS>;

/** The `llm` settings the kind's parts are built with. */
export type LlmSettings = LlmConfig['llm'];
