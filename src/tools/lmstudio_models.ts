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
    const room = { chars: MODELS_BUDGET_CHARS, endpoints: reports.length };
    const views: Array<Record<string, unknown>> = [];
    for (const report of reports) {
      const listing = shownModels(report, args.model, room);
      lines.push(...describeEndpoint(report, listing, now));
      views.push(endpointView(report, listing, now));
    }
    const defaultModel = llm.defaultModel;
    const next = `${defaultModel ? `Default model: ${defaultModel}.` : 'No default model is set: lmstudio_complete uses the loaded LLM unless you pass `model`.'} Pass a model id listed here as lmstudio_complete's model; an endpoint with an error says how to fix it.`;
    lines.push(next);
    return {
      text: lines.join('\n'),
      structured: { endpoints: views, default_model: defaultModel ?? null, next },
    };
  },
});

/**
 * A server may list any number of models (100,000 made a 3.7 MB reply): at most MOST_SHOWN an
 * endpoint and MODELS_BUDGET_CHARS of them in all, loaded ones first, then chat models, with a note
 * saying how many were left out and how to see one. Ids are at most 256 characters (probe.ts).
 */
const MOST_SHOWN = 200;
const MODELS_BUDGET_CHARS = 30_000;
/** Error texts from a server, cut: the fix is in their first lines. */
const MOST_ERROR_CHARS = 500;

interface Listing {
  shown: ReportedModel[];
  /** Models the server listed (or that match `model`, when given). */
  total: number;
  note?: string;
}

function modelRank(model: ReportedModel): number {
  if (model.state === 'loaded') return 0;
  return model.type === 'embeddings' || (model.type === undefined && /embed/i.test(model.id)) ? 2 : 1;
}

/** The models of `report` to show within `room` (shared by the endpoints): matching `filter`, loaded first. */
function shownModels(
  report: EndpointReport,
  filter: string | undefined,
  room: { chars: number; endpoints: number },
): Listing {
  const wanted = filter?.toLowerCase();
  const matching = report.models
    .map((model, i) => ({ model, i }))
    .filter(({ model }) => wanted === undefined || model.id.toLowerCase().includes(wanted))
    .sort((a, b) => modelRank(a.model) - modelRank(b.model) || a.i - b.i)
    .map(({ model }) => model);
  const shown: ReportedModel[] = [];
  for (const model of matching) {
    const size = JSON.stringify(modelView(model)).length + 1;
    if (shown.length >= MOST_SHOWN || size > room.chars) break;
    room.chars -= size;
    shown.push(model);
  }
  const listed = report.modelsListed ?? report.models.length;
  const total = wanted === undefined ? listed : matching.length;
  const listing: Listing = { shown, total };
  const kept =
    report.modelsListed === undefined
      ? ''
      : ` The server listed ${listed}; the ${report.models.length} kept (loaded ones first) are the ones searched and used.`;
  if (shown.length < total)
    listing.note = `${shown.length} of ${total}${wanted === undefined ? '' : ` matching "${filter}"`} models shown (loaded, then chat models first).${kept} To see a given one, call lmstudio_models with model: "<its id, or part of it>" and no action${room.endpoints > 1 ? `, or endpoint: "${report.name}" to list this endpoint alone` : ''}.`;
  else if (kept) listing.note = kept.trim();
  return listing;
}

function cut(text: string, most: number): string {
  return text.length > most ? `${text.slice(0, most)}…` : text;
}

function describeEndpoint(report: EndpointReport, listing: Listing, now: number): string[] {
  const flavor = report.flavor ?? 'not identified';
  const slots = report.slots
    ? `${report.slots.total} slot(s)${report.slots.busy === undefined ? '' : `, ${report.slots.busy} busy`}, `
    : '';
  const measuring = report.adaptive ? `, measuring: ${report.adaptive.phase}` : '';
  const head = `${report.name} (${flavor}, ${report.url}, ${slots}${report.limit} at once [${report.limitSource}${measuring}]${report.active > 0 ? `, ${report.active} in flight` : ''}, checked ${secondsAgo(report.checkedAt, now)} s ago)`;
  if (report.error || !report.reachable) {
    const code = report.error?.code ?? 'ERROR';
    const message = cut(report.error?.message ?? 'no answer', MOST_ERROR_CHARS);
    // Reachable = an HTTP answer came back: a 401 means "there, but refused", not "down".
    const state = !report.reachable
      ? `NOT REACHABLE — ${code}: ${message}`
      : `reachable, ${code === 'AUTH_REQUIRED' ? 'refused' : 'but answered with an error'} (${code}): ${message}`;
    const lines = [`${head}: ${state}`];
    if (report.error?.hint) lines.push(`  Fix: ${cut(report.error.hint, MOST_ERROR_CHARS)}`);
    return lines;
  }
  const lines = [
    `${head}: reachable, ${listing.total} model(s)${report.configuredModels ? `; configured to serve ${report.configuredModels.join(', ')}` : ''}`,
  ];
  for (const model of listing.shown) lines.push(`  - ${describeModel(model)}`);
  if (listing.note) lines.push(`  Note: ${listing.note}`);
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

function modelView(m: ReportedModel): Record<string, unknown> {
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
}

function endpointView(report: EndpointReport, listing: Listing, now: number): Record<string, unknown> {
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
    models: listing.shown.map(modelView),
  };
  if (listing.shown.length < listing.total || report.modelsListed !== undefined) view.models_total = listing.total;
  if (listing.note) view.models_note = listing.note;
  if (report.error) {
    const { message, hint, ...rest } = report.error;
    view.error = {
      ...rest,
      message: cut(message, MOST_ERROR_CHARS),
      ...(hint ? { hint: cut(hint, MOST_ERROR_CHARS) } : {}),
    };
  }
  if (report.configuredModels) view.configured_models = report.configuredModels;
  return view;
}
