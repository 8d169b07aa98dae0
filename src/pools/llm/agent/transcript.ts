import { appendFile, open, rename, writeFile } from 'node:fs/promises';
import * as z from 'zod';

/** A call as the transcript keeps it (its arguments as read, after recovery). */
export interface CallLine {
  id: string;
  name: string;
  args: Record<string, unknown>;
}

/**
 * One line of an investigation's transcript (JSONL). `request` lines hold each answer whole, so a
 * resumed task rebuilds its conversation without asking again; tool results are recomputed (the
 * tools only read), their digest tells whether a file changed meanwhile.
 */
export type TranscriptLine =
  | { type: 'start'; task: string; model: string; tools: string[]; paths?: string[]; at: string }
  | {
      type: 'request';
      step: number;
      endpoint?: string;
      tokens_in: number;
      tokens_out: number;
      content: string;
      /** How the answer was read: calls (native: sent as tool_calls), a malformed call, or plain text. */
      reading: 'calls' | 'malformed' | 'text';
      native?: boolean;
      calls?: CallLine[];
      correction?: string;
      recovered?: string[];
    }
  | {
      type: 'tool';
      step: number;
      call_id: string;
      name: string;
      args: Record<string, unknown>;
      ok: boolean;
      summary: string;
      bytes: number;
      digest: string;
      preview: string;
    }
  | { type: 'note'; step: number; kind: 'protocol' | 'last_call' | 'schema' | 'changed' | 'elided'; text: string }
  | { type: 'finish'; step: number; answer: unknown; citations: unknown[]; cut: boolean };

const step = z.number().int().min(0).max(1_000_000);
const args = z.record(z.string(), z.unknown());
const callSchema = z.object({ id: z.string().max(200), name: z.string().max(100), args });
/**
 * A resumed task rebuilds its conversation from these lines: the file sits in the state directory
 * and is read as untrusted input. A line that does not check out ends the replay there, as a cut one does.
 */
const lineSchema: z.ZodType<TranscriptLine> = z.union([
  z.object({
    type: z.literal('start'),
    task: z.string(),
    model: z.string(),
    tools: z.array(z.string()),
    paths: z.array(z.string()).optional(),
    at: z.string(),
  }),
  z.object({
    type: z.literal('request'),
    step,
    endpoint: z.string().optional(),
    tokens_in: z.number().nonnegative(),
    tokens_out: z.number().nonnegative(),
    content: z.string(),
    reading: z.enum(['calls', 'malformed', 'text']),
    native: z.boolean().optional(),
    calls: z.array(callSchema).max(64).optional(),
    correction: z.string().optional(),
    recovered: z.array(z.string()).optional(),
  }),
  z.object({
    type: z.literal('tool'),
    step,
    call_id: z.string(),
    name: z.string(),
    args,
    ok: z.boolean(),
    summary: z.string(),
    bytes: z.number().nonnegative(),
    digest: z.string(),
    preview: z.string(),
  }),
  z.object({
    type: z.literal('note'),
    step,
    kind: z.enum(['protocol', 'last_call', 'schema', 'changed', 'elided']),
    text: z.string(),
  }),
  z.object({ type: z.literal('finish'), step, answer: z.unknown(), citations: z.array(z.unknown()), cut: z.boolean() }),
]);

/** The transcript may be long, but it is read only on resume: anything past this is not trusted. */
const MAX_TRANSCRIPT_BYTES = 64 * 1024 * 1024;

/** Appends lines, one write each, in order; a line is on disk before the next request is sent. */
export class Transcript {
  private chain: Promise<void> = Promise.resolve();

  constructor(readonly file: string) {}

  append(line: TranscriptLine): Promise<void> {
    const text = `${JSON.stringify(line)}\n`;
    // Tool results may quote private files: readable by the owner only, like the rest of the state dir.
    const write = this.chain.then(() => appendFile(this.file, text, { encoding: 'utf8', mode: 0o600 }));
    this.chain = write.catch(() => undefined);
    return write;
  }

  /** The lines written by an earlier run of this task; a line cut by a crash (the last) is dropped. */
  static async read(file: string): Promise<TranscriptLine[]> {
    const handle = await open(file, 'r').catch(() => undefined);
    if (!handle) return [];
    try {
      const { size } = await handle.stat();
      if (size > MAX_TRANSCRIPT_BYTES) return [];
      const buffer = Buffer.alloc(size);
      await handle.read(buffer, 0, size, 0);
      const lines: TranscriptLine[] = [];
      for (const text of buffer.toString('utf8').split('\n')) {
        if (text.trim() === '') continue;
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          break;
        }
        const line = lineSchema.safeParse(parsed);
        if (!line.success) break;
        lines.push(line.data);
      }
      return lines;
    } finally {
      await handle.close();
    }
  }

  /** Starts the file over with `lines` (a resumed run: a line cut by the crash must not join the next one). */
  static async rewrite(file: string, lines: readonly TranscriptLine[]): Promise<void> {
    const temporary = `${file}.tmp`;
    await writeFile(temporary, lines.map((line) => `${JSON.stringify(line)}\n`).join(''), {
      encoding: 'utf8',
      mode: 0o600,
    });
    await rename(temporary, file);
  }
}
