import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { TaskContext, TaskResult } from '../../../engine/types.js';
import type { PathRules } from '../../../paths.js';
import type { LentServices } from '../../kind.js';
import type { Completer } from '../completion.js';
import type { Endpoints } from '../endpoints.js';
import type { SchemaValidator } from '../schema.js';
import { CHUNK_BYTES_PER_TOKEN } from '../template.js';
import type { ChatMessage, LlmJobOptions, ToolSpec } from '../types.js';
import type { Usage } from '../usage.js';
import { type Answered, askStep } from './ask.js';
import { type AgentCall, protocolPrompt, readCalls, toolsRejected } from './calls.js';
import { Conversation } from './conversation.js';
import { finishCall, type Finished, textAnswer } from './finish.js';
import { agentTools, lastCallMessage, repeatedCallNote, systemPrompt, taskMessage, TOOL_NAMES } from './prompt.js';
import { investigationResult, type StepFigures } from './result.js';
import { AgentScope } from './scope.js';
import { Toolbox } from './toolbox.js';
import { type CallLine, Transcript, type TranscriptLine } from './transcript.js';
import { STEP_MAX_TOKENS } from './types.js';

/** What an investigation needs from the kind. */
export interface AgentDeps {
  completer: Completer;
  endpoints: Endpoints;
  schemas: SchemaValidator;
  allowedRoots: readonly string[];
  pathRules?: PathRules | undefined;
  maxInlineChars: number;
  /** Filled by the wiring after every kind is made: read at run time only. */
  lent: LentServices;
}

/** One investigation to run: its task text (a later stage's filled from upstream) and where it may look. */
export interface AgentSpec {
  task: string;
  paths?: readonly string[] | undefined;
  maxSteps: number;
  /** Names its files (transcript, answer): the task's index, or an attempt of it (a re-ask, a sample). */
  stem?: string | undefined;
  /** An answer that finished is replayed on resume, not asked again: its checks, not the engine, judge it. */
  replayAnswered?: boolean | undefined;
}

/** Room kept for the answer and the server's own tokens when fitting the conversation to the context. */
const CONTEXT_MARGIN = 0.9;

/**
 * One investigation: a local model in a bounded loop of read-only tool calls. Each step (the
 * answer, then each tool call's digest) is on disk in the transcript before the next request, so a
 * task the server lost mid-way starts again from its last step: the answers are replayed, the tools
 * (read-only) run again. Ends on `finish`, on a plain-text answer, or after max_steps with one last
 * request to finish with what it has.
 */
export class Investigation {
  private readonly scope: AgentScope;
  private readonly toolbox: Toolbox;
  private readonly transcript: Transcript;
  private readonly conversation = new Conversation();
  private readonly figures: StepFigures;
  private readonly usage: Usage = { promptTokens: 0, completionTokens: 0, estimated: false };
  private readonly stepOptions: LlmJobOptions;
  private readonly tools: ToolSpec[];
  /** Calls made so far, by what they asked: a repeat is answered with a note, not run again. */
  private readonly seen = new Map<string, { step: number; message: number }>();
  private readonly ids = new Set<string>();
  private protocol: 'tools' | 'prompt' = 'tools';
  private lastCall = false;
  private schemaCorrected = false;
  private bytesPerToken: number | undefined;
  private finished: Finished | undefined;
  private lastTool = '';
  /** The latest answer's text: the answer when the last request (after max_steps) ends without finish. */
  private lastContent = '';

  constructor(
    private readonly deps: AgentDeps,
    private readonly task: TaskContext,
    private readonly options: LlmJobOptions,
    private readonly spec: AgentSpec,
  ) {
    this.scope = new AgentScope({ allowedRoots: deps.allowedRoots, pathRules: deps.pathRules, paths: spec.paths });
    const outline = deps.lent.outline?.bind(deps.lent);
    this.toolbox = new Toolbox(outline ? { scope: this.scope, outline } : { scope: this.scope });
    this.transcript = new Transcript(path.join(task.outputDir, `${spec.stem ?? task.index}.transcript.jsonl`));
    this.figures = { steps: 0, toolCalls: {}, bytesRead: 0, corrections: 0, elided: 0, notes: [] };
    const stepOptions: LlmJobOptions = { ...options, max_tokens: options.max_tokens ?? STEP_MAX_TOKENS };
    delete stepOptions.json_schema;
    this.stepOptions = stepOptions;
    this.tools = agentTools(options.json_schema);
  }

  async run(): Promise<TaskResult> {
    await mkdir(this.task.outputDir, { recursive: true, mode: 0o700 });
    this.conversation.add({ role: 'system', content: this.systemText() });
    this.conversation.add({ role: 'user', content: taskMessage(this.spec.task) });
    await this.resume();
    while (this.finished === undefined) {
      const failed = await this.step();
      if (failed) return this.result(failed);
    }
    return this.result();
  }

  private systemText(): string {
    const text = systemPrompt(this.deps.allowedRoots, this.spec.paths, this.spec.maxSteps);
    return this.protocol === 'prompt' ? `${text}\n\n${protocolPrompt(this.tools)}` : text;
  }

  /** An earlier run's transcript: its steps replayed (no request sent again), the file started over with them. */
  private async resume(): Promise<void> {
    // A transcript that reached its end belongs to an attempt that finished (and failed): a new attempt
    // starts over; with checks, one that answered is kept (the task was cut off while checking it).
    const read = await Transcript.read(this.transcript.file);
    const end = read.find((line) => line.type === 'finish');
    const answered = end !== undefined && end.answer !== '' && this.spec.replayAnswered === true;
    const lines = end !== undefined && !answered ? [] : read;
    // Notes of what a replay says again by itself (a changed result, a schema correction) are dropped.
    const kept = lines.filter(
      (line) =>
        line.type === 'start' ||
        line.type === 'request' ||
        (line.type === 'note' && (line.kind === 'protocol' || line.kind === 'last_call')),
    );
    if (kept.length === 0) {
      await Transcript.rewrite(this.transcript.file, []);
      await this.transcript.append({
        type: 'start',
        task: this.spec.task,
        model: this.options.model,
        tools: [...TOOL_NAMES],
        ...(this.spec.paths ? { paths: [...this.spec.paths] } : {}),
        at: new Date().toISOString(),
      });
      return;
    }
    const digests = new Map(
      lines.flatMap((line) => (line.type === 'tool' ? [[`${line.step}:${line.call_id}`, line.digest] as const] : [])),
    );
    await Transcript.rewrite(this.transcript.file, kept);
    this.figures.resumedAt = kept.filter((line) => line.type === 'request').length;
    for (const line of kept) {
      if (this.finished !== undefined) break;
      if (line.type === 'note') this.replayNote(line);
      if (line.type === 'request') await this.take(line, digests);
    }
  }

  private replayNote(line: Extract<TranscriptLine, { type: 'note' }>): void {
    if (line.kind === 'protocol') this.useProtocolPrompt();
    if (line.kind === 'last_call') this.askLast();
  }

  private useProtocolPrompt(): void {
    this.protocol = 'prompt';
    this.conversation.replaceSystem(this.systemText());
  }

  private askLast(): void {
    this.lastCall = true;
    this.conversation.add({ role: 'user', content: lastCallMessage(this.spec.maxSteps) });
  }

  /** One request and what its answer asks for. Returns a failed result to end with, else undefined. */
  private async step(): Promise<TaskResult | undefined> {
    if (this.lastCall) {
      // The last request was answered without finish: what it said is the answer, cut.
      this.finished = textAnswer(this.lastContent, true);
      return undefined;
    }
    if (this.figures.steps >= this.spec.maxSteps) {
      this.askLast();
      await this.note('last_call', lastCallMessage(this.spec.maxSteps));
    }
    const asked = await this.ask();
    if ('failed' in asked) return asked.failed;
    const reading = readCalls(asked.answer, TOOL_NAMES);
    const native = reading.kind === 'calls' && (asked.answer.toolCalls ?? []).length > 0;
    const line: Extract<TranscriptLine, { type: 'request' }> = {
      type: 'request',
      step: this.figures.steps + 1,
      endpoint: asked.endpoint,
      tokens_in: asked.tokensIn,
      tokens_out: asked.tokensOut,
      content: asked.answer.content,
      reading: reading.kind,
    };
    if (reading.kind === 'calls') {
      line.native = native;
      line.calls = reading.calls.map((c, i): CallLine => ({ id: this.uniqueId(c.id, i), name: c.name, args: c.args }));
      const recovered = reading.calls.flatMap((c) => (c.recovered ? [c.recovered] : []));
      if (recovered.length > 0) line.recovered = recovered;
    }
    if (reading.kind === 'malformed') line.correction = reading.correction;
    await this.transcript.append(line);
    await this.take(line);
    this.report();
    return undefined;
  }

  /** Call ids answer their calls across the whole conversation: one a server repeats (or one made up per answer) is renamed. */
  private uniqueId(id: string, position: number): string {
    const unique = id !== '' && !this.ids.has(id) ? id : `call_${this.figures.steps + 1}_${position + 1}`;
    this.ids.add(unique);
    return unique;
  }

  /** A request of the step: the conversation fitted to the context; a server refusing `tools` gets the prompt protocol. */
  private async ask(): Promise<Answered | { failed: TaskResult }> {
    for (;;) {
      this.fitContext();
      const tools = this.protocol === 'prompt' ? undefined : this.lastCall ? this.tools.filter(isFinish) : this.tools;
      const asked = await askStep(
        this.deps.completer,
        this.deps.endpoints,
        this.task,
        this.stepOptions,
        this.conversation.messages,
        tools,
        this.usage,
        // A refusal of `tools` is answered by describing them in the prompt, not by asking again.
        tools === undefined ? undefined : toolsRejected,
      );
      if (!('failed' in asked)) {
        this.learnRatio(asked);
        return asked;
      }
      const error = asked.failed.error;
      if (this.protocol === 'tools' && toolsRejected(error)) {
        this.useProtocolPrompt();
        const text = `The server refused \`tools\` (${error?.message.slice(0, 200) ?? ''}); the tools are described in the prompt instead.`;
        this.figures.notes.push('the server refused `tools`: the tools were described in the prompt');
        await this.note('protocol', text);
        continue;
      }
      if (error?.code === 'CONTEXT_OVERFLOW' && this.conversation.elideHalf() > 0) {
        this.figures.elided++;
        continue;
      }
      return asked;
    }
  }

  /** Elides old tool results when the conversation nears the slot's context (measured in the model's own tokens where known). */
  private fitContext(): void {
    const context = this.deps.endpoints.contextLength(this.options.model);
    if (context === undefined) return;
    const room = (context - (this.stepOptions.max_tokens ?? STEP_MAX_TOKENS)) * CONTEXT_MARGIN;
    const learned =
      this.figures.endpoint && this.deps.endpoints.learnedBytesPerToken(this.figures.endpoint, this.options.model);
    const ratio = this.bytesPerToken ?? (learned ? learned.bytes : CHUNK_BYTES_PER_TOKEN);
    this.figures.elided += this.conversation.fitTo(Math.max(0, room) * ratio);
  }

  /** The bytes a token of this conversation, from the count the server gave for it. */
  private learnRatio(asked: Answered): void {
    const tokens = asked.answer.promptTokens;
    if (tokens !== undefined && tokens > 0) this.bytesPerToken = this.conversation.bytes / tokens;
  }

  /** Takes an answer into the conversation and acts on it (also when replayed from the transcript). */
  private async take(
    line: Extract<TranscriptLine, { type: 'request' }>,
    digests?: ReadonlyMap<string, string>,
  ): Promise<void> {
    this.figures.steps = line.step;
    this.lastContent = line.content;
    if (this.figures.endpoint === undefined && line.endpoint !== undefined) this.figures.endpoint = line.endpoint;
    if (digests) {
      this.usage.promptTokens += line.tokens_in;
      this.usage.completionTokens += line.tokens_out;
    }
    const calls = line.calls ?? [];
    for (const call of calls) this.ids.add(call.id);
    const assistant: ChatMessage = { role: 'assistant', content: line.content };
    if (line.native && calls.length > 0)
      assistant.tool_calls = calls.map((c) => ({
        id: c.id,
        type: 'function',
        function: { name: c.name, arguments: JSON.stringify(c.args) },
      }));
    this.conversation.add(assistant);
    if (line.reading === 'text') {
      this.finished = textAnswer(line.content, this.lastCall);
      return;
    }
    if (line.reading === 'malformed') {
      this.figures.corrections++;
      this.conversation.add({ role: 'user', content: line.correction ?? 'Your tool call could not be read.' });
      return;
    }
    for (const call of calls) {
      if (this.finished !== undefined) break;
      await this.runCall(line.step, call, line.native === true, digests);
    }
  }

  /** One call: finish ends the loop; a repeat gets a note; any other runs in the toolbox, its result on disk first. */
  private async runCall(
    step: number,
    call: AgentCall,
    native: boolean,
    digests?: ReadonlyMap<string, string>,
  ): Promise<void> {
    this.figures.toolCalls[call.name] = (this.figures.toolCalls[call.name] ?? 0) + 1;
    if (call.name === 'finish') {
      const outcome = finishCall(call.args, this.options.json_schema, this.deps.schemas, this.schemaCorrected);
      if ('finished' in outcome) {
        this.finished = { ...outcome.finished, cut: this.lastCall };
        return;
      }
      this.schemaCorrected = true;
      this.figures.corrections++;
      await this.note('schema', outcome.correction);
      this.reply(call, native, outcome.correction);
      return;
    }
    const key = `${call.name} ${JSON.stringify(call.args)}`;
    const earlier = this.seen.get(key);
    if (earlier !== undefined && this.conversation.isWhole(earlier.message)) {
      this.reply(call, native, repeatedCallNote(earlier.step));
      return;
    }
    const outcome = await this.toolbox.run(call.name, call.args, this.task.signal);
    this.figures.bytesRead += outcome.bytesRead;
    this.lastTool = outcome.summary;
    const old = digests?.get(`${step}:${call.id}`);
    if (old !== undefined && old !== outcome.digest)
      await this.note('changed', `${outcome.summary}: the result differs from the first run's (a file changed).`);
    await this.transcript.append({
      type: 'tool',
      step,
      call_id: call.id,
      name: call.name,
      args: call.args,
      ok: outcome.ok,
      summary: outcome.summary,
      bytes: outcome.bytesRead,
      digest: outcome.digest,
      preview: outcome.text.slice(0, 500),
    });
    this.seen.set(key, { step, message: this.conversation.length });
    this.reply(call, native, outcome.text, outcome.summary);
  }

  /** A tool's result into the conversation: a `tool` message for a native call, else a user message naming the call. */
  private reply(call: AgentCall, native: boolean, text: string, summary?: string): void {
    if (native) this.conversation.add({ role: 'tool', tool_call_id: call.id, content: text }, summary);
    else this.conversation.add({ role: 'user', content: `Result of ${call.name}:\n${text}` }, summary);
  }

  private async note(kind: Extract<TranscriptLine, { type: 'note' }>['kind'], text: string): Promise<void> {
    await this.transcript.append({ type: 'note', step: this.figures.steps, kind, text });
  }

  /** What people see while it runs: the step, the last tool call, the tokens. */
  private report(): void {
    const tokens = this.usage.promptTokens + this.usage.completionTokens;
    this.task.progress?.({
      summary: `step ${this.figures.steps}/${this.spec.maxSteps} · ${this.lastTool} · ${tokens} tokens`,
      figures: {
        steps: this.figures.steps,
        tokens_in: this.usage.promptTokens,
        tokens_out: this.usage.completionTokens,
        last_tool: this.lastTool.slice(0, 120),
      },
      transcript: this.transcript.file,
    });
  }

  private async result(failed?: TaskResult): Promise<TaskResult> {
    if (this.finished !== undefined)
      await this.transcript.append({
        type: 'finish',
        step: this.figures.steps,
        answer: this.finished.json ?? this.finished.text,
        citations: this.finished.citations,
        cut: this.finished.cut,
      });
    return investigationResult({
      task: this.task,
      options: this.options,
      figures: this.figures,
      usage: this.usage,
      scope: this.scope,
      finished: this.finished,
      failed,
      transcript: this.transcript.file,
      maxInlineChars: this.deps.maxInlineChars,
      stem: this.spec.stem ?? String(this.task.index),
    });
  }
}

function isFinish(tool: ToolSpec): boolean {
  return tool.function.name === 'finish';
}
