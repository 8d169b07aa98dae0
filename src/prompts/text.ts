/**
 * The pieces every prompt's text is made of. A user's value reaches the text only through JSON
 * (JSON.stringify, backticks escaped): a path with quotes, backticks or line breaks cannot break the
 * example call it sits in, nor the sentence around it.
 */

/** JSON for a call shown in `backticks`: a backtick inside a string is written \u0060. */
export function json(value: unknown): string {
  return JSON.stringify(value).replace(/`/g, '\\u0060');
}

/** A value quoted for prose: its JSON string. */
export function quoted(value: string): string {
  return json(value);
}

/** One tool call as the text shows it; tests find every `TOOL with \`{…}\`` and validate it against the tool's schema. */
export function call(tool: string, args: Record<string, unknown>): string {
  return `${tool} with \`${json(args)}\``;
}

/** What a later step writes where an earlier step's job id goes. */
export function jobOf(step: number): string {
  return `<job_id of step ${step}>`;
}

/** User text going into a template: its `{{` and `}}` broken up, so it cannot name a placeholder. */
export function untemplated(text: string): string {
  return text.replace(/\{\{/g, '{ {').replace(/\}\}/g, '} }');
}

/** A job label (at most 200 characters, as the tools take them). */
export function label(text: string): string {
  return text.length <= 200 ? text : `${text.slice(0, 199)}…`;
}

/** `model` when the user named one: every LLM call of a prompt carries it. */
export function withModel(model: string | undefined): { model?: string } {
  return model === undefined ? {} : { model };
}

/** Paths or globs given as one argument: split at commas and line breaks outside `{a,b}`. */
export function listArgument(value: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const char of value) {
    if (char === '{') depth++;
    if (char === '}') depth = Math.max(0, depth - 1);
    if (depth === 0 && (char === ',' || char === '\n')) {
      parts.push(current);
      current = '';
    } else current += char;
  }
  parts.push(current);
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

/**
 * A command line split into words as a shell would split a simple one (quotes and backslashes);
 * undefined when it needs a shell: a pipe, redirection, `;`, `&`, `$`, a backquote, a glob or `~` outside quotes.
 */
export function commandWords(command: string): string[] | undefined {
  const words: string[] = [];
  let word: string | undefined;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < command.length; i++) {
    const char = command.charAt(i);
    if (quote === "'") {
      if (char === "'") quote = undefined;
      else word += char;
    } else if (quote === '"') {
      if (char === '"') quote = undefined;
      else if (char === '\\' && /["\\$`]/.test(command.charAt(i + 1))) word += command.charAt(++i);
      else if (char === '$' || char === '`') return undefined;
      else word += char;
    } else if (char === "'" || char === '"') {
      quote = char;
      word ??= '';
    } else if (char === '\\' && i + 1 < command.length) word = (word ?? '') + command.charAt(++i);
    else if (/\s/.test(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (/[|&;<>()$`*?]/.test(char) || (char === '~' && word === undefined)) return undefined;
    else word = (word ?? '') + char;
  }
  if (quote !== undefined) return undefined;
  if (word !== undefined) words.push(word);
  return words.length > 0 ? words : undefined;
}

/** Numbered steps; add() returns the step's number, for `jobOf(n)` in a later one. */
export class Steps {
  private readonly lines: string[] = [];

  add(text: string): number {
    this.lines.push(`${this.lines.length + 1}. ${text}`);
    return this.lines.length;
  }

  toString(): string {
    return this.lines.join('\n');
  }
}

/** What to do when no local LLM answers; `instead` is the prompt's way on without one. */
export function noLlm(tool: string, instead: string): string {
  return `If ${tool} or a result says ENDPOINT_UNREACHABLE, MODEL_NOT_FOUND or MODEL_NOT_LOADED, no local LLM answers: call ${call('lmstudio_models', {})}, tell the user what it says to fix (start LM Studio's server, load a model), and ${instead}`;
}

/** How to collect, said the same way by every prompt (`lead`: the sentence's first word). */
export function collect(jobIds: readonly string[], lead = 'Call'): string {
  return `${lead} ${call('collect_results', { job_ids: jobIds })} and, until its "done" is true, make the call its "next" names.`;
}
