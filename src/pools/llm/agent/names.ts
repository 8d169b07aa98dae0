/**
 * A tool name as a local model spells it, mapped to one of the offered tools: case, `-`/`_` and
 * camelCase variants, a namespace prefix (`functions.read_file`), a common synonym (`cat`,
 * `final_answer`), or a typo within a small edit distance. Unknown or ambiguous: undefined.
 */

/** Synonyms models reach for, by the tool they stand for (used only when that tool is offered). */
const SYNONYMS: Record<string, readonly string[]> = {
  read_file: ['cat', 'open', 'openfile', 'read', 'readfiles', 'view', 'viewfile', 'getfile', 'filecontents'],
  list_files: ['ls', 'dir', 'list', 'listdir', 'listdirectory', 'listfolder', 'readdir', 'find', 'findfiles', 'glob'],
  grep: ['search', 'searchfiles', 'searchcode', 'findinfiles', 'rg', 'ripgrep'],
  outline: ['symbols', 'listsymbols', 'getoutline', 'fileoutline', 'structure'],
  finish: ['finalanswer', 'answer', 'submit', 'done', 'respond', 'submitanswer', 'complete'],
};

/** Lower case without separators: `Read-File`, `read_file`, `readFile` all read `readfile`. */
function squash(name: string): string {
  return name.toLowerCase().replace(/[\s_.-]+/g, '');
}

/** Levenshtein distance, giving up (returns max + 1) once it must exceed `max`. */
export function editDistance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return max + 1;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const value = Math.min((previous[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
      row.push(value);
      best = Math.min(best, value);
    }
    if (best > max) return max + 1;
    previous = row;
  }
  return previous[b.length] ?? max + 1;
}

/** Short names get one edit, longer two: `glob` must not become `grep`. */
function allowedEdits(name: string): number {
  return name.length <= 5 ? 1 : 2;
}

export interface NameMatch {
  tool: string;
  /** How the name was taken, when it was not exact. */
  how?: string;
}

/** The offered tool `name` stands for, or undefined. */
export function matchToolName(name: string, tools: readonly string[]): NameMatch | undefined {
  if (tools.includes(name)) return { tool: name };
  const trimmed = name.trim().slice(0, 100);
  // `functions.read_file`, `default_api.read_file`, `tools/read_file`: the last segment names it.
  const bare = trimmed.split(/[./:]/).pop() ?? trimmed;
  const wanted = squash(bare);
  if (wanted === '') return undefined;
  const taken = (tool: string): NameMatch => ({ tool, how: `name ${JSON.stringify(trimmed)} taken as ${tool}` });
  const same = tools.filter((tool) => squash(tool) === wanted);
  if (same.length === 1 && same[0] !== undefined) return taken(same[0]);
  const synonym = tools.filter((tool) => SYNONYMS[tool]?.some((s) => squash(s) === wanted));
  if (synonym.length === 1 && synonym[0] !== undefined) return taken(synonym[0]);
  let best: string | undefined;
  let bestDistance = Infinity;
  let tie = false;
  for (const tool of tools) {
    const target = squash(tool);
    const limit = Math.min(allowedEdits(target), allowedEdits(wanted));
    const distance = editDistance(wanted, target, limit);
    if (distance > limit) continue;
    if (distance < bestDistance) [best, bestDistance, tie] = [tool, distance, false];
    else if (distance === bestDistance) tie = true;
  }
  return best !== undefined && !tie ? taken(best) : undefined;
}
