import type { Dirent, Stats } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { MonitorError } from '../../errors.js';
import {
  isInside,
  LINUX_PATHS,
  noAllowedFolders,
  type PathRules,
  resolveInsideRoots,
  resolveRoots,
} from '../../paths.js';

export interface GlobOptions {
  /** Every match must really (after symlinks) be inside one of these. */
  roots: readonly string[];
  /** How this system compares paths (Linux's when not given). */
  rules?: PathRules | undefined;
  /** Relative patterns resolve against this (default: the first root). */
  base?: string;
  /** More matches than this is an error, not a silent cut. */
  maxFiles: number;
  /** Directory entries looked at per call, so a pattern like `/**` cannot scan a whole disk. */
  maxEntries?: number;
}

/** Folders `**` does not descend into (a dot-folder is skipped too); name them in the pattern to include them. */
const SKIPPED_BY_GLOBSTAR = new Set(['node_modules']);

const MAGIC = /[*?[]/;

/**
 * Expands paths and glob patterns (`*`, `?`, `[abc]`, `**`, `{a,b}`) to real file paths inside the
 * roots, in a stable order without duplicates. A plain path must name an existing file; a pattern
 * must match at least one. `*` and `?` do not match a leading dot; `**` skips dot-folders and
 * node_modules and never follows a symlinked folder (no cycles, no escaping the roots).
 */
export async function expandFiles(patterns: readonly string[], options: GlobOptions): Promise<string[]> {
  const base = options.base ?? options.roots[0];
  if (base === undefined) throw noAllowedFolders('files');
  const rules = options.rules ?? LINUX_PATHS;
  const realRoots = await resolveRoots(options.roots);
  const budget = { entries: options.maxEntries ?? 200_000 };
  const insideRoots = (real: string): boolean => realRoots.some((root) => isInside(root, real, rules));
  const seen = new Set<string>();
  const out: string[] = [];
  const add = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    out.push(file);
    if (out.length > options.maxFiles) {
      throw new MonitorError('INVALID_INPUT', `The files match more than ${options.maxFiles} files.`, {
        hint: 'Narrow the patterns (e.g. src/**/*.ts instead of **/*), or split the work into several jobs. The cap is "llm.maxFiles" in the config file.',
      });
    }
  };

  for (const pattern of patterns) {
    if (pattern.includes('\0')) throw new MonitorError('INVALID_INPUT', 'A file pattern contains a NUL byte.');
    const expanded = expandBraces(pattern);
    const matches: string[] = [];
    let searched = '';
    for (const single of expanded) {
      const absolute = path.resolve(base, single);
      const segments = absolute.split(path.sep);
      const firstMagic = segments.findIndex((s) => MAGIC.test(s));
      if (firstMagic === -1) {
        const real = await resolveInsideRoots(single, options.roots, { base, what: 'file', rules });
        const info = await stat(real);
        if (!info.isFile()) throw notAFile(single, info);
        matches.push(real);
        continue;
      }
      const prefix = segments.slice(0, firstMagic).join(path.sep) || path.sep;
      const dir = await resolveInsideRoots(prefix, options.roots, { base, what: 'folder', rules });
      searched = dir;
      let rest = segments.slice(firstMagic);
      // A trailing `**` means every file below.
      if (rest.at(-1) === '**') rest = [...rest, '*'];
      const found: string[] = [];
      await walk(dir, rest, 0, found, new Set(), insideRoots, budget);
      matches.push(...found.sort());
    }
    if (matches.length === 0) {
      throw new MonitorError(
        'INVALID_INPUT',
        `No file matches "${pattern}"${searched ? ` (searched in ${searched})` : ''}.`,
        {
          hint: '`*` and `?` skip names starting with a dot, and `**` skips dot-folders and node_modules; name those explicitly. Patterns are resolved against the first allowed folder.',
        },
      );
    }
    for (const file of matches) add(file);
  }
  return out;
}

/** What a plain path that is not a regular file really is, and what to do instead. */
export function notAFile(shown: string, info: Stats): MonitorError {
  if (info.isDirectory()) {
    return new MonitorError('INVALID_INPUT', `"${shown}" is a folder, not a file.`, {
      hint: `To take the files in it, use a pattern such as ${path.join(shown, '**', '*')} (or a narrower extension).`,
    });
  }
  const what = info.isFIFO()
    ? 'a named pipe (FIFO)'
    : info.isSocket()
      ? 'a socket'
      : info.isCharacterDevice()
        ? 'a character device'
        : info.isBlockDevice()
          ? 'a block device'
          : 'not a file';
  return new MonitorError('INVALID_INPUT', `"${shown}" is ${what}, not a regular file.`, {
    hint: 'Only regular files go into prompts: reading a pipe, socket or device would block or never end. Save its content to a file first (e.g. with run_script_batch), or leave it out of files.',
  });
}

async function walk(
  dir: string,
  segments: readonly string[],
  at: number,
  out: string[],
  visited: Set<string>,
  insideRoots: (real: string) => boolean,
  budget: { entries: number },
): Promise<void> {
  const key = `${at}\0${dir}`;
  if (visited.has(key) || at >= segments.length) return;
  visited.add(key);
  const segment = segments[at] ?? '';
  const last = at === segments.length - 1;

  if (segment === '**') {
    await walk(dir, segments, at + 1, out, visited, insideRoots, budget);
    for (const entry of await list(dir, budget)) {
      if (entry.isDirectory() && !entry.name.startsWith('.') && !SKIPPED_BY_GLOBSTAR.has(entry.name)) {
        await walk(path.join(dir, entry.name), segments, at, out, visited, insideRoots, budget);
      }
    }
    return;
  }

  const matcher = MAGIC.test(segment) ? segmentRegExp(segment) : undefined;
  for (const entry of await list(dir, budget)) {
    if (matcher ? !matcher.test(entry.name) : entry.name !== segment) continue;
    const full = path.join(dir, entry.name);
    if (!last) {
      if (entry.isDirectory()) await walk(full, segments, at + 1, out, visited, insideRoots, budget);
      continue;
    }
    if (entry.isFile()) out.push(full);
    else if (entry.isSymbolicLink()) {
      // A symlinked file counts only when its target is inside the roots too.
      const real = await realpath(full).catch(() => undefined);
      if (real && insideRoots(real) && (await stat(real)).isFile()) out.push(real);
    }
  }
}

async function list(dir: string, budget: { entries: number }): Promise<Dirent[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  budget.entries -= entries.length;
  if (budget.entries < 0) {
    throw new MonitorError('INVALID_INPUT', 'The file patterns scan too many folders and files.', {
      hint: 'Start the pattern in a narrower folder (e.g. src/**/*.py rather than **/*.py).',
    });
  }
  return entries;
}

/** One path segment's pattern as a RegExp: `*`, `?`, `[abc]`/`[!abc]`; no leading dot unless written. */
export function segmentRegExp(segment: string): RegExp {
  let source = segment.startsWith('.') ? '' : '(?!\\.)';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i] ?? '';
    if (c === '*') {
      while (segment[i + 1] === '*') i++;
      source += '[^/]*';
    } else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close === -1) source += '\\[';
      else {
        let body = segment.slice(i + 1, close);
        const negate = body.startsWith('!') || body.startsWith('^');
        if (negate) body = body.slice(1);
        source += `[${negate ? '^' : ''}${body.replace(/\\/g, '\\\\').replace(/]/g, '\\]')}]`;
        i = close;
      }
    } else source += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/** `a{b,c{d,e}}f` → `abf`, `acdf`, `acef`. Unbalanced braces stay literal. At most 1,000 results. */
export function expandBraces(pattern: string): string[] {
  const results: string[] = [];
  const queue = [pattern];
  while (queue.length > 0) {
    const current = queue.shift() ?? '';
    const span = firstBraceGroup(current);
    if (!span) {
      results.push(current);
    } else {
      const head = current.slice(0, span.open);
      const tail = current.slice(span.close + 1);
      for (const option of span.options) queue.push(head + option + tail);
    }
    if (results.length + queue.length > 1000) {
      throw new MonitorError('INVALID_INPUT', `The pattern "${pattern}" expands to more than 1000 alternatives.`);
    }
  }
  return results;
}

function firstBraceGroup(text: string): { open: number; close: number; options: string[] } | undefined {
  for (let open = text.indexOf('{'); open !== -1; open = text.indexOf('{', open + 1)) {
    let depth = 0;
    const options: string[] = [];
    let from = open + 1;
    for (let i = open; i < text.length; i++) {
      const c = text[i];
      if (c === '{') depth++;
      else if (c === '}') {
        depth--;
        if (depth === 0) {
          options.push(text.slice(from, i));
          if (options.length > 1) return { open, close: i, options };
          break;
        }
      } else if (c === ',' && depth === 1) {
        options.push(text.slice(from, i));
        from = i + 1;
      }
    }
  }
  return undefined;
}
