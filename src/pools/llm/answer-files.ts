import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Answers up to this long stay inline only; longer ones also go whole to a file. */
const SHORT_TEXT_CHARS = 480;

/** A text as a result keeps it: its fields in the value, and the file with all of it when it is long. */
export interface KeptText {
  inline: Record<string, unknown>;
  file?: string;
}

/**
 * Writes the whole text to the task's output file (collect_results may cut long values to fit a
 * page; the file always has everything) and returns the inline part, cut at `maxInlineChars`. An
 * answer is the result envelope's `text` (with `cut: true` when cut; its file becomes
 * `files.output`); reasoning is the kind's own `reasoning` (`reasoning_cut`, `files.reasoning`).
 */
export async function keepText(
  outputDir: string,
  stem: string,
  text: string,
  kind: 'answer' | 'reasoning',
  maxInlineChars: number,
): Promise<KeptText> {
  const field = kind === 'answer' ? 'text' : 'reasoning';
  const cutField = kind === 'answer' ? 'cut' : 'reasoning_cut';
  const inline =
    text.length <= maxInlineChars
      ? { [field]: text }
      : { [field]: `${text.slice(0, maxInlineChars)}…`, [cutField]: true };
  // collect_results never cuts a result below 512 characters: short answers need no file.
  if (text.length <= SHORT_TEXT_CHARS) return { inline };
  const file = path.join(outputDir, `${stem}.${kind}.txt`);
  // Answers may quote private files: readable by the owner only, like the rest of the state dir.
  try {
    await writeFile(file, text, { mode: 0o600 });
  } catch {
    // The store creates outputDir at submit; recreate it if it was removed since.
    await mkdir(outputDir, { recursive: true, mode: 0o700 });
    await writeFile(file, text, { mode: 0o600 });
  }
  return { inline, file };
}
