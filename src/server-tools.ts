import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import type { TaskCap } from './pools/kind.js';
import type { BuiltKind } from './registry.js';
import { inputJsonSchema } from './tools/arguments.js';
import { jobTools } from './tools/index.js';
import type { AnyTool, ServerFacts } from './tools/tool.js';

/** A tool as the server holds it: its definition and the services of the kind it drives (none for job tools). */
export interface ToolEntry {
  tool: AnyTool;
  services: unknown;
  /** The kind's task cap (undefined for the job tools). */
  taskCap: TaskCap | undefined;
}

/** Which tools the server offers: each by name, and their definitions as clients list them. */
export interface ToolTable {
  byName: ReadonlyMap<string, ToolEntry>;
  /** Built once: what every client (and, in Claude Code, the model) gets on every tools/list. */
  listed: Tool[];
}

/** Every kind's tools, then the job tools (collect_results, list_jobs…), which are told the kinds and dispatch tools. */
export function toolTable(kinds: readonly BuiltKind[]): ToolTable {
  const facts: ServerFacts = {
    kinds: kinds.map((k) => k.name),
    dispatchTools: [...kinds.flatMap((k) => k.tools.filter((t) => t.dispatch).map((t) => t.name))],
  };
  const byName = new Map<string, ToolEntry>();
  for (const kind of kinds)
    for (const tool of kind.tools)
      byName.set(tool.name, { tool, services: kind.instance.services, taskCap: kind.taskCap });
  for (const tool of jobTools(facts)) byName.set(tool.name, { tool, services: undefined, taskCap: undefined });
  const listed: Tool[] = [...byName.values()].map(({ tool }) => ({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: inputJsonSchema(tool.inputSchema) as Tool['inputSchema'],
    annotations: tool.annotations,
  }));
  return { byName, listed };
}
