import path from 'node:path';
import { MonitorError } from '../errors.js';
import { LINUX, type Platform } from '../platform/index.js';
import {
  type Constraint,
  isSetting,
  type Setting,
  type SettingContext,
  type SettingsTree,
  settingEntries,
  type SourceContext,
} from './settings.js';

export interface ConfigSources extends SettingContext {
  argv: readonly string[];
  /** Text of the config file, if one was found (see configFilePath). */
  fileText?: string;
  /** Where the file came from, for error messages and relative paths in it. */
  filePath?: string;
}

/** The flag that names the config file; every other flag belongs to a setting. */
const CONFIG_FLAG = '--config';

/** Which config file to read: --config, else $MONITOR_MCP_CONFIG, else the platform's default (if it exists). */
export function configFilePath(
  argv: readonly string[],
  env: ConfigSources['env'],
  home: string,
  platform: Platform = LINUX,
): { path: string; explicit: boolean } {
  let flag: string | undefined;
  argv.forEach((arg, i) => {
    if (arg === CONFIG_FLAG) flag = argv[i + 1];
    else if (arg.startsWith(`${CONFIG_FLAG}=`)) flag = arg.slice(CONFIG_FLAG.length + 1);
  });
  if (flag) return { path: flag, explicit: true };
  if (env.MONITOR_MCP_CONFIG) return { path: env.MONITOR_MCP_CONFIG, explicit: true };
  return { path: platform.folders(env, home).configFile, explicit: false };
}

/**
 * defaults < config file < environment < command-line flags, for every setting of `tree`. Pure:
 * everything it reads comes in through `src`. Returns the values as a nested object.
 */
export function parseSettings(
  tree: SettingsTree,
  constraints: readonly Constraint[],
  src: ConfigSources,
): Record<string, unknown> {
  const entries = settingEntries(tree);
  const values = new Map<string, unknown>();
  /** Who set a value explicitly (a file key, an env var or a flag); defaults are absent. */
  const setBy = new Map<string, string>();
  const source = (name: string, base: string): SourceContext => ({
    name,
    base,
    home: src.home,
    get: (key) => values.get(key),
  });

  for (const { key, setting } of entries) values.set(key, setting.default(src));

  if (src.fileText !== undefined) {
    const file = src.filePath ?? 'the config file';
    try {
      const raw = parseJson(src.fileText, file);
      const present = fileValues(raw, tree);
      const base = src.filePath ? path.dirname(src.filePath) : src.cwd;
      for (const { key, setting } of entries) {
        if (!present.has(key)) continue;
        values.set(key, setting.fromFile(present.get(key), values.get(key), source(key, base)));
        setBy.set(key, key);
      }
    } catch (error) {
      if (!(error instanceof MonitorError)) throw error;
      throw new MonitorError(
        'INVALID_INPUT',
        `${src.filePath ? `Config file ${src.filePath}` : 'The config file'} is invalid: ${error.message}`,
        {
          hint: error.hint ?? 'Fix the file; docs/configuration.md lists every key.',
          cause: error,
        },
      );
    }
  }

  for (const { key, setting } of entries) {
    for (const input of setting.env) {
      const text = src.env[input.name];
      if (!text) continue;
      values.set(key, input.apply([text], values.get(key), source(`${input.name} (${key})`, src.cwd)));
      setBy.set(key, input.name);
    }
  }

  const flags = readFlags(
    src.argv,
    entries.map((e) => e.setting),
  );
  for (const { key, setting } of entries) {
    for (const input of setting.flags) {
      const texts = flags.get(input.name);
      if (!texts) continue;
      values.set(key, input.apply(texts, values.get(key), source(`${input.name} (${key})`, src.cwd)));
      setBy.set(key, input.name);
    }
  }

  for (const { key, setting } of entries) {
    if (setting.finish) values.set(key, setting.finish(values.get(key), source(setBy.get(key) ?? key, src.cwd)));
  }
  for (const constraint of constraints) applyConstraint(constraint, values, setBy);
  return nest(values);
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new MonitorError(
      'INVALID_INPUT',
      `not valid JSON (${error instanceof Error ? error.message : String(error)})`,
      {
        hint: `Fix the JSON in ${file}.`,
        cause: error,
      },
    );
  }
}

/** The file's leaf values by dotted key; an unknown key is an error (typos must not pass silently). */
function fileValues(raw: unknown, tree: SettingsTree): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const walk = (node: unknown, branch: SettingsTree, prefix: string): void => {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) {
      throw new MonitorError(
        'INVALID_INPUT',
        `Expected ${prefix || 'the file'} to be an object of settings, got ${JSON.stringify(node)}.`,
      );
    }
    for (const [name, value] of Object.entries(node)) {
      const key = prefix ? `${prefix}.${name}` : name;
      const declared = Object.hasOwn(branch, name) ? branch[name] : undefined;
      if (declared === undefined || (isSetting(declared) && !declared.inFile)) {
        const known = Object.entries(branch)
          .filter(([, n]) => !isSetting(n) || n.inFile)
          .map(([k]) => k);
        throw new MonitorError('INVALID_INPUT', `unknown key ${key}.`, {
          hint: `Known keys${prefix ? ` in ${prefix}` : ''}: ${known.join(', ')}.`,
        });
      }
      if (isSetting(declared)) out.set(key, value);
      else walk(value, declared, key);
    }
  };
  walk(raw, tree, '');
  return out;
}

/** `--name value` and `--name=value`; every flag may repeat. Flags without an argument take no value. */
function readFlags(argv: readonly string[], settings: ReadonlyArray<Setting<unknown>>): Map<string, string[]> {
  const takesValue = new Map<string, boolean>([[CONFIG_FLAG, true]]);
  const variadic = new Set<string>();
  for (const setting of settings)
    for (const input of setting.flags) {
      takesValue.set(input.name, input.arg !== undefined);
      if (input.variadic) variadic.add(input.name);
    }
  const out = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    const withValue = takesValue.get(name);
    if (withValue === undefined) {
      throw new MonitorError('INVALID_INPUT', `Unknown option ${name}.`, {
        hint: 'Run `monitor-mcp --help` for the options.',
      });
    }
    let value: string;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (!withValue) value = '';
    else {
      const next = argv[i + 1];
      if (next === undefined)
        throw new MonitorError('INVALID_INPUT', `Option ${name} needs a value.`, {
          hint: 'Run `monitor-mcp --help` for the options.',
        });
      value = next;
      i++;
    }
    const texts = out.get(name) ?? [];
    texts.push(value);
    // `--root A B`: the words after the value are more values, up to the next option.
    while (variadic.has(name) && i + 1 < argv.length && !(argv[i + 1] ?? '').startsWith('--'))
      texts.push(argv[++i] ?? '');
    out.set(name, texts);
  }
  return out;
}

function applyConstraint(
  constraint: Constraint,
  values: Map<string, unknown>,
  setBy: ReadonlyMap<string, string>,
): void {
  const smaller = values.get(constraint.smaller);
  const larger = values.get(constraint.larger);
  if (typeof smaller !== 'number' || typeof larger !== 'number' || smaller <= larger) return;
  const by = setBy.get(constraint.smaller);
  // A default gives way to what the user set (or to a smaller computed default).
  if (by === undefined) {
    values.set(constraint.smaller, larger);
    return;
  }
  const name = by === constraint.smaller ? constraint.smaller : `${by} (${constraint.smaller})`;
  throw new MonitorError(
    'INVALID_INPUT',
    `Expected ${name} to be at most ${constraint.larger} (${larger}), got ${smaller}.`,
    {
      hint: constraint.hint ?? `Lower ${constraint.smaller}, or raise ${constraint.larger} too.`,
    },
  );
}

/** `{"a.b": 1}` → `{a: {b: 1}}`. */
function nest(values: ReadonlyMap<string, unknown>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of values) {
    const parts = key.split('.');
    let node = root;
    for (const part of parts.slice(0, -1)) {
      const child = node[part];
      if (child && typeof child === 'object') node = child as Record<string, unknown>;
      else {
        const created: Record<string, unknown> = {};
        node[part] = created;
        node = created;
      }
    }
    node[parts.at(-1) ?? key] = value;
  }
  return root;
}
