import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { jobIdOf, makeTempDir, repoRoot } from '../helpers/client.js';
import { collectAll } from '../helpers/collect.js';
import { llamaAvailable, llamaMetric, llamaMissing, startLlama } from '../helpers/llama.js';
import { type BenchRow, median, ms, startServer } from './common.js';

/**
 * Prefix reuse (issue 22): 8 questions over one ~1,500-token file on the real llama-server at
 * --parallel 6, through the built server over stdio. Prompt tokens the server evaluated (its own
 * /metrics counter) against the sum of the prompts' tokens (each answer's usage), with
 * llm.prefixReuse on and off; a fresh llama-server for every run, so no run inherits another's cache.
 */
const SLOTS = 6;
const TARGET_TOKENS = 1500;
const QUESTIONS = 8;
const MAX_TOKENS = 64;
const ROUNDS = 3;
const SOURCE = 'src/pools/llm/router.ts';
/** As a user writes it: the question first. */
const QUESTION_FIRST = 'Question {{n}}: {{q}}\nAnswer it about {{path}}:\n{{content}}';
/** The same, written file first by hand: what ordering alone gives a server's own cache. */
const FILE_FIRST = 'About {{path}}:\n{{content}}\nQuestion {{n}}: {{q}}';
const questions = Array.from({ length: QUESTIONS }, (_, i) => ({
  n: i + 1,
  q: ['What does pick() return?', 'When is a waiter rejected?', 'What does busier() compare?'][i % 3] ?? '',
}));

interface Run {
  evaluated: number;
  sum: number;
  wallMs: number;
}

type Mode = { reuse: boolean; template: string };

const MODES: Record<string, Mode> = {
  off: { reuse: false, template: QUESTION_FIRST },
  ordered: { reuse: false, template: FILE_FIRST },
  on: { reuse: true, template: QUESTION_FIRST },
};

/** Whole lines of SOURCE up to about TARGET_TOKENS of the tiny model's tokenizer. */
async function benchFile(url: string): Promise<{ text: string; tokens: number }> {
  const lines = (await readFile(path.join(repoRoot, SOURCE), 'utf8')).split('\n');
  const count = async (text: string): Promise<number> => {
    const response = await fetch(`${url}/tokenize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ content: text }),
      signal: AbortSignal.timeout(10_000),
    });
    return ((await response.json()) as { tokens: unknown[] }).tokens.length;
  };
  let take = lines.length;
  while (take > 1 && (await count(lines.slice(0, take).join('\n'))) > TARGET_TOKENS) take -= 4;
  const text = lines.slice(0, take).join('\n');
  return { text, tokens: await count(text) };
}

/** One job of 8 questions over the file, on a llama-server of its own. */
async function runOnce(mode: Mode, root: string, configFile: string): Promise<Run> {
  const llama = await startLlama(SLOTS, 60_000, { context: SLOTS * 2048, metrics: true });
  const stateDir = await makeTempDir('monitor-bench-prefix-');
  const args = ['--state-dir', stateDir, '--root', root, '--endpoint', `llama=${llama.url}@${SLOTS}`];
  const server = await startServer(mode.reuse ? args : ['--config', configFile, ...args]);
  try {
    // The model list and the server's facts are read before the clock starts, as after any first job.
    await server.call('lmstudio_models', {});
    const before = await llamaMetric(llama.url, 'prompt_tokens_total');
    const start = performance.now();
    const submitted = await server.call('lmstudio_complete', {
      template: mode.template,
      files: ['module.ts'],
      items: questions,
      max_tokens: MAX_TOKENS,
      temperature: 0,
    });
    if (submitted.isError) throw new Error(JSON.stringify(submitted.content));
    const { results } = await collectAll(server, jobIdOf(submitted), { waitSeconds: 50, timeoutMs: 600_000 });
    const wallMs = performance.now() - start;
    const evaluated = (await llamaMetric(llama.url, 'prompt_tokens_total')) - before;
    let sum = 0;
    for (const result of results) {
      if (result.state !== 'succeeded') throw new Error(`a question failed: ${JSON.stringify(result.error)}`);
      sum += Number(result.value?.tokens_in ?? 0);
    }
    return { evaluated, sum, wallMs };
  } finally {
    await server.close();
    await llama.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

function describeRuns(runs: readonly Run[]): { ratio: number; wall: number; text: string } {
  const evaluated = median(runs.map((r) => r.evaluated));
  const sum = median(runs.map((r) => r.sum));
  const wall = median(runs.map((r) => r.wallMs));
  const ratio = evaluated / sum;
  return {
    ratio,
    wall,
    text: `${evaluated} of ${sum} prompt tokens evaluated (${ratio.toFixed(2)}); wall ${ms(wall)}`,
  };
}

export async function benchPrefix(): Promise<BenchRow[]> {
  if (!llamaAvailable) return [{ name: 'prefix reuse: skipped', value: llamaMissing }];
  const root = await makeTempDir('monitor-bench-prefix-root-');
  const configFile = path.join(root, 'no-reuse.json');
  await writeFile(configFile, JSON.stringify({ llm: { prefixReuse: false } }));
  try {
    const probe = await startLlama(1);
    const file = await benchFile(probe.url).finally(() => probe.stop());
    await writeFile(path.join(root, 'module.ts'), file.text);
    const runs: Record<string, Run[]> = { off: [], ordered: [], on: [] };
    // Interleaved, so a slow minute of a shared machine hits every mode alike.
    for (let round = 0; round < ROUNDS; round++)
      for (const [name, mode] of Object.entries(MODES)) runs[name]?.push(await runOnce(mode, root, configFile));
    const off = describeRuns(runs.off ?? []);
    const ordered = describeRuns(runs.ordered ?? []);
    const on = describeRuns(runs.on ?? []);
    const label = `${QUESTIONS} questions over one ${file.tokens}-token file (${SOURCE}), llama-server tiny --parallel ${SLOTS}, max_tokens ${MAX_TOKENS}`;
    return [
      { name: `${label}: llm.prefixReuse false, question-first template`, value: off.text },
      {
        name: `${label}: llm.prefixReuse false, template written file first (the server's own cache)`,
        value: ordered.text,
      },
      {
        name: `${label}: llm.prefixReuse true (default), question-first template`,
        value: `${on.text} (${(off.wall / on.wall).toFixed(1)}× faster than off)`,
        goal: '≤ 1/3 of the prompt tokens evaluated, wall time no worse than off',
        ok: on.ratio <= 1 / 3 && on.wall <= off.wall,
      },
    ];
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
