import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { type AgentTurn, LmStudioDouble, type ScriptedTurn } from '../fixtures/lmstudio-double.js';
import { jobIdOf, makeTempDir } from '../helpers/client.js';
import { type CollectedResult, collectAll } from '../helpers/collect.js';
import { type BenchRow, type BenchServer, median, ms, startServer, waitDone } from './common.js';
import { seededRandom } from '../helpers/random.js';

/**
 * Answers Claude can trust (issue 21): 200 prompts to a double whose small model answers wrongly 30%
 * of the time at random (a citation past the file's end, a quote not in the file, a file that does
 * not exist, no citation at all) and correctly half the time when re-asked with the reason; its big
 * model always answers correctly. The bench keeps the ground truth of every answer the double gives
 * (each answer carries a nonce), so it counts what no check can count for itself: wrong answers
 * marked verified (must be 0), and wrong answers passed through when nothing is checked.
 */
const PROMPTS = 200;
const SLOTS = 4;
const LATENCY_MS = 100;
const FILES = 20;
const WRONG = 0.3;
const REASK_FIXES = 0.5;
/** Each setting is timed this many times, the settings alternated (the machine's load drifts); medians are reported. */
const ROUNDS = 3;
const SEED = Number(process.env.BENCH_CHECKS_SEED ?? 21);
const MARK = /^\[bench (\d+)\]/;
const REASK = 'Your answer was checked and it failed';

type Lie = 'past-end' | 'bad-quote' | 'no-file' | 'uncited';
const LIES: readonly Lie[] = ['past-end', 'bad-quote', 'no-file', 'uncited'];

interface Fixture {
  path: string;
  lines: string[];
}

/** One prompt's script, drawn up front so the answers do not depend on the order requests arrive in. */
interface Plan {
  file: Fixture;
  line: number;
  /** The small model's first answer, and its answer when re-asked: a lie, or undefined (honest). */
  first: Lie | undefined;
  reask: Lie | undefined;
}

function fixtures(): Fixture[] {
  return Array.from({ length: FILES }, (_, f) => ({
    path: `src/mod${f}.ts`,
    lines: Array.from({ length: 30 + 3 * f }, (_, n) => `export const item_${f}_${n + 1} = ${(f + 1) * 1000 + n};`),
  }));
}

function plans(files: readonly Fixture[], seed: number): Plan[] {
  const random = seededRandom(seed);
  return Array.from({ length: PROMPTS }, () => {
    // Five draws per prompt whatever they decide, so one prompt's script never shifts another's.
    const [f, l, wrong, fixes, kind] = [random(), random(), random(), random(), random()];
    const file = files[Math.floor(f * files.length)] ?? files[0]!;
    const lie = (r: number): Lie => LIES[Math.floor(r * LIES.length)] ?? 'past-end';
    const first = wrong < WRONG ? lie(kind) : undefined;
    const reask = first === undefined || fixes < REASK_FIXES ? undefined : lie((kind + 0.5) % 1);
    return { file, line: 1 + Math.floor(l * file.lines.length), first, reask };
  });
}

/** What the double answered to one request: the ground truth behind the nonce its answer carries. */
interface Given {
  prompt: number;
  model: string;
  stage: 'first' | 'reask' | 'escalate';
  lie: Lie | undefined;
  tokens: Tokens;
}

type Tokens = Record<'in' | 'out', number>;

/** The usage the double reports for a request (its own arithmetic, lmstudio-double.ts): a token is 4 characters in, a word out. */
function usageOf(messages: ReadonlyArray<{ content?: unknown }>, content: string): Tokens {
  const text = messages.map((m) => (typeof m.content === 'string' ? m.content : '')).join('\n');
  return {
    in: Math.ceil(text.length / 4),
    out: Math.max(content.split(/\s+/).filter(Boolean).length, content ? 1 : 0),
  };
}

class Truth {
  readonly given = new Map<string, Given>();
  /** The current run's answers, in the order given. */
  round: Given[] = [];
  private next = 0;

  /** The scripted small and big models (see the header). */
  script(plans: readonly Plan[]): (turn: AgentTurn) => ScriptedTurn | undefined {
    return (turn) => {
      const messages = turn.messages as Array<{ role?: string; content?: unknown }>;
      const users = messages.filter((m) => m.role === 'user');
      const index = Number(MARK.exec(String(users[0]?.content ?? ''))?.[1]);
      const plan = plans[index];
      if (plan === undefined) return undefined;
      const model = String(turn.body.model);
      const reasked = String(users.at(-1)?.content ?? '').startsWith(REASK);
      const stage = model === 'big' ? 'escalate' : reasked ? 'reask' : 'first';
      const lie = stage === 'escalate' ? undefined : stage === 'reask' ? plan.reask : plan.first;
      const nonce = `a${++this.next}`;
      const content = JSON.stringify(answer(plan, lie, nonce));
      const given: Given = { prompt: index, model, stage, lie, tokens: usageOf(messages, content) };
      this.given.set(nonce, given);
      this.round.push(given);
      return { content };
    };
  }
}

/** An answer citing the asked line, honestly or with `lie`. */
function answer(plan: Plan, lie: Lie | undefined, nonce: string): Record<string, unknown> {
  const { file, line } = plan;
  const text = file.lines[line - 1] ?? '';
  const citation = { path: file.path, start_line: line, end_line: line, quote: text };
  const said = `[${nonce}] line ${line} of ${file.path} sets item_${line}`;
  switch (lie) {
    case undefined:
      return { answer: said, citations: [citation] };
    case 'past-end':
      return {
        answer: said,
        citations: [{ ...citation, start_line: file.lines.length + 7, end_line: file.lines.length + 7 }],
      };
    case 'bad-quote':
      return {
        answer: said,
        citations: [{ ...citation, quote: text.replace(/(\d+);$/, (_, n: string) => `${Number(n) + 1};`) }],
      };
    case 'no-file':
      return { answer: said, citations: [{ ...citation, path: file.path.replace('mod', 'gone') }] };
    case 'uncited':
      return { answer: said, citations: [] };
  }
}

const [STRING, INTEGER] = [{ type: 'string' }, { type: 'integer' }];
const CITATION = {
  type: 'object',
  properties: { path: STRING, start_line: INTEGER, end_line: INTEGER, quote: STRING },
  required: ['path', 'start_line'],
};
const JSON_SCHEMA = {
  type: 'object',
  properties: { answer: STRING, citations: { type: 'array', items: CITATION } },
  required: ['answer', 'citations'],
};

type Setting = 'none' | 'checks' | 'no-escalation';

const SETTINGS: Record<Setting, Record<string, unknown>> = {
  none: {},
  checks: { checks: { citations: true }, escalate_model: 'big' },
  'no-escalation': { checks: { citations: true } },
};

type Extra = Record<'reask' | 'escalate', number>;

/**
 * What one run's results came to against the ground truth. broken: not succeeded, or no nonce the
 * double gave; wrong: the answer is a lie (verifiedWrong: and marked verified); unverifiedHonest: a
 * false alarm; modelMismatch: verified, naming another model than the answer's; honestFirstMissed:
 * an honest first answer not verified on the first attempt.
 */
const COUNTS = [
  ...['broken', 'wrong', 'verifiedWrong', 'verified', 'unverified', 'unverifiedHonest'],
  ...['modelMismatch', 'honestFirstMissed', 'fixedByReask', 'fixedByEscalation'],
] as const;

interface Run extends Record<(typeof COUNTS)[number], number> {
  setting: Setting;
  wallMs: number;
  results: number;
  /** Extra requests: the results' own, the job's verification, and the double's count (requests beyond one a prompt). */
  fromResults: Extra;
  fromJob: Extra;
  fromDouble: Extra & { total: number };
  /** Tokens in the job's totals, and those the double served (every request of the run). */
  jobTokens: Tokens;
  served: Tokens;
}

async function runOnce(
  server: BenchServer,
  double: LmStudioDouble,
  truth: Truth,
  all: readonly Plan[],
  setting: Setting,
): Promise<Run> {
  double.resetStats();
  truth.round = [];
  const prompts = all.map((p, i) => ({
    id: `p${i}`,
    prompt: `[bench ${i}] What does line ${p.line} of ${p.file.path} set? Cite it.`,
  }));
  const start = performance.now();
  const submitted = await server.call('lmstudio_complete', {
    model: 'small',
    prompts,
    json_schema: JSON_SCHEMA,
    ...SETTINGS[setting],
  });
  if (submitted.isError) throw new Error(JSON.stringify(submitted.content));
  const jobId = jobIdOf(submitted);
  await waitDone(server, jobId);
  const wallMs = performance.now() - start;
  const { results, job } = await collectAll(server, jobId, {
    waitSeconds: 50,
    timeoutMs: 120_000,
    budgetTokens: 12_000,
  });
  const run = tally(setting, wallMs, results, all, truth);
  const verification = job.verification as { extra_requests?: Partial<Extra> } | undefined;
  const { reask = 0, escalate = 0 } = verification?.extra_requests ?? {};
  run.fromJob = { reask, escalate };
  const tokens = job.tokens as { prompt?: number; completion?: number } | undefined;
  run.jobTokens = { in: tokens?.prompt ?? 0, out: tokens?.completion ?? 0 };
  for (const g of truth.round) {
    run.served.in += g.tokens.in;
    run.served.out += g.tokens.out;
  }
  const stages = (stage: Given['stage']): number => truth.round.filter((g) => g.stage === stage).length;
  run.fromDouble = {
    total: double.chatRequests.length - PROMPTS,
    reask: stages('reask'),
    escalate: stages('escalate'),
  };
  return run;
}

function tally(setting: Setting, wallMs: number, results: CollectedResult[], all: readonly Plan[], truth: Truth): Run {
  const run: Run = {
    ...(Object.fromEntries(COUNTS.map((c) => [c, 0])) as Record<(typeof COUNTS)[number], number>),
    ...{ setting, wallMs, results: results.length },
    fromResults: { reask: 0, escalate: 0 },
    fromJob: { reask: 0, escalate: 0 },
    fromDouble: { total: 0, reask: 0, escalate: 0 },
    jobTokens: { in: 0, out: 0 },
    served: { in: 0, out: 0 },
  };
  for (const r of results) {
    const value = r.value ?? {};
    const said = String((value.json as { answer?: unknown } | undefined)?.answer ?? '');
    const given = truth.given.get(/^\[(a\d+)\]/.exec(said)?.[1] ?? '');
    if (r.state !== 'succeeded' || given === undefined) {
      run.broken++;
      continue;
    }
    const wrong = given.lie !== undefined;
    if (wrong) run.wrong++;
    if (value.verified === true) {
      run.verified++;
      if (wrong) run.verifiedWrong++;
      if (value.model !== given.model) run.modelMismatch++;
    }
    if (value.verified === false) {
      run.unverified++;
      if (!wrong) run.unverifiedHonest++;
    }
    if (value.fixed_by === 're-ask') run.fixedByReask++;
    if (value.fixed_by === 'escalation') run.fixedByEscalation++;
    if (
      setting !== 'none' &&
      all[given.prompt]?.first === undefined &&
      (value.verified !== true || value.attempts !== 1)
    )
      run.honestFirstMissed++;
    const extra = (value.extra_requests ?? {}) as Partial<Extra>;
    run.fromResults.reask += extra.reask ?? 0;
    run.fromResults.escalate += extra.escalate ?? 0;
  }
  return run;
}

async function writeFixtures(root: string, files: readonly Fixture[]): Promise<void> {
  await mkdir(path.join(root, 'src'), { recursive: true });
  for (const f of files) await writeFile(path.join(root, f.path), `${f.lines.join('\n')}\n`);
}

export async function benchChecks(): Promise<BenchRow[]> {
  const files = fixtures();
  const all = plans(files, SEED);
  const truth = new Truth();
  const double = await LmStudioDouble.start({
    latencyMs: LATENCY_MS,
    slots: SLOTS,
    models: [
      { id: 'small', state: 'loaded', contextLength: 8192 },
      { id: 'big', state: 'loaded', contextLength: 8192 },
    ],
    agent: truth.script(all),
  });
  const root = await makeTempDir('monitor-bench-checks-root-');
  const stateDir = await makeTempDir('monitor-bench-checks-');
  await writeFixtures(root, files);
  const server = await startServer([
    ...['--state-dir', stateDir, '--root', root],
    ...['--lmstudio-url', double.url, '--lmstudio-concurrency', String(SLOTS)],
  ]);
  try {
    // Warm-up (not counted): the model list, the schema's compilation, JIT paths.
    const warm = await server.call('lmstudio_complete', {
      model: 'small',
      prompts: [{ prompt: '[bench 0] warm up' }],
      ...SETTINGS.checks,
    });
    await collectAll(server, jobIdOf(warm), { waitSeconds: 50, timeoutMs: 60_000 });
    const load = loadavg()[0] ?? 0;
    const runs: Run[] = [];
    for (let i = 0; i < ROUNDS; i++)
      for (const setting of ['none', 'checks'] as const) runs.push(await runOnce(server, double, truth, all, setting));
    runs.push(await runOnce(server, double, truth, all, 'no-escalation'));
    return rowsOf(all, runs, load);
  } finally {
    await server.close();
    await double.close();
    await rm(stateDir, { recursive: true, force: true });
    await rm(root, { recursive: true, force: true });
  }
}

const pct = (n: number, of = PROMPTS): string => `${((n / of) * 100).toFixed(1)}%`;
const perPrompt = (n: number): string => (n / PROMPTS).toFixed(3);
const extraText = (e: Extra): string =>
  `${e.reask} re-asks + ${e.escalate} escalations = ${perPrompt(e.reask + e.escalate)}/prompt`;
const agrees = (r: Run): boolean =>
  r.fromResults.reask === r.fromJob.reask &&
  r.fromResults.escalate === r.fromJob.escalate &&
  r.fromJob.reask === r.fromDouble.reask &&
  r.fromJob.escalate === r.fromDouble.escalate &&
  r.fromDouble.total === r.fromDouble.reask + r.fromDouble.escalate;
const tokensText = (r: Run): string =>
  `${r.jobTokens.in} / ${r.jobTokens.out} vs ${r.served.in} / ${r.served.out} (${pct(r.jobTokens.in + r.jobTokens.out, r.served.in + r.served.out)})`;
/** Nothing lost, nothing mislabelled: every result found its answer, none honest flagged, none verified for the wrong model. */
const clean = (r: Run): boolean =>
  r.results === PROMPTS &&
  r.broken === 0 &&
  r.unverifiedHonest === 0 &&
  r.modelMismatch === 0 &&
  r.honestFirstMissed === 0;

/** The runs of each setting; the first of each stands for the others (same seed, same answers: only times differ). */
interface BySetting {
  none: Run[];
  checked: Run[];
  base: Run;
  one: Run;
  lone: Run;
}

function bySetting(runs: readonly Run[]): BySetting {
  const of = (s: Setting): Run[] => runs.filter((r) => r.setting === s);
  const [none, checked] = [of('none'), of('checks')];
  const [base, one, lone] = [none[0], checked[0], of('no-escalation')[0]];
  if (base === undefined || one === undefined || lone === undefined) throw new Error('a setting did not run');
  return { none, checked, base, one, lone };
}

function rowsOf(all: readonly Plan[], runs: readonly Run[], load: number): BenchRow[] {
  const { none, checked, base, one, lone } = bySetting(runs);
  const lying = all.filter((p) => p.first !== undefined).length;
  const kinds = LIES.map((lie) => `${all.filter((p) => p.first === lie).length} ${lie}`).join(', ');
  const stubborn = all.filter((p) => p.reask !== undefined).length;
  const verifiedWrong = Math.max(...runs.map((r) => r.verifiedWrong));
  if (verifiedWrong > 0) {
    process.stderr.write(`\nFAILED: ${verifiedWrong} wrong answer(s) marked verified (seed ${SEED})\n`);
    process.exitCode = 1;
  }
  return [
    {
      name: `setting: ${PROMPTS} prompts (JSON answers citing a line of ${FILES} files), double with small + big models, ${SLOTS} slots × ${LATENCY_MS} ms, over stdio; seed ${SEED}`,
      value: `small lies on ${lying} first answers (${pct(lying)}: ${kinds}), ${stubborn} of them again when re-asked; ${cpus().length} cores, load ${load.toFixed(2)} at the start`,
    },
    {
      name: `wrong answers marked verified (every run: ${ROUNDS} with checks + escalate_model big, 1 without escalation)`,
      value: String(verifiedWrong),
      goal: '0',
      ok: verifiedWrong === 0,
    },
    {
      name: 'no checks: wrong answers passed through as plain results',
      value: `${base.wrong}/${PROMPTS} (${pct(base.wrong)})`,
      goal: '≈ 30%',
      ok: base.wrong === lying && none.every((r) => r.wrong === base.wrong && r.broken === 0),
    },
    {
      name: 'checks {citations} + escalate_model big: verified / fixed by re-ask / fixed by escalation / unverified',
      value: `${one.verified} / ${one.fixedByReask} (${pct(one.fixedByReask)}) / ${one.fixedByEscalation} (${pct(one.fixedByEscalation)}) / ${one.unverified}`,
      goal: 'all verified, ≈ 15% + 15%',
      ok: checked.every((r) => clean(r) && r.verified === PROMPTS && r.fixedByReask + r.fixedByEscalation === lying),
    },
    {
      name: 'checks without escalate_model: verified / fixed by re-ask / unverified (all of them wrong answers)',
      value: `${lone.verified} / ${lone.fixedByReask} / ${lone.unverified} (${pct(lone.unverified)}; ${lone.unverified - lone.unverifiedHonest} wrong)`,
      goal: `${stubborn} unverified`,
      ok: clean(lone) && lone.unverified === stubborn && lone.verified + lone.unverified === PROMPTS,
    },
    {
      name: "extra requests: the job's verification / the results' extra_requests / the double's count",
      value: `${extraText(one.fromJob)} / ${extraText(one.fromResults)} / ${extraText(one.fromDouble)}`,
      goal: '≈ 0.45/prompt, all three equal',
      ok: runs.every(agrees),
    },
    ...costRows(runs),
  ];
}

/** What the checks cost: time against no checks, and the tokens the job counts against those served. */
function costRows(runs: readonly Run[]): BenchRow[] {
  const { none, checked, base, one, lone } = bySetting(runs);
  const wallNone = median(none.map((r) => r.wallMs));
  const wallChecks = median(checked.map((r) => r.wallMs));
  const extra = one.fromJob.reask + one.fromJob.escalate;
  return [
    {
      name: `wall time, no checks vs checks (submit → done, median of ${ROUNDS}, alternated)`,
      value: `${ms(wallNone)} vs ${ms(wallChecks)}: ${(wallChecks / wallNone).toFixed(2)}× for ${perPrompt(PROMPTS + extra)}× the requests (runs: ${none.map((r) => ms(r.wallMs)).join(', ')} / ${checked.map((r) => ms(r.wallMs)).join(', ')})`,
    },
    {
      name: "tokens: the job's totals (in / out) vs what the double served: no checks; checks",
      value: `${tokensText(base)}; ${tokensText(one)}`,
      goal: 'equal',
      ok: runs.every((r) => r.jobTokens.in === r.served.in && r.jobTokens.out === r.served.out),
    },
    {
      name: 'ideal wall time (every slot busy all the time)',
      value: `${ms((PROMPTS * LATENCY_MS) / SLOTS)} vs ${ms(((PROMPTS + extra) * LATENCY_MS) / SLOTS)}; without escalation ${ms(lone.wallMs)}`,
    },
  ];
}
