import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import type * as z from 'zod';
import type { Config } from '../config.js';
import type { Engine } from '../engine/engine.js';
import type { Logger } from '../log.js';
import type { Services } from '../services.js';

/** What a handler may use. Built once by createServer; nothing here touches `process`. */
export interface ToolContext {
  config: Config;
  engine: Engine;
  services: Services;
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

export interface ToolDefinition<Shape extends z.ZodRawShape = z.ZodRawShape> {
  name: string;
  title: string;
  description: string;
  inputSchema: Shape;
  annotations: ToolAnnotations;
  /** Throw a MonitorError for bad input: it becomes isError text with its hint. */
  handler(args: z.infer<z.ZodObject<Shape>>, ctx: ToolContext): Promise<ToolReply>;
}

/** Keeps the schema's inferred type flowing into the handler while the registry stays one array. */
export function defineTool<Shape extends z.ZodRawShape>(tool: ToolDefinition<Shape>): ToolDefinition<Shape> {
  return tool;
}
