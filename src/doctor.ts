import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Config, doctorKinds } from './registry.js';
import { errorText } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import type { DoctorReport } from './pools/kind.js';
import { LINUX, type Platform } from './platform/index.js';
import { terminalValue as shown } from './terminal.js';

export interface DoctorDeps {
  /** Receives each line of the report, newline included. */
  write(line: string): void;
  /** For endpoint tokens and interpreter probes; never printed. */
  env: Readonly<Record<string, string | undefined>>;
  log?: Logger;
  /** The system it runs on (Linux when not given). */
  platform?: Platform;
}

/** How long all checks together may take (endpoints that do not answer are reported as such). */
const DOCTOR_TIMEOUT_MS = 15_000;

/**
 * `monitor-mcp doctor`: each worker kind checks what it needs (interpreters and workers folders,
 * LLM endpoints and their models, …), then the allowed folders and the state directory, and says
 * what to fix. Exit code 0 when nothing failed (warnings allowed), 1 otherwise.
 */
export async function runDoctor(config: Config, deps: DoctorDeps): Promise<number> {
  let failures = 0;
  let warnings = 0;
  // Each report item is one line: the paths, worker names and server messages in it are escaped
  // (a value's own newline shows as \n), so nothing from outside steers the terminal.
  const line = (mark: string, text: string, fix?: string): void => {
    deps.write(`${mark} ${shown(text)}\n`);
    if (fix) deps.write(`       fix: ${shown(fix)}\n`);
  };
  const report: DoctorReport = {
    section: (title) => deps.write(`${shown(title)}\n`),
    ok: (text) => line('[ok]  ', text),
    warn: (text, fix) => {
      warnings++;
      line('[warn]', text, fix);
    },
    fail: (text, fix) => {
      failures++;
      line('[FAIL]', text, fix);
    },
    detail: (text) => deps.write(`       ${shown(text)}\n`),
  };

  const signal = AbortSignal.timeout(DOCTOR_TIMEOUT_MS);
  await doctorKinds(
    config,
    { log: deps.log ?? silentLogger, env: deps.env, platform: deps.platform ?? LINUX },
    report,
    signal,
  );

  report.section('Folders');
  for (const root of config.allowedRoots) {
    const info = await stat(root).catch(() => undefined);
    if (info?.isDirectory()) report.ok(`allowed folder ${root}`);
    else
      report.fail(
        `allowed folder ${root} does not exist`,
        'Fix --root / "allowedRoots" (paths and globs must stay inside these folders).',
      );
  }
  await checkStateDir(config.stateDir, report);

  deps.write(
    failures === 0
      ? `All checks passed${warnings > 0 ? ` (${warnings} warning(s))` : ''}.\n`
      : `${failures} check(s) failed${warnings > 0 ? `, ${warnings} warning(s)` : ''}: see "fix" above.\n`,
  );
  return failures === 0 ? 0 : 1;
}

async function checkStateDir(stateDir: string, report: DoctorReport): Promise<void> {
  const probe = path.join(stateDir, `.doctor-${randomBytes(6).toString('hex')}`);
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFile(probe, 'ok');
    await rm(probe, { force: true });
    report.ok(`state directory ${stateDir} is writable`);
  } catch (error) {
    report.fail(
      `state directory ${stateDir} is not writable: ${errorText(error).split('\n')[0] ?? ''}`,
      'Fix its permissions, or choose another with --state-dir / MONITOR_STATE_DIR.',
    );
  }
}
