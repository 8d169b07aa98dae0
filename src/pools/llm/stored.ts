import * as z from 'zod';
import { MonitorError } from '../../errors.js';
import { MOST_AGREE } from './checks/types.js';
import type { LlmJobOptions, LlmTaskInput } from './types.js';

/** The shapes of types.ts's stored task inputs and job options, checked when read back. */
const messageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() });
const fileRefSchema = z.object({
  path: z.string(),
  display: z.string(),
  chunk: z.number().int().optional(),
  chunks: z.number().int().optional(),
  start: z.number().int().optional(),
  end: z.number().int().optional(),
  size: z.number().int().optional(),
});
const inputSchema = z.union([
  z.object({ id: z.string(), messages: z.array(messageSchema).min(1) }),
  z.object({ id: z.string(), task: z.string(), paths: z.array(z.string()).optional() }),
  z.object({ id: z.string(), reduce: z.literal(true) }),
  z.object({ id: z.string(), upstream: z.literal(true) }),
  z.object({
    id: z.string(),
    values: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
    file: fileRefSchema.optional(),
    files: z.array(fileRefSchema).min(1).optional(),
  }),
]);
const reduceSchema = z.object({
  prompt: z.string(),
  max_tokens: z.number().int().optional(),
  context_tokens: z.number().int().positive(),
  bytes_per_token: z.number().positive(),
  parallel: z.number().int().positive(),
});
const checksSchema = z.object({
  schema: z.boolean().optional(),
  citations: z.boolean().optional(),
  script: z
    .object({
      worker: z.string().min(1),
      args: z.array(z.string()).optional(),
      timeout_seconds: z.number().positive().optional(),
    })
    .optional(),
  agree: z.number().int().min(1).max(MOST_AGREE).optional(),
  escalate_model: z.string().min(1).optional(),
});
const optionsSchema = z.object({
  model: z.string(),
  system: z.string().optional(),
  template: z.string().optional(),
  temperature: z.number().optional(),
  max_tokens: z.number().int().optional(),
  stop: z.array(z.string()).optional(),
  seed: z.number().int().optional(),
  json_schema: z.record(z.string(), z.unknown()).optional(),
  include_reasoning: z.boolean().optional(),
  timeout_seconds: z.number().positive(),
  reduce: reduceSchema.optional(),
  agent: z.object({ max_steps: z.number().int().positive(), paths: z.array(z.string()).optional() }).optional(),
  checks: checksSchema.optional(),
});

/** Parsed job options by the engine's options object: every task of a job shares the same one. */
const parsedOptions = new WeakMap<object, LlmJobOptions>();

/** A job's stored options, checked (once per options object). */
export function jobOptions(value: unknown): LlmJobOptions {
  if (typeof value === 'object' && value !== null) {
    const cached = parsedOptions.get(value);
    if (cached) return cached;
    const parsed = parseStored(optionsSchema, value, 'job options');
    parsedOptions.set(value, parsed);
    return parsed;
  }
  return parseStored(optionsSchema, value, 'job options');
}

/** A task's stored input, checked. */
export function taskInput(value: unknown): LlmTaskInput {
  return parseStored(inputSchema, value, 'input');
}

/** Inputs and options come back from disk after a restart: check them rather than trust them. */
function parseStored<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new MonitorError(
      'INVALID_INPUT',
      `The stored ${what} of this task is not valid: ${parsed.error.issues[0]?.message ?? 'unknown'}`,
    );
  return parsed.data;
}
