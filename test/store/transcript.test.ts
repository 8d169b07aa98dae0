import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_TRANSCRIPT_BYTES, readTranscript, TranscriptRefused } from '../../src/store/transcript.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A job folder with its out/ folder, and a file beside the job (outside out/). */
async function jobFolder(): Promise<{ job: string; out: string }> {
  const root = await mkdtemp(path.join(tmpdir(), 'monitor-transcript-'));
  dirs.push(root);
  const job = path.join(root, 'jobs', 'job_x');
  const out = path.join(job, 'out');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(job, 'job.json'), '{"secret": true}\n');
  return { job, out };
}

const jsonl = (lines: unknown[]): string => lines.map((line) => `${JSON.stringify(line)}\n`).join('');

describe('readTranscript', () => {
  it("reads a task's JSONL in its job's output folder, by absolute or relative path; a torn last line is not read", async () => {
    const { out } = await jobFolder();
    const file = path.join(out, '0.transcript.jsonl');
    const lines = [
      { type: 'start', task: 'find the auth checks', model: 'm', tools: ['grep'] },
      { type: 'tool', step: 1, name: 'grep', ok: true, summary: 'grep /auth/ in src (3 matches)' },
    ];
    await writeFile(file, `${jsonl(lines)}not json\n[1,2]\n{"type":"note","step":2,"te`);
    const tail = await readTranscript(out, file);
    expect(tail).toEqual({ lines, cut: false, bytes: expect.any(Number) as number, skipped: 2 });
    expect(await readTranscript(out, '0.transcript.jsonl')).toEqual(tail);
  });

  it('refuses a path outside the output folder, a symlink (to a file or through a folder), a FIFO', async () => {
    const { job, out } = await jobFolder();
    const outside = path.join(job, 'job.json');
    await symlink(outside, path.join(out, 'link.jsonl'));
    await symlink(job, path.join(out, 'up'));
    execFileSync('mkfifo', [path.join(out, 'fifo.jsonl')]);
    for (const file of [
      outside,
      '../job.json',
      '/etc/passwd',
      out,
      '.',
      path.join(out, 'link.jsonl'),
      'up/job.json',
      'fifo.jsonl',
    ])
      await expect(readTranscript(out, file), file).rejects.toBeInstanceOf(TranscriptRefused);
    await expect(readTranscript(out, 'missing.jsonl')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('reads only the end of a large transcript, from its first whole line', async () => {
    const { out } = await jobFolder();
    const file = path.join(out, '1.transcript.jsonl');
    // 4 MB of steps: only the last 256 KB are read.
    const lines = Array.from({ length: 4096 }, (_, step) => ({ type: 'note', step, text: 'x'.repeat(1000) }));
    await writeFile(file, jsonl(lines));
    const tail = await readTranscript(out, file);
    expect(tail.cut).toBe(true);
    expect(tail.skipped).toBe(0);
    expect(tail.bytes).toBeGreaterThan(4_000_000);
    expect(tail.lines.at(-1)).toEqual(lines.at(-1));
    // As many whole lines as the last 256 KB hold: one more would not fit.
    const read = Buffer.byteLength(jsonl(tail.lines));
    expect(read).toBeLessThanOrEqual(MAX_TRANSCRIPT_BYTES);
    expect(read + Buffer.byteLength(jsonl([lines[0]]))).toBeGreaterThan(MAX_TRANSCRIPT_BYTES);
    expect(tail.lines[0]?.step).toBe(4096 - tail.lines.length);
  });
});
