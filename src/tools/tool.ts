import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import type * as z from 'zod';
import type { CoreConfig } from '../config/core.js';
import type { SettingsTree } from '../config/settings.js';
import type { Engine } from '../engine/engine.js';
import { MonitorError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TaskCap, WorkerKind } from '../pools/kind.js';

/**
 * What a handler may use. Built once per call by createServer; nothing here touches `process`.
 * `kind` is the services of the worker kind the tool drives (undefined for the job tools).
 */
export interface ToolContext<Services = undefined> {
  config: CoreConfig;
  engine: Engine;
  kind: Services;
  /** The task cap of the kind the tool drives (undefined for the job tools). */
  taskCap: TaskCap | undefined;
  log: Logger;
  /** Aborted when the client cancels the call. */
  signal: AbortSignal;
  /** Sends notifications/progress when the client asked for them; a no-op otherwise. */
  progress(progress: number, total: number | undefined, message: string): Promise<void>;
}

/** A handler returns text for the model and, optionally, the same facts as structured data. */
export interface ToolReply {
  text: string;
  structured?: Record<string, unknown>;
}

export interface ToolDefinition<Shape extends z.ZodRawShape = z.ZodRawShape, Services = undefined> {
  name: string;
  title: string;
  description: string;
  inputSchema: Shape;
  annotations: ToolAnnotations;
  /** Returns a job handle at once (the server's instructions list these as the ways to start work). */
  dispatch?: boolean;
  /** Throw a MonitorError for bad input: it becomes isError text with its hint. */
  handler(args: z.infer<z.ZodObject<Shape>>, ctx: ToolContext<Services>): Promise<ToolReply>;
}

/** Any tool, whatever its schema and kind: what the server registers. */
export type AnyTool = ToolDefinition<z.ZodRawShape, unknown>;

/** A tool of the kind whose services are `Services`, whatever its schema. */
export type KindTool<Services> = ToolDefinition<z.ZodRawShape, Services>;

/** Keeps the schema's inferred type flowing into the handler (a job tool: no kind). */
export function defineTool<Shape extends z.ZodRawShape>(tool: ToolDefinition<Shape>): ToolDefinition<Shape> {
  return tool;
}

/** A tool that drives one worker kind: its handler gets that kind's services as `ctx.kind`. */
export function defineKindTool<Settings extends SettingsTree, Services, Shape extends z.ZodRawShape>(
  _kind: WorkerKind<Settings, Services>,
  tool: ToolDefinition<Shape, Services>,
): ToolDefinition<Shape, Services> {
  return tool;
}

/** The task cap of a kind tool's kind (every kind declares one). */
export function taskCapOf(ctx: Pick<ToolContext<unknown>, 'taskCap'>): TaskCap {
  if (ctx.taskCap === undefined)
    throw new MonitorError('INTERNAL', "A kind tool was called without its kind's task cap.");
  return ctx.taskCap;
}

/** What the job tools say about the server they run in: its kinds and the tools that start work. */
export interface ServerFacts {
  kinds: readonly string[];
  dispatchTools: readonly string[];
}

/**
 * `value` when it is within `max`, else INVALID_INPUT naming the limit and the setting that sets
 * it: a value over a limit is refused, never quietly lowered (the caller would not know).
 */
export function withinLimit(argument: string, value: number, max: number, setting: string): number {
  if (value <= max) return value;
  throw new MonitorError('INVALID_INPUT', `${argument} is ${value}, over this server's limit of ${max}.`, {
    hint: `Use at most ${max}, or leave it out for the default. The user sets the limit with "${setting}" in the config file.`,
  });
}
