import type { ToolSpec } from '../types.js';

/** The names the model is offered, exactly (issue 20). */
export const TOOL_NAMES = ['list_files', 'read_file', 'grep', 'outline', 'finish'] as const;
export type AgentToolName = (typeof TOOL_NAMES)[number];

const citationItem = {
  type: 'object',
  properties: {
    path: { type: 'string' },
    start_line: { type: 'integer' },
    end_line: { type: 'integer' },
    quote: { type: 'string', description: 'A line copied exactly from the file.' },
  },
  required: ['path', 'start_line', 'end_line'],
};

function tool(
  name: AgentToolName,
  description: string,
  properties: Record<string, unknown>,
  required: string[],
): ToolSpec {
  return { type: 'function', function: { name, description, parameters: { type: 'object', properties, required } } };
}

/** The tools in OpenAI's format; `finish`'s answer takes the job's json_schema when it has one. */
export function agentTools(answerSchema?: Record<string, unknown>): ToolSpec[] {
  return [
    tool(
      'list_files',
      'List a folder (folders end with /); with glob, the matching files below it.',
      { path: { type: 'string' }, glob: { type: 'string', description: 'e.g. **/*.ts' } },
      ['path'],
    ),
    tool(
      'read_file',
      'Read a file, lines numbered (the first 200 unless start_line/end_line say which).',
      { path: { type: 'string' }, start_line: { type: 'integer' }, end_line: { type: 'integer' } },
      ['path'],
    ),
    tool(
      'grep',
      'Search file contents for a regular expression (or literal text) below a folder; shows path:line: text.',
      { pattern: { type: 'string' }, path: { type: 'string' }, glob: { type: 'string' } },
      ['pattern'],
    ),
    tool(
      'outline',
      "A source file's classes, functions and methods with their line numbers, without bodies.",
      { path: { type: 'string' } },
      ['path'],
    ),
    tool(
      'finish',
      'End the investigation with your answer and the lines that support it.',
      {
        answer: answerSchema ?? { type: 'string' },
        citations: { type: 'array', items: citationItem },
      },
      ['answer', 'citations'],
    ),
  ];
}

/** The system prompt: what the agent is, where it may look, how to end. */
export function systemPrompt(roots: readonly string[], paths: readonly string[] | undefined, maxSteps: number): string {
  const where =
    paths && paths.length > 0
      ? `only these paths: ${paths.join(', ')}`
      : `the folder${roots.length > 1 ? 's' : ''} ${roots.map((r) => JSON.stringify(r)).join(', ')} (paths are relative to the first)`;
  return [
    'You investigate a code base to answer one task, using tools that read files; you cannot change anything.',
    `You may look at ${where}.`,
    'Look before you conclude: list folders, grep for names, outline and read the relevant lines.',
    `You have at most ${maxSteps} tool-using turns. When you know the answer, call finish with the answer and citations: for each claim, the path and line range you read it in, and a line quoted exactly.`,
    'Be precise and brief.',
  ].join('\n');
}

/** The user message that gives the agent its task. */
export function taskMessage(task: string): string {
  return `Task: ${task}`;
}

/** After max_steps: one last turn to finish with what it has. */
export function lastCallMessage(maxSteps: number): string {
  return `You have used all ${maxSteps} turns. Call finish now with what you have found so far (say what you could not check), with citations of lines you read.`;
}

/** A call the model already made: its result is above, not sent again. */
export function repeatedCallNote(step: number): string {
  return `You already made this exact call (turn ${step}); its result is above. Try something else, or call finish.`;
}
