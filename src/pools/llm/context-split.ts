import { open, stat } from 'node:fs/promises';
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
