import { execFile } from 'node:child_process';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { pad, printCodeStats, printDependencies } from './demo-report.js';
import { type DemoJob, measureSpeedup } from './demo-speed.js';
import { cliCommand, type DemoShell, keptLines, watchLines } from './demo-watch.js';
import type { Platform } from './platform/index.js';
import { formatDuration } from './tools/format.js';

export interface DemoOptions {
  /** The node binary and the built cli.js to start as the server, exactly as an MCP client would. */
  nodePath: string;
  cliPath: string;
  /** The repository whose source files the workers analyse (and the server's allowed root). */
  repoRoot: string;
  /** A fresh state directory, so the demo leaves the user's jobs alone; it stays, for the dashboard and `jobs`. */
  stateDir: string;
  cpus: number;
  /** Where the demo was started, the user's PATH and the system: the commands it prints run there as printed. */
  cwd: string;
  searchPath: string;
  platform: Platform;
  /** More server options (e.g. `--endpoint llama=http://127.0.0.1:8080`), passed on as given. */
  serverArgs?: readonly string[];
  write(text: string): void;
}

interface JobView {
  job_id: string;
  state: string;
  counts: { total: number; succeeded: number; failed: number };
  elapsed_ms: number;
  peak_running: number;
  concurrency: number;
}
interface CollectPage {
  jobs: JobView[];
  done: boolean;
  remaining: number;
  next_cursor?: string;
  results: Array<{
    index: number;
    id?: string;
    state: string;
    duration_ms?: number;
    value?: { json?: unknown; text?: string };
  }>;
}

async function sourceFiles(root: string): Promise<string[]> {
  const wanted = /\.(ts|py|mjs|js)$/;
  const out: string[] = [];
  for (const dir of ['src', 'workers', 'test']) {
    const entries = await readdir(path.join(root, dir), { recursive: true, withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isFile() || !wanted.test(entry.name)) continue;
      out.push(path.relative(root, path.join(entry.parentPath, entry.name)));
    }
  }
  return out.sort();
}

const run = promisify(execFile);

/** Files per task: a worker started once per file would spend its time starting, not working. */
const FILES_PER_TASK = 8;

function batches<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The two bundled workers the demo runs over the repository's files. */
const SCRIPT_WORKERS = ['analyze_dependencies.py', 'code_stats.py'] as const;

type Call = (name: string, args: Record<string, unknown>) => Promise<CallToolResult>;
type CollectAll = (jobId: string) => Promise<Collected>;

/** A job collected to its last page. */
interface Collected {
  job: JobView & { tokens?: { prompt: number; completion: number; completion_per_second: number | null } };
  results: CollectPage['results'];
  pages: number;
}

/** The script jobs as submitted: the tasks each got, and when. */
interface ScriptBatch {
  jobIds: string[];
  inputs: Array<{ args: string[] }>;
  concurrency: number;
  submittedAt: number;
}

type ListedWorker = { name: string; interpreter: string; path: string; description?: string };

/**
 * The main job, end to end: a real MCP client starts the built server over stdio, lists its tools
 * and workers, submits two batch jobs over this repository's own source files, keeps working while
 * they run, collects every page and prints the merged results; then measures where the speed-up
 * comes from (a sample of the same tasks a process each one after another, warm one at a time,
 * warm in parallel, in rounds); and, when an LLM endpoint answers, sends a few files to the local
 * model. Its state directory stays: the commands it prints show its jobs after it.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const { write } = options;
  const started = performance.now();
  const cli = await cliCommand(shellOf(options));
  const demo = await DemoClient.start(options).catch(async (error: unknown) => {
    // Nothing ran, nothing was printed: no folder is left behind.
    await rm(options.stateDir, { recursive: true, force: true });
    throw error;
  });
  let told = false;
  try {
    const workers = await introduce(demo, options, cli);
    const files = await sourceFiles(options.repoRoot);
    const batch = await submitScriptJobs(demo.call, files, options);
    await glanceAtJobs(demo.call, write);
    const collected = await collectScriptJobs(demo.collectAll, batch, write);
    const monitorMs = performance.now() - batch.submittedAt;
    const values = (i: number): unknown[] =>
      (collected[i]?.results ?? []).flatMap((r) => (r.value?.json === undefined ? [] : [r.value.json]));
    printCodeStats(values(1), write);
    printDependencies(values(0), write);
    write(
      `\nAll ${SCRIPT_WORKERS.length * batch.inputs.length} tasks through monitor-mcp, two jobs side by side: ${formatDuration(monitorMs)} from submitting them to the last result collected.\n`,
    );
    await measureSpeedup({
      runJobs: (jobs) => runJobs(demo, jobs),
      workers: SCRIPT_WORKERS.map((name) => ({
        name,
        file: workers.find((w) => w.name === name)?.path ?? name,
        inputs: batch.inputs,
      })),
      python: await pythonPath(),
      cpus: options.cpus,
      cwd: options.repoRoot,
      write,
    });
    await demoLlm(demo.call, demo.collectAll, files, options.repoRoot, write);
    write(keptLines(cli, options.stateDir, options.platform));
    told = true;
    write(`\nDone in ${formatDuration(performance.now() - started)}.\n`);
    return collected.every((got) => got.job.counts.failed === 0) ? 0 : 1;
  } finally {
    // Stopped midway, its jobs stay there too.
    if (!told) write(keptLines(cli, options.stateDir, options.platform));
    await demo.close();
  }
}

function shellOf(options: DemoOptions): DemoShell {
  const { nodePath, cliPath, cwd, searchPath, platform } = options;
  return { nodePath, cliPath, cwd, searchPath, platform };
}

/** The interpreter python3 names here, as the cold way runs the workers. */
async function pythonPath(): Promise<string> {
  return (await run('python3', ['-c', 'import sys; print(sys.executable)'])).stdout.trim() || 'python3';
}

/** Jobs submitted at once, each collected to its last result; a failed task fails the demo loudly. */
async function runJobs(demo: DemoClient, jobs: readonly DemoJob[]): Promise<void> {
  const ids = await Promise.all(
    jobs.map(
      async (job) =>
        (
          (
            await demo.call('run_script_batch', {
              worker: job.worker,
              inputs: job.inputs,
              concurrency: job.concurrency,
              label: job.label,
            })
          ).structuredContent as { job_id: string }
        ).job_id,
    ),
  );
  for (const got of await Promise.all(ids.map(demo.collectAll)))
    if (got.job.counts.failed > 0) throw new Error(`${got.job.job_id}: ${got.job.counts.failed} task(s) failed`);
}

/** The client side: the built server started over stdio as an MCP client starts it, and calls that fail loudly. */
class DemoClient {
  private constructor(readonly client: Client) {}

  static async start(options: DemoOptions): Promise<DemoClient> {
    const transport = new StdioClientTransport({
      command: options.nodePath,
      args: [
        options.cliPath,
        '--state-dir',
        options.stateDir,
        '--root',
        options.repoRoot,
        '--log-level',
        'warn',
        ...(options.serverArgs ?? []),
      ],
      cwd: options.repoRoot,
      stderr: 'inherit',
    });
    const client = new Client({ name: 'monitor-demo', version: '1.0.0' });
    await client.connect(transport);
    return new DemoClient(client);
  }

  /** Calls a tool; an isError reply throws with its text. */
  readonly call: Call = async (name, args) => {
    const result = (await this.client.callTool({ name, arguments: args }, undefined, {
      timeout: 120_000,
    })) as CallToolResult;
    if (result.isError)
      throw new Error(`${name} failed: ${result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n')}`);
    return result;
  };

  /** Pages through collect_results until the job is done and every result was read. */
  readonly collectAll: CollectAll = async (jobId) => {
    const results: CollectPage['results'] = [];
    let cursor: string | undefined;
    let pages = 0;
    for (;;) {
      const page = (
        await this.call('collect_results', { job_ids: [jobId], wait_seconds: 30, ...(cursor ? { cursor } : {}) })
      ).structuredContent as unknown as CollectPage;
      pages++;
      results.push(...page.results);
      const job = page.jobs[0];
      if (!job) throw new Error('collect_results returned no job');
      if (page.done && page.remaining === 0) return { job, results, pages };
      cursor = page.next_cursor;
    }
  };

  async close(): Promise<void> {
    await this.client.close();
  }
}

/** What the client sees first: the server, its tools and its workers (returned: the baseline runs them). */
async function introduce(demo: DemoClient, options: DemoOptions, cli: readonly string[]): Promise<ListedWorker[]> {
  const { write } = options;
  const version = demo.client.getServerVersion();
  const { tools } = await demo.client.listTools();
  write(`monitor-mcp demo: a real MCP client driving the built server over stdio\n`);
  write(`${watchLines(cli, options.stateDir)}\n`);
  write(
    `Server ${version?.name ?? '?'} ${version?.version ?? '?'}, ${tools.length} tools: ${tools.map((t) => t.name).join(', ')}\n`,
  );
  const listed = (await demo.call('list_workers', {})).structuredContent as { workers: ListedWorker[] };
  write(
    `Workers:\n${listed.workers.map((w) => `  ${pad(w.name, 26)} ${pad(w.interpreter, 8)} ${(w.description ?? '').slice(0, 80)}`).join('\n')}\n`,
  );
  return listed.workers;
}

/** Two jobs over the repository's files, FILES_PER_TASK files a task; both return at once. */
async function submitScriptJobs(call: Call, files: readonly string[], options: DemoOptions): Promise<ScriptBatch> {
  const concurrency = Math.max(2, options.cpus);
  const inputs = batches(files, FILES_PER_TASK).map((group) => ({ args: group }));
  options.write(
    `\nSubmitting two jobs over ${files.length} source files of this repository (${inputs.length} tasks each, ${FILES_PER_TASK} files a task, up to ${concurrency} at once each):\n`,
  );
  const submittedAt = performance.now();
  const jobIds: string[] = [];
  for (const worker of SCRIPT_WORKERS) {
    const reply = (await call('run_script_batch', { worker, inputs, concurrency, label: `demo: ${worker}` }))
      .structuredContent as { job_id: string };
    jobIds.push(reply.job_id);
    options.write(`  ${reply.job_id}  ${worker}\n`);
  }
  return { jobIds, inputs, concurrency, submittedAt };
}

/** What the orchestrator may do meanwhile: look at the jobs running. */
async function glanceAtJobs(call: Call, write: (text: string) => void): Promise<void> {
  write(`\nBoth returned at once. The orchestrator keeps working meanwhile; a glance at list_jobs:\n`);
  const glance = await call('list_jobs', { state: 'active' });
  write(glance.content.map((c) => (c.type === 'text' ? `  ${c.text.split('\n').join('\n  ')}` : '')).join('') + '\n');
}

/** Both jobs collected side by side, a line each. */
async function collectScriptJobs(
  collectAll: CollectAll,
  batch: ScriptBatch,
  write: (text: string) => void,
): Promise<Collected[]> {
  write(
    `\nCollecting (collect_results waits, then pages results within the output budget, in the order tasks finished):\n`,
  );
  const collected = await Promise.all(batch.jobIds.map(collectAll));
  collected.forEach((got, i) => {
    write(
      `  ${pad(SCRIPT_WORKERS[i] ?? '', 24)} ${got.job.state}: ${got.job.counts.succeeded}/${got.job.counts.total} succeeded in ${formatDuration(got.job.elapsed_ms)}, peak ${got.job.peak_running} at once, ${got.pages} page(s)\n`,
    );
  });
  return collected;
}

interface EndpointView {
  name: string;
  reachable: boolean;
  error?: { code: string; message: string };
  models: Array<{ id: string; type?: string; loaded?: boolean }>;
}
type ModelView = EndpointView['models'][number];

/** A chat model: anything but an embedding model. */
const isChatModel = (m: ModelView): boolean => !/embed/i.test(m.type ?? m.id);

/** When an LLM endpoint answers with a model, a few of the files go to it: one summary each, read by the server, not the client. */
async function demoLlm(
  call: Call,
  collectAll: CollectAll,
  files: readonly string[],
  root: string,
  write: (text: string) => void,
): Promise<void> {
  const models = (await call('lmstudio_models', {})).structuredContent as { endpoints: EndpointView[] };
  const serving = models.endpoints.find((e) => e.reachable && !e.error && e.models.some(isChatModel));
  if (!serving) {
    const why = models.endpoints.map((e) => `${e.name}: ${e.error?.message ?? 'no LLM'}`).join('; ');
    write(
      `\nLocal LLM: no endpoint answered with a model (${why}), so the LLM job is skipped. Start LM Studio with a model loaded, or pass --endpoint NAME=URL to the demo.\n`,
    );
    return;
  }
  const model = serving.models.find((m) => m.loaded && isChatModel(m)) ?? serving.models.find(isChatModel);
  const picked = await smallestPythonFiles(files, root, 6);
  write(
    `\nLocal LLM: ${serving.name} serves ${model?.id ?? '?'}; one summary for each of ${picked.length} small Python files (the server reads them):\n`,
  );
  // Map → reduce: the local model also merges the summaries, so Claude would read one answer.
  const submitted = (
    await call('lmstudio_complete', {
      template: 'In one sentence, what does the script {{path}} do?\n\n{{content}}',
      files: picked,
      max_tokens: 48,
      temperature: 0,
      reduce: { prompt: 'In two sentences, what do these scripts do together?', max_tokens: 96 },
      ...(model ? { model: model.id } : {}),
      label: 'demo: summaries',
    })
  ).structuredContent as { job_id: string; runs_on?: { job_id: string } };
  const reduced = await collectAll(submitted.job_id);
  const summaries = await collectAll(submitted.runs_on?.job_id ?? submitted.job_id);
  printSummaries(summaries, reduced, write);
}

/** The `count` smallest Python files: any model's context takes them whole. */
async function smallestPythonFiles(files: readonly string[], root: string, count: number): Promise<string[]> {
  const sizes = await Promise.all(
    files.filter((f) => f.endsWith('.py')).map(async (f) => ({ f, size: (await stat(path.join(root, f))).size })),
  );
  return sizes
    .sort((a, b) => a.size - b.size)
    .slice(0, count)
    .map((s) => s.f);
}

/** A summary per file, the merged one, and the tokens the local model spent on them. */
function printSummaries(summaries: Collected, reduced: Collected, write: (text: string) => void): void {
  for (const r of summaries.results)
    write(
      `  ${pad(r.id ?? `#${r.index}`, 34)} ${r.state === 'succeeded' ? (r.value?.text ?? '').replace(/\s+/g, ' ').slice(0, 90) : r.state}\n`,
    );
  const merged = reduced.results[0];
  write(
    `  merged on the local model (reduce): ${merged?.state === 'succeeded' ? (merged.value?.text ?? '').replace(/\s+/g, ' ').slice(0, 160) : (merged?.state ?? '?')}\n`,
  );
  const tokens = summaries.job.tokens;
  if (tokens)
    write(
      `  ${tokens.prompt + tokens.completion} tokens processed locally for the summaries (${tokens.prompt} in, ${tokens.completion} out${tokens.completion_per_second === null ? '' : `, ${tokens.completion_per_second} tok/s`}), none of them Claude's.\n`,
    );
}
