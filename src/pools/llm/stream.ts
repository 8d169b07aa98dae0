import type { Dispatcher } from 'undici';
import { abandon, MAX_JSON_BYTES } from './body.js';
import { INVALID_UTF8_NOTE, tokenCount } from './decoding.js';
import { extractUpstreamError, upstreamError } from './error-answers.js';
import { LlmError } from './errors.js';
import { MAX_TOOL_CALLS, streamChunkSchema, toolCallPart } from './responses.js';
import { SseParser } from './sse.js';
import type { StreamWatch } from './stall.js';
import type { ChatAnswer, NativeToolCall } from './types.js';
import { redactSecret, transportError, UpstreamAnswerError, type UpstreamContext } from './upstream.js';

/**
 * Streamed `delta.tool_calls` put together: fragments of one call share an `index`; its id and
 * name come with the first, its arguments arrive in pieces to concatenate.
 */
class ToolCallFragments {
  private readonly calls = new Map<number, { id?: string; name?: string; args: string[] }>();

  /** Adds one delta's fragments; returns the argument characters they carried. */
  add(fragments: readonly unknown[]): number {
    let size = 0;
    fragments.forEach((raw, position) => {
      const part = toolCallPart(raw);
      if (part === undefined) return;
      const key = part.index ?? this.keyWithoutIndex(part.id, position);
      let call = this.calls.get(key);
      if (call === undefined) {
        if (this.calls.size >= MAX_TOOL_CALLS) return;
        call = { args: [] };
        this.calls.set(key, call);
      }
      if (call.id === undefined && part.id !== undefined) call.id = part.id;
      if (call.name === undefined && part.name !== undefined) call.name = part.name;
      if (part.arguments) {
        call.args.push(part.arguments);
        size += part.arguments.length;
      }
    });
    return size;
  }

  /** A server that sends no index: the call with this id, a new one for a new id, else by position. */
  private keyWithoutIndex(id: string | undefined, position: number): number {
    if (id === undefined) return position;
    for (const [key, call] of this.calls) if (call.id === id) return key;
    return this.calls.has(position) ? Math.max(...this.calls.keys()) + 1 : position;
  }

  /** The calls in index order; a call whose name never came is dropped. */
  result(): NativeToolCall[] {
    const calls: NativeToolCall[] = [];
    for (const key of [...this.calls.keys()].sort((a, b) => a - b)) {
      const call = this.calls.get(key);
      if (call?.name === undefined) continue;
      const native: NativeToolCall = { name: call.name, arguments: call.args.join('') };
      if (call.id !== undefined) native.id = call.id;
      calls.push(native);
    }
    return calls;
  }
}

function present(value: unknown): boolean {
  return value !== null && value !== undefined;
}

/** A streamed answer as its events add up: content, reasoning, model, finish reason, usage. */
class StreamedAnswer {
  readonly content: string[] = [];
  readonly reasoning: string[] = [];
  readonly toolCalls = new ToolCallFragments();
  size = 0;
  model: string;
  finishReason: string | null = null;
  promptTokens: number | undefined;
  completionTokens: number | undefined;
  /** Usage figures that were no counts, by field, as of the last usage that had the field. */
  readonly usageNotes = new Map<string, string>();
  ttftMs: number | undefined;
  done = false;
  sawChunk = false;
  private readonly ctx: UpstreamContext;
  private readonly started: number;

  constructor(ctx: UpstreamContext, started: number, requested: string) {
    this.ctx = ctx;
    this.started = started;
    this.model = requested;
  }

  private get name(): string {
    return this.ctx.endpoint.name;
  }

  /** One server-sent event: `[DONE]`, an error, or a chunk of the answer. */
  add(data: string, event: string): void {
    if (data === '[DONE]') {
      this.done = true;
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(data);
    } catch (error) {
      throw new UpstreamAnswerError(
        'UPSTREAM_ERROR',
        `Endpoint ${this.name} sent a stream event that is not JSON: ${JSON.stringify(redactSecret(data.slice(0, 200), this.ctx.secret))}`,
        200,
        { cause: error },
      );
    }
    const error = extractUpstreamError(parsed);
    if (error || event === 'error') throw upstreamError(200, error ?? { message: data.slice(0, 500) }, this.ctx);
    const chunk = streamChunkSchema.safeParse(parsed);
    if (!chunk.success) return;
    this.sawChunk = true;
    if (chunk.data.model) this.model = chunk.data.model;
    const choice = chunk.data.choices?.[0];
    const delta = choice?.delta;
    const piece = delta?.content ?? '';
    const thought = delta?.reasoning_content || delta?.reasoning || '';
    const callSize = delta?.tool_calls ? this.toolCalls.add(delta.tool_calls) : 0;
    if ((piece || thought || delta?.tool_calls?.length) && this.ttftMs === undefined)
      this.ttftMs = performance.now() - this.started;
    if (piece) this.content.push(piece);
    if (thought) this.reasoning.push(thought);
    this.size += piece.length + thought.length + callSize;
    if (this.size > MAX_JSON_BYTES)
      throw new LlmError(
        'RESPONSE_TOO_LARGE',
        `Endpoint ${this.name} streamed more than ${MAX_JSON_BYTES} characters.`,
      );
    if (typeof choice?.finish_reason === 'string') this.finishReason = choice.finish_reason;
    const usage = chunk.data.usage as Record<string, unknown> | null | undefined;
    // Some servers send usage with every chunk: a field's last value stands, and so does its note.
    if (present(usage?.prompt_tokens)) this.promptTokens = this.count(usage?.prompt_tokens, 'prompt_tokens');
    if (present(usage?.completion_tokens))
      this.completionTokens = this.count(usage?.completion_tokens, 'completion_tokens');
  }

  private count(raw: unknown, field: string): number | undefined {
    const { count, note } = tokenCount(raw, field);
    if (note === undefined) this.usageNotes.delete(field);
    else this.usageNotes.set(field, note);
    return count;
  }

  /** The answer once the stream ended; one that stopped before a finish_reason and without [DONE] lost its connection. */
  finish(): ChatAnswer {
    if (!this.done && this.finishReason === null) {
      const pieces = this.content.length + this.reasoning.length;
      if (!this.sawChunk) {
        throw new LlmError('EMPTY_ANSWER', `Endpoint ${this.name} closed the stream without sending anything.`, {
          hint: 'LM Studio does this when the prompt overflows the context on some GGUF models; try chunk: true or a shorter prompt. An empty answer is retried once.',
          retryable: true,
        });
      }
      throw new LlmError(
        'UPSTREAM_ERROR',
        `The stream from endpoint ${this.name} ended mid-answer (after ${pieces} pieces, no finish_reason).`,
        {
          hint: 'Usually transient (server restarted or evicted the model); it was retried with backoff. If it persists, check the server log.',
          retryable: true,
        },
      );
    }
    const answer: ChatAnswer = {
      content: this.content.join(''),
      reasoning: this.reasoning.join(''),
      model: this.model,
      finishReason: this.finishReason,
      durationMs: performance.now() - this.started,
    };
    if (this.promptTokens !== undefined) answer.promptTokens = this.promptTokens;
    if (this.completionTokens !== undefined) answer.completionTokens = this.completionTokens;
    if (this.ttftMs !== undefined) answer.ttftMs = this.ttftMs;
    if (this.usageNotes.size > 0) answer.notes = [...this.usageNotes.values()];
    const toolCalls = this.toolCalls.result();
    if (toolCalls.length > 0) answer.toolCalls = toolCalls;
    return answer;
  }
}

/**
 * Reads a streamed chat completion (SSE) to its end: the answer, or the error the stream carried or
 * ended with. `watch` hears of every event (a token, a role, usage), so it knows how long it is silent.
 */
export async function readChatStream(
  response: Dispatcher.ResponseData,
  ctx: UpstreamContext,
  signal: AbortSignal,
  started: number,
  requested: string,
  watch?: StreamWatch,
): Promise<ChatAnswer> {
  const parser = new SseParser();
  const answer = new StreamedAnswer(ctx, started, requested);
  try {
    // Read to the end even after [DONE]: a fully read body keeps the connection reusable.
    for await (const chunk of response.body) {
      if (answer.done) continue;
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
      for (const event of parser.push(bytes)) {
        watch?.touch();
        if (!answer.done) answer.add(event.data, event.event);
      }
    }
    if (!answer.done) for (const event of parser.end()) answer.add(event.data, event.event);
  } catch (error) {
    abandon(response.body);
    if (signal.aborted) throw signal.reason;
    throw transportError(error, ctx, 'answer');
  }
  const finished = answer.finish();
  if (parser.lossy) finished.notes = [INVALID_UTF8_NOTE, ...(finished.notes ?? [])];
  return finished;
}
