import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Ajv } from 'ajv';
import { expect } from 'vitest';
import type { Config } from '../../src/registry.js';
import { LmStudioDouble } from '../fixtures/lmstudio-double.js';
import { fileTree } from './cleanup.js';
import { connectInMemory, type Connected, jobIdOf, testConfig, textOf } from './client.js';
import { collectAll, type CollectedResult, type CollectPage } from './collect.js';

/** One tool call a prompt's text shows: `TOOL with \`{…}\``, on a numbered step's line or after the steps. */
export interface ShownCall {
  tool: string;
  args: Record<string, unknown>;
  /** The step whose line shows it (undefined after the steps). */
  step: number | undefined;
}

/** Every call a prompt's text shows, in text order; each must parse as JSON. */
export function shownCalls(text: string): ShownCall[] {
  const calls: ShownCall[] = [];
  for (const line of text.split('\n')) {
    const step = /^(\d+)\. /.exec(line)?.[1];
    for (const match of line.matchAll(/\b([a-z_]+) with `([^`]*)`/g)) {
      calls.push({
        tool: match[1] ?? '',
        args: JSON.parse(match[2] ?? '') as Record<string, unknown>,
        step: step === undefined ? undefined : Number(step),
      });
    }
  }
  return calls;
}

/** The text of prompts/get for `name` with `args`. */
export async function promptText(client: Client, name: string, args: Record<string, string>): Promise<string> {
  const result = await client.getPrompt({ name, arguments: args });
  expect(result.messages).toHaveLength(1);
  const content = result.messages[0]?.content;
  if (content?.type !== 'text') throw new Error(`prompt ${name} did not answer text`);
  return content.text;
}

/** Each shown call checked with ajv against the input schema the server lists for its tool: what failed, as lines. */
export async function schemaErrors(client: Client, calls: readonly ShownCall[]): Promise<string[]> {
  const { tools } = await client.listTools();
  const ajv = new Ajv({ strict: false, allErrors: true });
  const errors: string[] = [];
  for (const shown of calls) {
    const tool = tools.find((t) => t.name === shown.tool);
    if (!tool) {
      errors.push(`${shown.tool}: no such tool`);
      continue;
    }
    const validate = ajv.compile(tool.inputSchema);
    if (!validate(shown.args)) errors.push(`${shown.tool}: ${ajv.errorsText(validate.errors)}`);
  }
  return errors;
}

/** What running a prompt's calls gave: each step's job, and every collected result by job. */
export interface Ran {
  jobs: Map<number, string>;
  collected: Map<string, { results: CollectedResult[]; last: CollectPage }>;
}

/**
 * Makes the calls a prompt shows, in order, as Claude would: a job id placeholder becomes the job
 * of that step, `<the upstream job_id>` the upstream job the last collect named. Every call must
 * succeed. A collect_results is made as shown, then each of its jobs is collected to the end.
 */
export async function runCalls(c: Connected, calls: readonly ShownCall[]): Promise<Ran> {
  const jobs = new Map<number, string>();
  const collected = new Map<string, { results: CollectedResult[]; last: CollectPage }>();
  let upstream: string | undefined;
  const fill = (value: unknown): unknown => {
    if (typeof value === 'string') {
      const step = /^<job_id of step (\d+)>$/.exec(value)?.[1];
      if (step !== undefined) return jobs.get(Number(step)) ?? expect.fail(`no job for step ${step}`);
      if (value === '<the upstream job_id>') return upstream ?? expect.fail('no upstream job collected');
      return value;
    }
    if (Array.isArray(value)) return value.map(fill);
    if (value !== null && typeof value === 'object')
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v)]));
    return value;
  };
  for (const shown of calls) {
    const args = fill(shown.args) as Record<string, unknown>;
    const reply = await c.call(shown.tool, args);
    expect(reply.isError, `${shown.tool} ${JSON.stringify(args)}: ${textOf(reply)}`).toBeFalsy();
    if (shown.tool === 'collect_results') {
      for (const id of args.job_ids as string[]) {
        const walk = await collectAll(c, id);
        collected.set(id, { results: walk.results, last: walk.last });
        upstream = walk.last.upstream?.[0]?.job_id ?? upstream;
      }
    } else if (shown.step !== undefined && typeof reply.structuredContent?.job_id === 'string') {
      jobs.set(shown.step, jobIdOf(reply));
    }
  }
  return { jobs, collected };
}

/** A project folder holding `files`, and a server allowed only that folder whose LLM endpoint is an LM Studio double (or `url`). */
export async function promptProject(
  files: Record<string, string>,
  cleanups: Array<() => Promise<void>>,
  options: { url?: string; edit?: (config: Config) => void } = {},
): Promise<{ c: Connected; root: string; double: LmStudioDouble | undefined }> {
  const root = await fileTree(files, cleanups, 'prompt-run-');
  const double = options.url === undefined ? await LmStudioDouble.start() : undefined;
  if (double) cleanups.push(() => double.close());
  const url = options.url ?? double?.url ?? '';
  const config = await testConfig((c) => {
    c.allowedRoots = [root];
    c.llm.endpoints = [
      { name: 'lmstudio', url, concurrency: 4, models: [], flavor: 'lmstudio', apiKeyEnv: 'LM_API_TOKEN' },
    ];
    options.edit?.(c);
  });
  const c = await connectInMemory(config);
  cleanups.push(() => c.close());
  return { c, root, double };
}
