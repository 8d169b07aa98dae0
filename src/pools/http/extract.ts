import { MonitorError } from '../../errors.js';

/**
 * What to keep of a JSON body: a JSON pointer (`/items/0/name`), a list of dotted field paths
 * (`["name", "owner.login"]`, applied to each element when the value is an array), or both
 * (`{pointer: "/items", fields: ["name"]}`: first the pointer, then the fields).
 */
export type ExtractSpec = string | string[] | { pointer?: string; fields?: string[] };

export interface Extracted {
  value: unknown;
  /** Set when the pointer led nowhere; the value is then null. */
  missing?: string;
}

export function validateExtract(spec: ExtractSpec): void {
  const pointer = typeof spec === 'string' ? spec : Array.isArray(spec) ? undefined : spec.pointer;
  const fields = Array.isArray(spec) ? spec : typeof spec === 'string' ? undefined : spec.fields;
  if (pointer !== undefined && pointer !== '' && !pointer.startsWith('/')) {
    throw new MonitorError(
      'INVALID_INPUT',
      `Expected extract to be a JSON pointer starting with "/" (e.g. "/items/0/name"), got "${pointer}".`,
      {
        hint: 'Use a JSON pointer string, or a list of field paths like ["name", "owner.login"].',
      },
    );
  }
  if (fields !== undefined && (fields.length === 0 || fields.some((f) => f.length === 0))) {
    throw new MonitorError(
      'INVALID_INPUT',
      'Expected extract fields to be a non-empty list of field paths like ["name", "owner.login"].',
    );
  }
}

export function applyExtract(body: unknown, spec: ExtractSpec): Extracted {
  const pointer = typeof spec === 'string' ? spec : Array.isArray(spec) ? undefined : spec.pointer;
  const fields = Array.isArray(spec) ? spec : typeof spec === 'string' ? undefined : spec.fields;
  let value = body;
  if (pointer !== undefined && pointer !== '') {
    const found = resolvePointer(body, pointer);
    if (!found.found) return { value: null, missing: pointer };
    value = found.value;
  }
  if (fields !== undefined)
    value = Array.isArray(value) ? value.map((item) => pickFields(item, fields)) : pickFields(value, fields);
  return { value };
}

/** RFC 6901: `/a/b~1c/0`; `~1` is "/", `~0` is "~". */
function resolvePointer(root: unknown, pointer: string): { found: true; value: unknown } | { found: false } {
  let node = root;
  for (const raw of pointer.slice(1).split('/')) {
    const token = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    const next = child(node, token);
    if (!next.found) return next;
    node = next.value;
  }
  return { found: true, value: node };
}

function child(node: unknown, key: string): { found: true; value: unknown } | { found: false } {
  if (Array.isArray(node)) {
    if (!/^(0|[1-9]\d*)$/.test(key)) return { found: false };
    const index = Number(key);
    return index < node.length ? { found: true, value: node[index] } : { found: false };
  }
  if (node !== null && typeof node === 'object' && Object.hasOwn(node, key)) {
    const value: unknown = Reflect.get(node, key);
    return { found: true, value };
  }
  return { found: false };
}

/**
 * `{ "name": …, "owner.login": … }`; a path that leads nowhere gives null, so every row has every key.
 * Built without a prototype and with defineProperty, so a field named `__proto__` (or `constructor`)
 * is a plain key of the row, never a prototype switch.
 */
function pickFields(node: unknown, fields: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null);
  for (const field of fields) {
    let value: unknown = node;
    for (const key of field.split('.')) {
      const next = child(value, key);
      value = next.found ? next.value : null;
      if (!next.found) break;
    }
    Object.defineProperty(out, field, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}
