import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cleanupsAfterEach } from '../helpers/cleanup.js';
import { repoRoot } from '../helpers/client.js';
import { bundledWorkers } from '../helpers/scripts.js';
import { coldInput, pythonExecutable, runCold, WarmWorker, type WarmRequest } from '../helpers/warm-harness.js';

/** The bundled workers run warm (many tasks, one process) answer exactly as they do cold. */
const cleanups = cleanupsAfterEach();
let python: string;

beforeAll(async () => {
  python = await pythonExecutable();
});

const env = (): Record<string, string> => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  MONITOR_ALLOWED_ROOTS: repoRoot,
  MONITOR_JOB_ID: 'warm-test',
});

function startWarm(worker: string): WarmWorker {
  const warm = WarmWorker.start(python, ['-s', '-E', path.join(bundledWorkers, worker)], { cwd: repoRoot, env: env() });
  cleanups.push(async () => {
    await warm.kill();
  });
  return warm;
}

/** The task as a cold process gets it: args, stdin, and the MONITOR_* variables in its environment. */
async function runColdTask(
  worker: string,
  request: WarmRequest,
  index: number,
): Promise<{ code: number | null; json: unknown; stderr: string }> {
  const { args, stdin, format } = coldInput(request);
  const run = await runCold(python, ['-s', '-E', path.join(bundledWorkers, worker), ...args], {
    cwd: repoRoot,
    env: { ...env(), ...taskEnv(index, format) },
    ...(stdin === undefined ? {} : { stdin }),
  });
  return { code: run.code, json: run.code === 0 ? JSON.parse(run.stdout) : undefined, stderr: run.stderr };
}

function taskEnv(index: number, format: string): Record<string, string> {
  return { MONITOR_TASK_INDEX: String(index), MONITOR_ATTEMPT: '1', MONITOR_STDIN_FORMAT: format };
}

interface Case {
  worker: string;
  /** Successes and failures interleaved: a failed task must leave nothing behind for the next. */
  requests: WarmRequest[];
  /** Indexes of the requests that fail (exit 2, the input is wrong). */
  failing: number[];
}

const cases: Case[] = [
  {
    worker: 'analyze_dependencies.py',
    requests: [
      { args: ['src/paths.ts', 'src/pools/script/pool.ts', 'workers/code_stats.py'] },
      { json: { files: 'src/paths.ts' } },
      { json: { files: ['src/errors.ts', 'no/such/file.ts', 'package.json'], root: 'src' } },
      {},
      { stdin: '["workers/outline.py"]' },
      { args: ['test/workers/bundled.test.ts', '/bin/sh'] },
    ],
    failing: [1, 3],
  },
  {
    worker: 'code_stats.py',
    requests: [
      { args: ['src/pools/script/catalog.ts', 'workers/grep_context.py', '/bin/sh'] },
      { stdin: 'not json' },
      { json: { files: ['workers/code_stats.py', 'README.md'] } },
      { json: { files: [] } },
      { args: ['src/paths.ts'] },
    ],
    failing: [1, 3],
  },
  {
    worker: 'grep_context.py',
    requests: [
      { args: ['--context', '1', '--include', '*.ts', 'export class WorkerCatalog', 'src'] },
      { args: ['(unclosed', 'src'] },
      { json: { pattern: 'import', files: ['src'], context: 0, max_matches: 5 } },
      { json: { pattern: 'x', files: [] } },
      { args: ['-i', '-F', 'todo', 'workers'] },
      { args: ['--context', 'many', 'x', 'src'] },
      { json: { pattern: 'serve', files: 'workers/_common.py', fixed: true } },
    ],
    failing: [1, 3, 5],
  },
  {
    worker: 'outline.py',
    requests: [
      { args: ['src/pools/script/catalog.ts', 'workers/outline.py'] },
      { json: null },
      { json: ['src/paths.ts', 'workers/_common.py', 'missing.py'] },
      { stdin: '{"files": ["src/errors.ts"]}' },
    ],
    failing: [1],
  },
];

describe('the bundled workers, warm', () => {
  for (const { worker, requests, failing } of cases) {
    it(`${worker}: one process answers each task as a cold run does, failures included, and exits 0 at EOF`, async () => {
      const warm = startWarm(worker);
      for (const [index, request] of requests.entries()) {
        const cold = await runColdTask(worker, request, index);
        const { reply, log } = await warm.send({ ...request, env: taskEnv(index, coldInput(request).format) });
        const what = `${worker} task ${index}: ${JSON.stringify(request)}`;
        expect(reply.exit_code, what).toBe(cold.code);
        expect(reply.exit_code, what).toBe(failing.includes(index) ? 2 : 0);
        // The task's log is what the cold run wrote on stderr (the input error, or nothing).
        expect(log, what).toBe(cold.stderr);
        if (cold.code === 0) expect(reply.result, what).toEqual(cold.json);
        else expect(reply.result, what).toBeUndefined();
      }
      expect(warm.replyLines).toHaveLength(requests.length);
      expect(await warm.end()).toEqual({ code: 0, signal: null, log: '' });
    });
  }

  it('the same task twice gives the same result (nothing carried over between tasks)', async () => {
    const warm = startWarm('grep_context.py');
    const request: WarmRequest = {
      json: { pattern: 'def ', files: ['workers'], include: '*.py', context: 1, max_matches: 50 },
    };
    const first = await warm.send(request);
    await warm.send({ args: ['-i', '--max-matches', '1', 'import', 'src'] });
    const again = await warm.send(request);
    expect(again.reply).toEqual({ ...first.reply, id: again.reply.id });
    expect(first.reply.exit_code).toBe(0);
  });

  it('files outside MONITOR_ALLOWED_ROOTS stay refused in every task', async () => {
    const warm = startWarm('code_stats.py');
    for (let round = 0; round < 3; round++) {
      const { reply } = await warm.send({ args: ['/etc/hostname', 'src/paths.ts'] });
      const files = (reply.result as { files: Array<{ error?: string }> }).files;
      expect(files[0]?.error).toMatch(/outside the allowed folders/);
      expect(files[1]?.error).toBeUndefined();
    }
  });
});
