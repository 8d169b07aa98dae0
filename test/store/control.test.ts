import { execFileSync } from 'node:child_process';
import { lstat, mkdir, open, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { CONTROL_STALE_MS, ControlFiles, REQUEST_STALE_MS } from '../../src/store/control.js';
import { StateLayout } from '../../src/store/layout.js';
import { makeTempDir } from '../helpers/client.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const JOB = 'job_AAAAAAAAAAAAAAAAAAAAAA';

/** A state directory with its control/ folder, and ControlFiles over it whose log lines are kept. */
async function controlFiles(): Promise<{ control: ControlFiles; dir: string; stateDir: string; lines: string[] }> {
  const stateDir = await makeTempDir();
  dirs.push(stateDir);
  const dir = new StateLayout(stateDir).controlDir;
  await mkdir(dir);
  const lines: string[] = [];
  const log = createLogger((line) => lines.push(line), 'debug');
  return { control: new ControlFiles(stateDir, log), dir, stateDir, lines };
}

/** `promise`, or a failure naming `what` once `ms` pass (a FIFO opened for reading blocks for good). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still blocked after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const mkfifo = (file: string): void => {
  execFileSync('mkfifo', [file]);
};
const exists = (file: string): Promise<boolean> =>
  lstat(file).then(
    () => true,
    () => false,
  );
const ago = async (file: string, ms: number): Promise<void> => {
  const when = new Date(Date.now() - ms);
  await utimes(file, when, when);
};

describe('ControlFiles', () => {
  it('hands a request to exactly one of the servers taking it, and its answer back', async () => {
    const { control, dir } = await controlFiles();
    const request = { action: 'cancel' as const, job_id: JOB, at: 't' };
    const files = await control.ask(request, Date.now());
    expect(await control.reply(files.reply)).toBeUndefined();
    const [waiting] = await control.waiting(1);
    expect(waiting?.request).toEqual(request);
    const name = waiting?.name ?? '';
    const takes = await Promise.all(
      [1, 2].map((pid) => control.take(name, pid, () => Promise.resolve({ ok: true, message: 'done', by_pid: pid }))),
    );
    expect(takes.filter(Boolean)).toHaveLength(1);
    expect(await control.reply(files.reply)).toMatchObject({ ok: true, message: 'done' });
    expect(await control.waiting(1)).toEqual([]);
    expect(await readdir(dir)).toEqual([path.basename(files.reply)]);
  });

  it.skipIf(process.platform === 'win32')(
    'never opens a FIFO, in place of a request or of a reply: the request one is removed once, said in the log',
    async () => {
      const { control, dir, lines } = await controlFiles();
      mkfifo(path.join(dir, 'req-fifo.json'));
      mkfifo(path.join(dir, 'req-other.reply.json'));
      expect(await within(control.waiting(1), 5000, 'waiting() over a FIFO')).toEqual([]);
      expect(await within(control.reply(path.join(dir, 'req-other.reply.json')), 5000, 'reply() of a FIFO')).toBe(
        undefined,
      );
      expect(await exists(path.join(dir, 'req-fifo.json'))).toBe(false);
      expect(lines.filter((line) => line.includes('req-fifo.json'))).toEqual([
        expect.stringMatching(/warn: control: removed .*req-fifo\.json: it is a FIFO, not a regular file/) as string,
      ]);
      // Gone for good: the next look neither reads nor logs it again.
      expect(await control.waiting(1)).toEqual([]);
      expect(lines.filter((line) => line.includes('req-fifo.json'))).toHaveLength(1);
    },
    20_000,
  );

  it.skipIf(process.platform === 'win32')(
    'reads no request through a symlink (to /dev/zero or to a good request) and no huge one: each removed once',
    async () => {
      const { control, dir, stateDir, lines } = await controlFiles();
      const elsewhere = path.join(stateDir, 'planted.json');
      await writeFile(elsewhere, JSON.stringify({ action: 'cancel', job_id: JOB, at: 't' }));
      await symlink('/dev/zero', path.join(dir, 'req-zero.json'));
      await symlink(elsewhere, path.join(dir, 'req-link.json'));
      // 300 MB, sparse: costs no disk, but a whole read would cost the server 300 MB and more.
      const big = await open(path.join(dir, 'req-big.json'), 'w');
      await big.truncate(300 * 1024 * 1024);
      await big.close();
      const before = process.memoryUsage().rss;
      expect(await within(control.waiting(1), 10_000, 'waiting() over /dev/zero and 300 MB')).toEqual([]);
      expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
      expect(await readdir(dir)).toEqual([]);
      // The symlinks themselves went, not what they point at.
      expect(await exists(elsewhere)).toBe(true);
      expect(lines.join('')).toMatch(/removed .*req-zero\.json: it is a symlink/);
      expect(lines.join('')).toMatch(/removed .*req-link\.json: it is a symlink/);
      expect(lines.join('')).toMatch(/removed .*req-big\.json: it is 314572800 bytes, over the 4096/);
    },
    30_000,
  );

  it.skipIf(process.platform === 'win32')(
    "writes a reply over a symlink planted in its place, never into the symlink's target",
    async () => {
      const { control, dir, stateDir } = await controlFiles();
      const victim = path.join(stateDir, 'victim.txt');
      await writeFile(victim, 'precious');
      await symlink(victim, path.join(dir, 'req-s.reply.json'));
      await writeFile(path.join(dir, 'req-s.json'), JSON.stringify({ action: 'cancel', job_id: JOB, at: 't' }));
      const [waiting] = await control.waiting(1);
      expect(waiting?.name).toBe('req-s.json');
      expect(await control.take('req-s.json', 1, () => Promise.resolve({ ok: true, message: 'done', by_pid: 1 }))).toBe(
        true,
      );
      expect(await readFile(victim, 'utf8')).toBe('precious');
      expect((await lstat(path.join(dir, 'req-s.reply.json'))).isFile()).toBe(true);
      expect(await control.reply(path.join(dir, 'req-s.reply.json'))).toEqual({ ok: true, message: 'done', by_pid: 1 });
    },
  );

  it('answers a request for anything but cancel or resume with a refusal saying so, once, and never hands it on', async () => {
    const { control, dir, lines } = await controlFiles();
    await writeFile(path.join(dir, 'req-z.json'), JSON.stringify({ action: 'zzz-delete', job_id: JOB, at: 't' }));
    await writeFile(path.join(dir, 'req-n.json'), '{"action": "resume", "job_id": ');
    // Not JSON, and past the few seconds a writer could still be at it.
    await ago(path.join(dir, 'req-n.json'), 5000);
    await writeFile(path.join(dir, 'req-j.json'), JSON.stringify({ action: 'resume', job_id: '../../etc', at: 't' }));
    expect(await control.waiting(7)).toEqual([]);
    const refusal = await control.reply(path.join(dir, 'req-z.reply.json'));
    expect(refusal).toMatchObject({ ok: false, by_pid: 7 });
    expect(refusal?.message).toMatch(/^Refused: action: .*\("zzz-delete" is no action: only cancel and resume are\)/);
    expect((await control.reply(path.join(dir, 'req-n.reply.json')))?.message).toMatch(/^Refused: not JSON/);
    expect((await control.reply(path.join(dir, 'req-j.reply.json')))?.message).toMatch(
      /^Refused: job_id: not a job id/,
    );
    expect((await readdir(dir)).sort()).toEqual(['req-j.reply.json', 'req-n.reply.json', 'req-z.reply.json']);
    expect(lines.filter((line) => line.includes('refused'))).toHaveLength(3);
    expect(await control.waiting(7)).toEqual([]);
    expect(lines.filter((line) => line.includes('refused'))).toHaveLength(3);
  });

  it('leaves a request that is not JSON yet for a moment: it may still be being written', async () => {
    const { control, dir } = await controlFiles();
    await writeFile(path.join(dir, 'req-w.json'), '');
    expect(await control.waiting(1)).toEqual([]);
    expect(await readdir(dir)).toEqual(['req-w.json']);
  });

  it('removes requests nobody took and replies nobody read, past their bounds, and leaves the rest', async () => {
    const { control, dir, lines } = await controlFiles();
    const request = JSON.stringify({ action: 'cancel', job_id: JOB, at: 't' });
    const files: Record<string, number> = {
      'req-old.json': REQUEST_STALE_MS + 5000,
      'req-new.json': 0,
      'req-old.reply.json': CONTROL_STALE_MS + 5000,
      'req-new.reply.json': REQUEST_STALE_MS + 5000,
      'req-x.taken-99': CONTROL_STALE_MS + 5000,
      'junk.txt': CONTROL_STALE_MS + 5000,
    };
    for (const [name, age] of Object.entries(files)) {
      await writeFile(path.join(dir, name), request);
      await ago(path.join(dir, name), age);
    }
    await mkdir(path.join(dir, 'req-dir.json'));
    await control.sweep();
    expect((await readdir(dir)).sort()).toEqual(['req-dir.json', 'req-new.json', 'req-new.reply.json']);
    expect(lines.filter((line) => line.includes('control: removed'))).toHaveLength(4);
    expect(lines.join('')).toMatch(/req-dir\.json is a directory/);
    // A request past its bound is not acted on late even before a sweep.
    await writeFile(path.join(dir, 'req-late.json'), request);
    await ago(path.join(dir, 'req-late.json'), REQUEST_STALE_MS + 5000);
    expect((await control.waiting(1)).map((found) => found.name)).toEqual(['req-new.json']);
    expect(await exists(path.join(dir, 'req-late.json'))).toBe(false);
    // The directory is said once.
    await control.sweep();
    expect(lines.filter((line) => line.includes('is a directory'))).toHaveLength(1);
  });
});
