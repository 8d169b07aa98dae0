import * as z from 'zod';
import { MonitorError } from '../errors.js';
import { type EndpointReport, llmKind, type ModelInfo } from '../pools/llm/index.js';
import { defineKindTool } from './tool.js';

export const lmstudioModelsTool = defineKindTool(llmKind, {
  name: 'lmstudio_models',
  title: 'List local LLM endpoints and models',
  description:
    "Checks every LLM endpoint and lists its models: reachable or not (or refusing, with the fix), its limit and requests in flight; per model its type, whether it is loaded, its context length. Use it to pick lmstudio_complete's model.",
  inputSchema: {
    endpoint: z.string().optional().describe('Only this endpoint, by name.'),
  },
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  async handler(args, ctx) {
    const llm = ctx.kind;
    if (args.endpoint !== undefined && !llm.endpointNames.includes(args.endpoint)) {
      throw new MonitorError('INVALID_INPUT', `No endpoint named "${args.endpoint}".`, {
        hint: `Configured endpoints: ${llm.endpointNames.join(', ')}.`,
      });
    }
    const reports = (await llm.report(ctx.signal)).filter(
      (r) => args.endpoint === undefined || r.name === args.endpoint,
    );
    const lines: string[] = [];
    for (const report of reports) lines.push(...describeEndpoint(report));
    const defaultModel = llm.defaultModel;
    const next = `${defaultModel ? `Default model: ${defaultModel}.` : 'No default model is set: lmstudio_complete uses the loaded LLM unless you pass `model`.'} Pass a model id listed here as lmstudio_complete's model; an endpoint with an error says how to fix it.`;
    lines.push(next);
    return {
      text: lines.join('\n'),
      structured: { endpoints: reports.map(endpointView), default_model: defaultModel ?? null, next },
    };
  },
});

function describeEndpoint(report: EndpointReport): string[] {
  const head = `${report.name} (${report.flavor}, ${report.url}, up to ${report.concurrency} at once${report.active > 0 ? `, ${report.active} in flight` : ''})`;
  if (report.error || !report.reachable) {
    const code = report.error?.code ?? 'ERROR';
    const message = report.error?.message ?? 'no answer';
    // Reachable = an HTTP answer came back: a 401 means "there, but refused", not "down".
    const state = !report.reachable
      ? `NOT REACHABLE — ${code}: ${message}`
      : `reachable, ${code === 'AUTH_REQUIRED' ? 'refused' : 'but answered with an error'} (${code}): ${message}`;
    const lines = [`${head}: ${state}`];
    if (report.error?.hint) lines.push(`  Fix: ${report.error.hint}`);
    return lines;
  }
  const lines = [
    `${head}: reachable, ${report.models.length} model(s)${report.configuredModels ? `; configured to serve ${report.configuredModels.join(', ')}` : ''}`,
  ];
  for (const model of report.models) lines.push(`  - ${describeModel(model)}`);
  return lines;
}

function describeModel(model: ModelInfo): string {
  const facts: string[] = [];
  if (model.type) facts.push(model.type);
  if (model.state) facts.push(model.state);
  if (model.contextLength) facts.push(`context ${model.contextLength}`);
  if (model.maxContextLength && model.maxContextLength !== model.contextLength)
    facts.push(`max context ${model.maxContextLength}`);
  return facts.length > 0 ? `${model.id} (${facts.join(', ')})` : model.id;
}

function endpointView(report: EndpointReport): Record<string, unknown> {
  const view: Record<string, unknown> = {
    name: report.name,
    url: report.url,
    flavor: report.flavor,
    concurrency: report.concurrency,
    in_flight: report.active,
    peak_in_flight: report.peak,
    reachable: report.reachable,
    models: report.models.map((m) => {
      const model: Record<string, unknown> = { id: m.id };
      if (m.type) model.type = m.type;
      if (m.state) model.loaded = m.state === 'loaded';
      if (m.contextLength) model.context_length = m.contextLength;
      if (m.maxContextLength) model.max_context_length = m.maxContextLength;
      return model;
    }),
  };
  if (report.error) view.error = report.error;
  if (report.configuredModels) view.configured_models = report.configuredModels;
  return view;
}
