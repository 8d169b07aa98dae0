/** An answer with its reasoning kept apart. */
export interface SplitAnswer {
  answer: string;
  reasoning: string;
}

const THINK_TAGS = /<(think|thinking|reasoning)>([\s\S]*?)(?:<\/\1>|$)/gi;

/**
 * Separates reasoning from the answer. Servers put it in `reasoning_content`/`reasoning` (passed as
 * `fieldReasoning`) or inline as `<think>…</think>`; an unclosed `<think>` (cut by max_tokens) is all
 * reasoning. A stray `</think>` with no opening tag (some templates open it in the prompt) splits there.
 */
export function splitReasoning(content: string, fieldReasoning = ''): SplitAnswer {
  const parts: string[] = fieldReasoning.trim() ? [fieldReasoning.trim()] : [];
  let answer = content;
  const strayClose = /^([\s\S]*?)<\/(think|thinking|reasoning)>/i.exec(answer);
  if (strayClose && !/<(think|thinking|reasoning)>/i.test(strayClose[1] ?? '')) {
    parts.push((strayClose[1] ?? '').trim());
    answer = answer.slice(strayClose[0].length);
  }
  answer = answer.replace(THINK_TAGS, (_match, _tag: string, inner: string) => {
    parts.push(inner.trim());
    return '';
  });
  return { answer: answer.trim(), reasoning: parts.filter((p) => p.length > 0).join('\n\n') };
}
