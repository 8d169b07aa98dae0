import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { type CallToolResult, CallToolRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Config } from './registry.js';
import { errorText, MonitorError } from './errors.js';
import type { Logger } from './log.js';
import type { Runtime } from './server-start.js';
import type { ToolTable } from './server-tools.js';
import { closest, parseArguments } from './tools/arguments.js';
import type { ToolContext } from './tools/tool.js';

/** What a tool call is answered with: the server's settings, its tools, and the kinds and engine once built. */
export interface CallDeps {
  config: Config;
  log: Logger;
  table: ToolTable;
  /** The built kinds and the engine with the state directory recovered (built once, right after the handshake). */
  runtime(): Promise<Runtime>;
}

/** Sends a progress notification for the call, when the client asked for them; never fails the call. */
type Progress = ToolContext<unknown>['progress'];

/**
 * Answers tools/call: finds the tool (or says which one was meant), parses its arguments, runs it,
 * and turns any error into `isError` text (`CODE: message` and what to do next).
 */
export function handleToolCalls(server: Server, deps: CallDeps): void {
  const { config, log, table } = deps;
  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const { name } = request.params;
    const progressToken = request.params._meta?.progressToken;
    const progress: Progress = async (done, total, message) => {
      if (progressToken === undefined) return;
      await extra
        .sendNotification({
          method: 'notifications/progress',
          params:
            total === undefined
              ? { progressToken, progress: done, message }
              : { progressToken, progress: done, total, message },
        })
        .catch(() => undefined);
    };
    try {
      const entry = table.byName.get(name);
      if (!entry) throw unknownTool(name, [...table.byName.keys()]);
      const args = parseArguments(entry.tool.name, entry.tool.inputSchema, request.params.arguments);
      const { engine, services } = await deps.runtime();
      const context: ToolContext<unknown> = {
        config,
        engine,
        kind: services(entry.kind),
        taskCap: entry.taskCap,
        log,
        signal: extra.signal,
        progress,
      };
      const reply = await entry.tool.handler(args as never, context);
      const result: CallToolResult = { content: [{ type: 'text', text: reply.text }] };
      if (reply.structured) result.structuredContent = reply.structured;
      return result;
    } catch (error) {
      log.debug(`${name} failed: ${errorText(error)}`);
      return { content: [{ type: 'text', text: errorText(error) }], isError: true };
    }
  });
}

function unknownTool(name: string, names: readonly string[]): MonitorError {
  const near = closest(name, names);
  return new MonitorError('INVALID_INPUT', `There is no tool "${name}".`, {
    hint: `${near ? `Did you mean ${near}? ` : ''}The tools: ${names.join(', ')}.`,
  });
}
