// The Monitor's page. Everything from the server (labels, outputs, errors, model answers) is
// untrusted text: it goes into the page with textContent only, never as HTML.
// A module (strict, deferred, its names its own): index.html loads it with type="module".
import { el } from './dom.js';
import { duration } from './format.js';

const $ = (id) => document.getElementById(id);
let state = null;
let selected = null;
// The open job's tasks: all of them in index order, or its failed ones alone ("Failures only").
let failedOnly = false;
let detailTimer = null;
// The transcript shown: { jobId, index }, reloaded with the detail while its task runs.
let transcriptOpen = null;
const charts = new Map();
// The server's clock minus the page's, from each event's generated_at: elapsed times tick here
// between events (the server sends only what changed, and time passing is no change).
let skew = 0;

// The token came in the URL; the server has set it as a cookie, so it leaves the address bar.
if (location.search.includes('token=')) history.replaceState(null, '', '/');

/** A job's elapsed time and ETA now, counted from its timestamps as the server counts them. */
function jobTimes(job) {
  const start = Date.parse(job.created_at);
  if (Number.isNaN(start)) return { elapsed: job.elapsed_ms, eta: job.eta_ms };
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now() + skew;
  const elapsed = Math.max(0, end - start);
  // The server's ETA is the elapsed time times (unfinished / done): it grows with elapsed alike.
  const eta = job.eta_ms === undefined || !(job.elapsed_ms > 0) ? job.eta_ms : (job.eta_ms * elapsed) / job.elapsed_ms;
  return { elapsed, eta };
}

/** Every unfinished job's elapsed time and ETA, redrawn in place once a second. */
function tick() {
  if (!state) return;
  for (const job of state.jobs) {
    if (job.finished_at) continue;
    const row = document.querySelector(`tr[data-job="${CSS.escape(job.id)}"]`);
    if (!row) continue;
    const { elapsed, eta } = jobTimes(job);
    row.querySelector('td.elapsed').textContent = duration(elapsed);
    row.querySelector('td.eta').textContent = eta === undefined ? '' : duration(eta);
  }
}

function bar(job) {
  const pct = (n) => `${job.tasks > 0 ? (100 * n) / job.tasks : 0}%`;
  const node = el('div', {
    className: 'bar',
    title: `${job.succeeded} ok, ${job.failed} failed, ${job.cancelled} cancelled of ${job.tasks}`,
  });
  for (const [cls, n] of [
    ['ok', job.succeeded],
    ['fail', job.failed],
    ['cancel', job.cancelled],
  ]) {
    const part = el('span', { className: cls });
    part.style.width = pct(n);
    node.append(part);
  }
  return node;
}

async function act(job, action) {
  $('message').textContent = `${action === 'cancel' ? 'Cancelling' : 'Resuming'} ${job.id}…`;
  try {
    const response = await fetch(`/api/jobs/${job.id}/${action}`, { method: 'POST', credentials: 'same-origin' });
    const reply = await response.json();
    $('message').textContent = reply.message || `${action}: ${response.status}`;
  } catch (error) {
    $('message').textContent = `${action} failed: ${error}`;
  }
}

/** Cancel for a job in flight, Resume for one that ended short; a damaged job gets neither. */
function actionButtons(job) {
  const button = (action, text) =>
    el('button', {
      text,
      'data-action': action,
      onclick: (event) => {
        event.stopPropagation();
        act(job, action);
      },
    });
  if (job.state === 'running' || job.state === 'queued') return [button('cancel', 'Cancel')];
  if (job.state === 'interrupted' || job.state === 'failed' || job.state === 'cancelled')
    return [button('resume', 'Resume')];
  return [];
}

function jobRow(job) {
  const done = job.succeeded + job.failed + job.cancelled;
  // A click on the failures opens the job with its failed tasks alone.
  const failures = el('div', {
    className: job.failed > 0 ? 'failures clickable' : 'failures',
    title: job.failed > 0 ? 'Show the failed tasks alone' : '',
    onclick: (event) => {
      if (job.failed === 0) return;
      event.stopPropagation();
      select(job.id, true);
    },
  });
  for (const group of job.failures.slice(0, 3)) {
    failures.append(
      el('div', { title: group.example }, [
        el('span', { className: 'code', text: group.code }),
        document.createTextNode(` ×${group.count} `),
        el('span', { className: 'example', text: group.example.slice(0, 80) }),
      ]),
    );
  }
  const actions = el('td', {}, actionButtons(job));
  const name = el('td', {}, [
    el('div', { className: 'mono', text: job.id }),
    job.label ? el('div', { className: 'label', text: job.label }) : null,
    job.next ? el('div', { className: 'next', text: job.next }) : null,
    job.runs_on
      ? el('div', {
          className: 'label',
          text: `runs on ${job.runs_on}${job.upstream_tasks ? ` (${job.upstream_tasks.done}/${job.upstream_tasks.total} done)` : ''}`,
        })
      : null,
    job.progress
      ? el('div', {
          className: 'progress-line',
          text: `${job.progress.tasks} reporting · #${job.progress.index}: ${job.progress.latest}`,
        })
      : null,
  ]);
  const times = jobTimes(job);
  const row = el(
    'tr',
    { className: `job${selected === job.id ? ' selected' : ''}`, 'data-job': job.id, onclick: () => select(job.id) },
    [
      el('td', {}, [el('span', { className: `state ${job.state}`, text: job.state })]),
      name,
      el('td', { text: job.kind }),
      el('td', {}, [bar(job)]),
      el('td', { className: 'done', text: `${done}/${job.tasks}` }),
      el('td', { className: 'eta', text: times.eta === undefined ? '' : duration(times.eta) }),
      el('td', { className: 'elapsed', text: duration(times.elapsed) }),
      el('td', { text: `${job.concurrency}${job.peak_running ? ` (peak ${job.peak_running})` : ''}` }),
      el('td', {}, [failures]),
      el('td', { className: 'label', text: job.totals ? job.totals.text : '' }),
      actions,
    ],
  );
  return row;
}

/** A kind's live card (an LLM endpoint, the script pool, the HTTP pool): slots, queue, rate chart. */
function capacityCard(card) {
  const key = `${card.server_pid}:${card.kind}:${card.name}`;
  const slots = el('div', { className: 'slots', title: `${card.busy} of ${card.limit} slots busy` });
  for (let i = 0; i < card.limit; i++) slots.append(el('span', { className: i < card.busy ? 'busy' : '' }));
  const series = (card.rate && card.rate.series) || [];
  const now = series.length ? series[series.length - 1][1] : 0;
  const rateText = card.rate ? `, ${Math.round(now)} ${card.rate.unit} now` : '';
  const chartBox = el('div', { className: 'chart' });
  const box = el('div', { className: 'card', 'data-kind': card.kind, 'data-card': card.name }, [
    el('div', { className: 'name', text: `${card.name}${card.reachable === false ? ' (unreachable)' : ''}` }),
    el('div', { className: 'models', text: `${card.kind}${card.detail ? ` · ${card.detail}` : ''}` }),
    slots,
    el('div', {
      className: 'label slots-text',
      text: `${card.busy}/${card.limit} slots busy${card.waiting === undefined ? '' : `, ${card.waiting} waiting`}${rateText} (server pid ${card.server_pid})`,
    }),
    chartBox,
  ]);
  if (window.uPlot && series.length) {
    const data = [series.map((p) => p[0] / 1000), series.map((p) => p[1])];
    const chart = new window.uPlot(
      {
        width: 260,
        height: 70,
        legend: { show: false },
        cursor: { show: false },
        axes: [{ show: false }, { size: 36, stroke: '#9aa3b2', grid: { stroke: '#2a2f3a' } }],
        series: [{}, { stroke: '#58a6ff', fill: 'rgba(88,166,255,.15)' }],
        scales: { x: { time: true } },
      },
      data,
      chartBox,
    );
    charts.set(key, chart);
  }
  return box;
}

/** The summary line and the live cards: all a `live` event (servers and cards alone) changes. */
function renderLive() {
  const running = state.jobs.filter((j) => j.state === 'running' || j.state === 'queued').length;
  $('summary').textContent =
    `${state.jobs.length} job(s), ${running} running · ${state.servers.length} server(s) live${state.servers.length ? ` (pid ${state.servers.map((s) => s.pid).join(', ')})` : ''}`;
  for (const chart of charts.values()) chart.destroy();
  charts.clear();
  $('capacity').replaceChildren(...state.capacity.map(capacityCard));
  $('capacity-section').hidden = state.capacity.length === 0;
}

function render() {
  if (!state) return;
  renderLive();
  $('jobs').tBodies[0].replaceChildren(...state.jobs.map(jobRow));
  $('empty').hidden = state.jobs.length > 0;
  $('empty').textContent = `No jobs in ${state.state_dir}${state.state_dir_note ? ` (${state.state_dir_note})` : ''}.`;
  $('footer').textContent =
    `State directory: ${state.state_dir} · last change ${new Date(state.generated_at).toLocaleTimeString()}`;
}

/** A running task's progress: its summary, then its figures on one line. */
function progressText(progress) {
  const figures = Object.entries(progress.figures || {}).map(([k, v]) => `${k} ${v}`);
  return figures.length ? `${progress.summary}\n${figures.join(' · ')}` : progress.summary;
}

function outputCell(task) {
  if (task.progress) return el('pre', { className: 'progress', text: progressText(task.progress) });
  const text = task.error ? `${task.error.code}: ${task.error.message}` : task.preview || '';
  return el('pre', {
    className: task.unverified ? 'preview unverified' : 'preview',
    text: task.unverified ? `UNVERIFIED (${task.unverified})\n${text}` : text,
  });
}

function filesCell(jobId, task) {
  const files = Object.entries(task.files || {})
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n');
  const cell = el('td', { className: 'mono', text: files });
  if (task.transcript)
    cell.append(
      el('button', {
        text: 'Transcript',
        'data-action': 'transcript',
        onclick: () => openTranscript(jobId, task.index),
      }),
    );
  return cell;
}

// Fields of a transcript line shown first, in this order; any other field follows as compact JSON.
const TRANSCRIPT_FIELDS = ['task', 'model', 'name', 'ok', 'summary', 'text', 'content', 'answer', 'calls', 'args'];
const MAX_FIELD_CHARS = 4000;

function transcriptLine(line) {
  const head = [line.step === undefined ? '' : `step ${line.step}`, String(line.type ?? '?')].filter(Boolean);
  const item = el('li', { 'data-type': String(line.type ?? '') }, [
    el('div', { className: 'head', text: head.join(' · ') }),
  ]);
  const keys = Object.keys(line).filter((k) => k !== 'type' && k !== 'step');
  const ordered = [
    ...TRANSCRIPT_FIELDS.filter((k) => keys.includes(k)),
    ...keys.filter((k) => !TRANSCRIPT_FIELDS.includes(k)),
  ];
  for (const key of ordered) {
    const value = line[key];
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    item.append(
      el('div', { className: 'field' }, [
        el('span', { className: 'key', text: `${key}: ` }),
        el('span', {
          className: 'value',
          text: text.length > MAX_FIELD_CHARS ? `${text.slice(0, MAX_FIELD_CHARS)}…` : text,
        }),
      ]),
    );
  }
  return item;
}

async function openTranscript(jobId, index) {
  const same = transcriptOpen && transcriptOpen.jobId === jobId && transcriptOpen.index === index;
  transcriptOpen = { jobId, index, state: same ? transcriptOpen.state : undefined };
  $('transcript').hidden = false;
  $('transcript-title').textContent = `Transcript of task ${index} of ${jobId}`;
  let response;
  let reply;
  try {
    response = await fetch(`/api/jobs/${jobId}/tasks/${index}/transcript`, { credentials: 'same-origin' });
    reply = await response.json();
  } catch (error) {
    reply = { error: `could not read it: ${error}` };
  }
  if (!response || !response.ok) {
    $('transcript-note').textContent = reply.error || `${response.status}`;
    $('transcript-lines').replaceChildren();
    return;
  }
  $('transcript-note').textContent =
    `${reply.lines.length} step(s) shown${reply.cut ? ', the latest only (earlier ones left out)' : ''} · ${reply.bytes} bytes · ${reply.file}`;
  $('transcript-lines').replaceChildren(...reply.lines.map(transcriptLine));
}

async function loadDetail() {
  if (!selected) return;
  const asked = { jobId: selected, failedOnly };
  const response = await fetch(`/api/jobs/${asked.jobId}${asked.failedOnly ? '?only=failed' : ''}`, {
    credentials: 'same-origin',
  });
  if (!response.ok) return;
  const { job, tasks, total } = await response.json();
  // Another job or the other view was asked for meanwhile: its own answer draws it.
  if (selected !== asked.jobId || failedOnly !== asked.failedOnly) return;
  $('detail').hidden = false;
  $('detail-title').textContent = `${job.id}${job.label ? ` — ${job.label}` : ''} (${job.kind}, ${job.state})`;
  const shown = asked.failedOnly
    ? `; its ${total} failed task(s)${total > tasks.length ? `, the first ${tasks.length} shown` : ''}`
    : total > tasks.length
      ? `; the first ${tasks.length} tasks shown`
      : '';
  $('detail-note').textContent =
    `${job.succeeded + job.failed + job.cancelled}/${job.tasks} done${shown}${job.next ? `. ${job.next}` : ''}`;
  $('failed-only-box').hidden = job.failed === 0 && !asked.failedOnly;
  $('failed-only').checked = asked.failedOnly;
  $('failed-only-text').textContent = `Failures only (${job.failed} of ${job.tasks})`;
  $('tasks').tBodies[0].replaceChildren(
    ...tasks.map((task) =>
      el('tr', { 'data-task': String(task.index) }, [
        el('td', { text: String(task.index) }),
        el('td', {}, [el('span', { className: `state ${task.state}`, text: task.state })]),
        el('td', { text: task.attempt ? String(task.attempt) : '' }),
        el('td', { text: duration(task.duration_ms) }),
        el('td', { className: 'mono', text: task.id || '' }),
        el('td', {}, [outputCell(task)]),
        filesCell(job.id, task),
      ]),
    ),
  );
  // An open transcript follows its task while it runs, and once more as it ends.
  const open = transcriptOpen && job.id === transcriptOpen.jobId && tasks.find((t) => t.index === transcriptOpen.index);
  if (open && (open.state === 'running' || transcriptOpen.state === 'running')) openTranscript(job.id, open.index);
  if (open) transcriptOpen.state = open.state;
}

function select(jobId, onlyFailed = false) {
  if (selected !== jobId) {
    transcriptOpen = null;
    $('transcript').hidden = true;
    failedOnly = false;
  }
  if (onlyFailed) failedOnly = true;
  selected = jobId;
  render();
  loadDetail();
}

$('failed-only').addEventListener('change', (event) => {
  failedOnly = event.target.checked;
  loadDetail();
});

function connect() {
  const events = new EventSource('/api/events');
  events.addEventListener('live', (event) => {
    if (!state) return;
    const { servers, capacity, generated_at } = JSON.parse(event.data);
    Object.assign(state, { servers, capacity });
    skew = Date.parse(generated_at) - Date.now();
    renderLive();
  });
  events.addEventListener('state', (event) => {
    state = JSON.parse(event.data);
    skew = Date.parse(state.generated_at) - Date.now();
    $('connection').textContent = 'live';
    $('connection').className = 'pill live';
    render();
    // The open job's tasks follow, at most twice a second.
    if (selected && !detailTimer)
      detailTimer = setTimeout(() => {
        detailTimer = null;
        loadDetail();
      }, 500);
  });
  events.onerror = () => {
    $('connection').textContent = 'offline';
    $('connection').className = 'pill offline';
  };
}

connect();
setInterval(tick, 1000);
