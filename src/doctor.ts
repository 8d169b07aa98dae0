import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { Config } from './config.js';
import { errorText } from './errors.js';
import { silentLogger, type Logger } from './log.js';
import { LlmService, modelMatches, type EndpointReport } from './pools/llm/service.js';
import { InterpreterResolver } from './pools/script/interpreters.js';

export interface DoctorDeps {
  /** Receives each line of the report, newline included. */
  write(line: string): void;
  /** For endpoint tokens and the python probe; never printed. */
  env: Readonly<Record<string, string | undefined>>;
  log?: Logger;
}

type Verdict = 'ok' | 'warn' | 'fail';

const MARK: Record<Verdict, string> = { ok: '[ok]  ', warn: '[warn]', fail: '[FAIL]' };

/**
 * `monitor-mcp doctor`: checks every LLM endpoint (and lists its models), python3, the workers
 * folders, the allowed folders and the state directory, and says what to fix. Exit code 0 when
 * nothing failed (warnings allowed), 1 otherwise.
 */
export async function runDoctor(config: Config, deps: DoctorDeps): Promise<number> {
  const log = deps.log ?? silentLogger;
  let failures = 0;
  let warnings = 0;
  const say = (verdict: Verdict, text: string, fix?: string): void => {
    if (verdict === 'fail') failures++;
    if (verdict === 'warn') warnings++;
    deps.write(`${MARK[verdict]} ${text}\n`);
    if (fix) deps.write(`       fix: ${fix}\n`);
  };
  const detail = (text: string): void => deps.write(`       ${text}\n`);

  deps.write('LLM endpoints\n');
  const llm = new LlmService(config, { log, env: deps.env });
  try {
    const reports = await llm.report(AbortSignal.timeout(15_000));
    for (const report of reports) checkEndpoint(report, say, detail);
    const wanted = config.llm.defaultModel;
    if (wanted !== undefined) {
      const servedBy = reports.filter((r) => (r.configuredModels ?? r.models.map((m) => m.id)).some((id) => modelMatches(wanted, id)));
      if (servedBy.length > 0) say('ok', `default model ${wanted} is served by ${servedBy.map((r) => r.name).join(', ')}`);
      else say('fail', `default model ${wanted} is not listed by any reachable endpoint`, 'Download it (`lms get <model>`), or change --model / "llm.defaultModel".');
    }
  } finally {
    await llm.close();
  }

  deps.write('Python\n');
  await checkPython(config, deps, log, say);

  deps.write('Folders\n');
  for (const dir of config.workersDirs) {
    try {
      const names = (await readdir(dir)).filter((n) => !n.startsWith('.') && !n.startsWith('_'));
      say('ok', `workers folder ${dir} (${names.length} entries)`);
    } catch (error) {
      say('fail', `workers folder ${dir} is not readable: ${errorMessage(error)}`, 'Create it, or remove it from --workers-dir / "workersDirs".');
    }
  }
  for (const root of config.allowedRoots) {
    const info = await stat(root).catch(() => undefined);
    if (info?.isDirectory()) say('ok', `allowed folder ${root}`);
    else say('fail', `allowed folder ${root} does not exist`, 'Fix --root / "allowedRoots" (paths and globs must stay inside these folders).');
  }
  await checkStateDir(config.stateDir, say);

  deps.write(failures === 0 ? `All checks passed${warnings > 0 ? ` (${warnings} warning(s))` : ''}.\n` : `${failures} check(s) failed${warnings > 0 ? `, ${warnings} warning(s)` : ''}: see "fix" above.\n`);
  return failures === 0 ? 0 : 1;
}

type Say = (verdict: Verdict, text: string, fix?: string) => void;

function checkEndpoint(report: EndpointReport, say: Say, detail: (text: string) => void): void {
  const where = `${report.name} (${report.flavor}, ${report.url}, concurrency ${report.concurrency})`;
  if (report.error || !report.reachable) {
    const code = report.error?.code ?? 'ERROR';
    const message = report.error?.message ?? 'no answer';
    // Reachable = an HTTP answer came back: a 401 means "there, but refused", not "down".
    const state = !report.reachable ? `not reachable: ${message}` : `reachable, ${code === 'AUTH_REQUIRED' ? 'refused' : 'but answered with an error'} (${code}): ${message}`;
    say('fail', `${where}: ${state}`, report.error?.hint);
    return;
  }
  const llms = report.models.filter((m) => m.type === undefined || m.type === 'llm' || m.type === 'vlm');
  const loaded = llms.filter((m) => m.state === 'loaded');
  const knowsState = llms.some((m) => m.state !== undefined);
  const tokenNote = report.tokenEnv ? (report.tokenSet ? `; token from ${report.tokenEnv}` : '') : '';
  say('ok', `${where}: reachable, ${report.models.length} model(s)${knowsState ? `, ${loaded.length} LLM(s) loaded` : ''}${tokenNote}`);
  for (const model of report.models) {
    const facts = [model.type, model.state, model.contextLength ? `context ${model.contextLength}` : undefined].filter((f) => f !== undefined);
    detail(`- ${model.id}${facts.length > 0 ? ` (${facts.join(', ')})` : ''}`);
  }
  if (llms.length === 0) say('warn', `${report.name} lists no LLM`, 'Download one (LM Studio: Discover tab, or `lms get <model>`).');
  else if (knowsState && loaded.length === 0) {
    say('warn', `${report.name} has no LLM loaded: lmstudio_complete needs \`model\` (loaded just in time) or a default model`, 'Load one with `lms load <model>` or in the Developer tab, or set --model.');
  }
}

async function checkPython(config: Config, deps: DoctorDeps, log: Logger, say: Say): Promise<void> {
  const name = config.script.interpreters['.py'] ?? 'python3';
  const resolver = new InterpreterResolver({ searchPath: config.script.searchPath, nodePath: config.script.nodePath, env: deps.env, log });
  let executable: string;
  try {
    executable = await resolver.resolve(name);
  } catch (error) {
    say('fail', `${name} not found: ${errorMessage(error)}`, 'Install Python 3 (python.org, your package manager or pyenv), or set "script.interpreters" {".py": "/path/to/python3"} in the config file.');
    return;
  }
  const result = await execa(executable, ['--version'], { reject: false, timeout: 15_000, stdin: 'ignore', env: { ...deps.env }, extendEnv: false });
  const version = `${String(result.stdout ?? '')} ${String(result.stderr ?? '')}`.trim();
  if (result.exitCode === 0 && /^Python 3\./.test(version)) say('ok', `${version} at ${executable}`);
  else if (result.exitCode === 0) say('warn', `${executable} reports "${version}"; worker scripts expect Python 3`, 'Point ".py" at a Python 3 interpreter in "script.interpreters".');
  else say('fail', `${executable} --version failed (exit ${String(result.exitCode)}): ${version.slice(0, 200)}`, 'Repair or reinstall that Python, or point ".py" at another interpreter.');
}

async function checkStateDir(stateDir: string, say: Say): Promise<void> {
  const probe = path.join(stateDir, `.doctor-${randomBytes(6).toString('hex')}`);
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFile(probe, 'ok');
    await rm(probe, { force: true });
    say('ok', `state directory ${stateDir} is writable`);
  } catch (error) {
    say('fail', `state directory ${stateDir} is not writable: ${errorMessage(error)}`, 'Fix its permissions, or choose another with --state-dir / MONITOR_STATE_DIR.');
  }
}

function errorMessage(error: unknown): string {
  return errorText(error).split('\n')[0] ?? '';
}
