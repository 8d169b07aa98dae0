import { readFile, rm, stat } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { expandFiles } from '../../src/pools/llm/glob.js';
import { type AgentTurn, LmStudioDouble, type ScriptedTurn } from '../fixtures/lmstudio-double.js';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { type CollectedResult, collectAll } from '../helpers/collect.js';
import { type BenchRow, type BenchServer, ms, startServer } from './common.js';

/**
 * Local agents (issue 20): 16 investigations of exactly 6 steps each (list_files, outline, grep over
 * src/, two 200-line read_file windows, then finish citing two real lines) on a scripted
 * tool-calling double with 4 slots at 200 ms a request, through the built server over stdio. The
 * job's wall time against the ideal (every slot busy all the time), the same job one agent at a time,
 * and what Claude receives against what the agents read.
 */
const INVESTIGATIONS = 16;
const STEPS = 6;
const SLOTS = 4;
const LATENCY_MS = 200;
const MODEL = 'bench-agent';
const MARK = /\[bench (\w+)\]/;

/** One investigation's script: the real files it looks at and the lines it cites. */
interface Plan {
  file: string;
  name: string;
  /** 1-based lines of `file` cited by finish, with their text. */
  cited: Array<{ line: number; text: string }>;
  lines: number;
}

/** The largest src/ files that export a named function, class or const: real reading for the agents. */
async function choosePlans(): Promise<Plan[]> {
  const files = await expandFiles(['src/**/*.ts'], { roots: [repoRoot], maxFiles: 10_000 });
  const sized = await Promise.all(files.map(async (file) => ({ file, size: (await stat(file)).size })));
  sized.sort((a, b) => b.size - a.size || a.file.localeCompare(b.file));
  const plans: Plan[] = [];
  for (const { file } of sized) {
    if (plans.length === INVESTIGATIONS) break;
    const lines = (await readFile(file, 'utf8')).split('\n');
    const at = lines.findIndex((l, i) => i < 200 && /^export (?:async )?(?:function|class|const) \w+/.test(l));
    const name = /^export (?:async )?(?:function|class|const) (\w+)/.exec(lines[at] ?? '')?.[1];
    // A second cited line from the second window: the first non-blank one past line 200.
    const later = lines.findIndex((l, i) => i >= 200 && l.trim().length > 8);
    if (name === undefined || later === -1) continue;
    const relative = path.relative(repoRoot, file);
    plans.push({
      file: relative,
      name,
      lines: lines.length,
      cited: [
        { line: at + 1, text: (lines[at] ?? '').trim() },
        { line: later + 1, text: (lines[later] ?? '').trim() },
      ],
    });
  }
  if (plans.length < INVESTIGATIONS) throw new Error(`only ${plans.length} src/ files fit the bench's script`);
  return plans;
}

const call = (name: string, args: Record<string, unknown>): ScriptedTurn => ({
  tool_calls: [{ name, arguments: args }],
});

/** Bytes of the tool results the agent's conversation holds (what the agent itself had to read). */
function toolResultBytes(turn: AgentTurn): number {
  let bytes = 0;
  for (const m of turn.messages as Array<{ role?: string; content?: unknown }>)
    if (m.role === 'tool') bytes += Buffer.byteLength(String(m.content ?? ''));
  return bytes;
}

/** The scripted model: 5 tool calls on real files, then finish with a paragraph and two citations. */
function scriptedAgent(plans: readonly Plan[], seen: Map<string, number>, answered: number[]) {
  return (turn: AgentTurn): ScriptedTurn | undefined => {
    answered.push(performance.now());
    const messages = turn.messages as Array<{ role?: string; content?: unknown }>;
    const task = String(messages.find((m) => m.role === 'user')?.content ?? '');
    const key = MARK.exec(task)?.[1];
    const plan = key === 'warm' ? plans[0] : plans[Number(key)];
    if (plan === undefined) return undefined;
    const step = messages.filter((m) => m.role === 'assistant').length + 1;
    switch (step) {
      case 1:
        return call('list_files', { path: path.dirname(plan.file) });
      case 2:
        return call('outline', { path: plan.file });
      case 3:
        return call('grep', { pattern: `\\b${plan.name}\\b`, path: 'src' });
      case 4:
        return call('read_file', { path: plan.file, start_line: 1, end_line: 200 });
      case 5:
        return call('read_file', { path: plan.file, start_line: 201, end_line: 400 });
      default: {
        seen.set(task, toolResultBytes(turn));
        const [first, second] = plan.cited;
        return call('finish', {
          answer: [
            `${plan.name} is defined in ${plan.file} (${plan.lines} lines) at line ${first?.line}, where the module's main entry point is exported;`,
            `the grep over src/ shows where it is used, and the rest of the file (read in two windows of 200 lines) holds the helpers it relies on.`,
            `The later part of the file, from line ${second?.line}, carries the lower-level pieces.`,
            `Risks: the module is large, and its callers depend on the exact shape of what it returns, so a change there ripples to them.`,
          ].join(' '),
          citations: plan.cited.map((c) => ({ path: plan.file, start_line: c.line, end_line: c.line, quote: c.text })),
        });
      }
    }
  };
}

const forwarded = (reply: CallToolResult): number => Buffer.byteLength(JSON.stringify(reply.structuredContent ?? {}));

interface Run {
  /** CPU time of the server process (its grep threads included) and of this one (the double, the client). */
  serverCpuMs: number;
  benchCpuMs: number;
  startedAt: number;
  endedAt: number;
  wallMs: number;
  /** structuredContent bytes of the dispatch reply and of every collect_results page. */
  bytes: number;
  pages: number;
  results: CollectedResult[];
}

/** Submit → every result collected, paging as Claude does (default page size), every reply counted. */
async function investigate(server: BenchServer, plans: readonly Plan[], concurrency?: number): Promise<Run> {
  const tasks = plans.map((plan, i) => ({
    id: `inv-${i}`,
    task: `[bench ${i}] What does ${plan.name} in ${plan.file} do, who uses it, and what are its risks? Cite the lines.`,
  }));
  const serverCpu = await cpuOf(server.pid);
  const benchCpu = process.cpuUsage();
  const start = performance.now();
  const submitted = await server.call('lmstudio_investigate', {
    tasks,
    max_steps: STEPS + 2,
    ...(concurrency === undefined ? {} : { concurrency }),
  });
  if (submitted.isError) throw new Error(JSON.stringify(submitted.content));
  let bytes = forwarded(submitted);
  const { results, pages } = await collectAll(server, jobIdOf(submitted), {
    waitSeconds: 50,
    timeoutMs: 600_000,
    onReply: (reply) => {
      bytes += forwarded(reply);
    },
  });
  const endedAt = performance.now();
  const { user, system } = process.cpuUsage(benchCpu);
  return {
    serverCpuMs: (await cpuOf(server.pid)) - serverCpu,
    benchCpuMs: (user + system) / 1000,
    startedAt: start,
    endedAt,
    wallMs: endedAt - start,
    bytes,
    pages,
    results,
  };
}

/** A process's CPU time so far (user + system, Linux's /proc; NaN elsewhere). */
async function cpuOf(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th, in clock ticks (100 a second).
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** How many results ran exactly as scripted: 6 steps, every citation verified. */
function asScripted(run: Run): number {
  return run.results.filter(
    (r) => r.state === 'succeeded' && r.value?.steps === STEPS && r.value.citations_verified === '2/2',
  ).length;
}

/** Distinct files the agents read: those opened by name (read_file, outline), and with every file grep searched. */
async function distinctBytes(plans: readonly Plan[]): Promise<{ opened: number; searched: number; files: number }> {
  const sizeOf = async (file: string): Promise<number> => (await stat(path.join(repoRoot, file))).size;
  let opened = 0;
  for (const file of new Set(plans.map((p) => p.file))) opened += await sizeOf(file);
  // grep walks every file under src/, whatever its extension.
  const all = await expandFiles(['src/**'], { roots: [repoRoot], maxFiles: 10_000 });
  let searched = 0;
  for (const file of all) searched += (await stat(file)).size;
  return { opened, searched, files: all.length };
}

/** The parallel job is timed this many times (the machine's load drifts); the median run is reported. */
const ROUNDS = 3;

interface Timed {
  run: Run;
  profile: Profile;
  /** Bytes of the tool results the agents' conversations held at their finish. */
  toolResults: number;
  peak: number;
}

export async function benchAgents(): Promise<BenchRow[]> {
  const plans = await choosePlans();
  const toolBytes = new Map<string, number>();
  const answered: number[] = [];
  const double = await LmStudioDouble.start({
    latencyMs: LATENCY_MS,
    slots: SLOTS,
    models: [{ id: MODEL, state: 'loaded', contextLength: 65_536 }],
    agent: scriptedAgent(plans, toolBytes, answered),
  });
  const stateDir = await makeTempDir('monitor-bench-agents-');
  const server = await startServer([
    '--state-dir',
    stateDir,
    '--root',
    repoRoot,
    '--lmstudio-url',
    double.url,
    '--lmstudio-concurrency',
    String(SLOTS),
  ]);
  const timed = async (concurrency?: number): Promise<Timed> => {
    toolBytes.clear();
    answered.length = 0;
    double.resetStats();
    const run = await investigate(server, plans, concurrency);
    const toolResults = [...toolBytes.values()].reduce((a, b) => a + b, 0);
    return { run, profile: whereTimeGoes(run, answered, concurrency ?? SLOTS), toolResults, peak: double.peakInFlight };
  };
  try {
    // Warm-up (not timed): the model list, the outline worker's start, the grep thread's code, JIT paths.
    const warm = await server.call('lmstudio_investigate', { tasks: [{ task: '[bench warm] warm up' }] });
    await collectAll(server, jobIdOf(warm), { waitSeconds: 50, timeoutMs: 120_000 });
    const load = loadavg()[0] ?? 0;
    const rounds: Timed[] = [];
    for (let i = 0; i < ROUNDS; i++) rounds.push(await timed());
    const sequential = await timed(1);
    return await rowsOf(plans, rounds, sequential, load);
  } finally {
    await server.close();
    await double.close();
    await rm(stateDir, { recursive: true, force: true });
  }
}

/**
 * Where a run's wall time goes, from the double's side: each scripted answer is given once its
 * request has held a slot for the latency (requests never queue in the double: the server sends at
 * most one per slot), so a request took its slot LATENCY_MS before its answer (a late timer in the
 * double shows as a later start: the figures below are upper bounds of the server's own gaps).
 */
interface Profile {
  requests: number;
  /** Submit → the first request in a slot: planning, the job's start, the first prompt. */
  startMs: number;
  /** The last answer → every result collected: the last tool results, citations, the result, the reply. */
  endMs: number;
  /** The slots' busy share from the first request to the last answer. */
  busy: number;
  /** Slot time idle before the tail: a slot freed, every slot not yet taken again (each such gap's length in `refills`). */
  refillIdleMs: number;
  refills: number[];
  /** From the last time every slot was taken to the last answer: too few agents left to fill them. */
  tailMs: number;
  tailIdleMs: number;
}

function whereTimeGoes(run: Run, answers: readonly number[], slots = SLOTS): Profile {
  const events = answers
    .flatMap((t) => [
      { at: t - LATENCY_MS, d: 1 },
      { at: t, d: -1 },
    ])
    .sort((a, b) => a.at - b.at || a.d - b.d);
  let inSlots = 0;
  let fullUntil = events[0]?.at ?? 0;
  let freedAt: number | undefined;
  const gaps: Array<{ at: number; ms: number }> = [];
  for (const e of events) {
    if (e.d < 0 && inSlots === slots) freedAt = e.at;
    inSlots += e.d;
    if (inSlots === slots) {
      fullUntil = e.at;
      if (freedAt !== undefined) gaps.push({ at: freedAt, ms: e.at - freedAt });
      freedAt = undefined;
    }
  }
  const first = events[0]?.at ?? run.startedAt;
  const last = events.at(-1)?.at ?? run.endedAt;
  const span = Math.max(1, last - first);
  const busyMs = answers.length * LATENCY_MS;
  // Slot time busy in the tail (after the slots were last all taken); the rest of the tail is idle.
  const tailBusy = answers.reduce((sum, t) => sum + Math.max(0, t - Math.max(t - LATENCY_MS, fullUntil)), 0);
  const tailMs = last - fullUntil;
  const tailIdleMs = slots * tailMs - tailBusy;
  return {
    requests: answers.length,
    startMs: first - run.startedAt,
    endMs: run.endedAt - last,
    busy: busyMs / (slots * span),
    refillIdleMs: slots * span - busyMs - tailIdleMs,
    refills: gaps.map((g) => g.ms),
    tailMs,
    tailIdleMs,
  };
}

function profileRow(what: string, { run, profile: p }: Timed): BenchRow {
  const sorted = [...p.refills].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return {
    name: `where the time goes (${what})`,
    value: [
      `submit → first request in a slot ${ms(p.startMs)}`,
      `slots ${(p.busy * 100).toFixed(1)}% busy from then to the last answer`,
      `${p.refills.length} refills (a slot freed → every slot taken again: median ${at(0.5).toFixed(1)} ms, p90 ${at(0.9).toFixed(1)} ms; ${ms(p.refillIdleMs)} of slot time idle in all before the tail)`,
      `tail (the last time every slot was taken → the last answer) ${ms(p.tailMs)}, ${ms(p.tailIdleMs)} of slot time idle`,
      `last answer → collected ${ms(p.endMs)}`,
      `CPU: server ${ms(run.serverCpuMs)}, double + client ${ms(run.benchCpuMs)} in ${ms(run.wallMs)}`,
    ].join('; '),
  };
}

async function rowsOf(
  plans: readonly Plan[],
  rounds: readonly Timed[],
  sequential: Timed,
  load: number,
): Promise<BenchRow[]> {
  const ideal = (INVESTIGATIONS * STEPS * LATENCY_MS) / SLOTS;
  const sorted = [...rounds].sort((a, b) => a.run.wallMs - b.run.wallMs);
  const median = sorted[Math.floor(sorted.length / 2)] ?? sequential;
  const { run: parallel } = median;
  const pct = (wall: number): string => `${((ideal / wall) * 100).toFixed(1)}%`;
  const ofIdeal = (ideal / parallel.wallMs) * 100;
  const scripted = Math.min(...rounds.map((r) => asScripted(r.run)));
  const okSequential = asScripted(sequential.run);
  const speedUp = sequential.run.wallMs / parallel.wallMs;
  const bytesRead = parallel.results.reduce((sum, r) => sum + Number(r.value?.bytes_read ?? 0), 0);
  const distinct = await distinctBytes(plans);
  const ratio = (n: number): string => `${(n / parallel.bytes).toFixed(1)}×`;
  const spread = sorted.map((r) => `${ms(r.run.wallMs)} ${pct(r.run.wallMs)}`).join(', ');
  return [
    {
      name: `setting: ${INVESTIGATIONS} investigations × ${STEPS} steps (5 tool calls on src/ + finish), double with ${SLOTS} slots × ${LATENCY_MS} ms, over stdio`,
      value: `ideal ${INVESTIGATIONS}×${STEPS}×${LATENCY_MS} ms / ${SLOTS} = ${ms(ideal)}; ${cpus().length} cores, load ${load.toFixed(2)} at the start`,
    },
    {
      name: `lmstudio_investigate, default concurrency (submit → all collected), median of ${ROUNDS}`,
      value: `${ms(parallel.wallMs)} (${ofIdeal.toFixed(1)}% of ideal; runs: ${spread}; ${scripted}/${INVESTIGATIONS} as scripted; peak ${median.peak} in flight)`,
      goal: '≥ 90% of ideal',
      ok: ofIdeal >= 90 && scripted === INVESTIGATIONS,
    },
    {
      name: 'the same, one agent loop at a time (concurrency 1)',
      value: `${ms(sequential.run.wallMs)} (${okSequential}/${INVESTIGATIONS} as scripted): parallel ${speedUp.toFixed(2)}× faster`,
      goal: '≥ 3.5×',
      ok: speedUp >= 3.5 && okSequential === INVESTIGATIONS,
    },
    {
      name: `structuredContent Claude receives (dispatch + ${parallel.pages} collect_results page(s))`,
      value: `${parallel.bytes} bytes`,
    },
    {
      name: 'files the agents read: sum of bytes_read',
      value: `${bytesRead} bytes (${ratio(bytesRead)} what Claude receives)`,
      goal: '≥ 20×',
      ok: bytesRead >= 20 * parallel.bytes,
    },
    {
      name: `files the agents read: distinct files (the ${distinct.files} under src/ that grep searched, the ${plans.length} read and outlined among them)`,
      value: `${distinct.searched} bytes (${ratio(distinct.searched)})`,
      goal: '≥ 20×',
      ok: distinct.searched >= 20 * parallel.bytes,
    },
    {
      name: `files the agents opened by name (read_file, outline): ${plans.length} distinct`,
      value: `${distinct.opened} bytes (${ratio(distinct.opened)})`,
    },
    {
      name: "tool results the agents' conversations held (Claude's context, had it explored itself with these tools)",
      value: `${median.toolResults} bytes (${ratio(median.toolResults)})`,
    },
    profileRow('parallel, the median run', median),
    profileRow('one at a time', sequential),
  ];
}
