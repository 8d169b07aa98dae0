import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/registry.js';
import { type AgentTurn, LmStudioDouble, type ScriptedTurn } from '../fixtures/lmstudio-double.js';
import { connectInMemory, jobIdOf, testConfig, textOf, type Connected } from '../helpers/client.js';
import { collectAll, type CollectedResult } from '../helpers/collect.js';
import { cleanupsAfterEach, fileTree } from '../helpers/cleanup.js';

const cleanups = cleanupsAfterEach();

/** Ten numbered lines: what honest citations point at. */
const A_TS = Array.from({ length: 10 }, (_, i) => `const v${i + 1} = ${i + 1}; // line ${i + 1}`).join('\n') + '\n';

const MODELS = [
  { id: 'small', type: 'llm' as const, state: 'loaded' as const, contextLength: 8192 },
  { id: 'big', type: 'llm' as const, state: 'loaded' as const, contextLength: 8192 },
];

interface Turn {
  model: string;
  prompt: string;
  /** The request carries a re-ask: the check's reasons after the earlier answer. */
  reasked: boolean;
  reasons: string;
}

function turnOf(turn: AgentTurn): Turn {
  const messages = turn.messages as Array<{ role: string; content: string }>;
  const users = messages.filter((m) => m.role === 'user');
  const last = users.at(-1)?.content ?? '';
  const reasked = last.startsWith('Your answer was checked and it failed');
  return { model: String(turn.body.model), prompt: users[0]?.content ?? '', reasked, reasons: reasked ? last : '' };
}

/**
 * A small model that lies on purpose, each prompt naming its lie; "big" answers every one honestly.
 * `fixed-on-reask:` lies once, then answers honestly when told why.
 */
function liar(samples: Map<string, number>): (turn: AgentTurn) => ScriptedTurn {
  return (raw) => {
    const turn = turnOf(raw);
    const honestText = 'v1 is set at src/a.ts:1 and v2 at src/a.ts:2.';
    const honestJson = JSON.stringify({
      answer: 'v2 is 2',
      citations: [{ path: 'src/a.ts', start_line: 2, quote: 'const v2 = 2;' }],
    });
    const json = turn.prompt.includes('[json]');
    if (turn.model === 'big') return { content: json ? honestJson : honestText };
    const lie = /lie:([a-z-]+)/.exec(turn.prompt)?.[1] ?? 'none';
    if (lie === 'none' || (turn.prompt.includes('fixed-on-reask') && turn.reasked))
      return { content: json ? honestJson : honestText };
    switch (lie) {
      case 'past-end':
        return { content: 'v1 is set at src/a.ts:999.' };
      case 'no-file':
        return { content: 'It is in src/nope.ts:3.' };
      case 'bad-quote':
        return {
          content: JSON.stringify({
            answer: 'v2 is 3',
            citations: [{ path: 'src/a.ts', start_line: 2, quote: 'const v2 = 3;' }],
          }),
        };
      case 'outside':
        return { content: 'See ../../etc/passwd:1.' };
      case 'uncited':
        return { content: 'v1 is one, trust me.' };
      case 'malformed':
        return { content: '{"answer": "v2 is 2", "citations": [' };
      case 'disagree': {
        const n = samples.get(turn.prompt) ?? 0;
        samples.set(turn.prompt, n + 1);
        return { content: ['red', 'green', 'blue'][n % 3] ?? 'red' };
      }
      default:
        return { content: honestText };
    }
  };
}

/** A server over src/a.ts and a double of `small` and `big` answering as `agent` says (the liar unless told). */
async function setUp(
  edit: (config: Config) => void = () => {},
  agent: (turn: AgentTurn) => ScriptedTurn | undefined = liar(new Map()),
): Promise<{ c: Connected; double: LmStudioDouble; config: Config }> {
  const double = await LmStudioDouble.start({ models: MODELS, agent, latencyMs: 5 });
  cleanups.push(() => double.close());
  const root = await fileTree({ 'src/a.ts': A_TS }, cleanups, 'checks-');
  const config = await testConfig((c) => {
    c.llm.endpoints = [{ name: 'lmstudio', url: double.url, concurrency: 4, models: [], flavor: 'lmstudio' }];
    c.allowedRoots = [root];
    edit(c);
  });
  const c = await connectInMemory(config);
  cleanups.push(() => c.close());
  return { c, double, config };
}

async function run(c: Connected, args: Record<string, unknown>): Promise<CollectedResult[]> {
  const submitted = await c.call('lmstudio_complete', { model: 'small', ...args });
  expect(submitted.isError, textOf(submitted)).toBeFalsy();
  const { results } = await collectAll(c, jobIdOf(submitted));
  return results;
}

const JSON_SCHEMA = {
  type: 'object',
  properties: {
    answer: { type: 'string' },
    citations: {
      type: 'array',
      items: {
        type: 'object',
        properties: { path: { type: 'string' }, start_line: { type: 'integer' }, quote: { type: 'string' } },
        required: ['path', 'start_line'],
      },
    },
  },
  required: ['answer', 'citations'],
};

describe('checks: every answer carries a machine-checked verdict', () => {
  it('honest answers are verified on the first attempt; every lie ends unverified with its reason, never verified', async () => {
    const { c, double } = await setUp();
    const results = await run(c, {
      prompts: [
        { id: 'honest', prompt: 'Where is v1? lie:none' },
        { id: 'past-end', prompt: 'Where is v1? lie:past-end' },
        { id: 'no-file', prompt: 'Where is v1? lie:no-file' },
        { id: 'outside', prompt: 'Where is v1? lie:outside' },
        { id: 'uncited', prompt: 'Where is v1? lie:uncited' },
      ],
      checks: { citations: true },
    });
    const byId = new Map(results.map((r) => [r.id, r]));
    expect(results.every((r) => r.state === 'succeeded')).toBe(true);
    expect(byId.get('honest')?.value).toMatchObject({
      verified: true,
      attempts: 1,
      checks: [{ name: 'citations', ok: true }],
    });
    expect(byId.get('honest')?.value?.extra_requests).toBeUndefined();
    for (const [id, reason] of [
      ['past-end', /src\/a\.ts:999 \(file has 10 lines\)/],
      ['no-file', /src\/nope\.ts:3 \(no such file\)/],
      ['outside', /outside the allowed folders/],
      ['uncited', /cites nothing/],
    ] as const) {
      const value = byId.get(id)?.value;
      expect(value, id).toMatchObject({ verified: false, attempts: 2, extra_requests: { reask: 1 } });
      const checks = value?.checks as Array<{ name: string; ok: boolean; reason?: string }>;
      expect(checks[0]?.ok).toBe(false);
      expect(checks[0]?.reason).toMatch(reason);
    }
    // The re-ask carried the reason, after the answer that failed.
    const reask = double.chatRequests.find((r) => String(r.prompt).startsWith('Your answer was checked'));
    expect(reask?.prompt).toMatch(/citations: 1 of 1 citation\(s\) do not hold/);
    // 1 + 4 × 2 requests: nothing asked twice needlessly.
    expect(double.chatRequests).toHaveLength(9);
  });

  it('re-ask fixes what the model gets right when told why; escalation fixes the rest; job totals and filter unverified', async () => {
    const { c, double } = await setUp();
    const submitted = await c.call('lmstudio_complete', {
      model: 'small',
      prompts: [
        { id: 'quote', prompt: '[json] What is v2? lie:bad-quote fixed-on-reask' },
        { id: 'malformed', prompt: '[json] What is v2? lie:malformed' },
        { id: 'quote-stubborn', prompt: '[json] What is v2? lie:bad-quote' },
        { id: 'honest', prompt: '[json] What is v2? lie:none' },
      ],
      json_schema: JSON_SCHEMA,
      checks: { citations: true },
      escalate_model: 'big',
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    expect(textOf(submitted)).toContain('With json_schema, checks include schema.');
    const jobId = jobIdOf(submitted);
    const { results, job } = await collectAll(c, jobId);
    const byId = new Map(results.map((r) => [r.id, r.value]));
    expect(byId.get('honest')).toMatchObject({ verified: true, attempts: 1 });
    expect(byId.get('quote')).toMatchObject({ verified: true, attempts: 2, fixed_by: 're-ask', model: 'small' });
    expect(byId.get('quote')?.json).toMatchObject({ answer: 'v2 is 2' });
    expect(byId.get('quote')?.first_failure).toBe(
      'citations: 1 of 1 citation(s) do not hold: src/a.ts:2 (quote not in lines 2–2)',
    );
    expect(byId.get('honest')?.first_failure).toBeUndefined();
    for (const id of ['malformed', 'quote-stubborn'])
      expect(byId.get(id), id).toMatchObject({
        verified: true,
        attempts: 3,
        fixed_by: 'escalation',
        model: 'big',
        extra_requests: { reask: 1, escalate: 1 },
      });
    // The malformed answer's schema check failed before the escalation: asked of small twice, then of big.
    expect(double.chatRequests.filter((r) => String(r.body?.model) === 'big')).toHaveLength(2);
    // The job's tokens count every answer asked for, the ones thrown away too.
    const tokens = job.tokens as { prompt: number; completion: number };
    const served = double.chatRequests.length;
    expect(results.reduce((n, r) => n + Number(r.value?.requests ?? 1), 0)).toBe(served);
    expect(tokens.completion).toBe(results.reduce((n, r) => n + Number(r.value?.tokens_out), 0));
    expect(byId.get('malformed')?.requests).toBe(3);
    expect(job.verification).toEqual({
      verified: 4,
      unverified: 0,
      extra_requests: { agree: 0, reask: 3, escalate: 2 },
    });
    const none = await c.call('collect_results', { job_ids: [jobId], filter: 'unverified' });
    expect((none.structuredContent as { results: unknown[] }).results).toEqual([]);
  });

  it('filter unverified, merge json and the job line mark answers that failed their checks', async () => {
    const { c } = await setUp();
    const submitted = await c.call('lmstudio_complete', {
      model: 'small',
      prompts: [
        { id: 'good', prompt: 'Where is v1? lie:none' },
        { id: 'bad', prompt: 'Where is v1? lie:past-end' },
      ],
      checks: { citations: true },
    });
    const jobId = jobIdOf(submitted);
    const all = await collectAll(c, jobId);
    expect(all.last.next).toContain('1 answer(s) failed their checks');
    expect(all.last.next).toContain('"filter":"unverified"');
    const only = await c.call('collect_results', { job_ids: [jobId], filter: 'unverified' });
    const page = only.structuredContent as { results: CollectedResult[] };
    expect(page.results.map((r) => r.id)).toEqual(['bad']);
    const merged = await c.call('collect_results', { job_ids: [jobId], merge: 'json' });
    const pieces = (merged.structuredContent as { merged: Array<Record<string, unknown>> }).merged;
    expect(pieces.find((p) => p.id === 'good')?.unverified).toBeUndefined();
    expect(String(pieces.find((p) => p.id === 'bad')?.unverified)).toMatch(/^citations: .*a\.ts:999/);
    const text = await c.call('collect_results', { job_ids: [jobId], merge: 'text' });
    expect(textOf(text)).toMatch(/bad \(#1, succeeded, UNVERIFIED: citations: /);
    const listed = await c.call('list_jobs', {});
    const view = (listed.structuredContent as { jobs: Array<Record<string, unknown>> }).jobs[0];
    expect(view?.verification).toMatchObject({ verified: 1, unverified: 1, extra_requests: { reask: 1 } });
    expect(textOf(listed)).toContain('1 verified, 1 unverified; 1 extra request(s) on checks');
  });

  it('agree: the majority of samples wins; disagreeing samples are re-asked, then escalated', async () => {
    const { c, double } = await setUp();
    const results = await run(c, {
      prompts: [
        { id: 'steady', prompt: 'Colour of v1? lie:none' },
        { id: 'torn', prompt: 'Colour of v1? lie:disagree' },
      ],
      checks: { agree: 3 },
      escalate_model: 'big',
      temperature: 0,
    });
    const byId = new Map(results.map((r) => [r.id, r.value]));
    expect(byId.get('steady')).toMatchObject({
      verified: true,
      attempts: 1,
      checks: [{ name: 'agree', ok: true, reason: '3 of 3 samples agree' }],
      extra_requests: { agree: 2 },
    });
    expect(byId.get('torn')).toMatchObject({
      verified: true,
      attempts: 3,
      fixed_by: 'escalation',
      model: 'big',
      extra_requests: { agree: 2, reask: 3, escalate: 3 },
    });
    // Samples are drawn at a temperature above 0 even when the job asked for 0.
    const temperatures = double.chatRequests.map((r) => r.body?.temperature);
    expect(temperatures.every((t) => typeof t === 'number' && t > 0)).toBe(true);
    expect(double.chatRequests).toHaveLength(3 + 9);
  });

  it('checks answers of a template over files, each file its own task', async () => {
    const { c } = await setUp();
    const results = await run(c, {
      template: 'Where is v1 in {{path}}? {{lie}}\n{{content}}',
      files: ['src/*.ts'],
      items: [
        { id: 'honest', lie: 'lie:none' },
        { id: 'lying', lie: 'lie:past-end' },
      ],
      checks: { citations: true },
    });
    expect(results.map((r) => [r.id, r.value?.verified])).toEqual([
      ['src/a.ts | honest', true],
      ['src/a.ts | lying', false],
    ]);
  });

  it('refuses checks it cannot run, saying what to do', async () => {
    const { c } = await setUp();
    const noSchema = await c.call('lmstudio_complete', {
      model: 'small',
      prompts: [{ prompt: 'x' }],
      checks: { schema: true },
    });
    expect(noSchema.isError).toBe(true);
    expect(textOf(noSchema)).toContain('checks.schema checks answers against json_schema');
    const lonely = await c.call('lmstudio_complete', {
      model: 'small',
      prompts: [{ prompt: 'x' }],
      escalate_model: 'big',
    });
    expect(textOf(lonely)).toContain('escalate_model takes answers that fail their checks');
    const same = await c.call('lmstudio_complete', {
      model: 'small',
      prompts: [{ prompt: 'x' }],
      checks: { citations: true },
      escalate_model: 'small',
    });
    expect(textOf(same)).toContain("escalate_model is the job's own model");
    const unknown = await c.call('lmstudio_complete', {
      model: 'small',
      prompts: [{ prompt: 'x' }],
      checks: { citations: true },
      escalate_model: 'no-such-model',
    });
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toMatch(/no-such-model/);
    const empty = await c.call('lmstudio_complete', { model: 'small', prompts: [{ prompt: 'x' }], checks: {} });
    expect(textOf(empty)).toContain('checks names no check');
  });
});

describe('checks on a reduce and on investigations', () => {
  it('a reduce is told which inputs are unverified, and its own answer is checked', async () => {
    const { c, double } = await setUp();
    const submitted = await c.call('lmstudio_complete', {
      model: 'small',
      prompts: [
        { id: 'good', prompt: 'Where is v1? lie:none' },
        { id: 'bad', prompt: 'Where is v1? lie:past-end' },
      ],
      checks: { citations: true },
      reduce: 'Merge these findings.',
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    const { results } = await collectAll(c, jobIdOf(submitted));
    expect(results).toHaveLength(1);
    expect(results[0]?.value).toMatchObject({ verified: true, unverified_inputs: ['bad'] });
    const merge = double.chatRequests.find((r) => String(r.prompt).startsWith('Merge these findings.'));
    expect(merge?.prompt).toMatch(/### bad\n\[UNVERIFIED: this answer failed its checks/);
    expect(merge?.prompt).not.toMatch(/### good\n\[UNVERIFIED/);
  });

  it('a reduce of a job that only asked for agreement gives no verdict rather than a vacuous one', async () => {
    const { c } = await setUp();
    const results = await run(c, {
      prompts: [{ prompt: 'Colour of v1? lie:none' }, { prompt: 'Colour of v2? lie:none' }],
      checks: { agree: 3 },
      reduce: 'Merge these findings.',
    });
    expect(results).toHaveLength(1);
    expect(results[0]?.state).toBe('succeeded');
    expect(results[0]?.value?.verified).toBeUndefined();
    expect(results[0]?.value?.checks).toBeUndefined();
  });

  it('an investigation whose citations fail is re-asked with the reasons, then escalated; one that holds is verified', async () => {
    const finish = (answer: string, line: number): ScriptedTurn => ({
      tool_calls: [{ name: 'finish', arguments: { answer, citations: [{ path: 'src/a.ts', start_line: line }] } }],
    });
    const tasksSeen: string[] = [];
    const { c } = await setUp(
      () => {},
      (turn) => {
        const messages = turn.messages as Array<{ role: string; content: string }>;
        const task = messages.find((m) => m.role === 'user')?.content ?? '';
        tasksSeen.push(task);
        if (String(turn.body.model) === 'big' || task.includes('honest')) return finish('v1 is 1', 1);
        if (task.includes('fixed-on-reask') && task.includes('An earlier answer to this task')) return finish('v1', 1);
        return finish('v1 is at the end', 999);
      },
    );
    const submitted = await c.call('lmstudio_investigate', {
      model: 'small',
      tasks: [
        { id: 'honest', task: 'Where is v1? honest' },
        { id: 'reask', task: 'Where is v1? fixed-on-reask' },
        { id: 'escalate', task: 'Where is v1? stubborn' },
      ],
      checks: { citations: true },
      escalate_model: 'big',
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    const { results } = await collectAll(c, jobIdOf(submitted));
    const byId = new Map(results.map((r) => [r.id, r]));
    expect(byId.get('honest')?.value).toMatchObject({ verified: true, attempts: 1, citations_verified: '1/1' });
    expect(byId.get('reask')?.value).toMatchObject({ verified: true, attempts: 2, fixed_by: 're-ask' });
    expect(byId.get('escalate')?.value).toMatchObject({
      verified: true,
      attempts: 3,
      fixed_by: 'escalation',
      model: 'big',
    });
    // The re-asked task carried the failed answer and why; each attempt kept its own transcript.
    const reasked = tasksSeen.find((t) => t.includes('fixed-on-reask') && t.includes('An earlier answer'));
    expect(reasked).toMatch(/src\/a\.ts:999 \(file has 10 lines\)/);
    expect(byId.get('escalate')?.files?.transcript).toMatch(/2\.e\.transcript\.jsonl$/);
  });
});

describe('checker scripts', () => {
  const CHECKERS: Record<string, string> = {
    // Accepts an answer that cites src/a.ts; otherwise says why on stdout.
    'names_file.py': `import sys
answer = sys.stdin.read()
if "src/a.ts" in answer:
    sys.exit(0)
print("the answer names no file of the module")
sys.exit(1)
`,
    'hangs.py': 'import time\ntime.sleep(120)\n',
    'crashes.py': 'import sys\nsys.stderr.write("Traceback: boom in the checker\\n")\nsys.exit(3)\n',
  };

  async function withCheckers(): Promise<{ c: Connected; double: LmStudioDouble }> {
    const workers = await fileTree(CHECKERS, cleanups, 'checkers-');
    return setUp((config) => {
      config.workersDirs = [...config.workersDirs, workers];
    });
  }

  it('a worker gets the answer on stdin and accepts with exit 0; its stdout is the reason it rejects', async () => {
    const { c } = await withCheckers();
    const results = await run(c, {
      prompts: [
        { id: 'cites', prompt: 'Where is v1? lie:none' },
        { id: 'vague', prompt: 'Where is v1? lie:uncited' },
      ],
      checks: { script: { worker: 'names_file.py' } },
    });
    const byId = new Map(results.map((r) => [r.id, r.value]));
    expect(byId.get('cites')).toMatchObject({ verified: true, attempts: 1, checks: [{ name: 'script', ok: true }] });
    expect(byId.get('vague')).toMatchObject({
      verified: false,
      attempts: 2,
      checks: [{ name: 'script', ok: false, reason: 'names_file.py: the answer names no file of the module' }],
    });
  });

  it('a checker that times out or crashes fails the check with its reason, not the task', async () => {
    const { c } = await withCheckers();
    const hung = await run(c, {
      prompts: [{ id: 'x', prompt: 'Where is v1? lie:none' }],
      checks: { script: { worker: 'hangs.py', timeout_seconds: 1 } },
    });
    expect(hung[0]?.state).toBe('succeeded');
    expect(hung[0]?.value).toMatchObject({ verified: false, attempts: 2 });
    const hungReason = (hung[0]?.value?.checks as Array<{ reason?: string }>)[0]?.reason;
    expect(hungReason).toMatch(/^hangs\.py: .*timed out after 1 s/);
    const crashed = await run(c, {
      prompts: [{ id: 'y', prompt: 'Where is v1? lie:none' }],
      checks: { script: { worker: 'crashes.py' } },
    });
    expect(crashed[0]?.state).toBe('succeeded');
    const crashReason = (crashed[0]?.value?.checks as Array<{ reason?: string }>)[0]?.reason;
    expect(crashReason).toMatch(/^crashes\.py: .*boom in the checker/);
  }, 60_000);

  it('an unknown checker is refused at submit, naming list_workers', async () => {
    const { c } = await withCheckers();
    const refused = await c.call('lmstudio_complete', {
      model: 'small',
      prompts: [{ prompt: 'x' }],
      checks: { script: { worker: 'no_such_checker.py' } },
    });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(/no_such_checker\.py/);
    expect(textOf(refused)).toMatch(/list_workers/);
  });
});

describe('checks of an investigation with a schema', () => {
  it('an answer off json_schema is a failed schema check, re-asked then escalated, not a failed task', async () => {
    const { c } = await setUp(
      () => {},
      (turn) => {
        const answer = String(turn.body.model) === 'big' ? { risk: 3 } : { risky: 'yes' };
        return { tool_calls: [{ name: 'finish', arguments: { answer, citations: [] } }] };
      },
    );
    const submitted = await c.call('lmstudio_investigate', {
      model: 'small',
      tasks: [{ id: 'risk', task: 'How risky is src/a.ts?' }],
      json_schema: { type: 'object', properties: { risk: { type: 'integer' } }, required: ['risk'] },
      checks: { schema: true },
      escalate_model: 'big',
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    const { results } = await collectAll(c, jobIdOf(submitted));
    expect(results[0]?.state).toBe('succeeded');
    expect(results[0]?.value).toMatchObject({
      json: { risk: 3 },
      verified: true,
      attempts: 3,
      fixed_by: 'escalation',
      checks: [{ name: 'schema', ok: true }],
    });
    expect(String(results[0]?.value?.first_failure)).toMatch(/^schema: /);
  });
});

describe('checks across a restart', () => {
  it('an investigation cut off while its re-ask runs resumes without asking its first attempt again', async () => {
    const finish = (answer: string, line: number): ScriptedTurn => ({
      tool_calls: [{ name: 'finish', arguments: { answer, citations: [{ path: 'src/a.ts', start_line: line }] } }],
    });
    const { c, double, config } = await setUp(
      () => {},
      (turn) => {
        const messages = turn.messages as Array<{ role: string; content: string }>;
        const task = messages.find((m) => m.role === 'user')?.content ?? '';
        if (task.includes('An earlier answer to this task')) return finish('v1 is 1', 1);
        // The first answer is wrong, and its text makes the re-ask's first request hang once.
        return finish('v1 is at the end #fault:hang*1', 999);
      },
    );
    const first = c;
    const submitted = await first.call('lmstudio_investigate', {
      model: 'small',
      tasks: [{ id: 'v1', task: 'Where is v1?' }],
      checks: { citations: true },
    });
    expect(submitted.isError, textOf(submitted)).toBeFalsy();
    const jobId = jobIdOf(submitted);
    const isReask = (prompt: unknown): boolean => String(prompt).includes('An earlier answer to this task');
    for (const deadline = Date.now() + 20_000; !double.chatRequests.some((r) => isReask(r.prompt));) {
      if (Date.now() > deadline) throw new Error('the re-ask was never sent');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The server stops (its tasks load as interrupted next time); its state directory stays.
    await first.client.close();
    await first.app.close();
    const firstAsked = double.chatRequests.filter((r) => !isReask(r.prompt)).length;
    expect(firstAsked).toBe(1);

    const second = await connectInMemory(config);
    cleanups.push(() => second.close());
    const resumed = await second.call('resume_job', { job_id: jobId });
    expect(resumed.isError, textOf(resumed)).toBeFalsy();
    const { results } = await collectAll(second, jobId);
    expect(results.at(-1)?.value).toMatchObject({ verified: true, attempts: 2, fixed_by: 're-ask' });
    // The first attempt was replayed from its transcript: not one request of it was sent again.
    expect(double.chatRequests.filter((r) => !isReask(r.prompt))).toHaveLength(firstAsked);
  }, 60_000);
});
