import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { MonitorError } from './errors.js';

/** True when `candidate` is `root` or below it (both already absolute and normalised). */
export function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/**
 * Resolves `p` (relative to `base`) and follows every symlink; the real path must stay inside one
 * of `roots` (themselves resolved). Throws PATH_OUTSIDE_ROOT or, when nothing is there,
 * `missingCode` (INVALID_INPUT unless the caller's kind has a code of its own for it).
 */
export async function resolveInsideRoots(
  p: string,
  roots: readonly string[],
  options: { base?: string; what?: string; missingCode?: string; widen?: string } = {},
): Promise<string> {
  const what = options.what ?? 'path';
  if (p.includes('\0')) throw new MonitorError('INVALID_INPUT', `The ${what} contains a NUL byte.`);
  if (roots.length === 0) throw noAllowedFolders(what);
  const base = options.base ?? roots[0];
  if (base === undefined) throw noAllowedFolders(what);
  const absolute = path.resolve(base, p);
  const realRoots = await resolveRoots(roots);
  let real: string;
  try {
    real = await realpath(absolute);
  } catch (error) {
    // Say "outside" before "missing", so probing for files outside the roots learns nothing.
    if (!realRoots.some((root) => isInside(root, absolute))) throw outside(what, p, realRoots, options.widen);
    throw new MonitorError<string>(options.missingCode ?? 'INVALID_INPUT', `No such ${what}: ${p}`, {
      hint: `Paths are resolved against ${base}.`,
      cause: error,
    });
  }
  if (!realRoots.some((root) => isInside(root, real))) throw outside(what, p, realRoots, options.widen);
  return real;
}

/** The allowed folders with their symlinks followed (as given when one does not exist). */
export function resolveRoots(roots: readonly string[]): Promise<string[]> {
  return Promise.all(roots.map((r) => realpath(r).catch(() => path.resolve(r))));
}

/** No roots at all: the server was started without --root where its cwd could not serve as one (e.g. "/"). */
export function noAllowedFolders(what: string): MonitorError {
  return new MonitorError('PATH_OUTSIDE_ROOT', `No folders are allowed for the ${what}: the server has no project folder.`, {
    hint: 'Ask the user to start the server with --root /path/to/project (or "allowedRoots" in the config file); a server started in "/" without --root allows no folder.',
  });
}

/** `widen`: how the user allows more of these folders (default: the allowed roots' flag and key). */
function outside(what: string, p: string, roots: readonly string[], widen = '--root or "allowedRoots" in the config file'): MonitorError {
  return new MonitorError('PATH_OUTSIDE_ROOT', `The ${what} "${p}" resolves outside the allowed folders.`, {
    hint: `Use a path inside ${roots.join(', ')} (symlinks are followed before the check). The user can allow more folders with ${widen}.`,
  });
}
