import type { Dispatcher } from 'undici';
import { abandon, MAX_JSON_BYTES } from './body.js';
import { extractUpstreamError, upstreamError } from './error-answers.js';
import { LlmError } from './errors.js';
import { streamChunkSchema } from './responses.js';
import { SseParser } from './sse.js';
import type { ChatAnswer } from './types.js';
import { redactSecret, transportError, UpstreamAnswerError, type UpstreamContext } from './upstream.js';

/** A streamed answer as its events add up: content, reasoning, model, finish reason, usage. */
class StreamedAnswer {
  readonly content: string[] = [];
  readonly reasoning: string[] = [];
  size = 0;
  model: string;
  finishReason: string | null = null;
  promptTokens: number | undefined;
  completionTokens: number | undefined;
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
    if ((piece || thought) && this.ttftMs === undefined) this.ttftMs = performance.now() - this.started;
    if (piece) this.content.push(piece);
    if (thought) this.reasoning.push(thought);
    this.size += piece.length + thought.length;
    if (this.size > MAX_JSON_BYTES)
      throw new LlmError(
        'RESPONSE_TOO_LARGE',
        `Endpoint ${this.name} streamed more than ${MAX_JSON_BYTES} characters.`,
      );
    if (typeof choice?.finish_reason === 'string') this.finishReason = choice.finish_reason;
    const usage = chunk.data.usage;
    if (typeof usage?.prompt_tokens === 'number') this.promptTokens = usage.prompt_tokens;
    if (typeof usage?.completion_tokens === 'number') this.completionTokens = usage.completion_tokens;
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
    return answer;
  }
}

/** Reads a streamed chat completion (SSE) to its end: the answer, or the error the stream carried or ended with. */
export async function readChatStream(
  response: Dispatcher.ResponseData,
  ctx: UpstreamContext,
  signal: AbortSignal,
  started: number,
  requested: string,
): Promise<ChatAnswer> {
  const parser = new SseParser();
  const answer = new StreamedAnswer(ctx, started, requested);
  try {
    // Read to the end even after [DONE]: a fully read body keeps the connection reusable.
    for await (const chunk of response.body) {
      if (answer.done) continue;
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
      for (const event of parser.push(bytes)) if (!answer.done) answer.add(event.data, event.event);
    }
    if (!answer.done) for (const event of parser.end()) answer.add(event.data, event.event);
  } catch (error) {
    abandon(response.body);
    if (signal.aborted) throw signal.reason;
    throw transportError(error, ctx, 'answer');
  }
  return answer.finish();
}
