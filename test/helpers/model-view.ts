import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Ajv } from 'ajv';

/**
 * What Claude Code hands its model for a tool result (observed on 2.1.197, see
 * ../shared/reference/mcp-and-clients.md): `JSON.stringify(structuredContent)` for a success (every
 * text block dropped), only the text for an error.
 */
export function modelView(result: CallToolResult): string {
  if (result.isError) return result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
  return result.structuredContent === undefined
    ? result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n')
    : JSON.stringify(result.structuredContent);
}

/** A call a reply tells the model to make: `tool with {...}`. */
export interface SuggestedCall {
  tool: string;
  args: Record<string, unknown>;
}

/** Every `TOOL with {JSON}` in a text, in order: how `next` spells a call out. */
export function suggestedCalls(text: string): SuggestedCall[] {
  const calls: SuggestedCall[] = [];
  for (const match of text.matchAll(/([a-z_]+) with \{/g)) {
    const start = (match.index ?? 0) + match[0].length - 1;
    let depth = 0;
    let inString = false;
    for (let i = start; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        if (c === '\\') i++;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{') depth++;
      else if (c === '}' && --depth === 0) {
        calls.push({ tool: match[1] ?? '', args: JSON.parse(text.slice(start, i + 1)) as Record<string, unknown> });
        break;
      }
    }
  }
  return calls;
}

/**
 * What is wrong with a suggested call against its tool's inputSchema as the client lists it:
 * empty when the call can be made as written.
 */
export async function callProblems(client: Client, suggested: SuggestedCall): Promise<string[]> {
  const { tools } = await client.listTools();
  const tool = tools.find((t) => t.name === suggested.tool);
  if (!tool) return [`no tool ${suggested.tool}`];
  const validate = new Ajv({ strict: false, allErrors: true }).compile(tool.inputSchema);
  if (validate(suggested.args)) return [];
  return (validate.errors ?? []).map((e) => `${suggested.tool}${e.instancePath} ${e.message ?? ''}`);
}
