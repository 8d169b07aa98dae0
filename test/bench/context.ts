import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { expandFiles } from '../../src/pools/llm/glob.js';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { collectAll } from '../helpers/collect.js';
import { llamaAvailable, llamaMissing, startLlama } from '../helpers/llama.js';
import { type BenchRow, type BenchServer, ms, startServer } from './common.js';

/**
 * Context economy (issue 11): what the orchestrating model receives when it analyses this
 * repository's src/ three ways, counted as Claude Code forwards a successful tool result to its
 * model (JSON.stringify(structuredContent)), every reply of the workflow included (the dispatch, and
 * each collect_results until everything is shown).
 */
const FILES = ['src/**/*.ts'];
const TEMPLATE = 'List the risks and the main responsibilities of {{path}}:\n{{content}}';
const REDUCE =
  'Combine these findings into one architecture review of the code base: its parts, how they depend on each other, and the main risks. Name the files each finding comes from.';
const MAP_TOKENS = 48;
const REDUCE_TOKENS = 200;
const SLOTS = 4;

interface Walk {
  /** Bytes of structuredContent the model received over the whole walk. */
  bytes: number;
  replies: number;
  wallMs: number;
  final: CallToolResult;
}

const forwarded = (reply: CallToolResult): number => Buffer.byteLength(JSON.stringify(reply.structuredContent ?? {}));

/** Submit, then collect_results as the model would: wait, and page on with the cursor until every result is shown. */
async function walk(server: BenchServer, args: Record<string, unknown>): Promise<Walk> {
  const start = performance.now();
  const submitted = await server.call('lmstudio_complete', args);
  if (submitted.isError) throw new Error(JSON.stringify(submitted.content));
  const jobId = jobIdOf(submitted);
  let bytes = forwarded(submitted);
  const { pages, lastReply } = await collectAll(server, jobId, {
    waitSeconds: 50,
    timeoutMs: 3_600_000,
    onReply: (reply) => {
      bytes += forwarded(reply);
    },
  });
  return { bytes, replies: 1 + pages, wallMs: performance.now() - start, final: lastReply };
}

export async function benchContext(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  if (!llamaAvailable) {
    rows.push({ name: 'context economy: skipped', value: llamaMissing });
    return rows;
  }
  const files = await expandFiles(FILES, { roots: [repoRoot], maxFiles: 10_000 });
  let fileBytes = 0;
  for (const file of files) fileBytes += (await readFile(file)).length;
  const llama = await startLlama(SLOTS);
  const stateDir = await makeTempDir('monitor-bench-context-');
  const server = await startServer([
    '--state-dir',
    stateDir,
    '--root',
    repoRoot,
    '--endpoint',
    `llama=${llama.url}@${SLOTS}`,
  ]);
  try {
    const perFile = await walk(server, {
      template: TEMPLATE,
      files: FILES,
      chunk: true,
      max_tokens: MAP_TOKENS,
      temperature: 0,
    });
    const mapReduce = await walk(server, {
      template: TEMPLATE,
      files: FILES,
      group: 'all',
      reduce: { prompt: REDUCE, max_tokens: REDUCE_TOKENS },
      max_tokens: MAP_TOKENS,
      temperature: 0,
    });
    const merged = (
      mapReduce.final.structuredContent as {
        results: Array<{ state: string; value?: { text?: string; inputs?: number; levels?: number } }>;
      }
    ).results[0];
    const answer = merged?.value?.text ?? '';
    const named = files.filter((file) => answer.includes(path.relative(repoRoot, file))).length;
    const label = `src/ (${files.length} files, ${Math.round(fileBytes / 1024)} KB), llama-server tiny @${SLOTS}`;
    rows.push({ name: `${label}: Claude reads the files`, value: `${fileBytes} bytes into the model (1×)` });
    rows.push({
      name: `${label}: per-file answers collected (chunk: true)`,
      value: `${perFile.bytes} bytes in ${perFile.replies} replies (${(fileBytes / perFile.bytes).toFixed(1)}× fewer; ${ms(perFile.wallMs)})`,
    });
    const ratio = fileBytes / mapReduce.bytes;
    rows.push({
      name: `${label}: map → reduce (group: "all" + reduce)`,
      value: `${mapReduce.bytes} bytes in ${mapReduce.replies} replies (${ratio.toFixed(0)}× fewer; ${merged?.value?.inputs ?? '?'} map answers, ${merged?.value?.levels ?? '?'} reduce level(s), ${merged?.state ?? '?'}; ${ms(mapReduce.wallMs)})`,
      goal: '≥ 50× fewer bytes than reading the files',
      ok: ratio >= 50 && merged?.state === 'succeeded',
    });
    rows.push({
      name: `${label}: final answer names source files`,
      value: `${named} of ${files.length} file paths appear in the ${answer.length}-character answer (the tiny test model writes noise; a real model is asked to name them)`,
    });
  } finally {
    await server.close();
    await llama.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
  return rows;
}
