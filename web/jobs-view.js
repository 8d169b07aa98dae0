// The jobs view, an MCP App. The host (Claude, VS Code, Goose…) shows it inline for the result of a
// tool that names it (a dispatch tool, collect_results, list_jobs) and passes that result in; while
// the job runs, the view follows it by calling the server's tools through the host
// (app.callServerTool), and stops once it is finished. Everything from the server (labels, ids,
// error messages) is untrusted text: it goes into the page with textContent only, never as HTML.
import { el } from './dom.js';
import { duration } from './format.js';
import { bar, COUNTED, countChips, countsOf, endpointCard, failureRow, jobRow, num, str } from './jobs-view-draw.js';

const { App, PostMessageTransport, applyDocumentTheme, applyHostStyleVariables, applyHostFonts } =
  globalThis.McpExtApps;

const POLL_MS = 1500;
/** lmstudio_models asks every endpoint afresh: once in this many polls is enough for slots. */
const ENDPOINTS_EVERY = 3;
/** Pages of failures read per poll at most (each a small budget), so a poll stays short. */
const PAGES_PER_POLL = 5;
const EXAMPLES = 3;
/** Failed polls in a row after which the view stops asking (a job removed, a host that refuses). */
const GIVE_UP_AFTER = 3;
const ACTIVE = new Set(['queued', 'running']);

const $ = (id) => document.getElementById(id);

const view = {
  /** 'jobs' (one or more jobs followed) or 'list' (list_jobs' jobs). */
  mode: 'idle',
  jobIds: [],
  /** job_id → the job's view (collect_results' jobs[], a dispatch reply, list_jobs' jobs[]). */
  jobs: new Map(),
  /** code → { count, examples: [{ job, task, message }] }, from failed results read so far. */
  failures: new Map(),
  cursor: undefined,
  /** Failed results ready but not read yet. */
  pending: 0,
  endpoints: undefined,
  endpointsOff: false,
  listArgs: {},
  list: undefined,
  /** From a list, the job opened: "All jobs" goes back. */
  fromList: false,
  polls: 0,
  timer: undefined,
  busy: false,
  /** The host is taking the view down: no more polls. */
  stopped: false,
  error: '',
  errorsInRow: 0,
  updatedAt: undefined,
};

function isActive(job) {
  return ACTIVE.has(job.state) || num(job.counts?.queued) + num(job.counts?.running) > 0;
}

function textOf(result) {
  return (result?.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('\n');
}

// ---- what the host passes in ----

/** A tool result: a dispatch reply (job_id), collect_results (jobs[], results) or list_jobs (jobs[], total). */
function fromResult(result) {
  if (result.isError) {
    showMessage(textOf(result) || 'The tool call failed.');
    render();
    return;
  }
  const s = result.structuredContent ?? {};
  const jobs = Array.isArray(s.jobs) ? s.jobs : [];
  if (typeof s.total === 'number' && typeof s.shown === 'number') {
    view.mode = 'list';
    view.list = s;
    view.jobIds = [];
  } else {
    const ids = typeof s.job_id === 'string' ? [s.job_id] : jobs.map((job) => job.job_id);
    follow(ids.filter((id) => typeof id === 'string'));
    // A dispatch reply without a wait is the job's own view.
    if (typeof s.job_id === 'string' && s.counts) view.jobs.set(s.job_id, s);
  }
  for (const job of jobs) if (typeof job.job_id === 'string') view.jobs.set(job.job_id, job);
  // A reply that names no job (a host that passed no structured content): its text, as it came.
  showMessage(view.mode === 'idle' ? textOf(result) : '');
  render();
  void poll();
}

function follow(ids) {
  view.mode = ids.length > 0 ? 'jobs' : 'idle';
  view.jobIds = ids;
  view.cursor = undefined;
  view.failures = new Map();
  view.pending = 0;
  view.endpoints = undefined;
  view.polls = 0;
}

// ---- following the job through the host ----

async function callTool(name, args) {
  const result = await app.callServerTool({ name, arguments: args });
  if (result.isError) throw new Error(textOf(result) || `${name} failed`);
  return result.structuredContent ?? {};
}

const canCall = () => app.getHostCapabilities()?.serverTools !== undefined;

/** Reads what changed: the jobs' counts and the failed results since the last poll (a cursor). */
async function refreshJobs() {
  for (let page = 0; page < PAGES_PER_POLL; page++) {
    // Starting over (first poll, or the counts went back: a resume): failures are tallied afresh.
    if (view.cursor === undefined) view.failures = new Map();
    const args = { job_ids: view.jobIds, wait_seconds: 0, filter: 'failed', budget_tokens: 2000 };
    if (view.cursor !== undefined) args.cursor = view.cursor;
    const s = await callTool('collect_results', args);
    for (const job of s.jobs ?? []) view.jobs.set(job.job_id, job);
    for (const result of s.results ?? []) tally(result);
    view.pending = num(s.remaining);
    // No next_cursor: every failure is read and the jobs are finished.
    view.cursor = typeof s.next_cursor === 'string' ? s.next_cursor : undefined;
    if (view.pending === 0) break;
  }
  const jobs = followed();
  // The failed filter shows every result that did not succeed: failed, cancelled, interrupted.
  const failed = jobs.reduce(
    (n, job) => n + num(job.counts?.failed) + num(job.counts?.cancelled) + num(job.counts?.interrupted),
    0,
  );
  if (tallied() > failed) view.cursor = undefined;
}

function tally(result) {
  const code = str(result.error?.code) || str(result.state).toUpperCase() || 'FAILED';
  const group = view.failures.get(code) ?? { count: 0, examples: [] };
  group.count += 1;
  if (group.examples.length < EXAMPLES)
    group.examples.push({
      job: view.jobIds.length > 1 ? str(result.job_id) : '',
      task: result.id !== undefined ? str(result.id) : `#${str(result.index)}`,
      message: str(result.error?.message) || str(result.state),
    });
  view.failures.set(code, group);
}

const tallied = () => [...view.failures.values()].reduce((n, group) => n + group.count, 0);
const followed = () => view.jobIds.map((id) => view.jobs.get(id)).filter(Boolean);

async function refreshEndpoints() {
  if (view.endpointsOff || !followed().some((job) => job.kind === 'llm')) return;
  if (view.endpoints !== undefined && view.polls % ENDPOINTS_EVERY !== 0) return;
  try {
    const s = await callTool('lmstudio_models', {});
    view.endpoints = Array.isArray(s.endpoints) ? s.endpoints : [];
  } catch {
    // No LLM kind here, or the host refused: the view goes on without endpoints.
    view.endpointsOff = true;
  }
}

async function refreshList() {
  view.list = await callTool('list_jobs', view.listArgs);
  for (const job of view.list.jobs ?? []) view.jobs.set(job.job_id, job);
}

function moreToRead() {
  if (view.mode === 'list') return (view.list?.jobs ?? []).some(isActive);
  if (view.mode !== 'jobs') return false;
  const jobs = followed();
  return jobs.length < view.jobIds.length || jobs.some(isActive) || view.pending > 0 || view.cursor !== undefined;
}

async function poll() {
  clearTimeout(view.timer);
  view.timer = undefined;
  if (view.busy || view.mode === 'idle') return;
  if (!canCall()) {
    view.error = 'This host does not let the view call tools: it shows the reply as it came.';
    render();
    return;
  }
  view.busy = true;
  try {
    if (view.mode === 'list') await refreshList();
    else {
      await refreshJobs();
      await refreshEndpoints();
    }
    view.polls += 1;
    view.errorsInRow = 0;
    view.error = '';
    view.updatedAt = new Date();
  } catch (error) {
    view.errorsInRow += 1;
    view.error = `Could not update: ${error?.message ?? error}`;
  } finally {
    view.busy = false;
  }
  // Scheduled before drawing, so the status says "live" exactly while another poll is due.
  if (moreToRead() && !view.stopped && view.errorsInRow < GIVE_UP_AFTER)
    view.timer = setTimeout(() => void poll(), POLL_MS);
  render();
}

function open(jobId) {
  view.fromList = view.mode === 'list';
  follow([jobId]);
  render();
  void poll();
}

function back() {
  view.mode = 'list';
  view.jobIds = [];
  view.fromList = false;
  render();
  void poll();
}

// ---- drawing ----

function showMessage(text) {
  $('message').textContent = text;
  $('message').hidden = text === '';
}

function renderHeader(jobs) {
  const single = view.mode === 'jobs' && jobs.length === 1 ? jobs[0] : undefined;
  if (view.mode === 'list') {
    $('title').textContent = 'Jobs';
    $('subtitle').textContent = `${str(view.list?.shown)} of ${str(view.list?.total)} · newest first`;
  } else if (single) {
    $('title').textContent = single.label ? str(single.label) : str(single.job_id);
    $('subtitle').textContent = [single.label ? str(single.job_id) : '', str(single.kind)].filter(Boolean).join(' · ');
  } else if (view.mode === 'jobs') {
    $('title').textContent = `${view.jobIds.length} jobs`;
    $('subtitle').textContent = [...new Set(jobs.map((job) => str(job.kind)))].join(', ');
  }
  const status = $('status');
  const live = view.timer !== undefined || view.busy;
  const state = single ? str(single.state) : live ? 'running' : view.mode === 'idle' ? 'waiting' : 'finished';
  status.textContent = live ? `${state} · live` : state;
  status.className = `pill ${state}${live ? ' live' : ''}`;
  const canGoBack = view.fromList && view.mode === 'jobs';
  $('footer').replaceChildren(
    canGoBack ? el('button', { text: '← All jobs', onclick: () => back() }) : '',
    document.createTextNode(
      [
        view.error,
        view.updatedAt ? `updated ${view.updatedAt.toLocaleTimeString()}` : '',
        view.pending > 0 ? `${view.pending} more failure(s) to read` : '',
      ]
        .filter(Boolean)
        .join(' · '),
    ),
  );
}

function renderProgress(jobs) {
  const section = $('progress-section');
  section.hidden = view.mode !== 'jobs' || jobs.length === 0;
  if (section.hidden) return;
  const counts = countsOf(jobs);
  const done = counts.succeeded + counts.failed + counts.cancelled + counts.interrupted;
  $('bar').replaceWith(Object.assign(bar(counts, 'bar big'), { id: 'bar' }));
  $('counts').replaceChildren(...countChips(counts, done));
  const single = jobs.length === 1 ? jobs[0] : undefined;
  const facts = [];
  if (single) {
    facts.push(duration(single.elapsed_ms));
    facts.push(
      `up to ${str(single.concurrency)} at once${single.peak_running ? ` (peak ${single.peak_running})` : ''}`,
    );
    if (single.upstream_tasks)
      facts.push(`upstream ${str(single.upstream_tasks.done)}/${str(single.upstream_tasks.total)} done`);
  }
  $('facts').textContent = facts.filter(Boolean).join(' · ');
  const notes = jobs.flatMap((job) => [
    ...(Array.isArray(job.notes) ? job.notes.map((note) => ['note', note]) : []),
    ...(job.warning ? [['warning', job.warning]] : []),
    ...(job.next ? [['next', job.next]] : []),
  ]);
  $('notes').replaceChildren(...notes.map(([kind, text]) => el('li', { className: kind, text: str(text) })));
}

function renderJobs(jobs) {
  const rows = view.mode === 'list' ? (view.list?.jobs ?? []) : jobs.length > 1 ? jobs : [];
  $('jobs-section').hidden = rows.length === 0;
  $('jobs').tBodies[0].replaceChildren(
    ...rows.map((job) => jobRow(job, view.mode === 'list' ? () => open(str(job.job_id)) : undefined)),
  );
  if (view.mode === 'list') showMessage(rows.length === 0 ? str(view.list?.next) || 'No jobs.' : '');
}

function renderFailures() {
  const groups = [...view.failures.entries()].sort((a, b) => b[1].count - a[1].count);
  $('failures-section').hidden = view.mode !== 'jobs' || groups.length === 0;
  $('failures').tBodies[0].replaceChildren(...groups.map(([code, group]) => failureRow(code, group)));
}

function renderEndpoints() {
  const endpoints = view.mode === 'jobs' && Array.isArray(view.endpoints) ? view.endpoints : [];
  $('endpoints-section').hidden = endpoints.length === 0;
  $('endpoints').replaceChildren(...endpoints.map(endpointCard));
}

function render() {
  const jobs = followed();
  renderHeader(jobs);
  renderProgress(jobs);
  renderJobs(jobs);
  renderFailures();
  renderEndpoints();
}

// ---- the host ----

function applyContext(context) {
  if (!context) return;
  if (context.theme) applyDocumentTheme(context.theme);
  if (context.styles?.variables) applyHostStyleVariables(context.styles.variables);
  if (context.styles?.css?.fonts) applyHostFonts(context.styles.css.fonts);
}

const app = new App({ name: 'monitor-mcp jobs', version: '1' }, {}, { autoResize: true });
app.ontoolinput = ({ arguments: args }) => {
  // list_jobs' filters, kept for its refreshes; collect_results' jobs, followed before its reply comes.
  const given = args ?? {};
  view.listArgs = Object.fromEntries(['state', 'kind', 'limit'].filter((k) => k in given).map((k) => [k, given[k]]));
  if (Array.isArray(given.job_ids) && view.mode === 'idle') {
    follow(given.job_ids.filter((id) => typeof id === 'string'));
    render();
  }
};
app.ontoolresult = (result) => fromResult(result);
app.ontoolcancelled = ({ reason }) => {
  showMessage(`The call was cancelled${reason ? `: ${reason}` : ''}.`);
};
app.onhostcontextchanged = (context) => applyContext(context);
app.onteardown = async () => {
  view.stopped = true;
  clearTimeout(view.timer);
  return {};
};

await app.connect(new PostMessageTransport(window.parent, window.parent));
applyContext(app.getHostContext());
