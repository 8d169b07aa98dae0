import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { MonitorError } from '../errors.js';
import { resolveInsideRoots } from '../paths.js';
import { invalidParams, type PromptContext } from './prompt.js';

/**
 * A folder's files, listed when the prompt is asked for, so its calls name real files: the bundled
 * workers take files, not folders, and a client without file tools (Claude Desktop) could not list
 * them. Bounded: a few thousand entries looked at, a few dozen files named.
 */
export interface FolderListing {
  /** The path as the user gave it (trailing separators dropped): relative to the first allowed folder, or absolute. */
  given: string;
  isFolder: boolean;
  /** The first files in path order, as paths from the first allowed folder (`given` joined with the rest). */
  files: string[];
  /** Every file seen (dot-files, dot-folders and node_modules skipped, as `**` skips them). */
  total: number;
  /** The walk stopped at its entry budget: `total` counts only what it saw. */
  partial: boolean;
  /** Patterns for lmstudio_complete's `files` that leave out binary files (by extension). */
  textGlob: string;
  /** Files left out of `textGlob` as binary. */
  binary: number;
}

// Extensions of files that are not text: a prompt cannot hold them, and `group` refuses them.
const BINARY = new Set(
  'png jpg jpeg gif bmp ico icns webp tif tiff psd pdf zip gz tgz bz2 xz zst 7z rar tar jar war class o obj a so dylib dll exe bin dat db sqlite sqlite3 wasm woff woff2 ttf otf eot mp3 mp4 m4a wav ogg flac mov avi mkv webm pyc pyo node npy npz pkl pt onnx gguf safetensors parquet mcpb tsbuildinfo'.split(
    ' ',
  ),
);

const extensionOf = (name: string): string => path.extname(name).slice(1).toLowerCase();

/** Lists `given` (a folder or a file) inside the allowed folders; an InvalidParams error says why not. */
export async function listFolder(
  given: string,
  ctx: PromptContext,
  limits: { files: number; entries: number } = { files: 40, entries: 5000 },
): Promise<FolderListing> {
  const api = ctx.rules.flavor === 'win32' ? path.win32 : path.posix;
  const trimmed = given.length > 1 ? given.replace(/[\\/]+$/, '') || given : given;
  let real: string;
  try {
    real = await resolveInsideRoots(trimmed, ctx.roots, { what: 'folder or file', rules: ctx.rules });
  } catch (error) {
    if (error instanceof MonitorError) throw invalidParams(error.message, error.hint ?? 'Give a path inside them.');
    throw error;
  }
  if (!(await stat(real)).isDirectory()) {
    const binary = BINARY.has(extensionOf(trimmed)) ? 1 : 0;
    return { given: trimmed, isFolder: false, files: [trimmed], total: 1, partial: false, textGlob: trimmed, binary };
  }
  const files: string[] = [];
  const extensions = new Set<string>();
  let total = 0;
  let binary = 0;
  let entries = 0;
  // Depth first in name order: the files come out in path order, as the glob lists them.
  const walk = async (dir: string, relative: string): Promise<boolean> => {
    const found: Dirent[] = await readdir(dir, { withFileTypes: true }).catch(() => []);
    found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of found) {
      if (++entries > limits.entries) return false;
      if (entry.name.startsWith('.') || entry.name === 'node_modules') continue;
      const inside = relative === '' ? entry.name : `${relative}/${entry.name}`;
      // A symlinked folder is not followed (no cycles), as `**` does not follow one.
      if (entry.isDirectory()) {
        if (!(await walk(api.join(dir, entry.name), inside))) return false;
      } else if (entry.isFile()) {
        total++;
        const ext = extensionOf(entry.name);
        if (BINARY.has(ext)) binary++;
        else extensions.add(ext);
        if (files.length < limits.files) files.push(trimmed === '.' ? inside : `${trimmed}/${inside}`);
      }
    }
    return true;
  };
  const partial = !(await walk(real, ''));
  return {
    given: trimmed,
    isFolder: true,
    files,
    total,
    partial,
    textGlob: textGlob(trimmed, extensions, binary),
    binary,
  };
}

/** `folder/**`, or, when binary files are there, the text extensions found (`folder/**\/*.{md,ts}`). */
function textGlob(folder: string, extensions: ReadonlySet<string>, binary: number): string {
  const below = folder === '.' ? '**' : `${folder}/**`;
  const named = [...extensions].filter((e) => e !== '').sort();
  if (binary === 0 || named.length === 0) return below;
  return named.length === 1 ? `${below}/*.${named[0]}` : `${below}/*.{${named.join(',')}}`;
}

/** "12 files", "the first 40 of 130 files", "at least 5000 files". */
export function describeCount(listing: FolderListing): string {
  const count = `${listing.partial ? 'at least ' : ''}${listing.total} file${listing.total === 1 ? '' : 's'}`;
  return listing.files.length < listing.total ? `the first ${listing.files.length} of ${count}` : count;
}
