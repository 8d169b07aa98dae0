import { afterEach, describe, expect, it } from 'vitest';
import { type Connected, connectInMemory } from '../helpers/client.js';
import { callProblems, modelView, suggestedCalls } from '../helpers/model-view.js';
import { e2eWorkers, scriptConfig } from '../helpers/scripts.js';

let open: Connected | undefined;
afterEach(async () => {
  await open?.close();
  open = undefined;
});

async function connect(defaultWaitSeconds?: number): Promise<Connected> {
  open = await connectInMemory(
    await scriptConfig((c) => {
      c.workersDirs = [...c.workersDirs, e2eWorkers];
      if (defaultWaitSeconds !== undefined) c.collect.defaultWaitSeconds = defaultWaitSeconds;
    }),
    { env: { PATH: process.env.PATH } },
  );
  return open;
}

describe("a dispatch tool's job handle", () => {
  it('says what its collect_results call waits as written, and how to wait longer; the calls are valid', async () => {
    const c = await connect();
    const reply = await c.call('run_script_batch', { worker: 'emit.py', inputs: [{ args: ['a', '0'] }] });
    const handle = JSON.parse(modelView(reply)) as { job_id: string; next: string };
    expect(handle.next).toContain(
      'it waits up to 20 s for the job to finish ("wait_seconds": 50 waits up to 50 s), then pages its results',
    );
    const [collect, cancel] = suggestedCalls(handle.next);
    expect(collect).toEqual({ tool: 'collect_results', args: { job_ids: [handle.job_id] } });
    expect(cancel).toEqual({ tool: 'cancel_job', args: { job_id: handle.job_id } });
    for (const suggested of [collect, cancel])
      expect(await callProblems(c.client, suggested ?? { tool: '', args: {} })).toEqual([]);
    // Made as written, the call waits for the job and returns its result.
    const page = JSON.parse(modelView(await c.call(collect?.tool ?? '', collect?.args ?? {}))) as {
      done: boolean;
      results: unknown[];
    };
    expect(page.done).toBe(true);
    expect(page.results).toHaveLength(1);
  });

  it('says the call answers at once when the server waits 0 s by default', async () => {
    const c = await connect(0);
    const reply = await c.call('run_script_batch', { worker: 'emit.py', inputs: [{ args: ['a', '0'] }] });
    const handle = JSON.parse(modelView(reply)) as { next: string };
    expect(handle.next).toContain(
      'it answers at once ("wait_seconds": 50 waits up to 50 s for the job to finish), then pages its results',
    );
  });
});
