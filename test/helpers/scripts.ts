import { LINUX } from '../../src/platform/index.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Config, secretEnvOf } from '../../src/registry.js';
import { silentLogger } from '../../src/log.js';
import { RUN_TOKEN_VAR } from '../../src/pools/script/descendants.js';
import { createScriptInstance } from '../../src/pools/script/instance.js';
import { ScriptPool } from '../../src/pools/script/pool.js';
import type { ProcessControl } from '../../src/processes.js';
import { connectInMemory, jobIdOf, repoRoot, testConfig, testProcesses, type Connected } from './client.js';

export const fixtureWorkers = path.join(repoRoot, 'test', 'fixtures', 'workers');
export const bundledWorkers = path.join(repoRoot, 'workers');
/** emit.py args: [label, exit_code, size, sleep_seconds, first_attempt_sleep_seconds]; nap.py, noop.*, hold.py. */
export const e2eWorkers = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');

/** An in-memory client whose server also lists the e2e fixture workers. */
export async function connectWithE2eWorkers(): Promise<Connected> {
  return connectInMemory(
    await scriptConfig((c) => {
      c.workersDirs = [...c.workersDirs, e2eWorkers];
    }),
    { env: { PATH: process.env.PATH } },
  );
}

/**
 * The test config for script work: the fixture workers as a second folder, the real PATH (so
 * python3 and bash are found as the CLI would find them) and a short kill grace.
 */
export async function scriptConfig(edit: (config: Config) => void = () => {}): Promise<Config> {
  return testConfig((config) => {
    config.workersDirs = [...config.workersDirs, fixtureWorkers];
    config.script.searchPath = process.env.PATH ?? '/usr/bin:/bin';
    config.script.nodePath = process.execPath;
    config.script.killGraceSeconds = 0.5;
    edit(config);
  });
}

/** The script kind's pool as the server builds it (every kind's secret variables kept from its workers). */
export function scriptPool(
  config: Config,
  env: Readonly<Record<string, string | undefined>> = process.env,
  processes: ProcessControl = testProcesses,
): ScriptPool {
  const { pool } = createScriptInstance(config, {
    log: silentLogger,
    env,
    processes,
    platform: LINUX,
    secretEnv: secretEnvOf(config),
    lent: {},
  });
  if (!(pool instanceof ScriptPool)) throw new Error('the script kind builds no ScriptPool');
  return pool;
}

/**
 * True while a process with this pid runs (signal 0 only checks). A zombie counts as gone: it is
 * dead and only waits to be reaped, which for orphans is up to PID 1 and can take seconds.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return !existsSync('/proc/self/stat');
  }
}

/** Polls until `check` holds or `timeoutMs` passes; returns its last answer. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  stepMs = 50,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
}

/** Polls `check` until it holds; throws (saying what was awaited) when `timeoutMs` passes first. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
  stepMs = 50,
): Promise<void> {
  if (!(await eventually(check, timeoutMs, stepMs)))
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** The pids a fixture wrote to `file` (space or newline separated), once the file exists. */
export async function readPids(file: string, timeoutMs = 20_000): Promise<number[]> {
  let text = '';
  const written = await eventually(async () => {
    text = await readFile(file, 'utf8').catch(() => '');
    return text.trim() !== '';
  }, timeoutMs);
  if (!written) throw new Error(`no pids in ${file} after ${timeoutMs} ms`);
  return text.trim().split(/\s+/).map(Number);
}

/** Ends a leftover test process (only ones the test itself caused), ignoring "already gone". */
export function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

// The one paging helper lives in collect.ts; the script tests have always imported it from here.
export { collectAll, type CollectedResult } from './collect.js';

/** Submits a run_script_batch call and returns its job id (throws with the text on isError). */
export async function submitScripts(conn: Connected, args: Record<string, unknown>): Promise<string> {
  const reply = await conn.call('run_script_batch', args);
  if (reply.isError) throw new Error(`run_script_batch failed: ${JSON.stringify(reply.content)}`);
  return jobIdOf(reply);
}

/**
 * Processes (by pid) whose environment carries a monitor-mcp run token that `matches`, read from
 * /proc the way the server itself finds them (see src/pools/script/descendants.ts).
 */
export function processesWithToken(matches: (token: string) => boolean): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || !alive(Number(name))) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${name}/environ`, 'latin1');
    } catch {
      continue;
    }
    const token = environ.split('\0').find((entry) => entry.startsWith(`${RUN_TOKEN_VAR}=`));
    if (token !== undefined && matches(token.slice(RUN_TOKEN_VAR.length + 1))) found.push(Number(name));
  }
  return found;
}

/** The run tokens' server pid (see descendants.ts for the format). */
export const tokenServerPid = (token: string): number => Number(token.split('.')[1]);
