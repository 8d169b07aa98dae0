import { readFile, stat, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { alive, readPids, until } from '../../helpers/scripts.js';
import { useWarmFixture, valueOf } from './warm-runs.js';

/** One warm process (warm-process.ts): replies read from fd 4 however they come, logs from fd 1 and 2, broken replies. */

const fixture = useWarmFixture();
const { firstPid, newJob, pidFile, pidOf, poolOf, run, runAll, warmConfig } = fixture;

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
        message: expect.stringMatching(/replied with id (\d+) to request (\d+)/),
      });
      expect(valueOf(wrongId).warm?.process).not.toBe(valueOf(garbage).warm?.process);
      const next = await run(jobId, 2, { args: ['pid'] });
      expect(next.ok).toBe(true);
      expect(valueOf(next).warm?.process).not.toBe(valueOf(wrongId).warm?.process);
      fixture.pool.jobEnded(jobId);
    });

    it("never takes a reply written before its request arrived: ids can't be guessed", async () => {
      const jobId = newJob();
      const first = await run(jobId, 5, { args: ['forge_next'] });
      expect(first.ok).toBe(true);
      const started = Date.now();
      // The worker answers with the id it guesses (the previous one + 1) before reading this request.
      const next = await run(jobId, 6, { args: ['pid'] });
      expect(next.ok).toBe(false);
      expect(next.error).toMatchObject({
        code: 'WORKER_PROTOCOL',
        message: expect.stringMatching(/replied with id \d+ to request \d+/),
      });
      expect(valueOf(next).json).toBeUndefined();
      expect(Date.now() - started).toBeLessThan(10_000);
      await until(() => !alive(pidOf(first)), 'the forging process to be killed', 10_000);
      fixture.pool.jobEnded(jobId);
    });

    it('fails a reply longer than script.maxTaskOutputBytes with WORKER_PROTOCOL, without holding it', async () => {
      const small = poolOf(await warmConfig((c) => (c.script.maxTaskOutputBytes = 4096)));
      const jobId = newJob();
      const result = await run(jobId, 0, { args: ['big', String(1024 * 1024)] }, { on: small });
      expect(result.error).toMatchObject({
        code: 'WORKER_PROTOCOL',
        message: expect.stringContaining(
          'sent a reply longer than 4096 bytes (script.maxTaskOutputBytes): "{\\"id\\": ',
        ),
      });
      expect((await run(jobId, 1, { args: ['pid'] }, { on: small })).ok).toBe(true);
      await small.close();
    });
  });

  describe('closed pipes', () => {
    it(
      'kills a process that closed its request pipe (fd 3) while idle, without waiting for a task',
      { timeout: 60_000 },
      async () => {
        const jobId = newJob();
        const marker = pidFile('close-requests');
        const first = await run(jobId, 0, { args: ['close_requests', marker] });
        expect(first.ok).toBe(true);
        expect(await firstPid(marker)).toBe(pidOf(first));
        // Well under its idle timeout (5 s) plus the kill grace: noticed, not left to linger.
        await until(() => !alive(pidOf(first)), 'the process without a request pipe to be killed', 4_000);
        expect(fixture.pool.warmProcesses).toBe(0);
        const next = await run(jobId, 1, { args: ['pid'] });
        expect(next.ok).toBe(true);
        expect(valueOf(next).warm?.process).not.toBe(valueOf(first).warm?.process);
        fixture.pool.jobEnded(jobId);
      },
    );

    it(
      'sends the next task to a fresh process at once when the last one closed its request pipe (fd 3) after replying',
      { timeout: 60_000 },
      async () => {
        const jobId = newJob();
        const first = await run(jobId, 0, { args: ['close_requests'] });
        expect(first.ok).toBe(true);
        const started = Date.now();
        const next = await run(jobId, 1, { args: ['pid'] }, { options: { timeout_seconds: 20 } });
        expect(next.ok, JSON.stringify(next.error)).toBe(true);
        expect(pidOf(next)).not.toBe(pidOf(first));
        expect(valueOf(next).warm?.process).not.toBe(valueOf(first).warm?.process);
        expect(Date.now() - started).toBeLessThan(10_000);
        await until(() => !alive(pidOf(first)), 'the process without a request pipe to be ended', 10_000);
        fixture.pool.jobEnded(jobId);
      },
    );

    it(
      'fails a task whose process closed its reply pipe (fd 4) with WORKER_PROTOCOL at once, not TIMEOUT',
      { timeout: 60_000 },
      async () => {
        const jobId = newJob();
        const file = pidFile('close-replies');
        const started = Date.now();
        const result = await run(jobId, 0, { args: ['close_replies', file] }, { options: { timeout_seconds: 20 } });
        const pid = await firstPid(file);
        expect(result.ok).toBe(false);
        expect(result.error).toMatchObject({
          code: 'WORKER_PROTOCOL',
          message: expect.stringContaining('closed its reply pipe (fd 4)'),
          hint: expect.stringContaining('fd 4'),
        });
        expect(Date.now() - started).toBeLessThan(10_000);
        await until(() => !alive(pid), 'the process without a reply pipe to be killed', 10_000);
        const next = await run(jobId, 1, { args: ['pid'] });
        expect(next.ok).toBe(true);
        expect(pidOf(next)).not.toBe(pid);
        fixture.pool.jobEnded(jobId);
      },
    );

    it(
      'fails a task with WORKER_PROTOCOL at once when fresh processes too close fd 3 before reading a request',
      { timeout: 60_000 },
      async () => {
        const jobId = newJob();
        const started = Date.now();
        const result = await run(
          jobId,
          0,
          { args: ['pid'] },
          { options: { timeout_seconds: 20, env: { FIXTURE_MODE: 'no_requests' } } },
        );
        expect(result.error).toMatchObject({
          code: 'WORKER_PROTOCOL',
          message: expect.stringMatching(
            /did not read its request: fd 3 was closed \((EPIPE|ECONNRESET|ERR_STREAM_\w+)\)/,
          ),
          hint: expect.stringContaining('fd 3 (requests)'),
        });
        expect(Date.now() - started).toBeLessThan(10_000);
        await until(() => fixture.pool.warmProcesses === 0, 'both broken processes to be ended', 10_000);
        fixture.pool.jobEnded(jobId);
      },
    );
  });
});
