/**
 * What grep's worker thread runs, as source (the Worker takes it with `eval: true`): the same text
 * serves the built server and the tests, which run the TypeScript sources where no .js file sits
 * beside this one. A thread serves one search after another; it searches the files it is given, posting each file's matches as it goes, so
 * what was found survives when a catastrophic pattern makes the server terminate() it.
 *
 * Each message is a job: { files: [{real, shown}], source, flags, maxShown, maxCounted, maxFileBytes, lineChars }.
 * Messages: { file: shown, matches: [{line, text}], counted, bytes } | { skipped: 'binary'|'large', file } | { done: true }.
 */
export interface GrepJob {
  files: Array<{ real: string; shown: string }>;
  source: string;
  flags: string;
  /** Matches sent back as lines; the rest are only counted, up to maxCounted. */
  maxShown: number;
  maxCounted: number;
  maxFileBytes: number;
  /** A matching line longer than this is shown as a window around the match. */
  lineChars: number;
}

export type GrepMessage =
  | { file: string; matches: Array<{ line: number; text: string }>; counted: number; bytes: number }
  | { skipped: 'binary' | 'large'; file: string }
  | { done: true };

export const GREP_WORKER_SOURCE = String.raw`
'use strict';
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
function windowOf(job, line, index) {
  if (line.length <= job.lineChars) return line;
  const from = Math.max(0, Math.min(index - 40, line.length - job.lineChars));
  const body = line.slice(from, from + job.lineChars);
  return (from > 0 ? '…' : '') + body + (from + job.lineChars < line.length ? '…' : '');
}
// One job a message: the thread stays warm for the next search (starting one costs ~70 ms of CPU).
parentPort.on('message', (job) => {
const regex = new RegExp(job.source, job.flags);
let shown = 0;
let counted = 0;
for (const file of job.files) {
  if (counted >= job.maxCounted) break;
  let data;
  try {
    if (fs.statSync(file.real).size > job.maxFileBytes) {
      parentPort.postMessage({ skipped: 'large', file: file.shown });
      continue;
    }
    data = fs.readFileSync(file.real);
  } catch {
    continue;
  }
  if (data.subarray(0, 8192).includes(0)) {
    parentPort.postMessage({ skipped: 'binary', file: file.shown });
    continue;
  }
  const lines = data.toString('utf8').split('\n');
  const matches = [];
  let found = 0;
  for (let i = 0; i < lines.length && counted < job.maxCounted; i++) {
    let line = lines[i];
    if (line.endsWith('\r')) line = line.slice(0, -1);
    regex.lastIndex = 0;
    const match = regex.exec(line);
    if (match === null) continue;
    found++;
    counted++;
    if (shown < job.maxShown) {
      shown++;
      matches.push({ line: i + 1, text: windowOf(job, line, match.index) });
    }
  }
  parentPort.postMessage({ file: file.shown, matches, counted: found, bytes: data.length });
}
parentPort.postMessage({ done: true });
});
`;
