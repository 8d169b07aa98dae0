import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { GetPromptRequestSchema, ListPromptsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import type { PromptContext } from './prompt.js';

/**
 * Answers prompts/list and prompts/get on `server` (which declares the `prompts` capability). The
 * prompts' modules load on the first such request, so they cost nothing at start-up.
 */
export function registerPrompts(server: Server, ctx: PromptContext): void {
  const prompts = (): Promise<typeof import('./index.js')> => import('./index.js');
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: (await prompts()).listedPrompts() }));
  server.setRequestHandler(GetPromptRequestSchema, async (request) =>
    (await prompts()).getPrompt(request.params.name, request.params.arguments, ctx),
  );
}
