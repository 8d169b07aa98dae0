/**
 * A worker declares itself in comment lines near its top (see workers/README.md):
 *
 *   # monitor: description: Imports each file makes, internal vs external.
 *   # monitor: args: FILE... paths of the files to analyse
 *   # monitor: json: {"files": ["path", ...]} on stdin
 *   # monitor: output: json
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
  /** Other declared keys, kept for list_workers. */
  extra: Record<string, string>;
}

/** Headers are at the top; reading further would only cost time on large scripts. */
export const HEADER_SCAN_LINES = 60;
export const HEADER_SCAN_BYTES = 16 * 1024;

const HEADER_LINE = /^\s*(?:#|\/\/|--|;)\s*monitor:\s*([A-Za-z][\w-]*)\s*:\s*(.*?)\s*$/;

export function parseWorkerHeader(text: string): WorkerHeader {
  const header: WorkerHeader = { input: {}, extra: {} };
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
    else header.extra[key] = value;
  }
  return header;
}
