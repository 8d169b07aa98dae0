import type { WorkerKind } from '../kind.js';
import { SCRIPT_ERROR_CODES } from './errors.js';
import { SCRIPT_KIND } from './facts.js';
import type { ScriptServices } from './instance.js';
import { SCRIPT_CONSTRAINTS, SCRIPT_SETTINGS } from './settings.js';

// What the kind's tools use, from here: tools never import a kind's insides.
export { MAX_PACK } from './pack.js';
export { type ScriptTaskInput, scriptTaskInputSchema } from './job-options.js';
export type { WorkerEntry, WorkersFolder } from './catalog.js';
export type { ScriptServices } from './instance.js';

/** Most tasks in one run_script_batch job (inputs, inline or in inputs_file). */
export const SCRIPT_MAX_TASKS = 10_000;

/**
 * The `script` kind: worker scripts (or allowed commands) run once per input in a subprocess pool,
 * each task in its own process group, or served by long-lived warm processes (see warm.ts). Running groups are recorded under the state dir, so the
 * next start ends those of a server that died (see orphans.ts).
 */
export const scriptKind: WorkerKind<typeof SCRIPT_SETTINGS, ScriptServices> = {
  name: SCRIPT_KIND,
  summary: 'worker scripts in a subprocess pool',
  settings: SCRIPT_SETTINGS,
  constraints: SCRIPT_CONSTRAINTS,
  errorCodes: SCRIPT_ERROR_CODES,
  taskCap: () => ({ max: SCRIPT_MAX_TASKS }),
  // The pool and its services load here, after the handshake: not on the way to answering initialize.
  async create(config, deps) {
    const { createScriptInstance } = await import('./instance.js');
    return createScriptInstance(config, deps);
  },
  async doctor(config, deps, report) {
    const { checkScripts } = await import('./doctor.js');
    await checkScripts(config, deps, report);
  },
};
