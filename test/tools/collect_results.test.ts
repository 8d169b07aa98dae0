import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Connected, connectInMemory, jobIdOf, repoRoot, testConfig, textOf } from '../helpers/client.js';
import { collectAll } from '../helpers/collect.js';
import { until } from '../helpers/scripts.js';
import { callProblems, modelView, type SuggestedCall, suggestedCalls } from '../helpers/model-view.js';

const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
let open: Connected | undefined;
afterEach(async () => {
  await open?.close();
  open = undefined;
});

async function connect(): Promise<Connected> {
  open = await connectInMemory(await testConfig((c) => c.workersDirs.push(fixtures)));
  return open;
}

interface Page {
  jobs: Array<{ state: string; counts: Record<string, number> }>;
  results: Array<{
    index: number;
    state: string;
    value?: { json?: { label: string; pad: string } };
    error?: { code: string };
  }>;
  next_cursor?: string;
  remaining: number;
  next: string;
  done: boolean;
  merged?: unknown;
}
const page = (r: { structuredContent?: unknown }): Page => r.structuredContent as Page;

async function submit(m: Connected, inputs: unknown[], concurrency = 4): Promise<string> {
  const reply = await m.call('run_script_batch', { worker: 'emit.py', inputs, concurrency });
  expect(reply.isError, textOf(reply)).toBeFalsy();
  return jobIdOf(reply);
}

describe('collect_results', () => {
  it('pages within the budget, and the cursor walks every result exactly once', async () => {
    const m = await connect();
    const jobId = await submit(
      m,
      Array.from({ length: 12 }, (_, i) => ({ args: [`r${i}`, '0', '900'] })),
    );
    const { results, pages } = await collectAll<Page['results'][number]>(m, jobId, {
      waitSeconds: 30,
      budgetTokens: 1000,
      onReply: (reply, p) => {
        // Each copy (text, structuredContent) fits the budget; the one a model gets is filled close to it.
        const structured = JSON.stringify(reply.structuredContent).length;
        expect(Math.max(textOf(reply).length, structured)).toBeLessThanOrEqual(1000 * 4);
        if (p.remaining > 0) expect(structured).toBeGreaterThan(1000 * 4 * 0.6);
      },
    });
    const seen = results.map((r) => r.value?.json?.label ?? '?');
    expect(pages).toBeGreaterThan(2);
    expect(seen.sort()).toEqual(Array.from({ length: 12 }, (_, i) => `r${i}`).sort());
  });

  it('fills a default page to about what the model receives: the budget in characters, counted once', async () => {
    const m = await connect();
    const jobId = await submit(
      m,
      Array.from({ length: 60 }, (_, i) => ({ args: [`f${i}`, '0', '1000'] })),
    );
    const reply = await m.call('collect_results', { job_ids: [jobId], wait_seconds: 30 });
    const received = JSON.stringify(reply.structuredContent).length;
    // 8,000 tokens ≈ 32,000 characters: most of it reaches the model, and no copy passes it.
    expect(received).toBeGreaterThan(32_000 * 0.9);
    expect(received).toBeLessThanOrEqual(32_000);
    expect(textOf(reply).length).toBeLessThanOrEqual(32_000);
    expect(page(reply).remaining).toBeGreaterThan(0);
  });

  it('says in next what to do: page on, wait for newer results, look at the failures, or that all is shown', async () => {
    const m = await connect();
    const running = await submit(m, [{ args: ['quick', '0', '0'] }, { args: ['later', '0', '0', '2'] }], 2);
    const polling = page(await m.call('collect_results', { job_ids: [running], wait_seconds: 0.5 }));
    expect(polling.next).toMatch(/still running .* call collect_results with \{"job_ids":\[.*\],"cursor":"c2\./);
    const failing = await submit(m, [{ args: ['ok', '0', '0'] }, { args: ['bad', '4', '0'] }]);
    const done = page(await m.call('collect_results', { job_ids: [failing], wait_seconds: 30 }));
    expect(done.done).toBe(true);
    expect(done.next).toBe(
      `1 task(s) failed: collect_results with {"job_ids":["${failing}"],"filter":"failed"} shows only those; once the cause is fixed, resume_job with {"job_id":"${failing}","include_failed":true} runs them again.`,
    );
    for (const suggested of suggestedCalls(done.next)) expect(await callProblems(m.client, suggested)).toEqual([]);
    const finished = page(
      await m.call('collect_results', { job_ids: [running], wait_seconds: 30, cursor: polling.next_cursor }),
    );
    expect(finished.next).toBe('Every result has been shown; the job(s) are finished.');
  });

  it(
    "keeps the caller's budget_tokens, merge and filter in every call next suggests, each valid as written",
    { timeout: 90_000 },
    async () => {
      const m = await connect();
      const jobId = await submit(
        m,
        [
          ...Array.from({ length: 8 }, (_, i) => ({ args: [`b${i}`, '0', '600'] })),
          { args: ['broken', '3', '0'] },
          { args: ['slow', '0', '0', '10'] },
        ],
        10,
      );
      const exact = async (next: string): Promise<SuggestedCall> => {
        const [first] = suggestedCalls(next);
        if (!first) throw new Error(`no call in: ${next}`);
        expect(await callProblems(m.client, first), next).toEqual([]);
        return first;
      };
      const options = { merge: 'json', budget_tokens: 400 };
      // Once the quick tasks are done (the slow one is not), more is ready than a 400-token page holds.
      await until(async () => {
        const listed = (await m.call('list_jobs', {})).structuredContent as unknown as Page;
        const counts = listed.jobs[0]?.counts ?? {};
        return (counts.succeeded ?? 0) + (counts.failed ?? 0) >= 9;
      }, 'the quick tasks');
      let reply = page(await m.call('collect_results', { job_ids: [jobId], wait_seconds: 0, ...options }));
      const variants = new Set<string>();
      for (let i = 0; i < 30; i++) {
        const suggested = await exact(reply.next);
        expect(suggested.args).toMatchObject({ job_ids: [jobId], ...options });
        if (reply.remaining > 0) {
          variants.add(reply.done ? 'ready' : 'ready while running');
          // Ready results need no wait while a job runs: the call says so.
          if (!reply.done) expect(suggested.args.wait_seconds).toBe(0);
        } else if (!reply.done) {
          variants.add('newer');
          expect(reply.next).toMatch(/it waits up to 20 s for them to finish \("wait_seconds": 50 waits up to 50 s\)/);
        } else {
          variants.add('failed');
          expect(suggested.args).toMatchObject({ filter: 'failed' });
          const failed = page(await m.call(suggested.tool, suggested.args));
          expect(failed.merged).toEqual([
            {
              id: 'broken 3 0',
              error: { code: 'NON_ZERO_EXIT', message: expect.stringContaining('code 3') as string },
            },
          ]);
          break;
        }
        reply = page(await m.call(suggested.tool, suggested.args));
      }
      expect(variants).toContain('ready while running');
      expect(variants).toContain('newer');
      expect(variants).toContain('failed');
    },
  );

  it('a merged page says each result once: no list of ids and states beside merged', async () => {
    const m = await connect();
    const jobId = await submit(m, [
      { args: ['ok1', '0', '0'] },
      { args: ['bad', '3', '0'] },
      { args: ['big', '0', '200000'] },
    ]);
    const listed = await m.call('collect_results', { job_ids: [jobId], wait_seconds: 30 });
    const json = await m.call('collect_results', { job_ids: [jobId], merge: 'json' });
    const seen = JSON.parse(modelView(json)) as Page;
    expect(seen.results).toBeUndefined();
    expect(seen.jobs[0]?.counts).toMatchObject({ succeeded: 2, failed: 1 });
    const pieces = seen.merged as Array<{ id: string; error?: unknown; files?: Record<string, string> }>;
    // A failure is told by its id and error; a large output by the file that holds it whole.
    expect(pieces.find((p) => p.id === 'bad 3 0')?.error).toMatchObject({ code: 'NON_ZERO_EXIT' });
    expect(pieces.find((p) => p.id === 'big 0 200000')?.files?.output).toMatch(/\S/);
    expect(pieces.find((p) => p.id === 'ok1 0 0')).not.toHaveProperty('files');
    // Merged, the model receives less than the list of the same results.
    expect(modelView(json).length).toBeLessThan(modelView(listed).length);
    const text = page(await m.call('collect_results', { job_ids: [jobId], merge: 'text' }));
    expect(text.results).toBeUndefined();
    expect(text.merged).toMatch(/--- big 0 200000 \(#2, succeeded, files \{"output":"[^"]+"\}\) ---\n/);
  });

  it('cuts one result larger than the page instead of dropping it', async () => {
    const m = await connect();
    const jobId = await submit(m, [{ args: ['huge', '0', '200000'] }]);
    const reply = await m.call('collect_results', { job_ids: [jobId], wait_seconds: 30, budget_tokens: 500 });
    const text = textOf(reply);
    expect(Math.max(text.length, JSON.stringify(reply.structuredContent).length)).toBeLessThanOrEqual(500 * 4);
    expect(text).toMatch(/cut to fit the page/);
    expect(page(reply).results).toHaveLength(1);
    for (const merge of ['text', 'json']) {
      const merged = await m.call('collect_results', { job_ids: [jobId], budget_tokens: 500, merge });
      expect(Math.max(textOf(merged).length, JSON.stringify(merged.structuredContent).length)).toBeLessThanOrEqual(
        500 * 4,
      );
      expect(JSON.stringify(page(merged).merged)).toContain('huge 0 200000');
    }
  });

  it('filters failures and merges outputs as text or one JSON array', async () => {
    const m = await connect();
    const jobId = await submit(m, [
      { args: ['ok1', '0', '0'] },
      { args: ['bad', '3', '0'] },
      { args: ['ok2', '0', '0'] },
    ]);
    const failed = await m.call('collect_results', { job_ids: [jobId], wait_seconds: 30, filter: 'failed' });
    expect(page(failed).results.map((r) => [r.index, r.state, r.error?.code])).toEqual([
      [1, 'failed', 'NON_ZERO_EXIT'],
    ]);
    expect(page(failed).jobs[0]?.state).toBe('failed');
    const json = await m.call('collect_results', { job_ids: [jobId], filter: 'succeeded', merge: 'json' });
    // Each merged piece says where it came from: the task's args.
    const merged = page(json).merged as Array<{ id: string; output: { label: string } }>;
    expect(merged.map((v) => [v.id, v.output.label]).sort()).toEqual([
      ['ok1 0 0', 'ok1'],
      ['ok2 0 0', 'ok2'],
    ]);
    const text = await m.call('collect_results', { job_ids: [jobId], merge: 'text' });
    expect(textOf(text)).toMatch(/--- ok1 0 0 \(#0, succeeded\) ---\n\{/);
    expect(page(text).merged).toMatch(/--- bad 3 0 \(#1, failed\) ---\n\(failed: NON_ZERO_EXIT/);
  });

  it('collects several jobs at once and polls a running job without repeating results', async () => {
    const m = await connect();
    const slow = await submit(m, [{ args: ['fast', '0', '0'] }, { args: ['late', '0', '0', '2'] }], 2);
    const other = await submit(m, [{ args: ['other', '0', '0'] }]);
    const first = await m.call('collect_results', { job_ids: [slow, other], wait_seconds: 1 });
    const p1 = page(first);
    expect(p1.done).toBe(false);
    expect(p1.next_cursor).toBeDefined();
    expect(p1.results.map((r) => r.value?.json?.label).sort()).toEqual(['fast', 'other']);
    const second = await m.call('collect_results', {
      job_ids: [slow, other],
      wait_seconds: 30,
      cursor: p1.next_cursor,
    });
    expect(page(second).results.map((r) => r.value?.json?.label)).toEqual(['late']);
    expect(page(second).done).toBe(true);
  });

  it('shows every result exactly once when two collects run at the same time', async () => {
    const m = await connect();
    const jobId = await submit(
      m,
      Array.from({ length: 6 }, (_, i) => ({ args: [`c${i}`] })),
    );
    await m.call('collect_results', { job_ids: [jobId], wait_seconds: 30, budget_tokens: 200 });
    const [a, b] = await Promise.all([
      m.call('collect_results', { job_ids: [jobId] }),
      m.call('collect_results', { job_ids: [jobId] }),
    ]);
    for (const reply of [a, b])
      expect(
        page(reply)
          .results.map((r) => r.index)
          .sort(),
      ).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('reports progress while it waits', async () => {
    const m = await connect();
    const jobId = await submit(
      m,
      Array.from({ length: 4 }, (_, i) => ({ args: [`p${i}`, '0', '0', '0.4'] })),
      1,
    );
    const progress: number[] = [];
    await m.call(
      'collect_results',
      { job_ids: [jobId], wait_seconds: 30 },
      { onprogress: (p) => progress.push(p.progress) },
    );
    // The last notification can be lost by the SDK (typescript-sdk#2580); the earlier ones arrive.
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.every((p, i) => i === 0 || p >= (progress[i - 1] ?? 0))).toBe(true);
  });

  it('answers unknown jobs and foreign cursors with an actionable error', async () => {
    const m = await connect();
    const unknown = await m.call('collect_results', { job_ids: ['job_AAAAAAAAAAAAAAAAAAAAAA'] });
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toMatch(/JOB_NOT_FOUND.*\nNext: Call list_jobs/);
    const jobId = await submit(m, [{ args: ['x'] }]);
    const badCursor = await m.call('collect_results', { job_ids: [jobId], cursor: 'c2.garbage' });
    expect(badCursor.isError).toBe(true);
    expect(textOf(badCursor)).toMatch(/cursor/);
    const empty = await m.call('collect_results', { job_ids: [] });
    expect(empty.isError).toBe(true);
    // Over a limit is an error naming it, never a value quietly lowered.
    const longWait = await m.call('collect_results', { job_ids: [jobId], wait_seconds: 500 });
    expect(textOf(longWait)).toMatch(
      /^INVALID_INPUT: wait_seconds is 500, over this server's limit of 50\.\nNext: Use at most 50.*"collect\.maxWaitSeconds"/,
    );
    const bigPage = await m.call('collect_results', { job_ids: [jobId], budget_tokens: 50_000 });
    expect(textOf(bigPage)).toMatch(/^INVALID_INPUT: budget_tokens is 50000, over this server's limit of 12000\./);
    const jobsBefore = (await m.call('list_jobs', {})).structuredContent as { total: number };
    const dispatchWait = await m.call('run_script_batch', { worker: 'emit.py', inputs: [{}], wait_seconds: 500 });
    expect(textOf(dispatchWait)).toMatch(/^INVALID_INPUT: wait_seconds is 500, over this server's limit of 50\./);
    expect(((await m.call('list_jobs', {})).structuredContent as { total: number }).total).toBe(jobsBefore.total);
  });
});

describe('list_jobs, cancel_job and resume_job', () => {
  it('lists, cancels (killing running tasks) and resumes cancelled tasks', async () => {
    const m = await connect();
    const jobId = await submit(
      m,
      Array.from({ length: 6 }, (_, i) => ({ args: [`s${i}`, '0', '0', '20'] })),
      2,
    );
    const listed = await m.call('list_jobs', { state: 'active' });
    expect(textOf(listed)).toContain(jobId);
    const cancelled = await m.call('cancel_job', { job_id: jobId });
    expect(textOf(cancelled)).toMatch(/Cancelled 4 queued and 2 running/);
    const after = await m.call('collect_results', { job_ids: [jobId], wait_seconds: 20 });
    expect(page(after).jobs[0]).toMatchObject({ state: 'cancelled', counts: { cancelled: 6 } });
    expect(textOf(await m.call('list_jobs', { state: 'cancelled' }))).toContain(jobId);

    expect(textOf(await m.call('resume_job', { job_id: jobId }))).toMatch(/Nothing to resume/);
    const again = await m.call('resume_job', { job_id: jobId, include_cancelled: true });
    expect(textOf(again)).toMatch(/Resumed job_\S+: 6 task\(s\) queued again/);
    await m.call('cancel_job', { job_id: jobId });
    const unknown = await m.call('cancel_job', { job_id: 'job_nope' });
    expect(unknown.isError).toBe(true);
  });
});
