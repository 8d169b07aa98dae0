import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { terminalJson, terminalText, terminalValue } from '../src/terminal.js';
import { connectInMemory, jobIdOf, makeTempDir, repoRoot, testConfig } from './helpers/client.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** What steers a terminal: a window title, a clear screen, the clipboard (OSC 52), C1 CSI, a bidi override. */
const HOSTILE = '\x1b]0;pwned\x07\x1b[2J\x1b]52;c;cHduZWQ=\x07\x9b31m\u202eevil\nsecond line';
/** Any raw control character but the line breaks of our own output. */
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

async function cliRun(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const options = { cwd: repoRoot, timeout: 60_000, env: { ...process.env, ...env } };
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], options);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('terminal escaping', () => {
  it('shows every control character of a value as an escape', () => {
    expect(terminalValue(HOSTILE)).toBe(
      '\\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;cHduZWQ=\\x07\\x9b31m\\u202eevil\\nsecond line',
    );
    expect(terminalValue('tab\there\r\u0000\u007f\u2028\u2066')).toBe('tab\\there\\r\\x00\\x7f\\u2028\\u2066');
    // Printable text, accents and emoji as they are.
    expect(terminalValue('café — 日本 🙂 ok')).toBe('café — 日本 🙂 ok');
  });

  it('keeps the line breaks of a whole output, and JSON stays JSON', () => {
    expect(terminalText(`a\x1b[2J\nb\r\n`)).toBe('a\\x1b[2J\nb\\r\n');
    const json = JSON.stringify({ label: HOSTILE }, null, 2);
    const shown = terminalJson(json);
    expect(shown).not.toMatch(RAW);
    expect(shown).toContain('\\u009b31m\\u202eevil');
    expect(JSON.parse(shown)).toEqual({ label: HOSTILE });
  });

  it('escapes log lines, a message on one line', () => {
    const lines: string[] = [];
    createLogger((line) => lines.push(line)).warn(`worker said ${HOSTILE}`);
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toMatch(RAW);
    expect(lines[0]).toBe(`[monitor-mcp] warn: worker said ${terminalValue(HOSTILE)}\n`);
  });

  it('`monitor-mcp jobs` (table, one job, --json) prints hostile labels and args escaped', async () => {
    const config = await testConfig((c) => c.workersDirs.push(fixtures));
    const m = await connectInMemory(config);
    let jobId: string;
    try {
      const reply = await m.call('run_script_batch', {
        worker: 'emit.py',
        inputs: [{ args: [HOSTILE] }, { args: [`fail ${HOSTILE}`, '1'] }],
        label: HOSTILE,
        wait_seconds: 20,
      });
      jobId = jobIdOf(reply);
      await m.app.engine.waitFor([jobId], 30_000);
    } finally {
      await m.client.close();
      await m.app.close();
    }
    dirs.push(config.stateDir);
    const table = await cliRun(['jobs', '--state-dir', config.stateDir]);
    expect(table.stderr).toBe('');
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(jobId);
    expect(table.stdout).not.toMatch(RAW);
    expect(table.stdout).toContain('\\x1b]0;pwned\\x07');
    const detail = await cliRun(['jobs', jobId, '--state-dir', config.stateDir]);
    expect(detail.code).toBe(0);
    expect(detail.stdout).not.toMatch(RAW);
    expect(detail.stdout).toContain(`[script: ${terminalValue(HOSTILE)}]`);
    // A task's args (its id) and its error, each on its own row.
    expect(detail.stdout).toMatch(/^0\s+succeeded\s.*\\x1b\]0;pwned\\x07/m);
    expect(detail.stdout).toMatch(/^1\s+failed\s.*fail \\x1b\]0;pwned/m);
    expect(detail.stdout).not.toMatch(/^second line/m);
    for (const args of [
      ['jobs', '--json'],
      ['jobs', jobId, '--json'],
    ]) {
      const json = await cliRun([...args, '--state-dir', config.stateDir]);
      expect(json.stdout).not.toMatch(RAW);
      expect(JSON.stringify(JSON.parse(json.stdout))).toContain(JSON.stringify(HOSTILE).slice(1, -1));
    }
  }, 90_000);

  it('`monitor-mcp doctor` and errors on stderr print hostile folder and worker names escaped', async () => {
    const home = await makeTempDir();
    dirs.push(home);
    const xdg = path.join(home, `cfg${HOSTILE}`);
    const userWorkers = path.join(xdg, 'monitor-mcp', 'workers');
    const other = path.join(home, `more\x1b[2J`);
    const worker = `w\x1b]0;pwned\x07.py`;
    for (const dir of [userWorkers, other]) {
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, worker), '# monitor: description: hostile name\nprint("{}")\n');
    }
    const stateDir = path.join(home, `state\x1b]0;pwned\x07`);
    const doctor = await cliRun(
      ['doctor', '--state-dir', stateDir, '--workers-dir', other, '--endpoint', 'http://127.0.0.1:9'],
      {
        XDG_CONFIG_HOME: xdg,
      },
    );
    expect(doctor.stdout).toContain(`user workers folder ${terminalValue(userWorkers)}`);
    expect(doctor.stdout).toContain(terminalValue(stateDir));
    expect(doctor.stdout).not.toMatch(RAW);
    expect(doctor.stderr).not.toMatch(RAW);
    const missing = await cliRun(['jobs', 'job_AAAAAAAAAAAAAAAAAAAAAA', '--state-dir', stateDir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(terminalValue(stateDir));
    expect(missing.stderr).not.toMatch(RAW);
    const unknown = await cliRun([`zap\x1b[2J\x9b`]);
    expect(unknown.stderr).toContain('zap\\x1b[2J\\x9b');
    expect(unknown.stderr).not.toMatch(RAW);
  }, 90_000);
});
