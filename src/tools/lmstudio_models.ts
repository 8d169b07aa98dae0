import * as z from 'zod';
import { MonitorError } from '../errors.js';
import { type EndpointReport, llmKind, type ReportedModel } from '../pools/llm/index.js';
import { modelActionFields, runModelAction } from './model_action.js';
import { defineKindTool } from './tool.js';

export const lmstudioModelsTool = defineKindTool(llmKind, {
  name: 'lmstudio_models',
  title: 'List local LLM endpoints and models',
  description:
    "Asks each LLM endpoint what it is: flavour, reachable (or the fix), slots, requests at once (and who set that); per model its state and context per slot. Pick lmstudio_complete's model here.",
  inputSchema: {
    endpoint: z.string().optional().describe('Only this endpoint, by name.'),
    ...modelActionFields,
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  async handler(args, ctx) {
    const llm = ctx.kind;
    if (args.action !== undefined) return runModelAction(args, llm, ctx.signal);
    if (args.endpoint !== undefined && !llm.endpointNames.includes(args.endpoint)) {
      throw new MonitorError('INVALID_INPUT', `No endpoint named "${args.endpoint}".`, {
        hint: `Configured endpoints: ${llm.endpointNames.join(', ')}.`,
      });
    }
    const reports = (await llm.report(ctx.signal)).filter(
      (r) => args.endpoint === undefined || r.name === args.endpoint,
    );
    const lines: string[] = [];
    const now = Date.now();
    for (const report of reports) lines.push(...describeEndpoint(report, now));
    const defaultModel = llm.defaultModel;
    const next = `${defaultModel ? `Default model: ${defaultModel}.` : 'No default model is set: lmstudio_complete uses the loaded LLM unless you pass `model`.'} Pass a model id listed here as lmstudio_complete's model; an endpoint with an error says how to fix it.`;
    lines.push(next);
    return {
      text: lines.join('\n'),
      structured: { endpoints: reports.map((r) => endpointView(r, now)), default_model: defaultModel ?? null, next },
    };
  },
});

function describeEndpoint(report: EndpointReport, now: number): string[] {
  const flavor = report.flavor ?? 'not identified';
  const slots = report.slots
    ? `${report.slots.total} slot(s)${report.slots.busy === undefined ? '' : `, ${report.slots.busy} busy`}, `
    : '';
  const measuring = report.adaptive ? `, measuring: ${report.adaptive.phase}` : '';
  const head = `${report.name} (${flavor}, ${report.url}, ${slots}${report.limit} at once [${report.limitSource}${measuring}]${report.active > 0 ? `, ${report.active} in flight` : ''}, checked ${secondsAgo(report.checkedAt, now)} s ago)`;
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

/** A measured limit: what it is doing, and the best level and tokens/s found so far. */
function adaptiveView(report: EndpointReport): Record<string, unknown> {
  if (!report.adaptive) return {};
  const { phase, best, tokensPerSecond } = report.adaptive;
  const view: Record<string, unknown> = { phase };
  if (best !== undefined) view.best = best;
  if (tokensPerSecond !== undefined) view.tokens_per_second = Math.round(tokensPerSecond);
  return view;
}

function secondsAgo(at: number, now: number): number {
  return Math.max(0, Math.round((now - at) / 1000));
}

function describeModel(model: ReportedModel): string {
  const facts: string[] = [];
  if (model.type) facts.push(model.type);
  if (model.state) facts.push(model.state);
  if (model.contextLength) facts.push(`context ${model.contextLength} per slot [${model.contextSource ?? 'server'}]`);
  if (model.parallel) facts.push(`${model.parallel} parallel`);
  if (model.maxContextLength && model.maxContextLength !== model.contextLength)
    facts.push(`max context ${model.maxContextLength}`);
  return facts.length > 0 ? `${model.id} (${facts.join(', ')})` : model.id;
}

function endpointView(report: EndpointReport, now: number): Record<string, unknown> {
  const view: Record<string, unknown> = {
    name: report.name,
    url: report.url,
    flavor: report.flavor ?? null,
    reachable: report.reachable,
    checked_seconds_ago: secondsAgo(report.checkedAt, now),
    slots: report.slots ? { ...report.slots, source: 'server' } : null,
    limit: { value: report.limit, source: report.limitSource, ...adaptiveView(report) },
    in_flight: report.active,
    peak_in_flight: report.peak,
    models: report.models.map((m) => {
      const model: Record<string, unknown> = { id: m.id };
      if (m.type) model.type = m.type;
      if (m.state) model.state = m.state;
      if (m.contextLength) {
        model.context_length = m.contextLength;
        model.context_source = m.contextSource ?? 'server';
      }
      if (m.parallel) model.parallel = m.parallel;
      if (m.maxContextLength) model.max_context_length = m.maxContextLength;
      return model;
    }),
  };
  if (report.error) view.error = report.error;
  if (report.configuredModels) view.configured_models = report.configuredModels;
  return view;
}
