import * as z from 'zod';
import { MonitorError } from '../errors.js';
import type { LlmServices, ModelChangeResult } from '../pools/llm/index.js';
import type { ToolReply } from './tool.js';

/** lmstudio_models' load/unload arguments (the listing's are in lmstudio_models.ts). */
export const modelActionFields = {
  action: z.enum(['load', 'unload']).optional().describe('Instead of listing: load or unload model.'),
  model: z.string().min(1).optional().describe('Model id, with action.'),
  context_length: z.number().int().min(256).optional().describe('Load: context in tokens.'),
  ttl_seconds: z.number().int().min(1).optional().describe('Load: idle seconds before unload.'),
};

interface ActionArgs {
  action?: 'load' | 'unload' | undefined;
  model?: string | undefined;
  context_length?: number | undefined;
  ttl_seconds?: number | undefined;
  endpoint?: string | undefined;
}

/** Loads or unloads `model` on the endpoint(s) serving it, then says its state there. */
export async function runModelAction(args: ActionArgs, llm: LlmServices, signal: AbortSignal): Promise<ToolReply> {
  const action = args.action ?? 'load';
  if (args.model === undefined)
    throw new MonitorError('INVALID_INPUT', `action "${action}" needs model.`, {
      hint: 'Pass the model id as lmstudio_models lists it.',
    });
  if (action === 'unload' && (args.context_length !== undefined || args.ttl_seconds !== undefined))
    throw new MonitorError('INVALID_INPUT', 'context_length and ttl_seconds go with action "load" only.');
  const results = await llm.changeModel(
    {
      action,
      model: args.model,
      endpoint: args.endpoint,
      contextLength: args.context_length,
      ttlSeconds: args.ttl_seconds,
    },
    signal,
  );
  const lines = results.flatMap((r) => [describeResult(r), ...r.notes.map((note) => `  Note: ${note}`)]);
  return {
    text: lines.join('\n'),
    structured: {
      action,
      results: results.map((r) => ({
        endpoint: r.endpoint,
        flavor: r.flavor,
        model: r.model,
        loaded: r.state === undefined ? null : r.state === 'loaded',
        context_length: r.contextLength ?? null,
        ...(r.notes.length > 0 ? { notes: r.notes } : {}),
      })),
    },
  };
}

function describeResult(result: ModelChangeResult): string {
  const state =
    result.state === 'loaded'
      ? `loaded${result.contextLength === undefined ? '' : `, context ${result.contextLength}`}`
      : result.state === 'not-loaded'
        ? 'not loaded'
        : 'state not reported';
  return `${result.endpoint} (${result.flavor}): ${result.action} ${result.model} — now ${state}.`;
}
