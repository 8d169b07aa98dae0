// The workers `monitor-mcp new-worker` writes: small but real (they count the lines, words and bytes
// of the files they are given), warm, and built on the bundled helpers as the bundled workers are.

const DESCRIPTION = 'Counts the lines, words and bytes of each file (a new worker: edit its handle() and these lines).';
const ARGS = "FILE... files, relative to the task's cwd";
const JSON_INPUT = '{"files": ["a.txt", ...]}';
const OUTPUT = 'json {"files": [{"file", "lines", "words", "bytes"} or {"file", "error"}]}';

/** A warm Python worker on `_common.serve`; `bundledDir` is where `_common.py` is, for running it by hand. */
export function pythonWorker(name: string, bundledDir: string): string {
  return `#!/usr/bin/env python3
# monitor: description: ${DESCRIPTION}
# monitor: args: ${ARGS}
# monitor: json: ${JSON_INPUT}
# monitor: output: ${OUTPUT}
# monitor: isolated: yes
# monitor: warm: yes
r"""${name}: a monitor-mcp worker, written by \`monitor-mcp new-worker\`. What to edit:

- The "# monitor:" lines above: what list_workers tells Claude (what it does, its input, its output).
  "isolated: yes" starts it without the user's site-packages and PYTHON* variables; remove that
  line if it imports packages from there. "warm: yes": one process serves many tasks in turn, so
  keep module-level state to constants.
- handle(task): one task's work. task.args (list of str), task.stdin (text or None), task.json (a
  JSON input's value) and task.env (its MONITOR_* variables) in; the result out: a dict or list is
  sent as JSON, a str as text. fail("why") ends the task with exit code 2, an exception with 1.
- Read files with _common.read_file / read_text: only regular files inside the allowed folders.

_common is the bundled helper module (the serve loop, the input, safe reads): the server puts its
folder on PYTHONPATH. By hand: PYTHONPATH=${bundledDir} python3 ${name}.py FILE...
"""
import _common

MAX_BYTES = 10 * 1024 * 1024
fail = _common.failer("${name}")


def count(path):
    data, text, error = _common.read_text(path, MAX_BYTES)
    if error:
        return {"file": path, "error": error}
    return {"file": path, "lines": text.count("\\n"), "words": len(text.split()), "bytes": len(data)}


def handle(task):
    return {"files": [count(path) for path in _common.read_files(task, fail)]}


if __name__ == "__main__":
    _common.serve(handle)
`;
}

/** A warm Node worker on `_serve.mjs`, imported through MONITOR_SERVE (`serveUrl` when run by hand). */
export function nodeWorker(name: string, serveUrl: string): string {
  return `#!/usr/bin/env node
// monitor: description: ${DESCRIPTION}
// monitor: args: ${ARGS}
// monitor: json: ${JSON_INPUT}
// monitor: output: ${OUTPUT}
// monitor: warm: yes
//
// ${name}: a monitor-mcp worker, written by \`monitor-mcp new-worker --node\`. What to edit:
// - The "monitor:" lines above: what list_workers tells Claude (what it does, its input, its
//   output). "warm: yes": one process serves many tasks in turn, so keep module state to constants.
// - handle(task): one task's work. task.args (strings), task.stdin (text or undefined), task.json
//   (a JSON input's value) and task.env (its MONITOR_* variables) in; the result out: an object or
//   array is sent as JSON, a string as text. fail('why') ends the task with exit code 2, a throw
//   with 1. Never call process.exit in it (warm, that ends the process).
// - Read files only inside the allowed folders (MONITOR_ALLOWED_ROOTS), as count() does.
import fs from 'node:fs';
import path from 'node:path';

// _serve.mjs, the bundled serve loop: ESM has no search path, so the server passes its URL in
// MONITOR_SERVE; run by hand, the copy \`monitor-mcp new-worker\` found is used.
const { fail, serve } = await import(process.env.MONITOR_SERVE ?? ${JSON.stringify(serveUrl)});

const MAX_BYTES = 10 * 1024 * 1024;

/** True when the real path is inside a folder the server allows (anything, run by hand without the variable). */
function allowed(real) {
  const roots = process.env.MONITOR_ALLOWED_ROOTS;
  if (roots === undefined) return true;
  return roots
    .split(path.delimiter)
    .filter((root) => root !== '')
    .some((root) => {
      const relative = path.relative(realOrSame(root), real);
      return relative === '' || (relative !== '..' && !relative.startsWith(\`..\${path.sep}\`) && !path.isAbsolute(relative));
    });
}

function realOrSame(file) {
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

function count(file) {
  let real;
  let info;
  try {
    real = fs.realpathSync(file);
    info = fs.statSync(real);
  } catch (error) {
    return { file, error: \`unreadable: \${error.code ?? error.message}\` };
  }
  if (!allowed(real)) return { file, error: 'outside the allowed folders; skipped' };
  // Checked before reading: a FIFO or a device would hang the task or never end.
  if (!info.isFile()) return { file, error: 'not a regular file; skipped' };
  if (info.size > MAX_BYTES) return { file, error: \`larger than \${MAX_BYTES} bytes; skipped\` };
  const data = fs.readFileSync(real);
  const text = data.toString('utf8');
  return { file, lines: text.split('\\n').length - 1, words: text.split(/\\s+/).filter(Boolean).length, bytes: data.length };
}

async function handle(task) {
  const files = task.args.length > 0 ? task.args : task.json?.files;
  if (!Array.isArray(files) || files.length === 0 || !files.every((f) => typeof f === 'string'))
    fail('give file paths as arguments, or {"files": ["path", ...]} as JSON');
  return { files: files.map(count) };
}

await serve(handle);
`;
}
