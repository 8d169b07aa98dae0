import { open } from 'node:fs/promises';
import type { LlmPlanContext } from './plan-types.js';
import { CHUNK_BYTES_PER_TOKEN, looksBinary } from './template.js';

/** Files sampled, and bytes of each, to measure the tokenizer's bytes per token. */
const SAMPLE_FILES = 8;
export const SAMPLE_BYTES_PER_FILE = 8192;
/** Files differ from the sample: on this repository 95% of files were within 0.89× of the median ratio. */
export const MEASURED_MARGIN = 0.8;

export interface Measured {
  bytes: number;
  /** How it was measured, for the submit's note. */
  how: string;
}

/** Real tokenizers take 1.5–5 bytes a token of text; more means the count was wrong. */
const MOST_BYTES_PER_TOKEN = 8;

/**
 * Bytes per token for sizing chunks, measured on a sample of the files with the tokenizer of the
 * first endpoint serving the model that has one (`/tokenize`): a model's vocabulary decides it, from
 * ~4 bytes a token for large BPE vocabularies down to 1.6 for a small one, where the fixed
 * estimate made chunks twice too large. Undefined bytes (no counter anywhere): the estimate.
 */
export async function bytesPerToken(
  files: readonly string[],
  endpointNames: readonly string[],
  model: string,
  context: LlmPlanContext,
): Promise<Measured | undefined> {
  const parts: Buffer[] = [];
  for (const file of files.slice(0, SAMPLE_FILES)) {
    const handle = await open(file, 'r').catch(() => undefined);
    if (!handle) continue;
    try {
      const buffer = Buffer.alloc(SAMPLE_BYTES_PER_FILE);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      if (!looksBinary(buffer.subarray(0, bytesRead))) parts.push(buffer.subarray(0, bytesRead));
    } finally {
      await handle.close();
    }
  }
  return measure(Buffer.concat(parts).toString('utf8'), endpointNames, model, context);
}

/** The bytes a token a plan used, as its note says it. */
export function describeRatio(ratio: Measured | undefined): string {
  return ratio !== undefined
    ? `${ratio.bytes.toFixed(2)} bytes a token, ${ratio.how} less a margin`
    : `${CHUNK_BYTES_PER_TOKEN} bytes a token, estimated`;
}

/** Bytes a token of `sample` on the first endpoint that counts tokens, less the margin. */
export async function measure(
  sample: string,
  endpointNames: readonly string[],
  model: string,
  context: LlmPlanContext,
): Promise<Measured | undefined> {
  if (sample.length === 0) return undefined;
  for (const name of endpointNames) {
    const tokens = await context.endpoints.client(name).countTokens(sample, model, context.signal);
    // A count no tokenizer gives (1e300 tokens, or 1 for the whole sample) is the server's error, not a measure.
    const bytes = tokens !== undefined && tokens > 0 ? Buffer.byteLength(sample) / tokens : undefined;
    if (bytes !== undefined && bytes >= 1 && bytes <= MOST_BYTES_PER_TOKEN)
      return { bytes: bytes * MEASURED_MARGIN, how: `counted with ${name}'s tokenizer` };
  }
  // No tokenizer to ask (LM Studio's REST API has none): what the endpoints reported for earlier prompts of this model.
  for (const name of endpointNames) {
    const learned = context.endpoints.learnedBytesPerToken(name, model);
    if (learned)
      return {
        bytes: learned.bytes * MEASURED_MARGIN,
        how: `learned from the prompt token counts ${name} reported for ${learned.prompts} earlier prompts`,
      };
  }
  return undefined;
}
