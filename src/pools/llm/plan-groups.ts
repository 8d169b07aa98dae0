import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { MonitorError } from '../../errors.js';
import { resolveRoots } from '../../paths.js';
import { expandFiles } from './glob.js';
import { ASSUMED_CONTEXT_TOKENS, autoChunkTokens, chunkFile, tooManyTasks } from './plan-chunks.js';
import { bytesPerToken, describeRatio, type Measured, SAMPLE_BYTES_PER_FILE } from './plan-measure.js';
import type { LlmJobRequest, LlmPlanContext, ServedModel } from './plan-types.js';
import {
  CHUNK_BYTES_PER_TOKEN,
  checkPlaceholders,
  displayPath,
  FILE_PLACEHOLDERS,
  looksBinary,
  placeholdersOf,
} from './template.js';
import type { FileRef, LlmJobOptions, LlmTaskInput } from './types.js';

/** One file to pack: its real path, its name as shown, its size. */
interface TextFile {
  path: string;
  display: string;
  size: number;
}

/** One prompt's files: a folder's (`group: "folder"`) or any (`"all"`), and their bytes with headers. */
interface Pack {
  folder: string;
  refs: FileRef[];
  bytes: number;
}

/**
 * Files packed into as few prompts as fit the model's context, in path order (`folder`: a folder's
 * files together, never mixed with another folder's): each under a `### path` header. A file larger
 * than a prompt's room is cut into chunks that each take a prompt.
 */
export async function groupInputs(
  request: LlmJobRequest,
  template: string,
  group: 'all' | 'folder',
  served: ServedModel,
  options: LlmJobOptions,
  context: LlmPlanContext,
  notes: string[],
): Promise<{ inputs: LlmTaskInput[]; ratio: Measured | undefined }> {
  checkPlaceholders(template, new Set(FILE_PLACEHOLDERS), 'the files');
  if (!placeholdersOf(template).includes('content')) {
    throw new MonitorError('INVALID_INPUT', 'group puts the files into {{content}}, which the template does not use.', {
      hint: 'e.g. "Review this module:\\n{{content}}".',
    });
  }
  const matched = await expandFiles(request.files ?? [], {
    roots: context.allowedRoots,
    maxFiles: context.settings.maxFiles,
    rules: context.pathRules,
  });
  const ratio = await bytesPerToken(matched, served.endpoints, options.model, context);
  const bytesPerTok = ratio?.bytes ?? CHUNK_BYTES_PER_TOKEN;
  const roomBytes = Math.floor(autoChunkTokens(served.contextLength, options, bytesPerTok) * bytesPerTok);
  const files = await textFiles(matched, context.allowedRoots);
  const packs = await packFiles(files, group, roomBytes, context);
  notes.push(
    `${files.length} file(s) packed into ${packs.length} prompt(s) of up to ${(roomBytes / 1024).toFixed(1)} KB (≈${Math.floor(roomBytes / bytesPerTok)} tokens of the ${served.contextLength ?? ASSUMED_CONTEXT_TOKENS}-token context; ${describeRatio(ratio)}), each file under a "### path" header.`,
  );
  return { inputs: packInputs(packs, group), ratio };
}

/** The merge a module too large for one prompt gets when the caller named none: the request itself, over the partial answers. */
export function defaultReducePrompt(template: string): string {
  const request = template
    .replace(/\{\{\s*content\s*\}\}/g, '[the files]')
    .replace(/\{\{\s*(path|name|chunk|chunks)\s*\}\}/g, '[…]')
    .slice(0, 2000);
  return `The files were too many for one prompt, so this request was asked of them in groups:\n---\n${request}\n---\nThe answers of the groups follow. Give the one answer to that request for all the files together.`;
}

/** The matched files in path order, with their sizes; any binary one refused by name (it would fail the whole prompt it is packed into). */
async function textFiles(matched: readonly string[], roots: readonly string[]): Promise<TextFile[]> {
  const realRoots = await resolveRoots(roots);
  const files = await Promise.all(
    matched.map(async (file) => ({ path: file, display: displayPath(file, realRoots), size: (await stat(file)).size })),
  );
  files.sort((a, b) => (a.display < b.display ? -1 : a.display > b.display ? 1 : 0));
  const binary: string[] = [];
  for (const file of files) if (await startsBinary(file.path)) binary.push(file.display);
  if (binary.length > 0) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${binary.length} of the files look binary (they contain NUL bytes): ${binary.slice(0, 5).join(', ')}${binary.length > 5 ? ', …' : ''}. Only text files can go into a prompt.`,
      {
        hint: 'Narrow the file patterns to text files (e.g. "src/auth/**/*.ts").',
      },
    );
  }
  return files;
}

/** Files (or their chunks) into packs of at most `roomBytes`, in order, a new pack per folder with `folder`. */
async function packFiles(
  files: readonly TextFile[],
  group: 'all' | 'folder',
  roomBytes: number,
  context: LlmPlanContext,
): Promise<Pack[]> {
  const { settings } = context;
  const folderOf = (display: string): string =>
    group === 'all' ? '' : path.posix.dirname(display.split(path.sep).join('/'));
  const packs: Pack[] = [];
  let current: Pack | undefined;
  for (const file of files) {
    const header = Buffer.byteLength(`### ${file.display} (part 99 of 99)\n\n\n`);
    const folder = folderOf(file.display);
    const pieces: FileRef[] =
      file.size + header <= roomBytes
        ? [{ path: file.path, display: file.display }]
        : await chunkFile(
            file.path,
            file.display,
            roomBytes - header,
            settings.maxFileBytes,
            settings.maxTasks,
            settings.maxTasks,
          );
    for (const piece of pieces) {
      const bytes =
        (piece.end !== undefined && piece.start !== undefined ? piece.end - piece.start : file.size) + header;
      if (!current || current.folder !== folder || current.bytes + bytes > roomBytes) {
        current = { folder, refs: [], bytes: 0 };
        packs.push(current);
        if (packs.length > settings.maxTasks) throw tooManyTasks(settings.maxTasks, '');
      }
      current.refs.push(piece);
      current.bytes += bytes;
    }
  }
  return packs;
}

/** One task per pack, named by its place (`files k/n`, or the folder) and its first and last file. */
function packInputs(packs: readonly Pack[], group: 'all' | 'folder'): LlmTaskInput[] {
  const perFolder = new Map<string, number>();
  for (const pack of packs) perFolder.set(pack.folder, (perFolder.get(pack.folder) ?? 0) + 1);
  const seen = new Map<string, number>();
  return packs.map((pack): LlmTaskInput => {
    const k = (seen.get(pack.folder) ?? 0) + 1;
    seen.set(pack.folder, k);
    const of = perFolder.get(pack.folder) ?? 1;
    const name =
      group === 'all'
        ? packs.length === 1
          ? 'all files'
          : `files ${k}/${packs.length}`
        : `${pack.folder || '.'}${of > 1 ? ` [${k}/${of}]` : ''}`;
    const fileCount = new Set(pack.refs.map((ref) => ref.display)).size;
    const first = pack.refs[0]?.display ?? '';
    const last = pack.refs.at(-1)?.display ?? '';
    return {
      id: `${name}: ${fileCount === 1 ? first : `${first} … ${last}`} (${fileCount} file${fileCount === 1 ? '' : 's'})`,
      files: pack.refs,
    };
  });
}

/** The file's first bytes hold a NUL byte (see looksBinary). */
async function startsBinary(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(SAMPLE_BYTES_PER_FILE);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return looksBinary(buffer.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}
