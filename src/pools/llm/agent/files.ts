import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { expandBraces } from '../glob.js';
import { type AgentScope, matchSegments } from './scope.js';

/** A file found for the model: where it really is, and the path it is shown as. */
export interface FoundFile {
  real: string;
  shown: string;
}

export interface WalkOptions {
  /** Files whose path below the folder matches (a glob without `/` matches the name at any depth). */
  glob?: string | undefined;
  maxFiles: number;
  /** Directory entries looked at, so `**` over a huge tree stops. */
  maxEntries: number;
  signal: AbortSignal;
}

export interface WalkResult {
  files: FoundFile[];
  /** More files matched than maxFiles. */
  moreFiles: boolean;
  /** The walk stopped at maxEntries before the end of the tree. */
  stoppedEarly: boolean;
}

/** Folders a recursive walk leaves out unless the glob names them. */
const SKIPPED = new Set(['node_modules']);

/**
 * The files below `dir` (a real folder) the scope allows, matching the glob, in path order. Dot-
 * folders and node_modules are skipped unless the glob names them; symlinked folders are not
 * followed (no cycles), a symlinked file counts when its target is allowed.
 */
export async function walkFiles(scope: AgentScope, dir: string, options: WalkOptions): Promise<WalkResult> {
  const globs = compileGlob(options.glob);
  const namesHidden = options.glob !== undefined && /(^|[/{,])(\.|node_modules)/.test(options.glob);
  const result: WalkResult = { files: [], moreFiles: false, stoppedEarly: false };
  const budget = { entries: options.maxEntries };
  const visit = async (folder: string, segments: string[]): Promise<boolean> => {
    if (options.signal.aborted) throw options.signal.reason;
    const entries = await list(folder);
    budget.entries -= entries.length;
    if (budget.entries < 0) {
      result.stoppedEarly = true;
      return false;
    }
    for (const entry of entries) {
      const full = path.join(folder, entry.name);
      const below = [...segments, entry.name];
      if (entry.isDirectory()) {
        if (!namesHidden && (entry.name.startsWith('.') || SKIPPED.has(entry.name))) continue;
        if (globs && !globs.some((g) => matchSegments(below, g, { open: true, exact: true }))) continue;
        if (!(await scope.allows(full, 'dir'))) continue;
        if (!(await visit(full, below))) return false;
        continue;
      }
      if (globs && !globs.some((g) => matchSegments(below, g, { exact: true }))) continue;
      const real = entry.isFile() ? full : entry.isSymbolicLink() ? await fileTarget(full) : undefined;
      if (real === undefined || !(await scope.allows(real, 'file'))) continue;
      if (result.files.length >= options.maxFiles) {
        result.moreFiles = true;
        return false;
      }
      result.files.push({ real, shown: scope.show(full) });
    }
    return true;
  };
  await visit(dir, []);
  return result;
}

export interface Entry {
  shown: string;
  real: string;
  dir: boolean;
}

/** The entries of one real folder the scope allows (folders when allowed files may be below), sorted. */
export async function listFolder(scope: AgentScope, dir: string, signal: AbortSignal): Promise<Entry[]> {
  const out: Entry[] = [];
  for (const entry of await list(dir)) {
    if (signal.aborted) throw signal.reason;
    const full = path.join(dir, entry.name);
    let real = full;
    let isDir = entry.isDirectory();
    if (entry.isSymbolicLink()) {
      const target = await realpath(full).catch(() => undefined);
      const info = target === undefined ? undefined : await stat(target).catch(() => undefined);
      if (target === undefined || info === undefined || !(info.isFile() || info.isDirectory())) continue;
      real = target;
      isDir = info.isDirectory();
    } else if (!isDir && !entry.isFile()) continue;
    if (await scope.allows(real, isDir ? 'dir' : 'file')) out.push({ shown: scope.show(full), real, dir: isDir });
  }
  return out;
}

/** A glob as segment lists, one per brace alternative; a name-only glob matches at any depth. */
function compileGlob(glob: string | undefined): string[][] | undefined {
  if (glob === undefined) return undefined;
  let alternatives: string[];
  try {
    alternatives = expandBraces(glob);
  } catch {
    alternatives = [glob];
  }
  return alternatives.map((g) => {
    const segments = g.split('/').filter((s) => s !== '' && s !== '.');
    return segments.length === 1 ? ['**', ...segments] : segments;
  });
}

async function fileTarget(link: string): Promise<string | undefined> {
  const real = await realpath(link).catch(() => undefined);
  if (real === undefined) return undefined;
  const info = await stat(real).catch(() => undefined);
  return info?.isFile() ? real : undefined;
}

async function list(dir: string): Promise<Dirent[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch {
    return [];
  }
}
