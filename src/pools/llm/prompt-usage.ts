/** Answered prompts, and their tokens, before their usage stands for a model's bytes a token. */
const MIN_LEARNED_PROMPTS = 3;
const MIN_LEARNED_TOKENS = 256;
/** Real tokenizers take 1.5–5 bytes a token; more is a server's count that is wrong (too few tokens). */
const MOST_BYTES_PER_TOKEN = 8;

/**
 * Prompt bytes and the tokens the server counted for them, per endpoint and model: a measurement
 * of a model's bytes a token where the server has no tokenizer to ask (LM Studio).
 */
export class PromptUsage {
  private readonly seen = new Map<string, { bytes: number; tokens: number; prompts: number }>();

  /** An answered prompt: its size and the tokens the server counted for it (usage.prompt_tokens). */
  note(name: string, model: string, promptBytes: number, promptTokens: number): void {
    // Counts are checked when an answer is read (decoding.ts); these guard the sums all the same.
    if (!Number.isSafeInteger(promptTokens) || promptTokens <= 0 || !Number.isSafeInteger(promptBytes)) return;
    const key = `${name}\n${model}`;
    const seen = this.seen.get(key) ?? { bytes: 0, tokens: 0, prompts: 0 };
    seen.bytes += promptBytes;
    seen.tokens += promptTokens;
    seen.prompts++;
    this.seen.set(key, seen);
  }

  /**
   * Bytes a token of `model` on `name`, from the usage of prompts it answered. The chat template's
   * tokens count too, so it errs small.
   */
  bytesPerToken(name: string, model: string): { bytes: number; prompts: number } | undefined {
    const seen = this.seen.get(`${name}\n${model}`);
    if (!seen || seen.prompts < MIN_LEARNED_PROMPTS || seen.tokens < MIN_LEARNED_TOKENS) return undefined;
    // A server that counts 1 token for a whole prompt would have chunks sized far past any context.
    return { bytes: Math.min(seen.bytes / seen.tokens, MOST_BYTES_PER_TOKEN), prompts: seen.prompts };
  }
}
