import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { MonitorError } from './errors.js';

/**
 * How a file system compares paths: the separator and absolute forms (posix, or win32 with drive
 * letters, UNC shares and `\\?\` prefixes), and whether case matters (NTFS and macOS's default APFS
 * ignore it). A check right for Linux can let a path out on Windows: every comparison says which.
 */
export interface PathRules {
  flavor: 'posix' | 'win32';
  caseInsensitive: boolean;
}

/** Linux: posix paths, case matters. */
export const LINUX_PATHS: PathRules = { flavor: 'posix', caseInsensitive: false };

/** A path in the form comparisons use: normalised, without `\\?\` prefixes, case folded where case does not matter. */
export function comparable(p: string, rules: PathRules): string {
  if (rules.flavor === 'posix') {
    const normal = path.posix.normalize(p);
    return rules.caseInsensitive ? normal.toLowerCase() : normal;
  }
  let s = p.replace(/\//g, '\\');
  // Long-path forms name the same file: \\?\C:\x is C:\x, \\?\UNC\server\share is \\server\share.
  if (/^\\\\[?.]\\UNC\\/i.test(s)) s = `\\\\${s.slice(8)}`;
  else if (/^\\\\[?.]\\[A-Za-z]:/.test(s)) s = s.slice(4);
  s = path.win32.normalize(s);
  return rules.caseInsensitive ? s.toLowerCase() : s;
}

/** True when `candidate` is `root` or below it (both absolute), by the rules of the file system they are on. */
export function isInside(root: string, candidate: string, rules: PathRules = LINUX_PATHS): boolean {
  const api = rules.flavor === 'win32' ? path.win32 : path.posix;
  const r = comparable(root, rules);
  const c = comparable(candidate, rules);
  if (!api.isAbsolute(r) || !api.isAbsolute(c)) return false;
  // Another drive or share: relative() would answer with an absolute path.
  if (rules.flavor === 'win32' && path.win32.parse(r).root.toLowerCase() !== path.win32.parse(c).root.toLowerCase())
    return false;
  const relative = api.relative(r, c);
  // A child may be named "..x": only ".." itself, as a whole segment, leaves the root.
  return relative === '' || (relative !== '..' && !relative.startsWith(`..${api.sep}`) && !api.isAbsolute(relative));
}

/**
 * Resolves `p` (relative to `base`) and follows every symlink; the real path must stay inside one
 * of `roots` (themselves resolved). Throws PATH_OUTSIDE_ROOT or, when nothing is there,
 * `missingCode` (INVALID_INPUT unless the caller's kind has a code of its own for it).
 */
export async function resolveInsideRoots(
  p: string,
  roots: readonly string[],
  options: {
    base?: string;
    what?: string;
    missingCode?: string;
    widen?: string;
    rules?: PathRules | undefined;
    realpath?: (p: string) => Promise<string>;
  } = {},
): Promise<string> {
  const what = options.what ?? 'path';
  const rules = options.rules ?? LINUX_PATHS;
  const real = options.realpath ?? realpath;
  if (p.includes('\0')) throw new MonitorError('INVALID_INPUT', `The ${what} contains a NUL byte.`);
  if (roots.length === 0) throw noAllowedFolders(what);
  const base = options.base ?? roots[0];
  if (base === undefined) throw noAllowedFolders(what);
  const absolute = (rules.flavor === 'win32' ? path.win32 : path.posix).resolve(base, p);
  const realRoots = await resolveRoots(roots, real);
  let resolved: string;
  try {
    resolved = await real(absolute);
  } catch (error) {
    // Say "outside" before "missing", so probing for files outside the roots learns nothing.
    if (!realRoots.some((root) => isInside(root, absolute, rules))) throw outside(what, p, realRoots, options.widen);
    throw new MonitorError<string>(options.missingCode ?? 'INVALID_INPUT', `No such ${what}: ${p}`, {
      hint: `Paths are resolved against ${base}.`,
      cause: error,
    });
  }
  if (!realRoots.some((root) => isInside(root, resolved, rules))) throw outside(what, p, realRoots, options.widen);
  return resolved;
}

/** The allowed folders with their symlinks followed (as given when one does not exist). */
export function resolveRoots(
  roots: readonly string[],
  real: (p: string) => Promise<string> = realpath,
): Promise<string[]> {
  return Promise.all(roots.map((r) => real(r).catch(() => path.resolve(r))));
}

/** No roots at all: the server was started without --root where its cwd could not serve as one (e.g. "/"). */
export function noAllowedFolders(what: string): MonitorError {
  return new MonitorError(
    'PATH_OUTSIDE_ROOT',
    `No folders are allowed for the ${what}: the server has no project folder.`,
    {
      hint: 'Ask the user to start the server with --root /path/to/project (or "allowedRoots" in the config file); a server started in "/" without --root allows no folder.',
    },
  );
}

/** `widen`: how the user allows more of these folders (default: the allowed roots' flag and key). */
function outside(
  what: string,
  p: string,
  roots: readonly string[],
  widen = '--root or "allowedRoots" in the config file',
): MonitorError {
  return new MonitorError('PATH_OUTSIDE_ROOT', `The ${what} "${p}" resolves outside the allowed folders.`, {
    hint: `Use a path inside ${roots.join(', ')} (symlinks are followed before the check). The user can allow more folders with ${widen}.`,
  });
}
