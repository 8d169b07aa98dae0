import path from 'node:path';
import { MonitorError } from '../errors.js';
import { LINUX, type Platform } from '../platform/index.js';

/**
 * Each setting is declared once, here or in its worker kind's folder: its type and range, default,
 * config-file key (its path in the settings tree), env var, flags and help line. The file schema,
 * env and flag parsing, `--help` and docs/configuration.md's settings table are all made from these
 * declarations (config/parse.ts, config/docs.ts).
 */

/** What defaults are computed from (never `process` itself: the CLI hands these in). */
export interface SettingContext {
  env: Readonly<Record<string, string | undefined>>;
  home: string;
  cpus: number;
  /** The folder holding the bundled `workers/`. */
  packageRoot: string;
  cwd: string;
  /** The node binary running the server. */
  execPath?: string;
  /** The system it runs on (default folders, path rules); Linux when not given. */
  platform?: Platform;
}

/** The platform a context names, Linux when none. */
export function platformOf(ctx: Pick<SettingContext, 'platform'>): Platform {
  return ctx.platform ?? LINUX;
}

/** Where a value comes from, for messages and for resolving relative paths. */
export interface SourceContext {
  /** How the value is named to the user: `script.maxConcurrency`, `MONITOR_STATE_DIR`, `--timeout`. */
  name: string;
  /** Relative paths resolve against this (the config file's folder, or the cwd). */
  base: string;
  home: string;
  /** Another setting's value as it stands at this point (earlier declarations, earlier sources). */
  get(key: string): unknown;
}

/** One env var or flag and what it does to the setting's value. */
export interface Input<T> {
  /** `MONITOR_STATE_DIR`, or a flag with its dashes: `--state-dir`. */
  name: string;
  /** The flag's value in help (`DIR`); absent for a flag that takes none (`--http-allow-private`). */
  arg?: string;
  /** Help for this flag when it differs from the setting's. */
  help?: string;
  /** The flag may be given several times (each adds an entry). */
  repeatable?: boolean;
  /**
   * The flag also takes the words after its value, up to the next option (`--root A B`): a Claude
   * Desktop bundle expands a list the user picked into separate arguments after one flag.
   */
  variadic?: boolean;
  /** How the value is written, for the docs (`,`-separated). */
  format?: string;
  /** Every occurrence of the flag (or the env value), in order, applied to the value so far. */
  apply(texts: readonly string[], current: T, source: SourceContext): T;
}

export interface Setting<T> {
  readonly isSetting: true;
  /** The value's type as the docs name it: `integer from 1 to 1024`, `list of host names`. */
  readonly type: string;
  /** One line: what it is for (`--help` and the settings table). */
  readonly help: string;
  /** More for the settings table: rules, interactions, examples. */
  readonly details?: string;
  default(ctx: SettingContext): T;
  /** The default as the docs show it, when it is computed. */
  readonly defaultText: string;
  /** false: not settable in the config file (env or flags only, or neither for a derived value). */
  readonly inFile: boolean;
  /** The config file's value applied to the default (replacing it, or adding to a list). */
  fromFile(raw: unknown, current: T, source: SourceContext): T;
  readonly env: readonly Input<T>[];
  readonly flags: readonly Input<T>[];
  /** Last checks and normalisation once every source is applied (throws INVALID_INPUT). */
  finish?(value: T, source: SourceContext): T;
}

export interface SettingsTree {
  readonly [key: string]: Setting<unknown> | SettingsTree;
}

/** The values a settings tree declares, as a plain typed object. */
export type ValuesOf<T> = { -readonly [K in keyof T]: T[K] extends Setting<infer V> ? V : ValuesOf<T[K]> };

export function isSetting(node: Setting<unknown> | SettingsTree): node is Setting<unknown> {
  return (node as { isSetting?: unknown }).isSetting === true;
}

/** Every setting of a tree with its dotted key (`script.maxConcurrency`), in declaration order. */
export function settingEntries(tree: SettingsTree, prefix = ''): Array<{ key: string; setting: Setting<unknown> }> {
  return Object.entries(tree).flatMap(([name, node]) => {
    const key = prefix ? `${prefix}.${name}` : name;
    return isSetting(node) ? [{ key, setting: node }] : settingEntries(node, key);
  });
}

/** One tree from several (the core's and each kind's); a key declared twice is a bug. */
export function mergeTrees(...trees: readonly SettingsTree[]): SettingsTree {
  return mergeAt('', trees);
}

function mergeAt(prefix: string, trees: readonly SettingsTree[]): SettingsTree {
  const out: Record<string, Setting<unknown> | SettingsTree> = {};
  for (const tree of trees) {
    for (const [name, node] of Object.entries(tree)) {
      const existing = out[name];
      const key = prefix ? `${prefix}.${name}` : name;
      if (existing === undefined) out[name] = node;
      else if (!isSetting(existing) && !isSetting(node)) out[name] = mergeAt(key, [existing, node]);
      else throw new TypeError(`The setting ${key} is declared twice.`);
    }
  }
  return out;
}

// ——— Building blocks ———

export function invalid(source: SourceContext, expected: string, got: unknown, hint?: string): MonitorError {
  const shown = typeof got === 'string' ? `"${got}"` : JSON.stringify(got);
  return new MonitorError(
    'INVALID_INPUT',
    `Expected ${source.name} to be ${expected}, got ${shown}.`,
    hint === undefined ? {} : { hint },
  );
}

export interface Common<T> {
  help: string;
  details?: string;
  default: T | ((ctx: SettingContext) => T);
  defaultText?: string;
  /** Env var name. */
  env?: string;
  /** `--name` or `--name ARG`. */
  flag?: string;
  /** Not in the config file (default true). */
  inFile?: boolean;
  finish?(value: T, source: SourceContext): T;
}

export function splitFlag(flag: string | undefined): { name: string; arg?: string } | undefined {
  if (flag === undefined) return undefined;
  const [name = '', arg] = flag.split(' ');
  return arg === undefined ? { name } : { name, arg };
}

/** A setting whose every source gives one value (the last one wins). */
function single<T>(
  common: Common<T>,
  type: string,
  parseText: (text: string, source: SourceContext) => T,
  parseRaw: (raw: unknown, source: SourceContext) => T,
): Setting<T> {
  const replace = (texts: readonly string[], current: T, source: SourceContext): T => {
    const last = texts.at(-1);
    return last === undefined ? current : parseText(last, source);
  };
  const flag = splitFlag(common.flag);
  const setting: Setting<T> = {
    isSetting: true,
    type,
    help: common.help,
    default: (ctx) =>
      typeof common.default === 'function' ? (common.default as (c: SettingContext) => T)(ctx) : common.default,
    defaultText:
      common.defaultText ??
      (typeof common.default === 'function'
        ? '(computed)'
        : typeof common.default === 'string'
          ? common.default
          : JSON.stringify(common.default)),
    inFile: common.inFile ?? true,
    fromFile: (raw, _current, source) => parseRaw(raw, source),
    env: common.env === undefined ? [] : [{ name: common.env, apply: replace }],
    flags: flag === undefined ? [] : [{ ...flag, apply: replace }],
  };
  if (common.finish) setting.finish = common.finish;
  if (common.details !== undefined) return { ...setting, details: common.details };
  return setting;
}

function rangeText(integer: boolean, min: number, max: number): string {
  const what = integer ? 'an integer' : 'a number';
  return max === Number.POSITIVE_INFINITY ? `${what} from ${min} up` : `${what} from ${min} to ${max}`;
}

function numberSetting(integer: boolean, options: Common<number> & { min: number; max?: number }): Setting<number> {
  const max = options.max ?? Number.POSITIVE_INFINITY;
  const expected = rangeText(integer, options.min, max);
  const check = (n: unknown, source: SourceContext, shown: unknown): number => {
    if (typeof n !== 'number' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < options.min || n > max)
      throw invalid(source, expected, shown);
    return n;
  };
  return single(
    options,
    expected.replace(/^an? /, ''),
    (text, source) => check(text.trim() === '' ? Number.NaN : Number(text), source, text),
    (raw, source) => check(raw, source, raw),
  );
}

export function int(options: Common<number> & { min: number; max?: number }): Setting<number> {
  return numberSetting(true, options);
}

export function num(options: Common<number> & { min: number; max?: number }): Setting<number> {
  return numberSetting(false, options);
}

export function bool(options: Common<boolean>): Setting<boolean> {
  const fromText = (text: string, source: SourceContext): boolean => {
    const t = text.trim().toLowerCase();
    if (t === '1' || t === 'true' || t === 'yes' || t === '') return true;
    if (t === '0' || t === 'false' || t === 'no') return false;
    throw invalid(source, 'true or false (1 or 0)', text);
  };
  return single(options, 'boolean', fromText, (raw, source) => {
    if (typeof raw !== 'boolean') throw invalid(source, 'true or false', raw);
    return raw;
  });
}

export function choice<const C extends string>(values: readonly C[], options: Common<C>): Setting<C> {
  const expected = values.join(', ');
  const parse = (raw: unknown, source: SourceContext): C => {
    const found = values.find((v) => v === raw);
    if (found === undefined) throw invalid(source, `one of ${expected}`, raw);
    return found;
  };
  return single(options, `one of ${expected}`, parse, parse);
}

export function text(options: Common<string> & { pattern?: RegExp; patternText?: string }): Setting<string> {
  const parse = (raw: unknown, source: SourceContext): string => {
    if (typeof raw !== 'string' || raw === '' || (options.pattern && !options.pattern.test(raw)))
      throw invalid(source, options.patternText ?? 'a non-empty text', raw);
    return raw;
  };
  return single(options, options.patternText ?? 'text', parse, parse);
}

/** Text that may be left unset (no default). */
export function optionalText(options: Omit<Common<string | undefined>, 'default'>): Setting<string | undefined> {
  const parse = (raw: unknown, source: SourceContext): string => {
    if (typeof raw !== 'string' || raw === '') throw invalid(source, 'a non-empty text', raw);
    return raw;
  };
  return single({ ...options, default: undefined, defaultText: options.defaultText ?? 'none' }, 'text', parse, parse);
}

/** `~` and `~/x` as the user's home. */
export function expandHome(p: string, home: string): string {
  return p === '~' ? home : p.startsWith('~/') ? path.join(home, p.slice(2)) : p;
}

export function resolvePath(p: string, source: SourceContext): string {
  return path.resolve(source.base, expandHome(p, source.home));
}

/** A folder or file: relative to the config file's folder (in the file) or to the cwd (env, flags). */
export function pathSetting(options: Common<string>): Setting<string> {
  const parse = (raw: unknown, source: SourceContext): string => {
    if (typeof raw !== 'string' || raw === '') throw invalid(source, 'a path', raw);
    return resolvePath(raw, source);
  };
  return single(options, 'path', parse, parse);
}

/** A derived value: computed from the environment, not settable (e.g. the PATH workers are found on). */
export function derived<T>(help: string, compute: (ctx: SettingContext) => T): Setting<T> {
  return {
    isSetting: true,
    type: 'derived',
    help,
    default: compute,
    defaultText: '(computed)',
    inFile: false,
    fromFile: (_raw, current) => current,
    env: [],
    flags: [],
  };
}

/**
 * Keeps `smaller ≤ larger` between two settings. A value the user did not set gives way (it is
 * lowered to the other); a value the user set that breaks the rule is an error naming both.
 */
export interface Constraint {
  smaller: string;
  larger: string;
  /** What to tell the user, e.g. "raise script.maxConcurrency too". */
  hint?: string;
}

export function atMost(smaller: string, larger: string, hint?: string): Constraint {
  return hint === undefined ? { smaller, larger } : { smaller, larger, hint };
}

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;

/** The values of several settings trees together (given as a union), as one typed object. */
export type ValuesOfAll<Trees> = UnionToIntersection<ValuesOf<Trees>>;
