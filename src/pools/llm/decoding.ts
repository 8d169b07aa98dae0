/**
 * What an answer's bytes and figures came to when they were not what a server should send: invalid
 * UTF-8 (shown with U+FFFD, as a script's output is) and token counts that are no counts. Each
 * becomes a note in the task's value (`notes`), never a silent fix.
 */

/** More tokens than this in one answer's usage is a broken or hostile server, not a count. */
export const MOST_TOKENS_PER_ANSWER = 1_000_000_000;

export const INVALID_UTF8_NOTE =
  "The server's answer is not valid UTF-8: the text shows U+FFFD replacement characters where its bytes were invalid.";

/** JSON bodies (parsed) whose bytes were not valid UTF-8: marked by body.ts, read when the answer is built. */
const lossyBodies = new WeakSet<object>();

export function markLossy(parsed: unknown): void {
  if (typeof parsed === 'object' && parsed !== null) lossyBodies.add(parsed);
}

export function wasLossy(parsed: unknown): boolean {
  return typeof parsed === 'object' && parsed !== null && lossyBodies.has(parsed);
}

/** A usage field as a count: a whole number from 0 to MOST_TOKENS_PER_ANSWER, else undefined and why. */
export function tokenCount(raw: unknown, field: string): { count?: number; note?: string } {
  if (raw === undefined || raw === null) return {};
  if (typeof raw === 'number' && Number.isSafeInteger(raw) && raw >= 0 && raw <= MOST_TOKENS_PER_ANSWER)
    return { count: raw };
  const shown =
    typeof raw === 'number'
      ? String(raw)
      : typeof raw === 'string'
        ? JSON.stringify(raw.slice(0, 40))
        : `${(JSON.stringify(raw) ?? typeof raw).slice(0, 40)}`;
  return {
    note: `The server's usage.${field} (${shown}) is not a token count (a whole number from 0 to ${MOST_TOKENS_PER_ANSWER.toLocaleString('en-US')}): it was left out and the figure estimated (tokens_estimated).`,
  };
}

/** Reads `usage.prompt_tokens` and `usage.completion_tokens` of a body or stream chunk into counts and notes. */
export function usageCounts(usage: unknown): { prompt?: number; completion?: number; notes: string[] } {
  const notes: string[] = [];
  if (typeof usage !== 'object' || usage === null || Array.isArray(usage)) return { notes };
  const fields = usage as Record<string, unknown>;
  const prompt = tokenCount(fields.prompt_tokens, 'prompt_tokens');
  const completion = tokenCount(fields.completion_tokens, 'completion_tokens');
  const out: { prompt?: number; completion?: number; notes: string[] } = { notes };
  if (prompt.count !== undefined) out.prompt = prompt.count;
  if (completion.count !== undefined) out.completion = completion.count;
  if (prompt.note) notes.push(prompt.note);
  if (completion.note) notes.push(completion.note);
  return out;
}

/**
 * Checks UTF-8 as bytes arrive (a character split across reads is not invalid), beside the lenient
 * decoder that keeps the text: `lossy` once any byte was invalid, or the bytes ended mid-character.
 */
export class Utf8Check {
  private readonly strict = new TextDecoder('utf-8', { fatal: true });
  lossy = false;

  push(bytes: Uint8Array): void {
    if (this.lossy) return;
    try {
      this.strict.decode(bytes, { stream: true });
    } catch {
      this.lossy = true;
    }
  }

  end(): void {
    if (this.lossy) return;
    try {
      this.strict.decode();
    } catch {
      this.lossy = true;
    }
  }
}
