import type { CoreConfig } from '../../config/core.js';
import type { DoctorReport, KindDeps } from '../kind.js';
import type { EndpointReport } from './endpoint-report.js';
import { Endpoints } from './endpoints.js';
import { modelMatches } from './models.js';
import type { LlmConfig } from './settings.js';

/** `doctor`'s LLM section: asks every endpoint, then closes them. */
export async function checkLlm(
  config: CoreConfig & LlmConfig,
  deps: Pick<KindDeps, 'log' | 'env'>,
  report: DoctorReport,
  signal: AbortSignal,
): Promise<void> {
  const endpoints = new Endpoints(config.llm, deps);
  try {
    await checkEndpoints(config.llm, endpoints, report, signal);
  } finally {
    await endpoints.close();
  }
}

/** `doctor`: every endpoint (reachable, models, loaded), and the default model. */
async function checkEndpoints(
  settings: LlmConfig['llm'],
  endpoints: Endpoints,
  report: DoctorReport,
  signal: AbortSignal,
): Promise<void> {
  report.section('LLM endpoints');
  const reports = await endpoints.report(signal);
  for (const endpoint of reports) checkEndpoint(endpoint, report);
  const wanted = settings.defaultModel;
  if (wanted === undefined) return;
  const servedBy = reports.filter((r) =>
    (r.configuredModels ?? r.models.map((m) => m.id)).some((id) => modelMatches(wanted, id)),
  );
  if (servedBy.length > 0) report.ok(`default model ${wanted} is served by ${servedBy.map((r) => r.name).join(', ')}`);
  else
    report.fail(
      `default model ${wanted} is not listed by any reachable endpoint`,
      'Download it (`lms get <model>`), or change --model / "llm.defaultModel".',
    );
}

function checkEndpoint(endpoint: EndpointReport, report: DoctorReport): void {
  const where = `${endpoint.name} (${endpoint.flavor ?? 'not identified'}, ${endpoint.url}, ${endpoint.slots ? `${endpoint.slots.total} slot(s), ` : ''}${endpoint.limit} at once)`;
  if (endpoint.error || !endpoint.reachable) {
    const code = endpoint.error?.code ?? 'ERROR';
    const message = endpoint.error?.message ?? 'no answer';
    // Reachable = an HTTP answer came back: a 401 means "there, but refused", not "down".
    const state = !endpoint.reachable
      ? `not reachable: ${message}`
      : `reachable, ${code === 'AUTH_REQUIRED' ? 'refused' : 'but answered with an error'} (${code}): ${message}`;
    report.fail(`${where}: ${state}`, endpoint.error?.hint);
    return;
  }
  const llms = endpoint.models.filter((m) => m.type === undefined || m.type === 'llm' || m.type === 'vlm');
  const loaded = llms.filter((m) => m.state === 'loaded');
  const knowsState = llms.some((m) => m.state !== undefined);
  const tokenNote = endpoint.tokenEnv ? (endpoint.tokenSet ? `; token from ${endpoint.tokenEnv}` : '') : '';
  report.ok(
    `${where}: reachable, ${endpoint.models.length} model(s)${knowsState ? `, ${loaded.length} LLM(s) loaded` : ''}${tokenNote}`,
  );
  for (const model of endpoint.models) {
    const facts = [model.type, model.state, model.contextLength ? `context ${model.contextLength}` : undefined].filter(
      (f) => f !== undefined,
    );
    report.detail(`- ${model.id}${facts.length > 0 ? ` (${facts.join(', ')})` : ''}`);
  }
  if (llms.length === 0)
    report.warn(`${endpoint.name} lists no LLM`, 'Download one (LM Studio: Discover tab, or `lms get <model>`).');
  else if (knowsState && loaded.length === 0) {
    report.warn(
      `${endpoint.name} has no LLM loaded: lmstudio_complete needs \`model\` (loaded just in time) or a default model`,
      'Load one with `lms load <model>` or in the Developer tab, or set --model.',
    );
  }
}
