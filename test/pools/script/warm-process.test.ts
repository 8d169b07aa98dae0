import { readFile, stat, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { readPids } from '../../helpers/scripts.js';
import { useWarmFixture, valueOf } from './warm-runs.js';

/** One warm process (warm-process.ts): replies read from fd 4 however they come, logs from fd 1 and 2, broken replies. */

const fixture = useWarmFixture();
const { newJob, pidFile, poolOf, run, runAll, warmConfig } = fixture;

describe('a warm process', () => {
  describe('framing', () => {
    it('reads a reply written in pieces (cut inside a UTF-8 character)', async () => {
      const jobId = newJob();
      const result = await run(jobId, 0, { args: ['split'] });
      expect(result.ok).toBe(true);
      expect(valueOf(result).json).toEqual({ split: 'é'.repeat(100) });
      fixture.pool.jobEnded(jobId);
    });

    it('takes a 5 MB reply: a preview in the value (cut), all of it in files.output', async () => {
      const jobId = newJob();
      const size = 5 * 1024 * 1024;
      const result = await run(jobId, 3, { args: ['big', String(size)] });
      expect(result.ok).toBe(true);
      const value = valueOf(result);
      expect(value).toMatchObject({ stdout_bytes: size, cut: true });
      expect(value.stderr_cut).toBeUndefined();
      expect((value.text as string).length).toBeLessThanOrEqual(2048);
      expect(value.notes).toEqual([expect.stringContaining(`stdout is ${size} bytes`)]);
      expect((await stat(result.files?.output ?? '')).size).toBe(size);
      expect(JSON.stringify(value).length).toBeLessThan(8 * 1024);
      // The process is fine afterwards.
      expect(valueOf(await run(jobId, 4, { args: ['pid'] })).warm).toEqual({ process: value.warm?.process, task: 2 });
      fixture.pool.jobEnded(jobId);
    });

    it("keeps non-UTF-8 output on fd 1 and 2 as the task's log, decoded lossily with a note", async () => {
      const jobId = newJob();
      const result = await run(jobId, 21, { args: ['bad_utf8'] });
      expect(result.ok).toBe(true);
      const value = valueOf(result);
      expect(value.json).toEqual({ ok: true });
      expect(value.stderr_tail).toContain('café then bad: \uFFFD');
      expect(value.stderr_tail).toContain('err \uFFFD');
      expect(value.notes).toEqual([expect.stringContaining('stderr is not valid UTF-8')]);
      const bytes = await readFile(result.files?.stderr ?? '');
      expect(bytes.includes(Buffer.from([0xff, 0xfe]))).toBe(true);
      fixture.pool.jobEnded(jobId);
    });

    it('takes what a worker prints on stdout mid-task (even a line that looks like a reply) as its log, not as a reply', async () => {
      const jobId = newJob();
      const results = await runAll(jobId, [{ args: ['print'] }, { args: ['print'] }, { args: ['pid'] }], 1);
      for (const result of results.slice(0, 2)) {
        expect(result.ok).toBe(true);
        expect(valueOf(result).json).toEqual({ ok: true });
        expect(valueOf(result).stderr_tail).toContain('"result": "fake"');
        expect(valueOf(result).stderr_tail).toContain('plain line on stdout');
        expect(valueOf(result).stderr_tail).toContain('a line on stderr');
      }
      // Nothing of it leaked into the next task's log.
      expect(valueOf(results[2]).stderr_tail).toBeUndefined();
      expect(new Set(results.map((r) => valueOf(r).warm?.process)).size).toBe(1);
      fixture.pool.jobEnded(jobId);
    });

    it("puts what a process writes while idle into its next task's log", async () => {
      const jobId = newJob();
      const trigger = pidFile('stray-trigger');
      const done = pidFile('stray-done');
      const first = await run(jobId, 0, { args: ['stray_when', trigger, done] });
      expect(valueOf(first).stderr_tail).toBeUndefined();
      await writeFile(trigger, '');
      await readPids(done);
      const second = await run(jobId, 1, { args: ['join'] });
      expect(valueOf(second).warm?.task).toBe(2);
      expect(valueOf(second).stderr_tail).toBe('stray output while idle\n');
      fixture.pool.jobEnded(jobId);
    });
  });

  describe('broken replies', () => {
    it('fails a task with WORKER_PROTOCOL on a reply that is not JSON or answers another request, and replaces the process', async () => {
      const jobId = newJob();
      const garbage = await run(jobId, 0, { args: ['garbage'] });
      expect(garbage.ok).toBe(false);
      expect(garbage.error?.code).toBe('WORKER_PROTOCOL');
      expect(garbage.error?.message).toMatch(
        /^warm_probe\.py \(warm process \d+\) sent a reply that is not (JSON|valid UTF-8): "this is not json \\u0000\uFFFD"; the process was killed/,
      );
      expect(garbage.error?.hint).toContain('fd 4');
      const wrongId = await run(jobId, 1, { args: ['wrong_id'] });
      expect(wrongId.error).toMatchObject({
        code: 'WORKER_PROTOCOL',
        message: expect.stringContaining('replied with id 1001 to request 1'),
      });
      expect(valueOf(wrongId).warm?.process).not.toBe(valueOf(garbage).warm?.process);
      const next = await run(jobId, 2, { args: ['pid'] });
      expect(next.ok).toBe(true);
      expect(valueOf(next).warm?.process).not.toBe(valueOf(wrongId).warm?.process);
      fixture.pool.jobEnded(jobId);
    });

    it('fails a reply longer than script.maxTaskOutputBytes with WORKER_PROTOCOL, without holding it', async () => {
      const small = poolOf(await warmConfig((c) => (c.script.maxTaskOutputBytes = 4096)));
      const jobId = newJob();
      const result = await run(jobId, 0, { args: ['big', String(1024 * 1024)] }, { on: small });
      expect(result.error).toMatchObject({
        code: 'WORKER_PROTOCOL',
        message: expect.stringContaining(
          'sent a reply longer than 4096 bytes (script.maxTaskOutputBytes): "{\\"id\\": 0',
        ),
      });
      expect((await run(jobId, 1, { args: ['pid'] }, { on: small })).ok).toBe(true);
      await small.close();
    });
  });
});
