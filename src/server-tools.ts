import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import type { TaskCap } from './pools/kind.js';
import type { KindFacts } from './registry.js';
import { inputJsonSchema } from './tools/arguments.js';
import { jobTools } from './tools/index.js';
import type { AnyTool, ServerFacts } from './tools/tool.js';
import { jobsViewToolMeta } from './tools/ui.js';

/** A tool as the server holds it: its definition and the kind it drives (none for job tools). */
export interface ToolEntry {
  tool: AnyTool;
  /** The kind whose services its handler gets (undefined for the job tools): looked up once the kinds are built. */
  kind: string | undefined;
  /** The kind's task cap (undefined for the job tools). */
  taskCap: TaskCap | undefined;
}

/** Which tools the server offers: each by name, and their definitions as clients list them. */
export interface ToolTable {
  byName: ReadonlyMap<string, ToolEntry>;
  /** Built once, on the first tools/list: what every client (and, in Claude Code, the model) gets on every one. */
  readonly listed: Tool[];
}

/** Every kind's tools, then the job tools (collect_results, list_jobs…), which are told the kinds and dispatch tools. */
export function toolTable(kinds: readonly KindFacts[]): ToolTable {
  const facts: ServerFacts = {
    kinds: kinds.map((k) => k.name),
    dispatchTools: [...kinds.flatMap((k) => k.tools.filter((t) => t.dispatch).map((t) => t.name))],
  };
  const byName = new Map<string, ToolEntry>();
  for (const kind of kinds)
    for (const tool of kind.tools) byName.set(tool.name, { tool, kind: kind.name, taskCap: kind.taskCap });
  for (const tool of jobTools(facts)) byName.set(tool.name, { tool, kind: undefined, taskCap: undefined });
  let listed: Tool[] | undefined;
  return {
    byName,
    // Not with the server: turning every schema into JSON takes ~25 ms that initialize need not wait for.
    get listed(): Tool[] {
      listed ??= [...byName.values()].map(({ tool }) => ({
        name: tool.name,
        title: tool.title,
        description: tool.description,
        inputSchema: inputJsonSchema(tool.inputSchema) as Tool['inputSchema'],
        annotations: tool.annotations,
        // MCP Apps: hosts that show apps render the jobs view with this tool's result.
        ...withJobsView(tool),
      }));
      return listed;
    },
  };
}

/** `_meta` linking the jobs view, for the tools whose results it shows (not counted in the definitions' size). */
function withJobsView(tool: AnyTool): { _meta?: Record<string, unknown> } {
  const meta = jobsViewToolMeta(tool);
  return meta ? { _meta: meta } : {};
}
