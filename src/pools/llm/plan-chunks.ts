import { readFile, stat } from 'node:fs/promises';
import { MonitorError } from '../../errors.js';
import { CHUNK_BYTES_PER_TOKEN, chunkRanges, looksBinary } from './template.js';
import type { FileRef, LlmJobOptions } from './types.js';

/** Context assumed for chunk sizing when no endpoint tells the model's context length. */
export const ASSUMED_CONTEXT_TOKENS = 4096;
/** Files larger than this are not cut into chunks at submit time (it reads them whole to find line breaks). */
const MAX_CHUNKED_FILE_BYTES = 64 * 1024 * 1024;

/** Tokens per chunk that leave room for the template, the system prompt and the answer. */
export function autoChunkTokens(
  contextLength: number | undefined,
  options: LlmJobOptions,
  bytesPerToken: number,
): number {
  const context = contextLength ?? ASSUMED_CONTEXT_TOKENS;
  const answer = options.max_tokens ?? Math.min(1024, Math.floor(context / 4));
  const overhead = Math.ceil(Buffer.byteLength((options.template ?? '') + (options.system ?? '')) / bytesPerToken) + 64;
  return Math.max(128, Math.floor((context - answer - overhead) * 0.9));
}

/** Chunks larger than llm.maxFileBytes could never be read into a prompt: refused rather than made smaller unasked. */
export function checkChunkTokens(chunkTokens: number, maxFileBytes: number): void {
  const bytes = chunkTokens * CHUNK_BYTES_PER_TOKEN;
  if (bytes <= maxFileBytes) return;
  throw new MonitorError(
    'INVALID_INPUT',
    `chunk_tokens ${chunkTokens} makes chunks of up to ${bytes} bytes, more than llm.maxFileBytes (${maxFileBytes} bytes) read into one prompt.`,
    {
      hint: `Pass chunk_tokens of at most ${Math.floor(maxFileBytes / CHUNK_BYTES_PER_TOKEN)}, or chunk: true to size chunks to the model's context. Only the user can raise the limit: "llm": {"maxFileBytes": N} in the config file.`,
    },
  );
}

export function tooManyTasks(maxTasks: number, why: string): MonitorError {
  return new MonitorError('INVALID_INPUT', `This would be more than ${maxTasks} tasks${why}.`, {
    hint: 'Split the work into several calls, narrow the file patterns, or use larger chunks (chunk_tokens). The cap is "llm.maxTasks" in the config file.',
  });
}

/**
 * Reads a file once at submit to cut it at line breaks; only the byte ranges are stored. `room` is
 * how many more tasks the job may have: a file that needs more is refused before it is read.
 */
export async function chunkFile(
  file: string,
  display: string,
  chunkBytes: number,
  maxFileBytes: number,
  room: number,
  maxTasks: number,
): Promise<FileRef[]> {
  const { size } = await stat(file);
  // An explicit chunk_tokens was checked against maxFileBytes at submit; a size made from the model's context may still need the cap.
  const bytesPerChunk = Math.max(16, Math.min(chunkBytes, maxFileBytes));
  const fewest = Math.ceil(size / bytesPerChunk);
  if (fewest > room)
    throw tooManyTasks(
      maxTasks,
      `: ${display} needs at least ${fewest} chunks of ${bytesPerChunk} bytes, and only ${room} more fit`,
    );
  if (size > MAX_CHUNKED_FILE_BYTES) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${display} is ${size} bytes; files over ${MAX_CHUNKED_FILE_BYTES} bytes are not chunked.`,
      {
        hint: 'Split it first (e.g. with run_script_batch), or leave it out of files.',
      },
    );
  }
  const buffer = await readFile(file);
  if (looksBinary(buffer)) {
    throw new MonitorError(
      'INVALID_INPUT',
      `${display} looks binary (it contains NUL bytes); only text files can go into a prompt.`,
      {
        hint: 'Narrow the file patterns to text files.',
      },
    );
  }
  const ranges = chunkRanges(buffer, bytesPerChunk, room + 1);
  if (ranges.length > room)
    throw tooManyTasks(
      maxTasks,
      `: ${display} needs more than the ${room} chunks of ${bytesPerChunk} bytes that still fit`,
    );
  return ranges.map((range, i) => ({
    path: file,
    display,
    chunk: i + 1,
    chunks: ranges.length,
    start: range.start,
    end: range.end,
    size: buffer.length,
  }));
}
