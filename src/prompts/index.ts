import type { GetPromptResult, Prompt } from '@modelcontextprotocol/sdk/types.js';
import { closest } from '../tools/arguments.js';
import { analyseModule } from './analyse_module.js';
import { fanOutQuestion } from './fan_out_question.js';
import { checkArguments, invalidParams, type PromptContext, type PromptDefinition } from './prompt.js';
import { summariseFolder } from './summarise_folder.js';
import { triageFailures } from './triage_failures.js';

export type { PromptContext } from './prompt.js';

/** The seed's workflows as slash commands (Claude Code shows them as /mcp__<server>__<name>). */
export const PROMPTS: readonly PromptDefinition[] = [analyseModule, triageFailures, summariseFolder, fanOutQuestion];

/** The prompts as prompts/list gives them. */
export function listedPrompts(prompts: readonly PromptDefinition[] = PROMPTS): Prompt[] {
  return prompts.map((p) => ({
    name: p.name,
    title: p.title,
    description: p.description,
    arguments: p.arguments.map((a) => ({ name: a.name, description: a.description, required: a.required === true })),
  }));
}

/** prompts/get: the prompt's text with the user's arguments, or InvalidParams saying what was wrong. */
export async function getPrompt(
  name: string,
  args: Readonly<Record<string, unknown>> | undefined,
  ctx: PromptContext,
  prompts: readonly PromptDefinition[] = PROMPTS,
): Promise<GetPromptResult> {
  const prompt = prompts.find((p) => p.name === name);
  if (!prompt) {
    const names = prompts.map((p) => p.name);
    const near = closest(name, names);
    throw invalidParams(
      `Unknown prompt "${name}"${near ? ` (did you mean "${near}"?)` : ''}.`,
      `The prompts are ${names.join(', ')} (prompts/list describes them).`,
    );
  }
  const text = await prompt.render(checkArguments(prompt, args), ctx);
  return { description: prompt.description, messages: [{ role: 'user', content: { type: 'text', text } }] };
}
