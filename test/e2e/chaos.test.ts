import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, describe, expect, it } from 'vitest';
import { LmStudioDouble } from '../fixtures/lmstudio-double.js';
import { jobIdOf, makeTempDir, repoRoot, textOf } from '../helpers/client.js';
import { collectAll, type Collected } from '../helpers/collect.js';
import { killQuietly, processesWithToken, tokenServerPid, until } from '../helpers/scripts.js';
import { seededRandom } from '../helpers/random.js';

/**
 * The built server as a crashing machine and a second client session would treat it: SIGKILLs at
 * random moments, two servers on one state directory. Bounded (a few minutes on 2 busy cores).
 * Seeded, so a failure can be replayed: the seed is in the test name.
 */
const cli = path.join(repoRoot, 'dist', 'src', 'cli.js');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'e2e-workers');
const stateDirs: string[] = [];

afterAll(async () => {
  await Promise.all(stateDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** The steps investigations have on disk, as "Task: <task> #<step>", read from their transcripts. */
async function recordedSteps(stateDir: string): Promise<Set<string>> {
  const steps = new Set<string>();
  const files = (await readdir(stateDir, { recursive: true })).filter((f) => f.endsWith('.transcript.jsonl'));
  for (const file of files) {
    const text = await readFile(path.join(stateDir, file), 'utf8').catch(() => '');
    let task = '';
    for (const line of text.split('\n')) {
      const parsed = (() => {
        try {
          return JSON.parse(line) as { type?: string; task?: string; step?: number };
        } catch {
          return undefined;
        }
      })();
      if (parsed?.type === 'start') task = `Task: ${parsed.task ?? ''}`;
      if (parsed?.type === 'request') steps.add(`${task} #${parsed.step ?? 0}`);
    }
  }
  return steps;
}

interface Server {
  pid: number;
  call(name: string, args: Record<string, unknown>): Promise<CallToolResult>;
  kill(): Promise<void>;
  close(): Promise<void>;
}

async function start(stateDir: string, extraArgs: readonly string[] = []): Promise<Server> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [
      cli,
      '--state-dir',
      stateDir,
      '--workers-dir',
      fixtures,
      '--root',
      repoRoot,
      '--log-level',
      'warn',
      ...extraArgs,
    ],
    cwd: repoRoot,
    stderr: 'pipe',
  });
  const client = new Client({ name: 'chaos', version: '0.0.0' });
  await client.connect(transport);
  const pid = transport.pid ?? 0;
  return {
    pid,
    call: async (name, args) =>
      (await client.callTool({ name, arguments: args }, undefined, { timeout: 90_000 })) as CallToolResult,
    async kill() {
      killQuietly(pid);
      await client.close().catch(() => undefined);
    },
    close: () => client.close(),
  };
}

async function newStateDir(): Promise<string> {
  const dir = await makeTempDir('monitor-chaos-');
  stateDirs.push(dir);
  return dir;
}

interface Result {
  index: number;
  state: string;
  attempt?: number;
  duration_ms?: number;
  value?: unknown;
}

/** Every result of a job as one collect_results walk shows it now (each task's latest). */
const allResults = (server: Server, jobId: string): Promise<Collected<Result>> =>
  collectAll<Result>(server, jobId, { waitSeconds: 0, budgetTokens: 12_000, until: 'ready' });

/** The processes (workers and what they started) of a server, found by their run token. */
const processesOf = (serverPid: number): number[] => processesWithToken((token) => tokenServerPid(token) === serverPid);

describe('chaos: the built server under SIGKILL and a second server', () => {
  const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000);

  it(
    `loses nothing and runs each task to exactly one result through 6 random SIGKILLs (seed ${seed})`,
    { timeout: 240_000 },
    async () => {
      const next = seededRandom(seed);
      const stateDir = await newStateDir();
      const tasks = 120;
      // Most tasks are quick, some take a while: kills land both between and during them.
      const inputs = Array.from({ length: tasks }, (_, i) => ({
        args: [String(i % 10 === 0 ? 1.5 : 0.05 + next() * 0.3), `t${i}`],
      }));
      const seen = new Map<number, string>();
      let jobId = '';
      let previousPid = 0;
      for (let round = 0; round < 6; round++) {
        const server = await start(stateDir);
        // The server that died before this one left workers: this start ends them.
        if (round > 0)
          await until(
            () => processesOf(previousPid).length === 0,
            `the workers of the server killed in round ${round - 1} to be ended`,
            20_000,
          );
        if (round === 0)
          jobId = jobIdOf(await server.call('run_script_batch', { worker: 'nap.py', inputs, concurrency: 8 }));
        else if ((await allResults(server, jobId)).results.length === tasks) {
          // Every task finished before an earlier kill: nothing is left to cut off.
          previousPid = server.pid;
          await server.kill();
          break;
        } else {
          const resumed = await server.call('resume_job', { job_id: jobId });
          expect(resumed.isError, textOf(resumed)).toBeFalsy();
        }
        // A random moment, but not before this round made progress: on a loaded machine a round could
        // otherwise end before any task does, and there would be nothing a kill could lose.
        await new Promise((resolve) => setTimeout(resolve, 300 + next() * 1500));
        const known = seen.size;
        await until(
          async () => (await allResults(server, jobId)).results.length > known,
          `a task to finish in round ${round}`,
          60_000,
          100,
        );
        // What a client saw before the kill must be found again, unchanged, afterwards.
        for (const result of (await allResults(server, jobId)).results) {
          const text = JSON.stringify(result);
          const before = seen.get(result.index);
          if (before !== undefined) expect(text, `task ${result.index} changed after a kill`).toBe(before);
          seen.set(result.index, text);
        }
        previousPid = server.pid;
        await server.kill();
      }

      const last = await start(stateDir);
      try {
        await until(
          () => processesOf(previousPid).length === 0,
          "the last killed server's workers to be ended",
          20_000,
        );
        await last.call('resume_job', { job_id: jobId });
        await until(
          async () => (await allResults(last, jobId)).job.state === 'succeeded',
          'the job to finish',
          120_000,
          500,
        );
        const { results } = await allResults(last, jobId);
        expect(results).toHaveLength(tasks);
        expect(new Set(results.map((r) => r.index)).size).toBe(tasks);
        for (const result of results) {
          const before = seen.get(result.index);
          if (before !== undefined) expect(JSON.stringify(result)).toBe(before);
        }
        // On disk too: one record per task, since only cut-off runs (which leave none) ran again.
        const lines = (await readFile(path.join(stateDir, 'jobs', jobId, 'results.jsonl'), 'utf8')).trim().split('\n');
        expect(lines).toHaveLength(tasks);
        expect(seen.size).toBeGreaterThan(0);
      } finally {
        await last.close();
      }
    },
  );

  it(
    `ends the workers of a server killed 0-30 ms after a submit, at the next start (seed ${seed})`,
    { timeout: 120_000 },
    async () => {
      const next = seededRandom(seed + 1);
      for (let round = 0; round < 3; round++) {
        const stateDir = await newStateDir();
        const server = await start(stateDir);
        const submitted = server.call('run_script_batch', {
          worker: 'nap.py',
          inputs: Array.from({ length: 8 }, () => ({ args: ['60'] })),
          concurrency: 8,
        });
        // Killed while the workers are being started: before or after each one's group could be journalled.
        await submitted;
        await new Promise((resolve) => setTimeout(resolve, next() * 30));
        const pid = server.pid;
        await server.kill();
        const orphans = processesOf(pid);
        try {
          const successor = await start(stateDir);
          try {
            await until(
              () => processesOf(pid).length === 0,
              `round ${round}: the ${orphans.length} worker(s) the killed server left to be ended`,
              20_000,
            );
          } finally {
            await successor.close();
          }
        } finally {
          for (const orphan of processesOf(pid)) killQuietly(orphan);
        }
      }
    },
  );

  it(
    'lets exactly one of two servers resume a job a killed server left, and the other sees who runs it at once',
    { timeout: 120_000 },
    async () => {
      const stateDir = await newStateDir();
      const first = await start(stateDir);
      const tasks = 16;
      const jobId = jobIdOf(
        await first.call('run_script_batch', {
          worker: 'nap.py',
          inputs: Array.from({ length: tasks }, (_, i) => ({ args: ['6', `r${i}`] })),
          concurrency: tasks,
        }),
      );
      await until(
        async () =>
          ((await first.call('list_jobs', {})).structuredContent as { jobs: Array<{ counts: { running: number } }> })
            .jobs[0]?.counts.running === tasks,
        'all tasks to run',
      );
      // Every worker alive, so every run is noted (a run cut off before its note reached the disk counts once less).
      await until(() => processesOf(first.pid).length >= tasks, 'every worker process to start', 30_000);
      // A run is noted once its worker runs (runs.log), a moment after the process appears.
      const runsLog = path.join(stateDir, 'jobs', jobId, 'runs.log');
      await until(
        async () => (await readFile(runsLog, 'utf8').catch(() => '')).split('\n').length > tasks,
        'every run to be noted',
      );
      await first.kill();

      const [c, d] = await Promise.all([start(stateDir), start(stateDir)]);
      try {
        const replies = await Promise.all([
          c.call('resume_job', { job_id: jobId }),
          d.call('resume_job', { job_id: jobId }),
        ]);
        const winners = replies.filter((reply) => !reply.isError);
        const losers = replies.filter((reply) => reply.isError);
        expect(winners).toHaveLength(1);
        expect(losers).toHaveLength(1);
        expect(winners[0]?.structuredContent).toMatchObject({ requeued: tasks });
        expect(textOf(losers[0] as CallToolResult)).toMatch(
          /^JOB_OWNED_ELSEWHERE: Job .* is run by another monitor-mcp process \(pid \d+\)/,
        );
        const winner = replies[0]?.isError ? d : c;
        const loser = winner === c ? d : c;
        // The loser shows the job as the winner's, at once, and cannot cancel it.
        const listed = (
          (await loser.call('list_jobs', {})).structuredContent as {
            jobs: Array<{ job_id: string; run_by_other_server_pid?: number }>;
          }
        ).jobs.find((job) => job.job_id === jobId);
        expect(listed?.run_by_other_server_pid, JSON.stringify(listed)).toBe(winner.pid);
        expect(textOf(await loser.call('cancel_job', { job_id: jobId }))).toMatch(/^JOB_OWNED_ELSEWHERE/);

        await until(
          async () => (await allResults(winner, jobId)).job.state === 'succeeded',
          'the resumed job to finish',
          60_000,
          500,
        );
        const lines = (await readFile(path.join(stateDir, 'jobs', jobId, 'results.jsonl'), 'utf8')).trim().split('\n');
        expect(lines).toHaveLength(tasks);
        // Each ran twice: once cut off by the kill, once to the end.
        expect((await allResults(loser, jobId)).results.every((r) => r.attempt === 2)).toBe(true);
      } finally {
        await Promise.all([c.close(), d.close()]);
      }
    },
  );

  it(
    `finishes an LLM batch whose endpoint fails 20% of requests in every way, and goes away for 3 s (seed ${seed})`,
    { timeout: 180_000 },
    async () => {
      const next = seededRandom(seed + 2);
      const double = await LmStudioDouble.start({ latencyMs: 20 });
      const server = await start(await newStateDir(), ['--endpoint', `lmstudio=${double.url}@4`]);
      try {
        // Transient faults, once per prompt (a retry gets an answer): every one must end in success.
        const transient = ['429', '500', 'empty-body', 'reset', 'reset-mid', '503', 'stream-error'];
        // Faults that stay: they must fail fast, with what happened, and hold nothing up.
        const lasting: Record<string, string> = {
          '429-long': 'UPSTREAM_ERROR',
          '500': 'UPSTREAM_ERROR',
          crash: 'UPSTREAM_ERROR',
        };
        const prompts = Array.from({ length: 150 }, (_, i) => {
          const roll = next();
          if (roll < 0.15) return { prompt: `p${i} #fault:${transient[i % transient.length]}*1` };
          if (roll < 0.2) return { prompt: `p${i} #fault:${Object.keys(lasting)[i % 3]}` };
          return { prompt: `p${i}` };
        });
        const jobId = jobIdOf(await server.call('lmstudio_complete', { prompts, max_tokens: 16 }));
        // An outage in the middle of the run: queued tasks wait for the endpoint instead of failing.
        const answered = async (): Promise<number> =>
          ((await server.call('list_jobs', {})).structuredContent as { jobs: Array<{ counts: { succeeded: number } }> })
            .jobs[0]?.counts.succeeded ?? 0;
        await until(async () => (await answered()) >= 30, 'a fifth of the prompts to be answered', 60_000, 100);
        await double.close();
        await new Promise((resolve) => setTimeout(resolve, 3000));
        await double.reopen();
        await until(
          async () => (await allResults(server, jobId)).job.state !== 'running',
          'the LLM job to finish',
          120_000,
          500,
        );
        const { results, job } = await allResults(server, jobId);
        expect(results).toHaveLength(prompts.length);
        const byIndex = new Map(results.map((r) => [r.index, r as Result & { error?: { code: string } }]));
        prompts.forEach(({ prompt }, index) => {
          const result = byIndex.get(index);
          const fault = /#fault:([a-z0-9-]+)(\*1)?$/.exec(prompt);
          if (fault && fault[2] === undefined) {
            expect(result?.state, prompt).toBe('failed');
            expect(result?.error?.code, prompt).toBe(lasting[fault[1] ?? '']);
          } else {
            expect(result?.state, `${prompt}: ${JSON.stringify(result)}`).toBe('succeeded');
          }
        });
        expect(job.counts.failed).toBe(prompts.filter((p) => /#fault:[a-z0-9-]+$/.test(p.prompt)).length);
        // A 429 asking for 100000 s is not waited for; a lasting 500 is tried twice; nothing is asked more often than its retries allow.
        const asked = (text: string): number =>
          double.chatRequests.filter((r) => JSON.stringify(r.body).includes(`${text}"`)).length;
        prompts.forEach(({ prompt }) => {
          if (prompt.endsWith('#fault:429-long')) expect(asked(prompt), prompt).toBe(1);
          if (prompt.endsWith('#fault:500')) expect(asked(prompt), prompt).toBe(2);
        });
      } finally {
        await server.close();
        await double.close();
      }
    },
  );
  it(
    'a script → LLM → reduce pipeline killed with SIGKILL mid-run resumes each stage where it stopped',
    { timeout: 180_000 },
    async () => {
      const double = await LmStudioDouble.start({ latencyMs: 30 });
      const stateDir = await newStateDir();
      const args = ['--endpoint', `lmstudio=${double.url}@2`];
      try {
        let server = await start(stateDir, args);
        const tasks = 16;
        const scriptId = jobIdOf(
          await server.call('run_script_batch', {
            worker: 'nap.py',
            inputs: Array.from({ length: tasks }, (_, i) => ({ args: ['0.4', `m${i}`] })),
            concurrency: 2,
          }),
        );
        const stage = await server.call('lmstudio_complete', {
          from_job: scriptId,
          template: 'Explain module {{label}}: {{output}}',
          reduce: 'Combine the explanations into one.',
          max_tokens: 16,
        });
        expect(stage.isError, textOf(stage)).toBeFalsy();
        const reduceId = jobIdOf(stage);
        const stageId = (stage.structuredContent as { runs_on: { job_id: string } }).runs_on.job_id;
        // Killed while the script stage is half done and the LLM stage has started on its results.
        await until(
          async () => (await allResults(server, stageId)).results.length >= 3,
          'the LLM stage to answer a few results',
          60_000,
          100,
        );
        expect((await allResults(server, scriptId)).results.length).toBeLessThan(tasks);
        await server.kill();

        server = await start(stateDir, args);
        const interrupted = (await server.call('list_jobs', {})).structuredContent as {
          jobs: Array<{ job_id: string; state: string }>;
        };
        expect(
          interrupted.jobs
            .filter((j) => [scriptId, stageId, reduceId].includes(j.job_id))
            .map((j) => j.state)
            .sort(),
        ).toEqual(['interrupted', 'interrupted', 'interrupted']);
        const resumed = await server.call('resume_job', { job_id: reduceId });
        expect(resumed.isError, textOf(resumed)).toBeFalsy();
        await until(
          async () => (await allResults(server, reduceId)).job.state === 'succeeded',
          'the resumed pipeline to finish',
          120_000,
          300,
        );
        for (const id of [scriptId, stageId]) {
          const { results, job } = await allResults(server, id);
          expect(job.state, id).toBe('succeeded');
          expect(results.map((r) => r.index).sort((a, b) => a - b)).toEqual(Array.from({ length: tasks }, (_, i) => i));
          // Each task ran to exactly one success: no task of a stage was recorded twice.
          const lines = (await readFile(path.join(stateDir, 'jobs', id, 'results.jsonl'), 'utf8'))
            .trim()
            .split('\n')
            .map((line) => JSON.parse(line) as { index: number; state: string });
          expect(lines.filter((r) => r.state === 'succeeded').length, id).toBe(tasks);
        }
        const merged = (await allResults(server, reduceId)).results[0] as Result & {
          value: { inputs: number; failed_inputs: string[] };
        };
        expect(merged.value.inputs).toBe(tasks);
        expect(merged.value.failed_inputs).toEqual([]);
        await server.close();
      } finally {
        await double.close();
      }
    },
  );

  it(
    'resumes investigations killed with SIGKILL mid-loop from their last step: no answered request is sent again',
    { timeout: 180_000 },
    async () => {
      const stepOf = (messages: Array<{ role?: string }>): number =>
        messages.filter((m) => m.role === 'assistant').length + 1;
      const double = await LmStudioDouble.start({
        latencyMs: 300,
        agent: ({ messages }) => {
          const step = stepOf(messages as Array<{ role?: string }>);
          if (step < 6)
            return { tool_calls: [{ name: 'read_file', arguments: { path: 'package.json', start_line: step } }] };
          return {
            tool_calls: [
              {
                name: 'finish',
                arguments: {
                  answer: 'Read it.',
                  citations: [{ path: 'package.json', start_line: 1, end_line: 1, quote: '{' }],
                },
              },
            ],
          };
        },
      });
      const stateDir = await newStateDir();
      const args = ['--endpoint', `lmstudio=${double.url}@2`];
      let server = await start(stateDir, args);
      try {
        const tasks = [{ task: 'first' }, { task: 'second' }, { task: 'third' }];
        const jobId = jobIdOf(await server.call('lmstudio_investigate', { tasks, max_steps: 8 }));
        // Killed once the transcripts hold 5 answered steps (a request of another task is then in flight).
        await until(async () => (await recordedSteps(stateDir)).size >= 5, 'five steps on disk', 60_000, 20);
        await server.kill();
        const before = await recordedSteps(stateDir);
        const sentBefore = double.chatRequests.length;
        server = await start(stateDir, args);
        const resumed = await server.call('resume_job', { job_id: jobId });
        expect(resumed.isError, textOf(resumed)).toBeFalsy();
        await until(
          async () => (await allResults(server, jobId)).job.state === 'succeeded',
          'the investigations to finish',
          120_000,
          250,
        );
        const { results } = await allResults(server, jobId);
        for (const result of results)
          expect(result.value).toMatchObject({ steps: 6, citations_verified: '1/1', text: 'Read it.' });
        expect(results.some((r) => Number((r.value as { resumed_after_step?: number }).resumed_after_step) > 0)).toBe(
          true,
        );
        // A step on disk before the kill was replayed from the transcript, not asked again.
        const askedAgain = double.chatRequests.slice(sentBefore).filter((request) => {
          const messages = (request.body?.messages ?? []) as Array<{ role?: string; content?: unknown }>;
          const task = String(messages.find((m) => m.role === 'user')?.content ?? '');
          return before.has(`${task} #${stepOf(messages)}`);
        });
        expect(askedAgain).toHaveLength(0);
        expect((await recordedSteps(stateDir)).size).toBe(18);
      } finally {
        await server.close();
        await double.close();
      }
    },
  );
});
