/**
 * A worker declares itself in comment lines near its top (see workers/README.md):
 *
 *   # monitor: description: Imports each file makes, internal vs external.
 *   # monitor: args: FILE... paths of the files to analyse
 *   # monitor: json: {"files": ["path", ...]} on stdin
 *   # monitor: output: json
 *   # monitor: env: DEPS_MAX_FILES          variables `env` may set for it
 *   # monitor: isolated: yes                Python: started with -s -E
 *   # monitor: warm: yes                    serves many tasks in one process (see warm.ts)
 *   # monitor: pack: files                  inputs' args can share one process (see pack.ts)
 *
 * Any line comment works (`#`, `//`, `--`, `;`). A key given twice continues the first value.
 */
export interface WorkerHeader {
  /** One line: what the worker does. */
  description?: string;
  /** The input forms the worker accepts, each with what it means. */
  input: { args?: string; stdin?: string; json?: string };
  /** What it prints: `json`, `text`, or a description. */
  output?: string;
  /** Variables it reads, which run_script_batch's `env` may then set for it. */
  env: string[];
  /** A Python worker that needs nothing from the user's site-packages or PYTHON* variables: started with `-s -E`. */
  isolated: boolean;
  /** It speaks the warm protocol (see warm.ts): one process may serve many tasks. */
  warm: boolean;
  /**
   * `files`: given the args of several inputs one after another, it prints one JSON object whose
   * `files` array has exactly one entry per argument, in argument order (see pack.ts).
   */
  pack?: 'files';
  /** Other declared keys, kept for list_workers. */
  extra: Record<string, string>;
}

/** Headers are at the top; reading further would only cost time on large scripts. */
export const HEADER_SCAN_LINES = 60;
export const HEADER_SCAN_BYTES = 16 * 1024;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HEADER_LINE = /^\s*(?:#|\/\/|--|;)\s*monitor:\s*([A-Za-z][\w-]*)\s*:\s*(.*?)\s*$/;

export function parseWorkerHeader(text: string): WorkerHeader {
  const header: WorkerHeader = { input: {}, env: [], isolated: false, warm: false, extra: {} };
  const values = new Map<string, string>();
  const lines = text.split('\n', HEADER_SCAN_LINES);
  for (const line of lines) {
    const match = HEADER_LINE.exec(line);
    if (!match) continue;
    const key = (match[1] ?? '').toLowerCase();
    const value = match[2] ?? '';
    if (value === '') continue;
    const previous = values.get(key);
    values.set(key, previous === undefined ? value : `${previous} ${value}`);
  }
  for (const [key, value] of values) {
    if (key === 'description') header.description = value;
    else if (key === 'output') header.output = value;
    else if (key === 'args' || key === 'stdin' || key === 'json') header.input[key] = value;
    else if (key === 'env') header.env = value.split(/[\s,]+/).filter((name) => ENV_NAME.test(name));
    else if (key === 'isolated') header.isolated = /^(yes|true)$/i.test(value);
    else if (key === 'warm') header.warm = /^(yes|true)$/i.test(value);
    // Any other value is no promise the pool can split on: shown as declared, never packed.
    else if (key === 'pack' && /^files$/i.test(value)) header.pack = 'files';
    else header.extra[key] = value;
  }
  return header;
}
