import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

export interface DemoOptions {
  /** The node binary and the built cli.js to start as the server, exactly as an MCP client would. */
  nodePath: string;
  cliPath: string;
  /** The repository whose source files the workers analyse (and the server's allowed root). */
  repoRoot: string;
  /** A fresh state directory, so the demo leaves the user's jobs alone. */
  stateDir: string;
  cpus: number;
  write(text: string): void;
}

interface FileStats {
  file: string;
  language?: string;
  lines?: number;
  code?: number;
  functions?: number;
  classes?: number;
  todos?: unknown[];
  error?: string;
}
interface FileDeps {
  file: string;
  internal?: Array<{ path?: string; specifier: string }>;
  external?: Array<{ package?: string; specifier: string }>;
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
  results: Array<{ index: number; state: string; duration_ms?: number; value?: { json?: unknown } }>;
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

const pad = (text: string | number, width: number): string => String(text).padEnd(width);
const padLeft = (text: string | number, width: number): string => String(text).padStart(width);
const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

/**
 * The main job, end to end: a real MCP client starts the built server over stdio, lists its tools
 * and workers, submits two batch jobs over this repository's own source files, keeps working while
 * they run, then collects every page and prints the merged results.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const { write } = options;
  const started = performance.now();
  const transport = new StdioClientTransport({
    command: options.nodePath,
    args: [options.cliPath, '--state-dir', options.stateDir, '--root', options.repoRoot, '--log-level', 'warn'],
    cwd: options.repoRoot,
    stderr: 'inherit',
  });
  const client = new Client({ name: 'monitor-demo', version: '1.0.0' });
  await client.connect(transport);
  const call = async (name: string, args: Record<string, unknown>): Promise<CallToolResult> => {
    const result = (await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
    if (result.isError) throw new Error(`${name} failed: ${result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n')}`);
    return result;
  };

  try {
    const version = client.getServerVersion();
    const { tools } = await client.listTools();
    write(`monitor-mcp demo: a real MCP client driving the built server over stdio\n\n`);
    write(`Server ${version?.name ?? '?'} ${version?.version ?? '?'}, ${tools.length} tools: ${tools.map((t) => t.name).join(', ')}\n`);
    const workers = (await call('list_workers', {})).structuredContent as { workers: Array<{ name: string; interpreter: string; description?: string }> };
    write(`Workers:\n${workers.workers.map((w) => `  ${pad(w.name, 26)} ${pad(w.interpreter, 8)} ${(w.description ?? '').slice(0, 80)}`).join('\n')}\n`);

    const files = await sourceFiles(options.repoRoot);
    const concurrency = Math.max(2, options.cpus);
    const inputs = files.map((file) => ({ args: [file] }));
    write(`\nSubmitting two jobs over ${files.length} source files of this repository (one task per file, up to ${concurrency} at once each):\n`);
    const depsJob = ((await call('run_script_batch', { worker: 'analyze_dependencies.py', inputs, concurrency, label: 'demo: dependencies' })).structuredContent as { job_id: string }).job_id;
    const statsJob = ((await call('run_script_batch', { worker: 'code_stats.py', inputs, concurrency, label: 'demo: code stats' })).structuredContent as { job_id: string }).job_id;
    write(`  ${depsJob}  analyze_dependencies.py\n  ${statsJob}  code_stats.py\n`);

    write(`\nBoth returned at once. The orchestrator keeps working meanwhile; a glance at list_jobs:\n`);
    const listed = await call('list_jobs', { state: 'active' });
    write(listed.content.map((c) => (c.type === 'text' ? `  ${c.text.split('\n').join('\n  ')}` : '')).join('') + '\n');

    write(`\nCollecting (collect_results waits, then pages results within the output budget, in the order tasks finished):\n`);
    const collectAll = async (jobId: string): Promise<{ job: JobView; values: unknown[]; taskMs: number; pages: number }> => {
      const values: unknown[] = [];
      let cursor: string | undefined;
      let pages = 0;
      let taskMs = 0;
      for (;;) {
        const page = (await call('collect_results', { job_ids: [jobId], wait_seconds: 30, budget_tokens: 12000, ...(cursor ? { cursor } : {}) })).structuredContent as unknown as CollectPage;
        pages++;
        for (const result of page.results) {
          taskMs += result.duration_ms ?? 0;
          if (result.value?.json !== undefined) values.push(result.value.json);
        }
        const job = page.jobs[0];
        if (!job) throw new Error('collect_results returned no job');
        if (page.done && page.remaining === 0) return { job, values, taskMs, pages };
        cursor = page.next_cursor;
      }
    };
    const [deps, stats] = await Promise.all([collectAll(depsJob), collectAll(statsJob)]);
    for (const [name, got] of [['analyze_dependencies.py', deps], ['code_stats.py', stats]] as const) {
      write(`  ${pad(name, 24)} ${got.job.state}: ${got.job.counts.succeeded}/${got.job.counts.total} succeeded in ${seconds(got.job.elapsed_ms)}, peak ${got.job.peak_running} at once, ${got.pages} page(s); tasks' own time ${seconds(got.taskMs)}\n`);
    }

    const perFile: FileStats[] = stats.values.flatMap((v) => (v as { files?: FileStats[] }).files ?? []);
    const byLanguage = new Map<string, { files: number; lines: number; code: number; functions: number; todos: number }>();
    for (const f of perFile) {
      const key = f.language ?? 'other';
      const row = byLanguage.get(key) ?? { files: 0, lines: 0, code: 0, functions: 0, todos: 0 };
      row.files++;
      row.lines += f.lines ?? 0;
      row.code += f.code ?? 0;
      row.functions += f.functions ?? 0;
      row.todos += f.todos?.length ?? 0;
      byLanguage.set(key, row);
    }
    write(`\nCode statistics, merged from ${perFile.length} results:\n  ${pad('language', 12)}${padLeft('files', 7)}${padLeft('lines', 9)}${padLeft('code', 9)}${padLeft('functions', 11)}${padLeft('TODOs', 7)}\n`);
    for (const [language, row] of [...byLanguage].sort((a, b) => b[1].code - a[1].code)) {
      write(`  ${pad(language, 12)}${padLeft(row.files, 7)}${padLeft(row.lines, 9)}${padLeft(row.code, 9)}${padLeft(row.functions, 11)}${padLeft(row.todos, 7)}\n`);
    }
    const largest = [...perFile].sort((a, b) => (b.code ?? 0) - (a.code ?? 0)).slice(0, 5);
    write(`  largest: ${largest.map((f) => `${f.file} (${f.code ?? 0})`).join(', ')}\n`);

    const perDeps: FileDeps[] = deps.values.flatMap((v) => (v as { files?: FileDeps[] }).files ?? []);
    const external = new Map<string, number>();
    const internal = new Map<string, number>();
    for (const f of perDeps) {
      for (const pkg of new Set((f.external ?? []).map((e) => e.package ?? e.specifier))) external.set(pkg, (external.get(pkg) ?? 0) + 1);
      for (const target of new Set((f.internal ?? []).map((e) => e.path ?? e.specifier))) internal.set(target, (internal.get(target) ?? 0) + 1);
    }
    const top = (m: Map<string, number>, n: number): string => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${k} (${v})`).join(', ');
    write(`\nDependencies, merged from ${perDeps.length} results:\n  external packages (files importing them): ${top(external, 8) || 'none'}\n  most imported modules of this repo: ${top(internal, 6) || 'none'}\n`);

    const models = await call('lmstudio_models', {}).catch((error: unknown) => ({ content: [{ type: 'text' as const, text: String(error) }] }));
    const firstLine = models.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n').split('\n').slice(0, 3).join('\n  ');
    write(`\nLocal LLM endpoints (lmstudio_models):\n  ${firstLine}\n`);

    const wall = performance.now() - started;
    const taskTotal = deps.taskMs + stats.taskMs;
    const jobsWall = Math.max(deps.job.elapsed_ms, stats.job.elapsed_ms);
    write(`\nDone in ${seconds(wall)} (the two jobs ran side by side for ${seconds(jobsWall)}). One task at a time would have taken ${seconds(taskTotal)}: ${(taskTotal / Math.max(1, jobsWall)).toFixed(1)}× faster on ${options.cpus} CPU(s).\n`);
    return deps.job.counts.failed + stats.job.counts.failed === 0 ? 0 : 1;
  } finally {
    await client.close();
  }
}
