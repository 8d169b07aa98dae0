import { Ajv, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import { MonitorError } from '../../errors.js';

export type SchemaCheck = { ok: true; value: unknown } | { ok: false; error: string };

/**
 * Compiles JSON schemas once (keyed by their text) and checks answers against them. Lenient about
 * the schema (unknown keywords pass, as LM Studio takes them), strict about formats, every error told.
 */
export class SchemaValidator {
  private readonly ajv = createAjv();
  private readonly compiled = new Map<string, ValidateFunction>();

  /** Throws INVALID_INPUT when the schema itself does not compile. */
  compile(schema: Record<string, unknown>): ValidateFunction {
    const key = JSON.stringify(schema);
    let validate = this.compiled.get(key);
    if (!validate) {
      try {
        validate = this.ajv.compile(schema);
      } catch (error) {
        throw new MonitorError(
          'INVALID_INPUT',
          `json_schema is not a valid JSON schema: ${error instanceof Error ? error.message : String(error)}`,
          {
            cause: error,
            hint: 'Pass a JSON Schema object, e.g. {"type":"object","properties":{"summary":{"type":"string"}},"required":["summary"]}.',
          },
        );
      }
      // Jobs reuse a handful of schemas; the cap only guards against a client sending thousands.
      if (this.compiled.size > 100) this.compiled.clear();
      this.compiled.set(key, validate);
    }
    return validate;
  }

  /** Parses the answer as JSON (tolerating a ```json fence) and validates it. */
  check(schema: Record<string, unknown>, text: string): SchemaCheck {
    const body = stripFence(text);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch (error) {
      return {
        ok: false,
        error: `the answer is not valid JSON (${error instanceof Error ? error.message : String(error)})`,
      };
    }
    const validate = this.compile(schema);
    return validate(parsed) ? { ok: true, value: parsed } : { ok: false, error: this.ajv.errorsText(validate.errors) };
  }
}

function createAjv(): Ajv {
  const ajv = new Ajv({ strict: false, validateFormats: true, validateSchema: false, allErrors: true });
  // ajv-formats is CommonJS: under NodeNext its typed default import is the module, whose
  // `default` is the plugin (at run time the import is the plugin itself).
  const addFormats = typeof ajvFormats === 'function' ? ajvFormats : ajvFormats.default;
  return addFormats(ajv);
}

function stripFence(text: string): string {
  const trimmed = text.trim();
  const fence = /^```(?:json)?\s*\n([\s\S]*?)\n?```$/i.exec(trimmed);
  return fence ? (fence[1] ?? '') : trimmed;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * True when OpenAI's strict structured outputs accept the schema: an object at the root, and every
 * object with `additionalProperties: false` and all of its properties in `required` (checked through
 * properties, items, anyOf/allOf/oneOf and $defs). Other servers ignore `strict` or take any schema.
 */
export function isStrictCompatible(schema: Record<string, unknown>): boolean {
  if (schema.type !== 'object') return false;
  const check = (node: unknown, depth: number): boolean => {
    if (depth > 32) return false;
    if (Array.isArray(node)) return node.every((n) => check(n, depth + 1));
    if (!isRecord(node)) return true;
    const types = Array.isArray(node.type) ? node.type : [node.type];
    if (types.includes('object') || isRecord(node.properties)) {
      if (node.additionalProperties !== false) return false;
      const keys = isRecord(node.properties) ? Object.keys(node.properties) : [];
      const required = Array.isArray(node.required) ? node.required : [];
      if (!keys.every((k) => required.includes(k))) return false;
    }
    const children = [
      ...(isRecord(node.properties) ? Object.values(node.properties) : []),
      ...(isRecord(node.$defs) ? Object.values(node.$defs) : []),
      ...(isRecord(node.definitions) ? Object.values(node.definitions) : []),
      node.items,
      node.anyOf,
      node.allOf,
      node.oneOf,
    ];
    return children.every((c) => check(c, depth + 1));
  };
  return check(schema, 0);
}
