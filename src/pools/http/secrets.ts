import { HttpError } from './errors.js';

/** `${env:NAME}` inside a header value; the stored request keeps the template, never the value. */
const TEMPLATE = /\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g;
const ANY_TEMPLATE = /\$\{env:/;

export type Env = Readonly<Record<string, string | undefined>>;

/** Names of the env vars a text refers to, in order, without repeats. */
export function referencedEnvNames(text: string): string[] {
  return [...new Set([...text.matchAll(TEMPLATE)].map((m) => m[1] ?? ''))];
}

export function mentionsTemplate(text: string): boolean {
  return ANY_TEMPLATE.test(text);
}

export function secretNotAllowed(name: string): HttpError {
  return new HttpError(
    'SECRET_NOT_SET',
    `The header refers to \${env:${name}}, but ${name} is not on the list of env vars http_batch may use.`,
    {
      hint: `Ask the user to allow it and restart the server: --http-secret-env ${name}, or MONITOR_HTTP_SECRET_ENV=${name}, or "http": {"secretEnv": ["${name}"]} in the config file. Never paste the secret itself into a request.`,
    },
  );
}

export function secretNotSet(name: string): HttpError {
  return new HttpError(
    'SECRET_NOT_SET',
    `The header refers to \${env:${name}}, but ${name} is not set (or is empty) in the server's environment.`,
    {
      hint: `Ask the user to set ${name} in the environment the MCP server starts with (for example in the client's MCP server config "env"), then restart it.`,
    },
  );
}

/** Throws SECRET_NOT_SET when a referenced var is not allowed or has no value. */
export function checkSecretNames(names: readonly string[], allowed: readonly string[], env: Env): void {
  for (const name of names) {
    if (!allowed.includes(name)) throw secretNotAllowed(name);
    if (!env[name]) throw secretNotSet(name);
  }
}

/** A secret value and the name it is shown as once redacted. */
export interface Secret {
  name: string;
  value: string;
}

/**
 * Replaces every template in `headers` by its env value. Returns the substituted headers and the
 * secrets used, so everything this request outputs can be redacted.
 */
export function substituteHeaders(
  headers: Readonly<Record<string, string>>,
  allowed: readonly string[],
  env: Env,
): { headers: Record<string, string>; secrets: Secret[]; secretHeaders: Set<string> } {
  const out: Record<string, string> = {};
  const secrets = new Map<string, string>();
  const secretHeaders = new Set<string>();
  for (const [name, template] of Object.entries(headers)) {
    const names = referencedEnvNames(template);
    checkSecretNames(names, allowed, env);
    if (names.length > 0) secretHeaders.add(name.toLowerCase());
    out[name] = template.replace(TEMPLATE, (_match, envName: string) => {
      const value = env[envName] ?? '';
      secrets.set(envName, value);
      return value;
    });
  }
  return { headers: out, secrets: [...secrets].map(([name, value]) => ({ name, value })), secretHeaders };
}

export function redactionMarker(name: string): string {
  return `[redacted:${name}]`;
}

/**
 * Removes secret values from everything a request outputs: strings, JSON values and streamed
 * bytes. Longest secrets are replaced first so one that contains another is hidden whole.
 */
export class Redactor {
  private readonly secrets: Array<Secret & { bytes: Buffer }>;
  private readonly longest: number;

  constructor(secrets: readonly Secret[]) {
    // Echoes come back encoded too: inside JSON strings (some encoders also escape "/") or in URLs.
    const forms = secrets
      .filter((s) => s.value.length > 0)
      .flatMap((s) => {
        const json = JSON.stringify(s.value).slice(1, -1);
        return [s.value, json, json.replaceAll('/', '\\/'), encodeURIComponent(s.value)].map((value) => ({
          name: s.name,
          value,
        }));
      });
    const unique = new Map(forms.map((f) => [f.value, f]));
    this.secrets = [...unique.values()]
      .map((s) => ({ ...s, bytes: Buffer.from(s.value, 'utf8') }))
      .sort((a, b) => b.bytes.length - a.bytes.length);
    this.longest = this.secrets.reduce((max, s) => Math.max(max, s.bytes.length), 0);
  }

  get active(): boolean {
    return this.secrets.length > 0;
  }

  text(input: string): string {
    let out = input;
    for (const s of this.secrets) if (out.includes(s.value)) out = out.split(s.value).join(redactionMarker(s.name));
    return out;
  }

  /** Redacts every string (keys included) inside a JSON-like value. */
  value<T>(input: T): T {
    if (!this.active) return input;
    return this.walk(input) as T;
  }

  private walk(node: unknown): unknown {
    if (typeof node === 'string') return this.text(node);
    if (Array.isArray(node)) return node.map((item) => this.walk(item));
    if (node && typeof node === 'object') {
      // defineProperty on a prototype-less object: a `__proto__` key (JSON.parse makes it an own key) stays a key.
      const out: Record<string, unknown> = Object.create(null);
      for (const [key, child] of Object.entries(node)) {
        Object.defineProperty(out, this.text(key), {
          value: this.walk(child),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    return node;
  }

  /**
   * A byte filter for streamed bodies: `push` returns what is safe to write now, holding back just
   * enough bytes to catch a secret split across chunks; `end` returns the rest.
   */
  stream(): { push(chunk: Buffer): Buffer; end(): Buffer } {
    let carry = Buffer.alloc(0);
    const scan = (data: Buffer, final: boolean): Buffer => {
      const parts: Buffer[] = [];
      let at = 0;
      for (;;) {
        let best: { index: number; secret: Secret & { bytes: Buffer } } | undefined;
        for (const secret of this.secrets) {
          const index = data.indexOf(secret.bytes, at);
          if (index !== -1 && (!best || index < best.index)) best = { index, secret };
        }
        if (!best) break;
        parts.push(data.subarray(at, best.index), Buffer.from(redactionMarker(best.secret.name)));
        at = best.index + best.secret.bytes.length;
      }
      // Bytes that could start a secret continued in the next chunk wait for it.
      const safeEnd = final ? data.length : Math.max(at, data.length - (this.longest - 1));
      parts.push(data.subarray(at, safeEnd));
      carry = Buffer.from(data.subarray(safeEnd));
      return Buffer.concat(parts);
    };
    return {
      push: (chunk) => (this.active ? scan(carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk, false) : chunk),
      end: () => (this.active ? scan(carry, true) : Buffer.alloc(0)),
    };
  }
}
