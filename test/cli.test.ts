import { execFile, spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/client.js';
import { llamaAvailable, startLlama } from './helpers/llama.js';
import { until } from './helpers/scripts.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function cliRun(args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { cwd: repoRoot, timeout: timeoutMs });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A command line as the demo prints it, split as a shell would (double quotes group a word). */
function words(line: string): string[] {
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => m[2] ?? (m[1] ?? '').replace(/\\(["$`])/g, '$1'));
}

/**
 * The demo's "watch it live" commands, run after it as a person copies them: its state directory
 * is still there, `jobs` lists the demo's jobs and `dashboard` serves them.
 */
async function watchAsPrinted(stdout: string): Promise<void> {
  const watch =
    /^Watch it live, in another terminal \(its jobs stay there after the demo\):\n {2}(.+)\n.*\n {2}(.+)\n/m.exec(
      stdout,
    );
  const [dashboardLine, jobsLine] = [watch?.[1] ?? '', watch?.[2] ?? ''];
  const stateDir = /--state-dir (\S+)$/.exec(dashboardLine)?.[1] ?? '';
  expect(stateDir).toMatch(/monitor-demo-/);
  dirs.push(stateDir);
  expect(stdout).toContain(`Remove the folder when done: rm -rf ${stateDir}\n`);
  const jobIds = [...stdout.matchAll(/^ {2}(job_[\w-]{22}) {2}(?:analyze_dependencies|code_stats)\.py$/gm)].map(
    (m) => m[1],
  );
  expect(jobIds).toHaveLength(2);
  // `jobs --watch` as printed, once without --watch (it would redraw until stopped).
  const [jobsCommand = '', ...jobsArgs] = words(jobsLine).filter((word) => word !== '--watch');
  const table = (await run(jobsCommand, jobsArgs, { cwd: repoRoot, timeout: 60_000 })).stdout;
  for (const id of jobIds) expect(table).toMatch(new RegExp(`^${id}\\s+script\\s+demo: \\S+\\s+succeeded\\s`, 'm'));
  const [command = '', ...args] = words(dashboardLine);
  const child = spawn(command, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await until(() => /^Dashboard: \S+\n/.test(out), 'the dashboard to print its URL', 30_000, 50);
    const url = new URL(/^Dashboard: (\S+)/.exec(out)?.[1] ?? '');
    const state = (await (
      await fetch(new URL(`/api/jobs?token=${url.searchParams.get('token') ?? ''}`, url))
    ).json()) as {
      jobs: Array<{ id: string; state: string }>;
    };
    for (const id of jobIds) expect(state.jobs.find((job) => job.id === id)?.state).toBe('succeeded');
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

describe('the monitor-mcp command (built)', () => {
  it('prints help and version', async () => {
    const help = await cliRun(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/monitor-mcp jobs/);
    expect(help.stdout).toMatch(/--state-dir DIR/);
    expect((await cliRun(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    // Asked for anywhere on the line, after a command or other options, help wins over "unknown option".
    for (const args of [
      ['jobs', '--help'],
      ['--state-dir', '/nonexistent/x', '--help'],
      ['jobs', '-h'],
      ['doctor', '--log-level', 'debug', '-h'],
    ]) {
      const late = await cliRun(args);
      expect(late.code, args.join(' ')).toBe(0);
      expect(late.stderr, args.join(' ')).toBe('');
      expect(late.stdout, args.join(' ')).toBe(help.stdout);
    }
    // Six starts of the built CLI: seconds each on a loaded 2-core machine.
  }, 120_000);

  it('fails clearly on an unknown command or option, on stderr', async () => {
    const unknown = await cliRun(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown command "frobnicate"/);
    const badFlag = await cliRun(['jobs', '--nope']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toMatch(/Unknown option --nope/);
    const missingConfig = await cliRun(['jobs', '--config', '/nonexistent/monitor.json']);
    expect(missingConfig.code).toBe(2);
    expect(missingConfig.stderr).toMatch(/Cannot read the config file/);
  }, 120_000);

  // Two jobs over this repo, a sample of them run three ways in rounds, and an LLM job: minutes on a loaded 2-core machine.
  it("the demo (the README's main job) runs end to end, merges real results, measures where its speed-up comes from, and its watch commands work after it", async () => {
    // With the real llama-server where the kit is here, the demo's LLM job runs too.
    const llama = llamaAvailable ? await startLlama(4) : undefined;
    try {
      const demo = await cliRun(['demo', ...(llama ? ['--endpoint', `tiny=${llama.url}`] : [])], 240_000);
      expect(demo.stderr).toBe('');
      expect(demo.code).toBe(0);
      expect(demo.stdout).toMatch(/analyze_dependencies\.py\s+succeeded: (\d+)\/\1 succeeded/);
      expect(demo.stdout).toMatch(/code_stats\.py\s+succeeded: (\d+)\/\1 succeeded/);
      expect(demo.stdout).toMatch(/external packages \(files importing them\): .*zod/);
      expect(demo.stdout).toMatch(/most imported modules of this repo: .*src\/errors\.ts/);
      expect(demo.stdout).toMatch(/peak [2-9]\d* at once/);
      // Its own header lists the tags and its code holds their pattern: no note in this repository.
      expect(demo.stdout).toMatch(/^ {2}python\s+\d+\s+\d+\s+\d+\s+\d+\s+0$/m);
      // The speed-up, measured against a process per task one after another, each way's spread, and where it comes from.
      const duration = String.raw`(?:\d+ ms|[\d.]+ s|\d+ min \d+ s)`;
      const spread = `${duration} \\(${duration} – ${duration}\\)`;
      const gain = String.raw`[\d.]+× \([\d.]+×–[\d.]+×\)`;
      expect(demo.stdout).toMatch(
        new RegExp(
          [
            String.raw`Where the speed-up comes from: 24 of those tasks \(12 a worker\), run each of three ways 3 times, the ways taking turns:`,
            String.raw` {2}a new python3 process per task, one after another, no server\s+${spread}`,
            String.raw` {2}monitor-mcp, warm processes, one task at a time\s+${spread}\s+${gain} from warm processes`,
            String.raw` {2}monitor-mcp, warm processes, both jobs at once, (?:one task|\d+ tasks) at a time each\s+${spread}\s+${gain} from running in parallel on \d+ CPU\(s\)`,
            String.raw` {2}In all ${gain} faster than a process per task one after another: medians of 3 rounds \(min – max\)\.`,
          ].join('\n'),
        ),
      );
      await watchAsPrinted(demo.stdout);
      if (llama)
        expect(demo.stdout).toMatch(
          /Local LLM: tiny serves tiny[\s\S]*merged on the local model \(reduce\): [^\n]*\S[\s\S]*\d+ tokens processed locally for the summaries \(\d+ in, \d+ out/,
        );
      else expect(demo.stdout).toMatch(/the LLM job is skipped/);
    } finally {
      await llama?.stop();
    }
  }, 300_000);
});
