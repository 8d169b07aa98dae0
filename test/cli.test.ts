import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/client.js';
import { llamaAvailable, startLlama } from './helpers/llama.js';

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

  // Two jobs over this repo, their baseline run one after another, and an LLM job: minutes on a loaded 2-core machine.
  it("the demo (the README's main job) runs end to end, merges real results and measures its baseline", async () => {
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
      // The speed-up it prints is against the same tasks run one after another, measured.
      expect(demo.stdout).toMatch(
        /The same (\d+) tasks one after another, without the server: [\d.]+ s\. Through monitor-mcp, two jobs side by side, submit to last result collected: [\d.]+ s \([\d.]+× on \d+ CPU\(s\)\)/,
      );
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
