import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/registry.js';
import { latestRecords } from '../../src/store/records.js';
import { DashboardData } from '../../src/dashboard/data.js';
import { LmStudioDouble, type DoubleOptions } from '../fixtures/lmstudio-double.js';
import { cleanupsAfterEach, fileTree } from '../helpers/cleanup.js';
import { connectInMemory, jobIdOf, testConfig, textOf, type Connected } from '../helpers/client.js';
import { collectAll, type CollectPage } from '../helpers/collect.js';

/** Map → reduce, whole-module prompts, re-split on overflow and script → LLM pipelines, through a real MCP client and the LM Studio double. */

interface Result {
  index: number;
  id?: string;
  state: string;
  value?: Record<string, unknown>;
  error?: { code: string; message: string };
  files?: Record<string, string>;
}

type Collected = CollectPage<Result>;

const cleanups = cleanupsAfterEach();

async function startDouble(options: DoubleOptions = {}): Promise<LmStudioDouble> {
  const double = await LmStudioDouble.start(options);
  cleanups.push(() => double.close());
  return double;
}

async function connect(url: string, edit: (config: Config) => void = () => {}): Promise<Connected> {
  const config = await testConfig((c) => {
    c.llm.endpoints = [{ name: 'lmstudio', url, concurrency: 4, models: [], flavor: 'lmstudio' }];
    c.allowCommands = ['node', 'sleep'];
    edit(c);
  });
  const connected = await connectInMemory(config);
  cleanups.push(() => connected.close());
  return connected;
}

function filesRoot(files: Record<string, string>): Promise<string> {
  return fileTree(files, cleanups, 'pipeline-files-');
}

/** Waits (bounded) until the job is done: its last page, with every result the walk showed. */
async function collectDone(c: Connected, jobId: string): Promise<Collected> {
  const { results, last } = await collectAll<Result>(c, jobId, { waitSeconds: 30 });
  return { ...last, results };
}

/** When task `index` of a job was recorded (its latest record, through the engine's store), in ms since the epoch. */
async function finishedAt(c: Connected, jobId: string, index: number): Promise<number> {
  const record = latestRecords(await c.app.engine.results(jobId)).find((r) => r.index === index);
  const at = Date.parse(record?.finishedAt ?? '');
  if (Number.isNaN(at)) throw new Error(`task ${index} of ${jobId} has no finish time: ${JSON.stringify(record)}`);
  return at;
}

/** A line of code repeated to `bytes`, so its size in tokens is known (the double counts 4 characters a token). */
function code(name: string, bytes: number): string {
  const line = `export const ${name} = compute(${name.length});\n`;
  return line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes);
}

describe('whole-module prompts and map → reduce', () => {
  it('packs a module into one prompt when it fits, each file under its path header, in path order', async () => {
    const double = await startDouble({ models: [{ id: 'small', type: 'llm', state: 'loaded', contextLength: 4096 }] });
    const root = await filesRoot({
      'auth/b.ts': code('b', 300),
      'auth/a.ts': code('a', 300),
      'auth/sub/c.ts': code('c', 200),
    });
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
    });
    const reply = await c.call('lmstudio_complete', {
      template: 'Review the architecture of {{path}}:\n{{content}}',
      files: ['auth/**'],
      group: 'all',
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    expect(JSON.stringify(reply.structuredContent)).toMatch(/3 file\(s\) packed into 1 prompt/);
    const done = await collectDone(c, jobIdOf(reply));
    expect(done.results).toHaveLength(1);
    expect(done.results[0]?.value?.files).toEqual(['auth/a.ts', 'auth/b.ts', 'auth/sub/c.ts']);
    const prompt = double.chatRequests[0]?.prompt ?? '';
    expect(prompt.startsWith('Review the architecture of auth:\n### auth/a.ts\n')).toBe(true);
    expect(prompt.indexOf('### auth/a.ts')).toBeLessThan(prompt.indexOf('### auth/b.ts'));
    expect(prompt.indexOf('### auth/b.ts')).toBeLessThan(prompt.indexOf('### auth/sub/c.ts'));
    expect(prompt).toContain(code('c', 200));
  });

  it('a module too large for one prompt is packed to the context edge, and a 3-level tree reduce merges the answers into one', async () => {
    // 800 tokens of context: a prompt holds ~1.8 KB of files; a reduce step a few answers.
    const double = await startDouble({ models: [{ id: 'tiny', type: 'llm', state: 'loaded', contextLength: 800 }] });
    const files: Record<string, string> = {};
    const sizes = [700, 150, 150, 600, 300];
    for (let i = 0; i < 100; i++)
      files[`mod/f${String(i).padStart(2, '0')}.ts`] = code(`f${i}`, sizes[i % sizes.length] ?? 100);
    const root = await filesRoot(files);
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
    });
    const reply = await c.call('lmstudio_complete', {
      template: 'Find risks in:\n{{content}}',
      files: ['mod/*.ts'],
      group: 'all',
      max_tokens: 40,
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const structured = reply.structuredContent as { job_id: string; notes: string[]; runs_on?: { job_id: string } };
    expect(structured.notes.join(' ')).toMatch(/reduce stage \(map → reduce\), added for you/);
    const mapId = structured.runs_on?.job_id ?? '';
    expect(mapId).toMatch(/^job_/);

    const done = await collectDone(c, structured.job_id);
    // The reduce job's page is the one merged answer and a short index of the map, not the map's answers.
    expect(done.results).toHaveLength(1);
    const merged = done.results[0];
    expect(merged?.state, JSON.stringify(merged)).toBe('succeeded');
    expect(merged?.value?.levels).toBe(3);
    expect(typeof merged?.value?.text).toBe('string');
    const map = done.upstream?.[0];
    expect(map?.job_id).toBe(mapId);
    expect(map?.state).toBe('succeeded');

    const chats = double.chatRequests;
    const mapPrompts = chats.filter((r) => r.prompt?.startsWith('Find risks in:'));
    expect(mapPrompts.length).toBe(map?.counts.total);
    // Packed to the edge: every map prompt fits the 300-token context, and together they hold every file once.
    for (const r of mapPrompts) expect((r.prompt ?? '').length / 4).toBeLessThanOrEqual(800);
    const headers = mapPrompts.flatMap((r) =>
      [...(r.prompt ?? '').matchAll(/^### (mod\/f\d+\.ts)$/gm)].map((m) => m[1]),
    );
    expect(headers.sort()).toEqual(Object.keys(files).sort());
    expect(mapPrompts.length).toBeLessThan(100);
    // Level 1 names each map answer by its provenance; the last level merges "merged from" groups.
    const reducePrompts = chats.filter((r) => r.prompt?.includes('each under a "### <source>" header'));
    expect(reducePrompts.length).toBeGreaterThanOrEqual(4);
    expect(reducePrompts.some((r) => /^### files 1\/\d+: mod\/f00\.ts/m.test(r.prompt ?? ''))).toBe(true);
    const last = reducePrompts.at(-1)?.prompt ?? '';
    expect(last).toMatch(/Below are all \d+ results/);
    expect(last).toMatch(/^### merged from \d+ results: files 1\/\d+: mod\/f00\.ts/m);
  });

  it("while the map runs, the reduce job's progress counts the map's tasks (status line, job view, progress, dashboard), not 0/1", async () => {
    // 12 map prompts, 4 at once, 600 ms each: three waves, time enough to look while the map runs.
    const double = await startDouble({ latencyMs: 600 });
    const c = await connect(double.url);
    const reply = await c.call('lmstudio_complete', {
      prompts: Array.from({ length: 12 }, (_, i) => ({ id: `q${i}`, prompt: `Question ${i}` })),
      reduce: { prompt: 'Combine these answers into one.', max_tokens: 20 },
      max_tokens: 5,
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const reduceId = jobIdOf(reply);

    const early = await c.call('collect_results', { job_ids: [reduceId], wait_seconds: 0 });
    const page = early.structuredContent as {
      jobs: Array<{ upstream_tasks?: { done: number; total: number } }>;
      next: string;
    };
    const up = page.jobs[0]?.upstream_tasks;
    expect(up?.total, textOf(early)).toBe(12);
    expect(up?.done).toBeLessThan(12);
    expect(textOf(early)).toMatch(
      new RegExp(`^${reduceId} .* — upstream ${up?.done}/12 done, then 0/1 done \\(0 succeeded, 1 queued\\)`),
    );
    expect(page.next).toMatch(new RegExp(`still running \\(${up?.done}/13 tasks done\\)`));

    // The dashboard's row: the job it runs on, with how far that job is.
    const dashboard = new DashboardData(c.config.stateDir, () => true);
    const row = (await dashboard.snapshot(Date.now())).jobs.find((job) => job.id === reduceId);
    expect(row?.upstream_tasks?.total).toBe(12);
    expect(row?.upstream_tasks?.done).toBeLessThan(12);

    // Progress while collect_results waits: over the map's 12 tasks and the reduce's one.
    const progress: Array<{ progress: number; total?: number }> = [];
    const last = await c.call(
      'collect_results',
      { job_ids: [reduceId], wait_seconds: 45 },
      { onprogress: (p) => progress.push(p) },
    );
    expect((last.structuredContent as { done: boolean }).done, textOf(last)).toBe(true);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every((p) => p.total === 13)).toBe(true);
    expect(
      progress.some((p) => p.progress > 0 && p.progress < 12),
      JSON.stringify(progress),
    ).toBe(true);
    // Once the map is in, the reduce's line says nothing of it.
    expect(textOf(last)).not.toMatch(/upstream \d+\/12 done/);
  }, 60_000);

  it('a failed map item is named in the reduce input and in the index; the reduce still answers', async () => {
    const double = await startDouble();
    const c = await connect(double.url);
    const reply = await c.call('lmstudio_complete', {
      prompts: [
        { id: 'login.ts', prompt: 'Review login' },
        { id: 'tokens.ts', prompt: `Review tokens ${'.'.repeat(60)} #fault:crash*1` },
        { id: 'session.ts', prompt: 'Review session' },
      ],
      reduce: { prompt: 'Combine these reviews into one.', max_tokens: 50 },
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const done = await collectDone(c, jobIdOf(reply));
    expect(done.results[0]?.state).toBe('succeeded');
    expect(done.results[0]?.value?.failed_inputs).toEqual(['tokens.ts']);
    expect(done.upstream?.[0]?.failed).toEqual([{ id: 'tokens.ts', code: expect.any(String) }]);
    const reducePrompt = double.chatRequests.find((r) => r.prompt?.startsWith('Combine these reviews'))?.prompt ?? '';
    expect(reducePrompt).toMatch(/### tokens\.ts \(FAILED\)\n\[no answer: this input failed with /);
    expect(reducePrompt).toContain('### login.ts\nAnswer to: Review login');
    expect(reducePrompt).toContain('### session.ts\n');

    // Resumed with include_failed: the map task runs again, and the reduce over the new answers too
    // (the double echoes a prompt's first 60 characters: the fault marker stays out of the answer).
    const resumed = await c.call('resume_job', { job_id: jobIdOf(reply), include_failed: true });
    expect(resumed.isError, textOf(resumed)).toBeFalsy();
    const again = await collectDone(c, jobIdOf(reply));
    expect(again.results[0]?.state, JSON.stringify(again.results[0])).toBe('succeeded');
    expect(again.results[0]?.value?.failed_inputs).toEqual([]);
    expect(again.upstream?.[0]?.failed).toBeUndefined();
    const last = double.chatRequests.filter((r) => r.prompt?.startsWith('Combine these reviews')).at(-1)?.prompt ?? '';
    expect(last).toContain('### tokens.ts\nAnswer to: Review tokens');
  });

  it('a reduce over a map with no answer fails UPSTREAM_FAILED naming the failures, and asks the model nothing', async () => {
    const double = await startDouble();
    const c = await connect(double.url);
    const reply = await c.call('lmstudio_complete', {
      prompts: [
        { id: 'a.ts', prompt: 'Review a #fault:crash' },
        { id: 'b.ts', prompt: 'Review b #fault:no-model-string' },
        { id: 'c.ts', prompt: 'Review c #fault:crash' },
      ],
      reduce: { prompt: 'Combine these reviews into one.', max_tokens: 50 },
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const done = await collectDone(c, jobIdOf(reply));
    const result = done.results[0];
    expect(result?.state, JSON.stringify(result)).toBe('failed');
    expect(result?.error?.code).toBe('UPSTREAM_FAILED');
    // How many, which codes, and the map job to resume.
    expect(result?.error?.message).toMatch(/none of the 3 upstream tasks of job \S+ succeeded: 3 failed \(/i);
    expect(result?.error?.message).toContain('a.ts');
    const upstreamJob = done.upstream?.[0]?.job_id ?? '';
    expect(String((result?.error as { hint?: string } | undefined)?.hint)).toContain(
      `resume_job ${upstreamJob} with include_failed: true`,
    );
    expect(result?.value?.failed_inputs).toEqual(['a.ts', 'b.ts', 'c.ts']);
    expect(result?.value?.requests).toBe(0);
    // No prompt made only of failure notes reached the model.
    expect(double.chatRequests.some((r) => r.prompt?.startsWith('Combine these reviews'))).toBe(false);
  }, 60_000);

  it('a file that overflows the context is split in two and retried, its answer the two parts labelled', async () => {
    const double = await startDouble({ models: [{ id: 'tiny', type: 'llm', state: 'loaded', contextLength: 300 }] });
    const root = await filesRoot({ 'big.ts': code('big', 1500) });
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
    });
    const reply = await c.call('lmstudio_complete', {
      template: 'Summarise {{path}}:\n{{content}}',
      files: ['big.ts'],
      max_tokens: 20,
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const done = await collectDone(c, jobIdOf(reply));
    const result = done.results[0];
    expect(result?.state, JSON.stringify(result)).toBe('succeeded');
    expect(result?.value?.split_for_context).toBe(2);
    expect(String(result?.value?.text)).toMatch(
      /^\[part 1 of 2: big\.ts \[part 1\/2\]\]\n[\s\S]*\n\n\[part 2 of 2: big\.ts \[part 2\/2\]\]/,
    );
    const halves = double.chatRequests.slice(1).map((r) => r.prompt ?? '');
    expect(halves).toHaveLength(2);
    // The halves together are the file, cut at a line break.
    const bodies = halves.map((p) => p.slice(p.indexOf('\n') + 1));
    expect(bodies.join('')).toBe(code('big', 1500));
    expect(bodies[0]?.endsWith('\n')).toBe(true);
  });

  it('a file split three levels deep counts its 8 parts, not the last level’s 2; one too large even so says how far it was cut', async () => {
    // 300 tokens of context (the double counts 4 characters a token): a quarter of 6,000 bytes is
    // refused by the server, an eighth fits; 24,000 bytes do not fit even in eighths.
    const double = await startDouble({ models: [{ id: 'tiny', type: 'llm', state: 'loaded', contextLength: 300 }] });
    const root = await filesRoot({ 'big.ts': code('big', 6000), 'huge.ts': code('huge', 24_000) });
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
    });
    const reply = await c.call('lmstudio_complete', {
      template: 'Summarise {{path}}:\n{{content}}',
      files: ['big.ts', 'huge.ts'],
      max_tokens: 20,
    });
    expect(reply.isError, textOf(reply)).toBeFalsy();
    const done = await collectDone(c, jobIdOf(reply));
    const big = done.results.find((r) => r.id === 'big.ts');
    expect(big?.state, JSON.stringify(big)).toBe('succeeded');
    expect(big?.value?.split_for_context).toBe(8);
    const labels = [...String(big?.value?.text).matchAll(/^\[part (\d+) of (\d+): big\.ts \[part (\d+)\/(\d+)\]\]$/gm)];
    expect(labels.map((m) => `${m[1]}/${m[2]} ${m[3]}/${m[4]}`)).toEqual(
      [1, 2, 3, 4, 5, 6, 7, 8].map((i) => `${i}/8 ${i}/8`),
    );
    // The eighths the server answered are the file, in order.
    const eighths = double.chatRequests
      .map((r) => r.prompt ?? '')
      .filter((p) => p.startsWith('Summarise big.ts') && p.length < 1000);
    expect(eighths).toHaveLength(8);
    expect(eighths.map((p) => p.slice(p.indexOf('\n') + 1)).join('')).toBe(code('big', 6000));

    const huge = done.results.find((r) => r.id === 'huge.ts');
    expect(huge?.state).toBe('failed');
    expect(huge?.error?.code).toBe('CONTEXT_OVERFLOW');
    // Its first eighth was refused: it stopped there, cut into that eighth and the 3 parts not asked yet.
    expect(huge?.value?.split_for_context).toBe(4);
    expect(huge?.error?.message).toMatch(
      /^Split into 4 parts to fit the model's context \(halved 3 times over\); huge\.ts \[part 1\/8\] failed: /,
    );
  });
});

describe('stage arguments refused with what to do', () => {
  it('refuses group with a binary file or with items, from_job with files, and a from_job that does not exist, submitting nothing', async () => {
    const double = await startDouble();
    const root = await filesRoot({ 'mod/a.ts': 'export const a = 1;\n', 'mod/blob.bin': 'ab\u0000cd' });
    const c = await connect(double.url, (cfg) => {
      cfg.allowedRoots = [root];
    });
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [
        { template: '{{content}}', files: ['mod/*'], group: 'all' },
        /^INVALID_INPUT: 1 of the files look binary \(they contain NUL bytes\): mod\/blob\.bin\./,
      ],
      [
        { template: '{{content}} {{topic}}', files: ['mod/a.ts'], items: [{ topic: 'x' }], group: 'all' },
        /^INVALID_INPUT: group packs `files` into prompts/,
      ],
      [
        { template: 'Review {{path}}', files: ['mod/a.ts'], group: 'all' },
        /^INVALID_INPUT: group puts the files into \{\{content\}\}/,
      ],
      [
        { template: '{{output}}', files: ['mod/a.ts'], from_job: 'job_AAAAAAAAAAAAAAAAAAAAAA' },
        /^JOB_NOT_FOUND|^INVALID_INPUT: from_job fills a template/,
      ],
    ];
    for (const [args, expected] of cases) {
      const reply = await c.call('lmstudio_complete', args);
      expect(reply.isError, JSON.stringify(args)).toBe(true);
      expect(textOf(reply)).toMatch(expected);
      expect(textOf(reply)).toMatch(/\nNext: /);
    }
    expect(((await c.call('list_jobs', {})).structuredContent as { jobs: unknown[] }).jobs).toEqual([]);
  });
});

describe('script → LLM pipelines', () => {
  it('the LLM stage takes each script result as it arrives, fills {{output}} and JSON fields, and names failed inputs', async () => {
    const double = await startDouble({ latencyMs: 5 });
    const c = await connect(double.url);
    // Input 2 is slow, input 1 fails: the others' LLM tasks run before the script job ends.
    const script =
      'const [name, wait] = process.argv.slice(1); if (name === "bad") { console.error("no such module"); process.exit(3); } setTimeout(() => console.log(JSON.stringify({ module: name, deps: [name + "-dep"] })), Number(wait));';
    const submitted = await c.call('run_script_batch', {
      command: 'node',
      inputs: [
        { args: ['-e', script, 'auth', '0'] },
        { args: ['-e', script, 'bad', '0'] },
        { args: ['-e', script, 'billing', '3000'] },
      ],
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    const scriptId = jobIdOf(submitted);
    const stage = await c.call('lmstudio_complete', {
      from_job: scriptId,
      template: 'Risks of module {{module}} with deps {{deps}}; raw: {{output}}',
    });
    expect(stage.isError, textOf(stage)).toBeFalsy();
    const stageId = jobIdOf(stage);
    const done = await collectDone(c, stageId);
    const byIndex = new Map(done.results.map((r) => [r.index, r]));
    expect(byIndex.get(0)?.state).toBe('succeeded');
    expect(byIndex.get(2)?.state).toBe('succeeded');
    expect(byIndex.get(1)?.state).toBe('failed');
    expect(byIndex.get(1)?.error?.code).toBe('UPSTREAM_FAILED');
    expect(byIndex.get(1)?.error?.message).toMatch(/NON_ZERO_EXIT/);
    const prompts = double.chatRequests.map((r) => r.prompt ?? '');
    expect(prompts.some((p) => p.startsWith('Risks of module auth with deps ["auth-dep"]; raw: {'))).toBe(true);
    const jobs = (await c.call('list_jobs', {})).structuredContent as { jobs: Array<Record<string, unknown>> };
    expect(jobs.jobs.find((j) => j.job_id === stageId)?.runs_on).toEqual({ job_id: scriptId, each: true });
    expect(jobs.jobs.find((j) => j.job_id === scriptId)?.feeds).toEqual([stageId]);
    // Streaming, not a barrier: auth's answer was recorded before the slow script task finished.
    await collectDone(c, scriptId);
    const authAnswered = await finishedAt(c, stageId, 0);
    const slowScriptEnded = await finishedAt(c, scriptId, 2);
    expect(authAnswered).toBeLessThan(slowScriptEnded);
  });

  it('cancel_job on the last stage cancels the whole pipeline mid-run', async () => {
    const double = await startDouble();
    const c = await connect(double.url);
    const submitted = await c.call('run_script_batch', {
      command: 'sleep',
      inputs: [{ args: ['0'] }, { args: ['30'] }, { args: ['30'] }],
    });
    const scriptId = jobIdOf(submitted);
    const stage = await c.call('lmstudio_complete', { from_job: scriptId, template: 'Explain: {{output}}' });
    const stageId = jobIdOf(stage);
    const cancelled = await c.call('cancel_job', { job_id: stageId });
    expect(cancelled.isError, textOf(cancelled)).toBeFalsy();
    const scriptDone = await collectDone(c, scriptId);
    expect(scriptDone.jobs[0]?.state).toBe('cancelled');
    const stageDone = await collectDone(c, stageId);
    expect(stageDone.jobs[0]?.state).toBe('cancelled');
    expect(stageDone.results.filter((r) => r.index !== 0).every((r) => r.state === 'cancelled')).toBe(true);
  });
  it('an LLM → script stage gets each answer on stdin, named after its prompt', async () => {
    const double = await startDouble();
    const c = await connect(double.url);
    const answers = await c.call('lmstudio_complete', {
      prompts: [
        { id: 'auth', prompt: 'Explain auth' },
        { id: 'billing', prompt: 'Explain billing #fault:crash' },
      ],
    });
    const llmId = jobIdOf(answers);
    const refused = await c.call('run_script_batch', {
      command: 'node',
      from_job: llmId,
      inputs: [{ args: ['-e', '1'] }, { args: ['-e', '2'] }],
    });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(/^INVALID_INPUT: With from_job each task gets its upstream task's output on stdin/);
    const upper =
      'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(s.trim().toUpperCase()));';
    const stage = await c.call('run_script_batch', {
      command: 'node',
      from_job: llmId,
      inputs: [{ args: ['-e', upper] }],
    });
    expect(stage.isError, textOf(stage)).toBeFalsy();
    const done = await collectDone(c, jobIdOf(stage));
    const byIndex = new Map(done.results.map((r) => [r.index, r]));
    expect(byIndex.get(0)?.id).toBe('auth');
    expect(byIndex.get(0)?.value?.text).toBe('ANSWER TO: EXPLAIN AUTH');
    expect(byIndex.get(1)?.id).toBe('billing');
    expect(byIndex.get(1)?.error?.code).toBe('UPSTREAM_FAILED');
  });
});
