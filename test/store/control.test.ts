import { mkdir, readdir, rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlFiles } from '../../src/store/control.js';
import { StateLayout } from '../../src/store/layout.js';
import { makeTempDir } from '../helpers/client.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('ControlFiles', () => {
  it('hands a request to exactly one of the servers taking it, and its answer back', async () => {
    const stateDir = await makeTempDir();
    dirs.push(stateDir);
    const layout = new StateLayout(stateDir);
    await mkdir(layout.controlDir);
    const control = new ControlFiles(stateDir);
    const request = { action: 'cancel' as const, job_id: 'job_AAAAAAAAAAAAAAAAAAAAAA', at: 't' };
    const files = await control.ask(request, Date.now());
    expect(await control.reply(files.reply)).toBeUndefined();
    const [waiting] = await control.waiting();
    expect(waiting?.request).toEqual(request);
    const name = waiting?.name ?? '';
    const takes = await Promise.all(
      [1, 2].map((pid) => control.take(name, pid, () => Promise.resolve({ ok: true, message: 'done', by_pid: pid }))),
    );
    expect(takes.filter(Boolean)).toHaveLength(1);
    expect(await control.reply(files.reply)).toMatchObject({ ok: true, message: 'done' });
    expect(await control.waiting()).toEqual([]);
    expect(await readdir(layout.controlDir)).toEqual([files.reply.slice(layout.controlDir.length + 1)]);
  });
});
