import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TaskContext } from '../../../src/engine/types.js';
import { makeTempDir, repoRoot, testProcesses } from '../../helpers/client.js';
import { scriptConfig, scriptPool } from '../../helpers/scripts.js';
import { usePoolFixture, valueOf } from './pool-runs.js';

/** A script task's value (task-value.ts): the envelope (json, text, cut, files.output), stderr_tail, sizes, disk limits. */

const fixture = usePoolFixture();
const run = fixture.run;

describe("a script task's value", () => {
  // Its own timeout: 10 MB through a pipe takes seconds on a loaded machine. (The server's memory
  // meanwhile is a goal of `npm run bench memory`; output.test.ts checks what OutputCapture keeps.)
  it('streams 10 MB of stdout to a file, keeping only a preview in the value', { timeout: 30_000 }, async () => {
    const size = 10 * 1024 * 1024;
    const result = await run('big_output.py', { args: [String(size), '5000'] }, { index: 3 });
    expect(result.ok).toBe(true);
    const value = valueOf(result);
    expect(value.stdout_bytes).toBe(size);
    expect(value).toMatchObject({ cut: true, stderr_cut: true });
    expect(typeof value.text).toBe('string');
    expect((value.text as string).length).toBeLessThanOrEqual(2048);
    expect((value.text as string).startsWith('0123456789abc')).toBe(true);
    expect(value.notes).toEqual([expect.stringContaining(`stdout is ${size} bytes`)]);
    expect(result.files?.output).toBe(path.join(fixture.outputDir, '3.stdout'));
    expect((await stat(result.files?.output ?? '')).size).toBe(size);
    expect(value.stderr_bytes).toBe(5000);
    expect((value.stderr_tail as string).endsWith('eeeeEND\n')).toBe(true);
    expect((await readFile(result.files?.stderr ?? '', 'utf8')).length).toBe(5000);
    // The whole value stays small, whatever the worker printed.
    expect(JSON.stringify(value).length).toBeLessThan(8 * 1024);
  });
  it('writes no file for small output, and one for output between the inline limit and the memory cap', async () => {
    const small = await run('big_output.py', { args: ['100'] }, { index: 11 });
    expect(small.files).toBeUndefined();
    await expect(stat(path.join(fixture.outputDir, '11.stdout'))).rejects.toThrow();

    const middle = await run('big_output.py', { args: ['100000'] }, { index: 12 });
    expect(valueOf(middle)).toMatchObject({ cut: true });
    expect(valueOf(middle).stderr_cut).toBeUndefined();
    expect((await stat(middle.files?.output ?? '')).size).toBe(100000);
  });
  it('decodes invalid UTF-8 lossily and says so; the file keeps the exact bytes', async () => {
    const result = await run('bad_utf8.py', {}, { index: 21 });
    expect(result.ok).toBe(true);
    const value = valueOf(result);
    expect(value.text).toContain('café ok, then bad: \uFFFD');
    expect(value.text).toContain(' end');
    expect(value.stderr_tail).toBe('err \uFFFD\n');
    expect(value.notes).toEqual(
      expect.arrayContaining([
        expect.stringContaining('stdout is not valid UTF-8'),
        expect.stringContaining('stderr is not valid UTF-8'),
      ]),
    );
    expect(value.cut).toBeUndefined();
    const bytes = await readFile(result.files?.output ?? '');
    expect(bytes.includes(Buffer.from([0xff, 0xfe]))).toBe(true);
  });
  it('cuts what a task, and all tasks of a job together, write to disk at their limits, with a note', async () => {
    const cappedPool = async (): Promise<ReturnType<typeof scriptPool>> =>
      scriptPool(
        await scriptConfig((c) => {
          c.allowedRoots = [repoRoot];
          c.script.outputCapBytes = 64 * 1024;
          c.script.inlineBytes = 16 * 1024;
          c.script.maxTaskOutputBytes = 3 * 1024 * 1024;
          c.script.maxJobOutputBytes = 5 * 1024 * 1024;
        }),
        process.env,
        testProcesses,
      );
    const capped = await cappedPool();
    const jobDir = await makeTempDir('monitor-capped-');
    try {
      const task = (index: number, bytes: number): TaskContext => ({
        jobId: 'job_capped',
        index,
        input: { args: [String(bytes), '100'] },
        options: { worker: 'big_output.py', cwd: repoRoot, timeout_seconds: 60 },
        outputDir: jobDir,
        attempt: 1,
        signal: new AbortController().signal,
      });
      // 8 MB from one task: its own limit (3 MB) cuts it.
      const first = await capped.run(task(0, 8 * 1024 * 1024));
      expect(first.ok).toBe(true);
      expect(valueOf(first)).toMatchObject({ stdout_bytes: 8 * 1024 * 1024, files_cut: true });
      expect((await stat(path.join(jobDir, '0.stdout'))).size).toBe(3 * 1024 * 1024);
      expect(String(valueOf(first).notes)).toMatch(
        /cut at the task's limit of 3145728 bytes \(script\.maxTaskOutputBytes\)/,
      );
      // The job has 2 MB left: the next task is cut there, by the job's limit; its stderr gets nothing.
      const second = await capped.run(task(1, 2.5 * 1024 * 1024));
      expect(valueOf(second)).toMatchObject({ files_cut: true });
      expect((await stat(path.join(jobDir, '1.stdout'))).size).toBe(2 * 1024 * 1024);
      expect(String(valueOf(second).notes)).toMatch(/its job's limit of 5242880 bytes \(script\.maxJobOutputBytes\)/);
      // Output that fits in memory is not cut and needs no file.
      const third = await capped.run(task(2, 100));
      expect(third.ok).toBe(true);
      expect(valueOf(third).files_cut).toBeUndefined();
      // A pool started later (a restart) counts what the job's folder already holds.
      const restarted = await cappedPool();
      const fourth = await restarted.run(task(3, 1024 * 1024));
      expect(valueOf(fourth)).toMatchObject({ files_cut: true, stdout_bytes: 1024 * 1024 });
    } finally {
      await rm(jobDir, { recursive: true, force: true });
    }
  });
});
