import { open, stat } from 'node:fs/promises';
import type { TaskResult } from '../../engine/types.js';
import { type PathRules, resolveInsideRoots } from '../../paths.js';
import { middleBreak } from './template.js';
import type { FileRef, TemplateTaskInput } from './types.js';

/** A prompt's files are split in two at most this many times over (8 parts) when they overflow the context. */
export const MAX_SPLIT_DEPTH = 3;

/**
 * A prompt's files cut in two: a pack by its files, a lone file (or chunk) at the line break nearest
 * its middle. Undefined when there is nothing left to cut.
 */
export async function splitForContext(
  input: TemplateTaskInput,
  roots: readonly string[],
  rules?: PathRules,
): Promise<[TemplateTaskInput, TemplateTaskInput] | undefined> {
  const files = input.files ?? (input.file ? [input.file] : []);
  if (files.length > 1) {
    const mid = Math.ceil(files.length / 2);
    const halves = [files.slice(0, mid), files.slice(mid)];
    return [halves[0] ?? [], halves[1] ?? []].map((part, i) => ({
      ...input,
      id: `${input.id} [part ${i + 1}/2]`,
      files: part,
    })) as [TemplateTaskInput, TemplateTaskInput];
  }
  const [file] = files;
  if (!file) return undefined;
  const real = await resolveInsideRoots(file.path, roots, { what: 'file', rules });
  const size = (await stat(real)).size;
  const start = file.start ?? 0;
  const end = file.end ?? size;
  if (end - start < 256) return undefined;
  const cut = start + (await middleOf(real, start, end));
  const half = (from: number, to: number, i: number): TemplateTaskInput => {
    const ref: FileRef = { ...file, start: from, end: to, size };
    const part: TemplateTaskInput = { id: `${input.id} [part ${i}/2]` };
    if (input.values !== undefined) part.values = input.values;
    if (input.files) part.files = [ref];
    else part.file = ref;
    return part;
  };
  return [half(start, cut, 1), half(cut, end, 2)];
}

/** One part of a split prompt as it was asked: its input, the stem its answer is kept under, and its result. */
export interface AskedPart {
  input: TemplateTaskInput;
  stem: string;
  result: TaskResult;
}

/**
 * A prompt asked in parts: the parts asked, in order (the last one failed when any did), how many
 * parts it was cut into in all (every level's: asked, and after a failure those left unasked) and
 * how many times over the deepest part was halved.
 */
export interface SplitOutcome {
  asked: AskedPart[];
  parts: number;
  depth: number;
}

interface Part {
  input: TemplateTaskInput;
  stem: string;
  depth: number;
  /** Its place among the 2^depth parts a whole split that deep would make, from 1. */
  position: number;
}

/**
 * A prompt that overflowed the context, asked in halves one after the other; a half that overflows
 * too is halved again, MAX_SPLIT_DEPTH levels deep in all. Stops at the first part that fails.
 * Each part is named by its place at its level (`[part 3/8]`: the third eighth). Undefined when
 * the prompt cannot be cut.
 */
export async function askInParts(
  input: TemplateTaskInput,
  stem: string,
  ask: (part: TemplateTaskInput, stem: string) => Promise<TaskResult>,
  cut: (part: TemplateTaskInput) => Promise<[TemplateTaskInput, TemplateTaskInput] | undefined>,
): Promise<SplitOutcome | undefined> {
  const halvesOf = async (part: Part): Promise<Part[] | undefined> => {
    if (part.depth >= MAX_SPLIT_DEPTH) return undefined;
    const halves = await cut(part.input);
    const depth = part.depth + 1;
    return halves?.map((half, i) => {
      const position = part.position * 2 - 1 + i;
      const id = `${input.id} [part ${position}/${2 ** depth}]`;
      return { input: { ...half, id }, stem: `${part.stem}.p${i + 1}`, depth, position };
    });
  };
  const todo = await halvesOf({ input, stem, depth: 0, position: 1 });
  if (!todo) return undefined;
  const asked: AskedPart[] = [];
  let depth = 1;
  for (let part = todo.shift(); part; part = todo.shift()) {
    const result = await ask(part.input, part.stem);
    const halves = !result.ok && result.error?.code === 'CONTEXT_OVERFLOW' ? await halvesOf(part) : undefined;
    if (halves) {
      todo.unshift(...halves);
      depth = Math.max(depth, part.depth + 1);
      continue;
    }
    asked.push({ input: part.input, stem: part.stem, result });
    if (!result.ok) break;
  }
  return { asked, parts: asked.length + todo.length, depth };
}

/** A split prompt's failure as its last part's, said once: how many parts, how deep, and which failed. */
export function splitFailure(outcome: SplitOutcome): { code: string; message: string; hint?: string } {
  const failed = outcome.asked.at(-1);
  const error = failed?.result.error ?? { code: 'INTERNAL', message: 'A part failed without an error.' };
  const deep = outcome.depth > 1 ? ` (halved ${outcome.depth} times over)` : '';
  return {
    ...error,
    message: `Split into ${outcome.parts} parts to fit the model's context${deep}; ${failed?.input.id ?? 'a part'} failed: ${error.message}`,
  };
}

/** The line break nearest the middle of bytes `start`..`end` of `file`, counted from `start`. */
async function middleOf(file: string, start: number, end: number): Promise<number> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(end - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    return middleBreak(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}
