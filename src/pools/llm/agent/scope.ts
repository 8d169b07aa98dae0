import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { isMonitorError } from '../../../errors.js';
import { comparable, isInside, LINUX_PATHS, type PathRules, resolveInsideRoots, resolveRoots } from '../../../paths.js';
import { expandBraces, segmentRegExp } from '../glob.js';

export interface AgentScopeOptions {
  allowedRoots: readonly string[];
  pathRules?: PathRules | undefined;
  /** The task's globs or paths inside the roots (relative to the first); absent or empty: all the roots. */
  paths?: readonly string[] | undefined;
}

/** Why a path was refused: the loop only shows `refused`; citations and tools word their own reasons. */
export type RefusalKind = 'invalid' | 'outside' | 'missing' | 'not-file' | 'not-dir' | 'special';

export type ScopeAnswer = { real: string; shown: string } | { refused: string; kind: RefusalKind };

/** One of the task's paths: a real folder or file (symlinks followed) and the glob segments below it. */
interface Pattern {
  base: string;
  rest: string[];
}

interface Prepared {
  roots: string[];
  patterns: Pattern[] | undefined;
}

const MAGIC = /[*?[]/;
/** `**` and `*` do not enter these, as in the kind's `files` patterns (name them to include them). */
const SKIPPED_BY_GLOBSTAR = new Set(['node_modules']);

/**
 * What one investigation may look at: the server's allowed roots (symlinks followed, compared per
 * PathRules, as everywhere else) narrowed to the task's `paths`. A path is allowed when it, or a
 * folder above it, matches one of them: a plain folder allows everything below it, `src/**` every
 * file below src but dot-folders and node_modules (as `**` in the kind's file patterns), `lib/*.py`
 * the Python files of lib. A folder is open to listing when allowed files may be below it.
 */
export class AgentScope {
  readonly roots: readonly string[];
  readonly paths: readonly string[] | undefined;
  private readonly rules: PathRules;
  private readonly api: typeof path.posix;
  private prepared: Promise<Prepared> | undefined;
  private realRoots: readonly string[] | undefined;

  constructor(options: AgentScopeOptions) {
    this.roots = [...options.allowedRoots];
    this.rules = options.pathRules ?? LINUX_PATHS;
    this.api = this.rules.flavor === 'win32' ? path.win32 : path.posix;
    const paths = options.paths?.filter((p) => typeof p === 'string' && p.trim() !== '');
    this.paths = paths && paths.length > 0 ? paths : undefined;
  }

  /**
   * The real path of `requested` (relative to the first root) when the task may look at it and it
   * is what the tool wants; else a short refusal for the model that names what it may look at.
   */
  async resolve(requested: unknown, want: 'file' | 'dir' | 'any'): Promise<ScopeAnswer> {
    if (typeof requested !== 'string') return refuse('invalid', 'The path must be a string.');
    const asked = requested.trim() === '' ? '.' : requested;
    if (asked.length > 4096) return refuse('invalid', 'The path is too long.');
    await this.prepare();
    let real: string;
    try {
      real = await resolveInsideRoots(asked, this.roots, { base: this.roots[0], rules: this.rules });
    } catch (error) {
      if (isMonitorError(error) && error.code === 'PATH_OUTSIDE_ROOT')
        return refuse('outside', `"${cut(asked)}" is outside the allowed folders. ${this.hint()}`);
      if (isMonitorError(error) && /NUL/.test(error.message)) return refuse('invalid', 'The path contains a NUL byte.');
      return refuse(
        'missing',
        `No such ${want === 'dir' ? 'folder' : want === 'file' ? 'file' : 'path'}: ${cut(asked)}`,
      );
    }
    let isDir: boolean;
    try {
      const info = await stat(real);
      if (!info.isFile() && !info.isDirectory())
        return refuse('special', `"${cut(asked)}" is not a regular file or folder.`);
      isDir = info.isDirectory();
    } catch {
      return refuse('missing', `No such path: ${cut(asked)}`);
    }
    if (!(await this.allows(real, isDir ? 'dir' : 'file')))
      return refuse('outside', `"${cut(asked)}" is outside this task's paths. ${this.hint()}`);
    const shown = this.show(real);
    if (want === 'file' && isDir) return refuse('not-file', `"${shown}" is a folder: use list_files on it.`);
    if (want === 'dir' && !isDir) return refuse('not-dir', `"${shown}" is a file: use read_file on it.`);
    return { real, shown };
  }

  /**
   * True when `real` (a real absolute path) is inside the roots and the task's paths; a folder
   * (`kind: 'dir'`) also when allowed files may be below it.
   */
  async allows(real: string, kind: 'file' | 'dir' = 'file'): Promise<boolean> {
    const { roots, patterns } = await this.prepare();
    if (!roots.some((root) => isInside(root, real, this.rules))) return false;
    if (patterns === undefined) return true;
    return patterns.some((pattern) => this.matches(pattern, real, kind));
  }

  /** `real` as the model sees it: relative to the first root when inside it, else absolute. */
  show(real: string): string {
    const first = this.realRoots?.[0] ?? this.roots[0];
    if (first === undefined || !isInside(first, real, this.rules)) return real;
    const relative = this.api.relative(first, real);
    return relative === '' ? '.' : relative.split(this.api.sep).join('/');
  }

  /** One sentence: what the agent may look at. */
  hint(): string {
    if (this.roots.length === 0) return 'No folder is allowed.';
    const others = this.roots.length > 1 ? ` or in ${this.roots.slice(1).join(', ')}` : '';
    if (this.paths === undefined)
      return `You may look at any path inside the project folder (relative paths)${others}.`;
    const listed = this.paths.slice(0, 12).join(', ');
    return `You may look at: ${cut(listed, 400)}${this.paths.length > 12 ? ', …' : ''}.`;
  }

  private prepare(): Promise<Prepared> {
    this.prepared ??= (async () => {
      const roots = await resolveRoots(this.roots);
      this.realRoots = roots;
      if (this.paths === undefined) return { roots, patterns: undefined };
      const patterns: Pattern[] = [];
      for (const p of this.paths) for (const single of safeBraces(p)) patterns.push(await this.pattern(single));
      return { roots, patterns };
    })();
    return this.prepared;
  }

  /** A task path as a real folder (its plain leading part, symlinks followed) and the glob segments below. */
  private async pattern(p: string): Promise<Pattern> {
    const absolute = this.api.resolve(this.roots[0] ?? '.', p);
    const segments = absolute.split(this.api.sep);
    const firstMagic = segments.findIndex((s) => MAGIC.test(s));
    const plain = firstMagic === -1 ? absolute : segments.slice(0, firstMagic).join(this.api.sep) || this.api.sep;
    const rest = firstMagic === -1 ? [] : segments.slice(firstMagic).filter((s) => s !== '');
    const base = await realpath(plain).catch(() => plain);
    return { base, rest };
  }

  private matches(pattern: Pattern, real: string, kind: 'file' | 'dir'): boolean {
    // A folder above the pattern's base leads to it.
    if (kind === 'dir' && isInside(real, pattern.base, this.rules)) return true;
    if (!isInside(pattern.base, real, this.rules)) return false;
    const relative = this.api.relative(comparable(pattern.base, this.rules), comparable(real, this.rules));
    const segments = relative === '' ? [] : relative.split(this.api.sep);
    return matchSegments(segments, pattern.rest, { open: kind === 'dir', caseInsensitive: this.rules.caseInsensitive });
  }
}

export interface SegmentMatch {
  /** The path is a folder: true when files below it may still match (every segment of it matched the glob's start). */
  open?: boolean;
  /** Only the path itself matching counts, not a folder above it. */
  exact?: boolean;
  caseInsensitive?: boolean;
}

/**
 * Whether the path's segments match the glob's (`**` any number of segments but dot-folders and
 * node_modules), or, unless `exact`, a folder above the path matches a glob not ending in `**`.
 */
export function matchSegments(segments: readonly string[], glob: readonly string[], how: SegmentMatch = {}): boolean {
  const memo = new Map<number, boolean>();
  const matchers = glob.map((g) => {
    if (g === '**' || !MAGIC.test(g)) return undefined;
    const re = segmentRegExp(g);
    return how.caseInsensitive ? new RegExp(re.source, 'i') : re;
  });
  const same = (a: string, b: string): boolean => (how.caseInsensitive ? a.toLowerCase() === b.toLowerCase() : a === b);
  const go = (i: number, j: number): boolean => {
    const key = i * (glob.length + 1) + j;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let result: boolean;
    // The glob ran out: the path is inside a matched folder, unless a trailing `**` was to cover it.
    if (j === glob.length) result = i === segments.length || (!how.exact && glob[j - 1] !== '**');
    else if (i === segments.length) result = how.open === true || glob.slice(j).every((g) => g === '**');
    else {
      const g = glob[j] ?? '';
      const s = segments[i] ?? '';
      if (g === '**') result = go(i, j + 1) || (!s.startsWith('.') && !SKIPPED_BY_GLOBSTAR.has(s) && go(i + 1, j));
      else result = ((matchers[j]?.test(s) ?? same(s, g)) as boolean) && go(i + 1, j + 1);
    }
    memo.set(key, result);
    return result;
  };
  return go(0, 0);
}

function safeBraces(p: string): string[] {
  try {
    return expandBraces(p);
  } catch {
    return [p];
  }
}

function refuse(kind: RefusalKind, refused: string): { refused: string; kind: RefusalKind } {
  return { refused, kind };
}

function cut(text: string, max = 200): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}
