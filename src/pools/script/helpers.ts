import path from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * The bundled helpers every worker may import wherever it lives: `_common.py` (Python's serve loop
 * and safe reads) and `_serve.mjs` (Node's serve loop), both in the bundled workers folder. Python
 * finds `_common` through PYTHONPATH; ESM has no search path, so a Node worker imports the file URL
 * the server hands it in MONITOR_SERVE.
 */
export const PYTHON_HELPER = '_common';
export const NODE_HELPER = '_serve.mjs';
export const SERVE_VAR = 'MONITOR_SERVE';

/** How a worker's launch reaches the helpers (absent for commands, and where no helpers folder is known). */
export interface HelperAccess {
  /** The bundled workers folder. */
  dir: string;
  /** PYTHONPATH's separator on this system. */
  delimiter: string;
  /**
   * An isolated Python worker outside the bundled folder: instead of `-E` (which would ignore
   * PYTHONPATH too) it starts without any PYTHON* variable but the helpers' PYTHONPATH.
   */
  isolatedEnv: boolean;
}

/** The job's environment with the helpers reachable: the folder first on PYTHONPATH, `_serve.mjs`'s URL in MONITOR_SERVE. */
export function addHelperEnv(env: Record<string, string>, helpers: HelperAccess | undefined): void {
  if (helpers === undefined) return;
  if (helpers.isolatedEnv) {
    for (const name of Object.keys(env)) if (name.toUpperCase().startsWith('PYTHON')) delete env[name];
  }
  // Windows names variables in any case (PythonPath): one entry, whatever its case was.
  const key = Object.keys(env).find((name) => name.toUpperCase() === 'PYTHONPATH');
  const existing = key === undefined ? undefined : env[key];
  if (key !== undefined) delete env[key];
  // Prepended: a worker's own folder still comes first (Python puts it before PYTHONPATH), and the user's entries stay.
  env.PYTHONPATH = existing ? `${helpers.dir}${helpers.delimiter}${existing}` : helpers.dir;
  env[SERVE_VAR] = pathToFileURL(path.join(helpers.dir, NODE_HELPER)).href;
}

const PYTHON_MISSING = new RegExp(`No module named '${PYTHON_HELPER}'`);

/**
 * What to do when a worker failed because it could not import a bundled helper (seen in its
 * stderr), or undefined when that is not why it failed.
 */
export function missingHelperHint(stderrTail: unknown, helpers: HelperAccess | undefined): string | undefined {
  if (typeof stderrTail !== 'string') return undefined;
  const where = helpers?.dir ?? 'the bundled workers/ folder';
  if (PYTHON_MISSING.test(stderrTail)) {
    return `The worker imports ${PYTHON_HELPER}, the bundled helper module (${path.join(where, `${PYTHON_HELPER}.py`)}). The server puts that folder on PYTHONPATH for every worker; this one's interpreter did not read it (a #! line or interpreter with -E or -I?). The user can drop that flag (declare "# monitor: isolated: yes" instead), or copy ${PYTHON_HELPER}.py next to the worker; then resume_job with include_failed: true.`;
  }
  if (stderrTail.includes('ERR_MODULE_NOT_FOUND') && stderrTail.includes(NODE_HELPER)) {
    return `The worker imports ${NODE_HELPER} by a path where it is not: the bundled one is in ${where}. A worker outside that folder imports it as \`const { serve, fail } = await import(process.env.${SERVE_VAR});\` (the server sets ${SERVE_VAR} to its file URL; \`monitor-mcp new-worker NAME --node\` writes such a worker). Then resume_job with include_failed: true.`;
  }
  return undefined;
}
