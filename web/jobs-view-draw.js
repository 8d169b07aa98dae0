// The jobs view's pieces of page, drawn from the server's data: every field goes in as text
// (textContent, attributes), never as HTML. Plain functions of their arguments; jobs-view.js holds the state.
import { el } from './dom.js';
import { duration } from './format.js';

export const COUNTED = ['succeeded', 'failed', 'cancelled', 'interrupted', 'running', 'queued'];

export const num = (value) => (typeof value === 'number' && Number.isFinite(value) ? value : 0);
export const str = (value) => (value === undefined || value === null ? '' : String(value));

export function countsOf(jobs) {
  const sum = { total: 0 };
  for (const key of COUNTED) sum[key] = 0;
  for (const job of jobs) {
    const c = job.counts ?? {};
    for (const key of [...COUNTED, 'total']) sum[key] += num(c[key]);
  }
  return sum;
}

export function bar(counts, className = 'bar') {
  const node = el('div', { className, title: COUNTED.map((k) => `${counts[k]} ${k}`).join(', ') });
  const total = Math.max(1, counts.total);
  for (const key of COUNTED) {
    if (!counts[key]) continue;
    const part = el('span', { className: key });
    part.style.width = `${(100 * counts[key]) / total}%`;
    node.append(part);
  }
  return node;
}

/** "N/M done", then a chip per state (succeeded and failed always, the others when there are any). */
export function countChips(counts, done) {
  return [
    el('span', { className: 'chip total', text: `${done}/${counts.total} done` }),
    ...COUNTED.filter((key) => counts[key] > 0 || key === 'succeeded' || key === 'failed').map((key) =>
      el('span', { className: `chip ${key}`, 'data-count': key }, [
        el('b', { text: String(counts[key]) }),
        document.createTextNode(` ${key}`),
      ]),
    ),
  ];
}

export function jobRow(job, onOpen) {
  const counts = countsOf([job]);
  const done = counts.succeeded + counts.failed + counts.cancelled + counts.interrupted;
  const row = el('tr', { 'data-job': str(job.job_id) }, [
    el('td', {}, [el('span', { className: `state ${str(job.state)}`, text: str(job.state) })]),
    el('td', { className: 'name' }, [
      el('div', { className: 'label', text: job.label ? str(job.label) : str(job.job_id) }),
      el('div', { className: 'dim mono', text: `${job.label ? `${str(job.job_id)} · ` : ''}${str(job.kind)}` }),
    ]),
    el('td', { className: 'wide' }, [bar(counts)]),
    el('td', { className: 'num done', text: `${done}/${counts.total}` }),
    el('td', { className: 'num dim', text: duration(job.elapsed_ms) }),
  ]);
  if (onOpen) {
    row.className = 'clickable';
    row.title = 'Follow this job';
    row.onclick = onOpen;
  }
  return row;
}

/** One error code: how many, and a few tasks that failed with it (their label, then the message). */
export function failureRow(code, group) {
  return el('tr', { 'data-code': code }, [
    el('td', {}, [el('span', { className: 'code', text: code })]),
    el('td', { className: 'num count', text: `×${group.count}` }),
    el(
      'td',
      { className: 'examples' },
      group.examples.map((example) =>
        el('div', { className: 'example', title: `${example.task}: ${example.message}` }, [
          el('span', { className: 'task', text: `${example.job ? `${example.job} ` : ''}${example.task}` }),
          el('span', { className: 'message', text: example.message }),
        ]),
      ),
    ),
  ]);
}

export function endpointCard(endpoint) {
  const slots = endpoint.slots && typeof endpoint.slots.total === 'number' ? endpoint.slots : undefined;
  const limit = endpoint.limit ?? {};
  const inFlight = num(endpoint.in_flight);
  const total = slots ? slots.total : num(limit.value);
  const busy = slots && typeof slots.busy === 'number' ? slots.busy : inFlight;
  const cells = el('div', { className: 'slots', title: `${busy} of ${total} busy` });
  for (let i = 0; i < Math.min(total, 64); i++) cells.append(el('span', { className: i < busy ? 'busy' : '' }));
  const models = (endpoint.models ?? [])
    .filter((m) => m.state === undefined || m.state === 'loaded')
    .map((m) => `${str(m.id)}${m.context_length ? ` (context ${m.context_length})` : ''}`);
  const facts = [
    `limit ${str(limit.value)}${limit.source ? ` (${str(limit.source)})` : ''}`,
    endpoint.peak_in_flight ? `peak ${endpoint.peak_in_flight}` : '',
    ...models,
  ];
  return el(
    'div',
    { className: `endpoint${endpoint.reachable === false ? ' down' : ''}`, 'data-endpoint': str(endpoint.name) },
    [
      el('div', { className: 'endpoint-head' }, [
        el('b', { text: str(endpoint.name) }),
        el('span', { className: 'dim', text: str(endpoint.flavor) || 'not identified' }),
      ]),
      el('div', { className: 'slots-line' }, [
        cells,
        el('span', {
          className: 'slots-text',
          text: slots ? `${busy}/${slots.total} slots busy` : `${inFlight} in flight`,
        }),
      ]),
      endpoint.error
        ? el('div', { className: 'error', text: `${str(endpoint.error.code)}: ${str(endpoint.error.message)}` })
        : el('div', { className: 'dim facts-line', text: facts.filter(Boolean).join(' · ') }),
    ],
  );
}
