// Settings that hold several entries: lists of texts or paths, and maps of names to texts.
import path from 'node:path';
import { type Common, invalid, resolvePath, type Setting, type SourceContext, splitFlag } from './settings.js';

export interface ListOptions extends Omit<Common<string[]>, 'env' | 'flag'> {
  /** What one entry is, for messages (`an env var name`). */
  item: string;
  /** Checks one entry (throws INVALID_INPUT); default: any non-empty text. */
  check?(entry: string, source: SourceContext): void;
  /** Entries are paths (resolved like pathSetting). */
  paths?: boolean;
  /** `add`: file, env and flags add entries to what is there; `replace`: the last source that names any wins. */
  combine: 'add' | 'replace';
  /** Env var holding several entries, split by `separator`. */
  env?: { name: string; separator: ',' | 'path' };
  /** A repeatable flag, one entry each. */
  flag?: string;
  /** The flag also takes the words after it, up to the next option (Input.variadic). */
  variadic?: boolean;
}

/** A list of texts or paths; repeats are dropped. */
export function list(options: ListOptions): Setting<string[]> {
  const entry = (raw: unknown, source: SourceContext): string => {
    if (typeof raw !== 'string' || raw.trim() === '') throw invalid(source, `a list of ${options.item}s`, raw);
    options.check?.(raw, source);
    return options.paths ? resolvePath(raw, source) : raw;
  };
  const combine = (current: readonly string[], added: readonly string[]): string[] => [
    ...new Set(options.combine === 'add' ? [...current, ...added] : added),
  ];
  const flag = splitFlag(options.flag);
  const env = options.env;
  const setting: Setting<string[]> = {
    isSetting: true,
    type: `list of ${options.item}s`,
    help: options.help,
    default: (ctx) => (typeof options.default === 'function' ? options.default(ctx) : [...options.default]),
    defaultText:
      options.defaultText ?? (Array.isArray(options.default) && options.default.length === 0 ? 'none' : '(computed)'),
    inFile: options.inFile ?? true,
    fromFile: (raw, current, source) => {
      if (!Array.isArray(raw)) throw invalid(source, `a list of ${options.item}s`, raw);
      return combine(
        current,
        raw.map((r) => entry(r, source)),
      );
    },
    env:
      env === undefined
        ? []
        : [
            {
              name: env.name,
              format: env.separator === 'path' ? `\`${path.delimiter}\`-separated` : '`,`-separated',
              apply: (texts, current, source) => {
                const last = texts.at(-1) ?? '';
                const separator = env.separator === 'path' ? path.delimiter : ',';
                const entries = last
                  .split(separator)
                  .map((s) => s.trim())
                  .filter((s) => s.length > 0);
                return entries.length === 0
                  ? current
                  : combine(
                      current,
                      entries.map((e) => entry(e, source)),
                    );
              },
            },
          ],
    flags:
      flag === undefined
        ? []
        : [
            {
              ...flag,
              repeatable: true,
              ...(options.variadic ? { variadic: true } : {}),
              apply: (texts, current, source) =>
                texts.length === 0
                  ? current
                  : combine(
                      current,
                      texts.map((t) => entry(t, source)),
                    ),
            },
          ],
  };
  if (options.finish) setting.finish = options.finish;
  if (options.details !== undefined) return { ...setting, details: options.details };
  return setting;
}

/** A file-only map of names to texts, merged over its default entry by entry (e.g. interpreters by extension). */
export function record(options: {
  help: string;
  details?: string;
  default: Record<string, string>;
  defaultText: string;
  key: RegExp;
  keyText: string;
  valueText: string;
}): Setting<Record<string, string>> {
  const setting: Setting<Record<string, string>> = {
    isSetting: true,
    type: `map of ${options.keyText} to ${options.valueText}`,
    help: options.help,
    default: () => ({ ...options.default }),
    defaultText: options.defaultText,
    inFile: true,
    fromFile: (raw, current, source) => {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
        throw invalid(source, `an object of ${options.keyText} to ${options.valueText}`, raw);
      const out = { ...current };
      for (const [key, value] of Object.entries(raw)) {
        if (!options.key.test(key)) throw invalid({ ...source, name: `a key of ${source.name}` }, options.keyText, key);
        if (typeof value !== 'string' || value === '')
          throw invalid({ ...source, name: `${source.name}["${key}"]` }, options.valueText, value);
        out[key] = value;
      }
      return out;
    },
    env: [],
    flags: [],
  };
  return options.details === undefined ? setting : { ...setting, details: options.details };
}
