// Dashboard for `host serve`: apps and functions, an invoke form, recent calls; (#executions) the
// execution records with their logs, followed live; (#items) the items of the apps' datasets
// with their annotations; and (#queues) the messages waiting in the apps' queues, their dead
// letters, and the lag of topic subscriptions.
// Plain DOM, no dependencies; server data only ever goes through textContent and attributes.
// API paths come from `ROUTES` (operation id -> path template), the server's route table, which
// the server puts after the next line.
'use strict';

const $ = (selector) => document.querySelector(selector);
const state = { apps: [], selected: null, needToken: false, logins: 0 };

/** The path of the API operation `operation` with `args` filled into its `{…}` parameters in order. */
function route(operation, ...args) {
  let i = 0;
  return ROUTES[operation].replace(/\{\*?\w+\}/g, () => encodeURIComponent(args[i++]));
}

/** `el('a', { href: '/x', class: 'y' }, 'text', child)`: an element with attributes and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return node;
}

// --- API with the optional token --------------------------------------------------------
// The token is traded once for a session cookie (POST /ui/session) that is HttpOnly and
// SameSite=Strict: no script of this origin (this page, a route's page, a site) can read it back.

/** `fetch` with the session cookie; a 401 asks for a token. */
async function authFetch(path, options = {}) {
  const logins = state.logins;
  const response = await fetch(path, { ...options, credentials: 'same-origin' });
  // Sent before a login that has finished since: send it again with the new session.
  if (response.status === 401 && state.logins !== logins) return authFetch(path, options);
  if (response.status === 401) {
    const message = await response.clone().json().then((b) => b?.message, () => undefined);
    askToken(message, false);
  }
  return response;
}

/** Fetch `path`; answers `{ status, statusText, ok, body, json, timing }`. */
async function api(path, options = {}) {
  const response = await authFetch(path, { ...options, headers: { accept: 'application/json', ...options.headers } });
  const text = await response.text();
  let body = text;
  let json = false;
  try { [body, json] = [text ? JSON.parse(text) : null, true]; } catch { /* not JSON: keep the text */ }
  return {
    status: response.status, statusText: response.statusText, ok: response.ok, body, json,
    timing: response.headers.get('server-timing'),
  };
}

function askToken(message, refused) {
  if (refused || !state.needToken) $('#auth-message').textContent = message || '';
  state.needToken = true;
  $('#auth').hidden = false;
  $('#token').focus();
}

$('#auth').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('#token').value.trim();
  if (!token) return;
  $('#token').value = '';
  // Hidden while the server decides; it comes back if the token is refused.
  $('#auth').hidden = true;
  const body = JSON.stringify({ token });
  fetch(route('login'), { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    .then((r) => {
      if (!r.ok) return askToken('That token was refused.', true);
      state.logins += 1;
      state.needToken = false;
      refresh();
    }, (e) => askToken(`Cannot reach the server: ${e.message}`, true));
});

// --- Apps and functions -------------------------------------------------------------------

async function loadApps() {
  const box = $('#apps');
  try {
    const r = await api(route('list_apps'));
    if (!r.ok) return box.replaceChildren(el('p', { class: 'error' }, errorText(r)));
    state.apps = r.body;
    box.replaceChildren(...(r.body.length ? r.body.map(renderApp) : [el('p', { class: 'muted' }, 'No apps loaded.')]));
    if (state.selected) showSelected(false);
    fillItemApps();
    fillExecutionApps();
    if (currentView() === 'queues') loadQueues();
  } catch (e) {
    box.replaceChildren(el('p', { class: 'error' }, `Cannot reach the server: ${e.message}`));
  }
}

function renderApp(app) {
  const key = (f) => `${app.name}/${f.name}`;
  const allPaused = app.functions.length > 0 && app.functions.every((f) => f.paused);
  const versions = el('div', { class: 'versions', hidden: true });
  return el('article', { class: 'app', 'data-app': app.name },
    el('div', { class: 'app-head' },
      el('h3', {}, app.name, ' ', el('span', { class: 'muted small' }, plural(app.functions.length, 'function'))),
      el('span', { class: 'muted small app-version', 'data-version': app.version?.version ?? 'file' },
        app.version ? `version ${app.version.version}, deployed ${clock(app.version.deployed_ms)}` : 'from its manifest file'),
      app.version && el('button', { type: 'button', class: 'small', 'data-action': 'versions', onclick: () => toggleVersions(app.name, versions) }, 'Versions'),
      app.functions.length > 0 && el('button', {
        type: 'button', class: 'small', 'data-action': allPaused ? 'resume' : 'pause', onclick: () => pauseApp(app, !allPaused),
      }, allPaused ? 'Resume all' : 'Pause all')),
    versions,
    el('ul', { class: 'functions' }, app.functions.map((f) => el('li', {},
      el('button', {
        type: 'button', class: 'function', 'data-function': key(f),
        'aria-pressed': String(state.selected === key(f)), onclick: () => select(app.name, f.name),
      },
      el('span', { class: 'fn-name' }, f.name), f.paused && el('span', { class: 'badge paused' }, 'paused'),
      el('code', { class: 'signature' }, f.signature))))),
    app.routes.length > 0 && el('ul', { class: 'routes' }, app.routes.map((r) => el('li', {},
      'route ', el('a', { href: r.route }, r.route), ' → ', el('code', {}, r.function), ' ',
      el('span', { class: 'badge' }, r.public ? 'public' : 'token')))),
    app.site && el('p', { class: 'site' }, 'site ', el('a', { href: app.site }, app.site)));
}

/** Pause (or resume) every function of `app`; then show the apps again. */
async function pauseApp(app, paused) {
  const answers = await Promise.all(app.functions.map((f) => api(fnPath(`${app.name}/${f.name}`, paused ? 'pause' : 'resume'), { method: 'POST' })));
  const refused = answers.find((r) => !r.ok);
  await loadApps();
  if (refused) document.querySelector(`[data-app="${CSS.escape(app.name)}"] .versions`)?.replaceChildren(el('p', { class: 'error' }, errorText(refused)));
}

/** Show or hide the deployed versions of `app` in `box`, the running one marked. */
async function toggleVersions(app, box) {
  box.hidden = !box.hidden;
  if (box.hidden) return;
  box.replaceChildren(el('p', { class: 'muted small' }, 'Loading…'));
  const r = await api(route('versions', app));
  if (!r.ok) return box.replaceChildren(el('p', { class: 'error' }, errorText(r)));
  box.replaceChildren(el('table', {},
    el('thead', {}, el('tr', {}, ['', 'version', 'digest', 'bytes', 'deployed'].map((h) => el('th', {}, h)))),
    el('tbody', {}, r.body.versions.map((v) => el('tr', { 'data-version': v.version, 'aria-current': String(v.version === r.body.running) },
      el('td', {}, v.version === r.body.running ? 'running' : ''), el('td', { class: 'num' }, v.version),
      el('td', {}, el('code', {}, v.digest.slice(0, 19))), el('td', { class: 'num' }, size(v.size)),
      el('td', {}, clock(v.deployed_ms)))))));
}

function findFunction(key) {
  const [app, name] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
  return state.apps.find((a) => a.name === app)?.functions.find((f) => f.name === name);
}

function select(app, name) {
  state.selected = `${app}/${name}`;
  showSelected(true);
}

/** Fill the invoke form for the selected function (and its arguments skeleton when `fresh`). */
function showSelected(fresh) {
  const f = findFunction(state.selected);
  for (const b of document.querySelectorAll('button.function')) {
    b.setAttribute('aria-pressed', String(b.dataset.function === state.selected));
  }
  $('#invoke').hidden = !f;
  $('#no-selection').hidden = !!f;
  if (!f) return;
  $('#fn-name').textContent = state.selected;
  $('#fn-signature').textContent = f.signature;
  $('#fn-paused').hidden = !f.paused;
  $('#pause').disabled = f.paused;
  $('#resume').disabled = !f.paused;
  if (fresh) {
    $('#args').value = JSON.stringify(skeleton(f.params) ?? {}, null, 2);
    $('#result').hidden = true;
  }
}

/** A JSON value of the shape `schema` describes: empty strings, zeros, first options. */
function skeleton(schema) {
  if (!schema || typeof schema !== 'object') return null;
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  const options = schema.anyOf || schema.oneOf || schema.allOf;
  if (options) return skeleton(options.find((o) => !nullable(o)) ?? options[0]);
  const type = Array.isArray(schema.type) ? (schema.type.find((t) => t !== 'null') ?? 'null') : schema.type;
  switch (type) {
    case 'object': {
      const props = schema.properties || {};
      const required = (schema.required || []).filter((k) => k in props);
      const optional = Object.keys(props).filter((k) => !required.includes(k));
      return Object.fromEntries([
        ...required.map((k) => [k, skeleton(props[k])]),
        ...optional.map((k) => [k, nullable(props[k]) ? null : skeleton(props[k])]),
      ]);
    }
    case 'array':
      if (schema.prefixItems) return schema.prefixItems.map(skeleton);
      return Array.from({ length: schema.minItems || 0 }, () => skeleton(schema.items));
    case 'string': return '';
    case 'integer': case 'number': return 0;
    case 'boolean': return false;
    default: return null;
  }
}

function nullable(schema) {
  if (!schema) return false;
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  return types.includes('null') || (schema.anyOf || schema.oneOf || []).some(nullable);
}

// --- Calling, pausing ---------------------------------------------------------------------

/** The path of `operation` on the function `app/function`. */
const fnPath = (key, operation = 'call') => {
  const f = key.indexOf('/');
  return route(operation, key.slice(0, f), key.slice(f + 1));
};

async function call(event) {
  event?.preventDefault();
  const key = state.selected;
  const button = $('#call');
  const result = $('#result');
  button.disabled = true;
  result.hidden = false;
  result.className = 'result pending';
  result.replaceChildren(el('p', { class: 'muted' }, `Calling ${key}…`));
  const started = performance.now();
  try {
    const r = await api(fnPath(key), {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: $('#args').value,
    });
    showResult(key, r, performance.now() - started);
  } catch (e) {
    result.className = 'result error';
    result.replaceChildren(el('p', {}, `Network error: ${e.message}`));
  } finally {
    button.disabled = false;
    loadCalls();
    loadHistory();
  }
}

function showResult(key, r, roundTrip) {
  const dur = /dur=([\d.]+)/.exec(r.timing || '')?.[1];
  const result = $('#result');
  result.className = `result ${r.ok ? 'ok' : 'error'}`;
  result.replaceChildren(...[
    el('div', { class: 'result-head' },
      el('span', { class: 'status' }, `${r.status} ${r.statusText}`.trim()),
      !r.ok && r.body?.code && el('span', { class: 'badge code' }, r.body.code),
      el('span', { class: 'muted' }, dur ? `${dur} ms in the guest` : '',
        `${dur ? ', ' : ''}${roundTrip.toFixed(1)} ms round trip`),
      el('span', { class: 'muted right' }, key)),
    !r.ok && r.body?.message && el('p', { class: 'message' }, r.body.message),
    el('pre', {}, r.json ? JSON.stringify(r.body, null, 2) : r.body),
  ].filter(Boolean));
}

async function setPaused(paused) {
  const r = await api(fnPath(state.selected, paused ? 'pause' : 'resume'), { method: 'POST' });
  if (!r.ok) showResult(state.selected, r, 0);
  await loadApps();
}

$('#invoke').addEventListener('submit', call);
$('#args').addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) call(e); });
$('#pause').addEventListener('click', () => setPaused(true));
$('#resume').addEventListener('click', () => setPaused(false));

// --- Recent calls -------------------------------------------------------------------------

let loadingCalls = false;
async function loadCalls() {
  if (loadingCalls) return;
  loadingCalls = true;
  const body = $('#calls tbody');
  try {
    const r = await api(route('recent_calls'));
    if (!r.ok) return body.replaceChildren(row([errorText(r)], 'error'));
    body.replaceChildren(...(r.body.length ? r.body.map((c) => el('tr', {},
      el('td', {}, new Date(c.finished_ms).toLocaleTimeString([], { hour12: false })),
      el('td', {}, c.app), el('td', {}, el('code', {}, c.function)), el('td', {}, c.trigger),
      el('td', {}, el('span', { class: `badge outcome ${outcomeClass(c.outcome)}` }, c.outcome)),
      el('td', { class: 'num' }, duration(c.micros)))) : [row(['No calls yet.'], 'muted')]));
  } catch (e) {
    body.replaceChildren(row([`Cannot reach the server: ${e.message}`], 'error'));
  } finally {
    loadingCalls = false;
  }
}

const row = (cells, cls) => el('tr', { class: cls }, cells.map((c) => el('td', { colspan: 6 }, c)));
const outcomeClass = (o) => (o === 'ok' ? 'ok' : o === 'guest-error' ? 'warn' : 'error');
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
const errorText = (r) => (r.status === 401 ? 'Waiting for the token (above).'
  : `${r.status} ${r.body?.code ?? ''}: ${r.body?.message ?? r.statusText}`);

function duration(micros) {
  if (micros < 1000) return `${micros} µs`;
  if (micros < 1e6) return `${(micros / 1000).toFixed(2)} ms`;
  return `${(micros / 1e6).toFixed(2)} s`;
}

// --- Charts: calls, errors and latency per minute of one function, the last hour ----------

const charts = { history: [], chosen: '' };
const CHART = { width: 600, height: 150, left: 44, bottom: 16, top: 6 };

async function loadHistory() {
  try {
    const r = await api(route('call_history'));
    if (!r.ok) return $('#charts').replaceChildren(el('p', { class: 'error' }, errorText(r)));
    charts.history = r.body;
    const keys = r.body.map((h) => `${h.app}/${h.function}`);
    if (!keys.includes(charts.chosen)) charts.chosen = keys[0] ?? '';
    const select = $('#chart-function');
    select.replaceChildren(...keys.map((k) => el('option', { value: k }, k)));
    select.value = charts.chosen;
    select.disabled = !keys.length;
    drawCharts();
  } catch (e) {
    $('#charts').replaceChildren(el('p', { class: 'error' }, `Cannot reach the server: ${e.message}`));
  }
}

function drawCharts() {
  const history = charts.history.find((h) => `${h.app}/${h.function}` === charts.chosen);
  const box = $('#charts');
  box.dataset.function = charts.chosen;
  if (!history) return box.replaceChildren(el('p', { class: 'muted' }, 'No calls in the last hour.'));
  const now = Math.floor(Date.now() / 60000) * 60000;
  const minutes = history.minutes.filter((m) => m.minute_ms > now - 60 * 60000);
  box.replaceChildren(callsChart(minutes, now), latencyChart(minutes, now));
}

/** The x of minute `ms` (its slot's left edge) in an hour ending with minute `now`. */
const minuteX = (ms, now) => CHART.left + ((ms - (now - 59 * 60000)) / 60000) * ((CHART.width - CHART.left) / 60);
const chartY = (fraction) => CHART.top + (1 - fraction) * (CHART.height - CHART.top - CHART.bottom);

/** An SVG chart frame: the y axis labelled `top` and `bottom`, the x axis from an hour ago to now. */
function frame(title, top, bottom, legend, ...marks) {
  const { width, height, left } = CHART;
  const base = height - CHART.bottom;
  return el('figure', { class: 'chart', 'data-chart': title },
    el('h3', {}, title), legend,
    svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title },
      svg('line', { class: 'axis', x1: left, y1: CHART.top, x2: left, y2: base }),
      svg('line', { class: 'axis', x1: left, y1: base, x2: width, y2: base }),
      svg('text', { x: left - 4, y: CHART.top + 8, 'text-anchor': 'end' }, top),
      svg('text', { x: left - 4, y: base, 'text-anchor': 'end' }, bottom),
      svg('text', { x: left, y: height - 2 }, '−60 min'),
      svg('text', { x: width, y: height - 2, 'text-anchor': 'end' }, 'now'),
      ...marks));
}

function callsChart(minutes, now) {
  const peak = Math.max(...minutes.map((m) => m.calls), 1) / 60;
  const slot = (CHART.width - CHART.left) / 60;
  const bar = (m, value, cls) => svg('rect', {
    class: cls, x: minuteX(m.minute_ms, now) + 1, width: Math.max(slot - 2, 1),
    y: chartY(value / peak), height: chartY(0) - chartY(value / peak),
  });
  const bars = minutes.map((m) => svg('g', { 'data-minute': m.minute_ms, 'data-calls': m.calls, 'data-errors': m.errors },
    svg('title', {}, `${new Date(m.minute_ms).toLocaleTimeString([], { hour12: false })}: ${plural(m.calls, 'call')}, ${plural(m.errors, 'error')}`),
    ...[bar(m, m.calls / 60, 'bar'), m.errors > 0 && bar(m, m.errors / 60, 'bar errors')].filter(Boolean)));
  const legend = el('div', { class: 'legend' },
    el('span', { style: '--c: var(--accent)' }, 'calls/s'), el('span', { style: '--c: var(--error)' }, 'errors/s'));
  return frame('Calls per second', peak.toPrecision(2), '0', legend, ...bars);
}

function latencyChart(minutes, now) {
  const values = minutes.flatMap((m) => [m.p50_us, m.p90_us, m.p99_us]).filter((v) => v > 0);
  // A log scale over whole decades, so that µs and seconds fit in one chart.
  const low = 10 ** Math.floor(Math.log10(Math.min(...values, 10)));
  const high = 10 ** Math.ceil(Math.log10(Math.max(...values, low * 10)));
  const y = (us) => chartY((Math.log10(Math.max(us, low)) - Math.log10(low)) / (Math.log10(high) - Math.log10(low)));
  const slot = (CHART.width - CHART.left) / 60;
  const series = ['p50', 'p90', 'p99'].map((p) => {
    const points = minutes.map((m) => [minuteX(m.minute_ms, now) + slot / 2, y(m[`${p}_us`]), m]);
    return svg('g', { class: p, 'data-series': p },
      svg('polyline', { class: `line ${p}`, points: points.map(([x, yy]) => `${x},${yy}`).join(' ') }),
      ...points.map(([x, yy, m]) => svg('circle', { cx: x, cy: yy, r: 2.5 },
        svg('title', {}, `${p} ${duration(m[`${p}_us`])} at ${new Date(m.minute_ms).toLocaleTimeString([], { hour12: false })}`))));
  });
  const legend = el('div', { class: 'legend' }, ['p50', 'p90', 'p99'].map((p, i) =>
    el('span', { style: `--c: var(--${['accent', 'warn', 'error'][i]})` }, p)));
  return frame('Latency', duration(high), duration(low), legend, ...series);
}

$('#chart-function').addEventListener('change', (e) => { charts.chosen = e.target.value; drawCharts(); });

function refresh() {
  loadApps();
  loadCalls();
  loadHistory();
  if (currentView() === 'items' && items.dataset) loadItems();
  if (currentView() === 'executions') loadExecutions();
  if (currentView() === 'queues') loadQueues();
}

// --- Views: #dashboard (default), #executions and #items ----------------------------------

const VIEWS = ['dashboard', 'executions', 'items', 'queues'];
const currentView = () => (VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'dashboard');

function showView() {
  const view = currentView();
  for (const v of VIEWS) $(`#${v}-view`).hidden = v !== view;
  for (const a of document.querySelectorAll('.top nav a[data-view]')) {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (view === 'items' && items.dataset && items.shown !== listKey()) loadItems();
  if (view === 'executions' && !runs.shown) loadExecutions();
  if (view === 'queues') loadQueues();
}

window.addEventListener('hashchange', showView);

// --- Queues: messages ready, leased or delayed, and dead letters, per queue of every app -----

let queuesGeneration = 0;
async function loadQueues() {
  const generation = ++queuesGeneration;
  const line = $('#queues-line');
  const queues = state.apps.flatMap((a) => (a.queues ?? []).map((q) => [a.name, q]));
  line.textContent = 'Loading…';
  const stats = (app, queue) => api(route('queue', app, queue)).then((r) => (r.ok ? r.body : Promise.reject(new Error(errorText(r)))));
  try {
    const rows = await Promise.all(queues.map(async ([app, queue]) => {
      const [live, dead] = await Promise.all([stats(app, queue), stats(app, `${queue}.dead`)]);
      const deadCount = dead.ready + dead.waiting;
      return el('tr', { 'data-queue': `${app}/${queue}`, 'data-ready': live.ready, 'data-leased': live.leased, 'data-dead': deadCount },
        el('td', {}, app), el('td', {}, el('code', {}, queue)), el('td', { class: 'num' }, live.ready),
        el('td', { class: 'num' }, live.leased), el('td', { class: 'num' }, live.waiting - live.leased),
        el('td', { class: 'num' }, deadCount > 0 ? el('button', {
          type: 'button', class: 'link', 'data-action': 'dead-letters', onclick: () => showDeadLetters(app, queue),
        }, String(deadCount)) : '0'));
    }));
    const subscriptions = await Promise.all(state.apps.flatMap((a) => (a.subscriptions ?? []).map((s) => subscriptionRow(a.name, s))));
    if (generation !== queuesGeneration) return;
    $('#queues tbody').replaceChildren(...(rows.length ? rows : [row(['No app is granted a queue.'], 'muted')]));
    $('#subscriptions tbody').replaceChildren(...(subscriptions.length ? subscriptions
      : [row(['No app subscribes to a topic.'], 'muted')]));
    line.textContent = `${plural(rows.length, 'queue')}, as of ${new Date().toLocaleTimeString([], { hour12: false })}`;
  } catch (e) {
    if (generation === queuesGeneration) line.textContent = e.message;
  }
}

$('#queues-refresh').addEventListener('click', loadQueues);

/** A subscription's row: its executions queued and running (counted up to 1000 each). */
async function subscriptionRow(app, s) {
  const count = async (status) => {
    const query = new URLSearchParams({ app, trigger: s.name, status, limit: 1000 });
    const r = await api(`${route('list_executions')}?${query}`);
    if (!r.ok) throw new Error(errorText(r));
    return r.body.length;
  };
  const [queued, running] = await Promise.all([count('queued'), count('running')]);
  const shown = (n) => (n === 1000 ? '1000+' : String(n));
  return el('tr', { 'data-subscription': `${app}/${s.name}`, 'data-lag': queued + running },
    el('td', {}, app), el('td', {}, s.name), el('td', {}, el('code', {}, s.topic)), el('td', {}, el('code', {}, s.function)),
    el('td', { class: 'num' }, shown(queued)), el('td', { class: 'num' }, shown(running)),
    el('td', { class: 'num' }, shown(queued + running)));
}

const deadLetters = { app: '', queue: '' };

/** List the dead letters of `app`'s `queue` (first 100), each with Requeue and Delete. */
async function showDeadLetters(app, queue) {
  Object.assign(deadLetters, { app, queue });
  const dead = `${queue}.dead`;
  $('#dead-letters').hidden = false;
  $('#dead-title').textContent = `Dead letters of ${app}/${queue}`;
  const r = await api(`${route('list_messages', app, dead)}?limit=100`);
  if (deadLetters.app !== app || deadLetters.queue !== queue) return;
  if (!r.ok) return ($('#dead-line').textContent = errorText(r));
  $('#dead-line').textContent = r.body.length ? `${plural(r.body.length, 'message')}, oldest first` : 'None left.';
  const text = (b64) => { try { return new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))); } catch { return b64; } };
  const act = (label, id, operation, method) => el('button', {
    type: 'button', class: 'small', 'data-action': label.toLowerCase(),
    onclick: async () => {
      const answer = await api(route(operation, app, dead, id), { method });
      if (!answer.ok) $('#dead-line').textContent = errorText(answer);
      await Promise.all([loadQueues(), showDeadLetters(app, queue)]);
    },
  }, label);
  $('#dead tbody').replaceChildren(...r.body.map((m) => el('tr', { 'data-message': m.id },
    el('td', {}, el('code', {}, m.id)), el('td', { class: 'num' }, size(m.size)),
    el('td', { class: 'body', title: text(m.body).slice(0, 2000) }, text(m.body).slice(0, 200)),
    el('td', { class: 'actions' }, act('Requeue', m.id, 'requeue', 'POST'), ' ', act('Delete', m.id, 'delete_message', 'DELETE')))));
}

// --- Executions: a filtered list, one execution's detail with its logs followed live -------

const FINAL = ['succeeded', 'failed', 'timed-out', 'cancelled'];
const runs = {
  shown: false, // whether the list has been loaded once
  before: null, // the last listed id: the next page starts after it
  item: null, // [dataset, id] when listing one item's executions
  generation: 0, // of the list's latest load; older answers are dropped
  selected: null, // the id in #exec-detail
  follow: null, // the EventSource following the selected execution's logs
};

function fillExecutionApps() {
  const select = $('#exec-app');
  const chosen = select.value;
  select.replaceChildren(el('option', { value: '' }, 'all'), ...state.apps.map((a) => el('option', { value: a.name }, a.name)));
  select.value = state.apps.some((a) => a.name === chosen) ? chosen : '';
}

/** The list's query: the filter form, the item, and the page. */
function executionsQuery(before) {
  const query = new URLSearchParams({ limit: 50 });
  const fields = { app: '#exec-app', function: '#exec-function', trigger: '#exec-trigger', status: '#exec-status' };
  for (const [name, input] of Object.entries(fields)) {
    const value = $(input).value.trim();
    if (value) query.set(name, value);
  }
  for (const [name, input] of [['since', '#exec-since'], ['until', '#exec-until']]) {
    const ms = $(input).value ? new Date($(input).value).getTime() : NaN;
    if (!Number.isNaN(ms)) query.set(name, ms);
  }
  if (runs.item) [['dataset', runs.item[0]], ['item', runs.item[1]]].forEach(([k, v]) => query.set(k, v));
  if (before) query.set('before', before);
  return query;
}

const setRunsLine = (text, cls = 'muted') => {
  $('#exec-line').className = `${cls} small`;
  $('#exec-line').textContent = text;
};

/** Load the first page of the filtered list (or, with `more`, the page after the last row). */
async function loadExecutions(more = false) {
  const generation = ++runs.generation;
  runs.shown = true;
  const body = $('#executions tbody');
  $('#exec-more').disabled = true;
  try {
    const r = await api(`${route('list_executions')}?${executionsQuery(more ? runs.before : null)}`);
    if (generation !== runs.generation) return;
    if (!r.ok) return setRunsLine(errorText(r), 'error');
    if (!more) body.replaceChildren();
    body.append(...r.body.map(executionRow));
    runs.before = r.body.at(-1)?.id ?? (more ? runs.before : null);
    $('#exec-more').hidden = r.body.length < 50;
    const listed = body.querySelectorAll('tr[data-execution]').length;
    setRunsLine(listed ? `${plural(listed, 'execution')}${r.body.length < 50 ? '' : ' so far'}, newest first`
      : 'No executions match.');
  } catch (e) {
    if (generation === runs.generation) setRunsLine(`Cannot reach the server: ${e.message}`, 'error');
  } finally {
    if (generation === runs.generation) $('#exec-more').disabled = false;
  }
}

const statusClass = (s) => (s === 'succeeded' ? 'ok' : s === 'failed' || s === 'timed-out' ? 'error' : 'warn');
const clock = (ms) => (ms == null ? '' : new Date(ms).toLocaleString([], { hour12: false }));
const took = (r) => (r.finished_ms != null && r.started_ms != null ? duration((r.finished_ms - r.started_ms) * 1000) : '');

function executionRow(r) {
  return el('tr', {
    'data-execution': r.id, 'data-status': r.status, 'aria-current': String(r.id === runs.selected),
    onclick: () => selectExecution(r.id),
  },
  el('td', { title: clock(r.queued_ms) }, new Date(r.queued_ms).toLocaleTimeString([], { hour12: false })),
  el('td', {}, el('code', {}, r.id)),
  el('td', {}, el('code', {}, `${r.app}/${r.function}`)),
  el('td', {}, r.trigger),
  el('td', {}, el('span', { class: `badge ${statusClass(r.status)}` }, r.status)),
  el('td', { class: 'num' }, `${r.attempt}/${r.max_attempts}`),
  el('td', { class: 'num' }, took(r)));
}

/** Show the item filter's chip (with a button that drops it), or hide it. */
function showItemFilter() {
  const chip = $('#exec-item');
  chip.hidden = !runs.item;
  if (!runs.item) return chip.replaceChildren();
  chip.replaceChildren(`item ${runs.item[0]}/${runs.item[1]}`, el('button', {
    type: 'button', class: 'link', 'aria-label': 'All items',
    onclick: () => { runs.item = null; showItemFilter(); loadExecutions(); },
  }, '✕'));
}

/** List the executions of item `id` of `app`'s `dataset` (from the item's detail). */
function itemExecutions(app, dataset, id) {
  $('#exec-filter').reset();
  fillExecutionApps();
  $('#exec-app').value = app;
  runs.item = [dataset, id];
  showItemFilter();
  closeExecution();
  $('#executions tbody').replaceChildren();
  setRunsLine('Loading…');
  runs.shown = false;
  if (currentView() === 'executions') loadExecutions();
  else location.hash = '#executions'; // showView loads the list
}

function stopFollowing() {
  runs.follow?.close();
  runs.follow = null;
  $('#exec-live').hidden = true;
}

async function selectExecution(id) {
  stopFollowing();
  runs.selected = id;
  for (const tr of document.querySelectorAll('#executions tbody tr[data-execution]')) {
    tr.setAttribute('aria-current', String(tr.dataset.execution === id));
  }
  $('#exec-detail').hidden = false;
  $('#executions-view').classList.add('with-detail');
  $('#exec-title').textContent = id;
  const [record, logs] = await Promise.all([api(route('show_execution', id)), api(route('execution_logs', id))]);
  if (runs.selected !== id) return;
  if (!record.ok) return $('#exec-info').replaceChildren(el('dd', { class: 'error' }, errorText(record)));
  showExecution(record.body);
  showLogs(logs.ok ? logs.body : errorText(logs));
  if (!FINAL.includes(record.body.status)) follow(id);
}

/** Fill the detail with `r`, and refresh its row in the list. */
function showExecution(r) {
  $('#exec-title').textContent = `${r.app}/${r.function}`;
  const badge = $('#exec-badge');
  badge.className = `badge ${statusClass(r.status)}`;
  badge.textContent = r.status;
  const facts = [
    ['id', r.id], ['trigger', r.trigger], ['attempt', `${r.attempt} of ${r.max_attempts}`],
    ['queued', clock(r.queued_ms)], ['started', clock(r.started_ms)], ['finished', clock(r.finished_ms)],
    ['took', took(r)], r.item && ['item', `${r.item[0]}/${r.item[1]}`],
  ].filter((f) => f && f[1]);
  $('#exec-info').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  $('#exec-input').textContent = JSON.stringify(r.input, null, 2);
  const failed = r.error != null;
  $('#exec-result-head').textContent = failed ? 'Error' : 'Output';
  $('#exec-result').className = failed ? 'error' : '';
  $('#exec-result').textContent = FINAL.includes(r.status) || failed
    ? JSON.stringify(failed ? r.error : r.output, null, 2) : '(not finished)';
  $('#exec-cancel').hidden = FINAL.includes(r.status);
  const old = document.querySelector(`#executions tbody tr[data-execution="${CSS.escape(r.id)}"]`);
  old?.replaceWith(executionRow(r));
}

/** Show logs text, or say that nothing was printed. */
function showLogs(text) {
  const logs = $('#exec-logs');
  logs.classList.toggle('muted', !text);
  logs.textContent = text || 'Nothing printed.';
}

/** Follow the logs of running execution `id` (Server-Sent Events) until it ends. */
function follow(id) {
  const source = new EventSource(`${route('execution_logs', id)}?follow=true`);
  runs.follow = source;
  $('#exec-live').hidden = false;
  const logs = $('#exec-logs');
  let streamed = '';
  source.addEventListener('log', (e) => {
    // The stream starts from the beginning: it replaces what was read before following.
    streamed += e.data;
    showLogs(streamed);
    logs.scrollTop = logs.scrollHeight;
  });
  source.addEventListener('end', async (e) => {
    stopFollowing();
    if (runs.selected !== id) return;
    showExecution(JSON.parse(e.data));
    // The logs as kept, each attempt under its header (the live stream had the output only).
    const kept = await api(route('execution_logs', id));
    if (runs.selected === id && kept.ok) showLogs(kept.body);
  });
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) stopFollowing(); };
}

async function cancelExecution() {
  const id = runs.selected;
  const r = await api(route('cancel_execution', id), { method: 'POST' });
  if (runs.selected !== id) return;
  if (r.ok) showExecution(r.body);
  else setRunsLine(errorText(r), 'error');
}

function closeExecution() {
  stopFollowing();
  runs.selected = null;
  $('#exec-detail').hidden = true;
  $('#executions-view').classList.remove('with-detail');
  for (const tr of document.querySelectorAll('#executions tbody tr[aria-current="true"]')) tr.setAttribute('aria-current', 'false');
}

$('#exec-filter').addEventListener('submit', (e) => { e.preventDefault(); loadExecutions(); });
$('#exec-more').addEventListener('click', () => loadExecutions(true));
$('#exec-cancel').addEventListener('click', cancelExecution);
$('#exec-close').addEventListener('click', closeExecution);

// --- Items: a dataset's grid, one item's detail with its annotations, uploads --------------

const SVG_NS = 'http://www.w3.org/2000/svg';
const PAGE_SIZE = 48;
const items = {
  app: '', dataset: '', dir: '', // what the grid lists
  shown: null, // listKey() of the grid's contents
  cursor: null, // of the next page
  byId: new Map(), // the grid's items
  generation: 0, // of the grid's latest load; older answers are dropped
  selected: null, // the id in #item-detail
  detail: null, // { img, overlay, annotations } of #item-detail
  blobs: new Map(), // `app/dataset/id@updated` -> Promise<{ blob, url }>
};
const listKey = () => `${items.app}/${items.dataset}:${items.dir}`;
const itemsPath = () => route('list_items', items.app, items.dataset);
/** The path of `operation` on the item `id` of the open dataset. */
const itemPath = (id, operation = 'show_item') => route(operation, items.app, items.dataset, id);
const isImage = (item) => item.mimetype.startsWith('image/');
const setItemsStatus = (text, cls = 'muted') => {
  $('#items-status').className = `${cls} small`;
  $('#items-status').textContent = text;
};

/** `svg('rect', { x: 1 }, child)`: an SVG element. */
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) if (value != null) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

// Selection: the apps with datasets, their datasets, the dir filter.

function fillItemApps() {
  const apps = state.apps.filter((a) => a.datasets?.length);
  const app = apps.some((a) => a.name === items.app) ? items.app : (apps[0]?.name ?? '');
  const select = $('#items-app');
  select.replaceChildren(...apps.map((a) => el('option', { value: a.name }, a.name)));
  select.value = app;
  select.disabled = !apps.length;
  if (!apps.length) setItemsStatus('No app has a dataset (grant one in a function\'s `datasets`).');
  chooseApp(app);
}

function chooseApp(app) {
  const datasets = state.apps.find((a) => a.name === app)?.datasets ?? [];
  const dataset = app === items.app && datasets.includes(items.dataset) ? items.dataset : (datasets[0] ?? '');
  const select = $('#items-dataset');
  select.replaceChildren(...datasets.map((d) => el('option', { value: d }, d)));
  select.value = dataset;
  select.disabled = !datasets.length;
  chooseDataset(app, dataset);
}

function chooseDataset(app, dataset) {
  if (app === items.app && dataset === items.dataset) return;
  closeDetail();
  forgetBlobs();
  Object.assign(items, { app, dataset, shown: null });
  $('#items-upload').disabled = !dataset;
  if (dataset && currentView() === 'items') loadItems();
}

/** The dir filter as the API takes it: `` (everything) or `/a/b`. */
function dirFilter() {
  const dir = $('#items-dir').value.trim().replace(/\/+$/, '');
  return dir && !dir.startsWith('/') ? `/${dir}` : dir;
}

// The grid.

/** Load the first page of the selection (or the page after `cursor`, appended). */
async function loadItems(cursor = null) {
  const generation = ++items.generation;
  if (!cursor) items.dir = dirFilter();
  const key = listKey();
  const query = new URLSearchParams({ limit: PAGE_SIZE });
  if (items.dir) query.set('dir', items.dir);
  if (cursor) query.set('cursor', cursor);
  $('#items-more').disabled = true;
  setItemsStatus(`Loading ${items.app}/${items.dataset}${items.dir ? ` ${items.dir}` : ''}…`);
  try {
    const r = await api(`${itemsPath()}?${query}`);
    if (generation !== items.generation) return;
    if (!r.ok) return setItemsStatus(errorText(r), 'error');
    const grid = $('#items-grid');
    if (!cursor) {
      thumbnails.disconnect();
      items.byId.clear();
      grid.replaceChildren();
      grid.dataset.dataset = `${items.app}/${items.dataset}`;
    }
    items.shown = key;
    items.cursor = r.body.cursor;
    for (const item of r.body.items) items.byId.set(item.id, item);
    grid.append(...r.body.items.map(renderCell));
    $('#items-more').hidden = !items.cursor;
    setItemsStatus(items.byId.size ? `${plural(items.byId.size, 'item')}${items.cursor ? ' so far' : ''}`
      : `No items in ${items.app}/${items.dataset}${items.dir ? ` under ${items.dir}` : ''}.`);
  } catch (e) {
    if (generation === items.generation) setItemsStatus(`Cannot reach the server: ${e.message}`, 'error');
  } finally {
    if (generation === items.generation) $('#items-more').disabled = false;
  }
}

function renderCell(item) {
  const thumb = el('div', { class: 'thumb' }, isImage(item) ? null
    : el('span', { class: 'kind' }, (item.name.split('.').pop() || item.mimetype).slice(0, 5)));
  if (isImage(item)) thumbnails.observe(thumb);
  return el('article', {
    class: 'item-cell', 'data-item': item.id, 'aria-current': String(item.id === items.selected),
    onclick: () => selectItem(item.id),
  },
  el('button', { type: 'button', class: 'item-open', title: `${item.dir}/${item.name}`.replace('//', '/') },
    thumb, el('span', { class: 'item-name' }, item.name)),
  el('div', { class: 'item-info muted' },
    el('span', {}, item.dir), el('span', {}, `${size(item.size)} · ${item.mimetype}`)),
  item.modalities.length > 0 && el('div', { class: 'item-links' }, item.modalities.map(modalityLink)));
}

/** A modality as a link that selects the linked item. */
const modalityLink = (m) => el('button', {
  type: 'button', class: 'link', 'data-ref': m.ref, title: `item ${m.ref}`,
  onclick: (event) => { event.stopPropagation(); selectItem(m.ref); },
}, m.name);

/** Thumbnails load once their cell is near the viewport. */
const thumbnails = new IntersectionObserver((entries) => {
  for (const { target, isIntersecting } of entries) {
    if (!isIntersecting) continue;
    thumbnails.unobserve(target);
    const item = items.byId.get(target.closest('[data-item]')?.dataset.item);
    if (!item) continue;
    limited(() => itemBlob(item)).then(({ url }) => {
      target.replaceChildren(el('img', { src: url, alt: '', decoding: 'async' }));
    }, () => target.replaceChildren(el('span', { class: 'kind error' }, '!')));
  }
}, { rootMargin: '200px' });

// Item bytes as blob URLs (downloads are served as attachments, sandboxed), cached per
// version, at most 4 downloads at a time for the thumbnails.

function itemBlob(item) {
  const key = `${items.app}/${items.dataset}/${item.id}@${item['updated-ms']}`;
  let entry = items.blobs.get(key);
  if (!entry) {
    entry = authFetch(itemPath(item.id, 'download')).then(async (response) => {
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      const blob = await response.blob();
      return { blob, url: URL.createObjectURL(blob) };
    });
    entry.catch(() => items.blobs.delete(key));
    items.blobs.set(key, entry);
  }
  return entry;
}

function forgetBlobs() {
  for (const entry of items.blobs.values()) entry.then(({ url }) => URL.revokeObjectURL(url), () => {});
  items.blobs.clear();
}

const downloads = { active: 0, waiting: [] };
function limited(task) {
  return new Promise((resolve, reject) => {
    downloads.waiting.push(() => task().then(resolve, reject));
    pump();
  });
}
function pump() {
  while (downloads.active < 4 && downloads.waiting.length) {
    downloads.active++;
    downloads.waiting.shift()().finally(() => {
      downloads.active--;
      pump();
    });
  }
}

// The detail: preview, annotations drawn over images, metadata, modalities.

async function selectItem(id) {
  items.selected = id;
  for (const cell of document.querySelectorAll('#items-grid [data-item]')) {
    cell.setAttribute('aria-current', String(cell.dataset.item === id));
  }
  document.querySelector(`#items-grid [data-item="${CSS.escape(id)}"]`)?.scrollIntoView({ block: 'nearest' });
  const detail = $('#item-detail');
  detail.hidden = false;
  $('#items-view').classList.add('with-detail');
  $('#detail-name').textContent = items.byId.get(id)?.name ?? id;
  $('#detail-info').textContent = 'Loading…';
  $('#detail-preview').replaceChildren();
  try {
    const body = (r) => (r.ok ? r.body : Promise.reject(new Error(errorText(r))));
    const [item, annotations] = await Promise.all([
      api(itemPath(id)).then(body), api(itemPath(id, 'annotations')).then(body),
    ]);
    if (items.selected === id) showDetail(item, annotations);
  } catch (e) {
    if (items.selected === id) $('#detail-info').replaceChildren(el('span', { class: 'error' }, e.message));
  }
}

function closeDetail() {
  items.selected = null;
  items.detail = null;
  overlayResize.disconnect();
  $('#item-detail').hidden = true;
  $('#items-view').classList.remove('with-detail');
  for (const cell of document.querySelectorAll('#items-grid [aria-current="true"]')) cell.setAttribute('aria-current', 'false');
}

function showDetail(item, annotations) {
  const time = (ms) => new Date(ms).toLocaleString([], { hour12: false });
  $('#detail-name').textContent = item.name;
  $('#detail-info').textContent = [`${item.dir}/${item.name}`.replace('//', '/'), item.mimetype, size(item.size),
    `id ${item.id}`, `created ${time(item['created-ms'])}`, `updated ${time(item['updated-ms'])}`].join(' · ');
  $('#detail-download').onclick = () => download(item);
  $('#detail-executions').onclick = () => itemExecutions(items.app, items.dataset, item.id);
  showPreview(item, annotations);
  const classes = annotations.filter((a) => a.geometry === 'classification');
  $('#detail-classes').replaceChildren(...classes.map((a) => el('li', {
    class: 'chip', 'data-classification': a.label, title: a.model ? `by ${a.model}` : null,
    style: `--c: ${labelColor(a.label)}`,
  }, caption(a))));
  $('#detail-annotations tbody').replaceChildren(...(annotations.length ? annotations.map((a) => el('tr', {
    onmouseenter: () => highlight(a.id, true), onmouseleave: () => highlight(a.id, false),
  },
  el('td', {}, el('span', { class: 'swatch', style: `--c: ${labelColor(a.label)}` }), a.label),
  el('td', {}, geometryKind(a.geometry)),
  el('td', { class: 'num' }, a.confidence == null ? '' : a.confidence.toFixed(2)),
  el('td', {}, a.model ?? ''))) : [row(['No annotations.'], 'muted')]));
  $('#detail-modalities').replaceChildren(...(item.modalities.length
    ? item.modalities.map((m) => el('li', {}, modalityLink(m), ' → ', el('code', {}, m.ref)))
    : [el('li', { class: 'muted' }, 'None.')]));
  $('#detail-metadata').textContent = JSON.stringify(item.metadata, null, 2);
}

async function showPreview(item, annotations) {
  const preview = $('#detail-preview');
  overlayResize.disconnect();
  items.detail = null;
  const textual = /^text\/|[/+]json$|[/+]xml$/.test(item.mimetype);
  if (!isImage(item) && !textual) return preview.replaceChildren(el('p', { class: 'muted' }, `No preview for ${item.mimetype}.`));
  preview.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  let blob;
  let url;
  try {
    ({ blob, url } = await itemBlob(item));
  } catch (e) {
    if (items.selected === item.id) preview.replaceChildren(el('p', { class: 'error' }, `Cannot download: ${e.message}`));
    return;
  }
  if (items.selected !== item.id) return;
  if (textual) {
    const text = await blob.slice(0, 64 * 1024).text();
    return preview.replaceChildren(el('pre', {}, text, blob.size > 64 * 1024 ? '\n…' : ''));
  }
  const img = el('img', { src: url, alt: item.name });
  const overlay = svg('svg', { id: 'item-overlay', 'aria-label': 'annotations' });
  preview.replaceChildren(el('div', { class: 'stage' }, img, overlay));
  img.addEventListener('error', () => preview.replaceChildren(el('p', { class: 'error' }, `The browser cannot show this ${item.mimetype} image.`)));
  img.addEventListener('load', () => {
    if (items.selected !== item.id) return;
    items.detail = { img, overlay, annotations };
    drawOverlay();
    overlayResize.observe(img);
  });
}

const overlayResize = new ResizeObserver(() => drawOverlay());

/** Draw the detail's annotations over its image, in image pixels (the SVG's viewBox). */
function drawOverlay() {
  if (!items.detail) return;
  const { img, overlay, annotations } = items.detail;
  const [width, height] = [img.naturalWidth, img.naturalHeight];
  const k = width / (img.clientWidth || width); // image pixels per screen pixel
  overlay.setAttribute('viewBox', `0 0 ${width} ${height}`);
  overlay.replaceChildren(...annotations.map((a) => shape(a, k, width)).filter(Boolean));
}

/** One annotation as an SVG group: its mark, a title and a label tag; none for classifications. */
function shape(a, k, width) {
  const g = a.geometry;
  let mark;
  let at; // the label tag's bottom-left corner
  if (g.box) {
    const { left, top, right, bottom } = g.box;
    mark = svg('rect', { class: 'mark', x: left, y: top, width: right - left, height: bottom - top });
    at = [left, top];
  } else if (g.point) {
    mark = svg('circle', { class: 'dot', cx: g.point.x, cy: g.point.y, r: 4 * k });
    at = [g.point.x + 6 * k, g.point.y - 4 * k];
  } else if (Array.isArray(g.polygon) && g.polygon.length) {
    mark = svg('polygon', { class: 'mark', points: g.polygon.map((p) => p.join(',')).join(' ') });
    at = g.polygon.reduce((best, p) => (p[1] < best[1] ? p : best));
  } else {
    return null;
  }
  const text = caption(a);
  const font = 12 * k;
  const tag = [text.length * 0.62 * font + 8 * k, font + 6 * k];
  let [x, y] = [at[0], at[1] - tag[1]];
  if (x + tag[0] > width) x = g.point ? g.point.x - 6 * k - tag[0] : width - tag[0]; // no room on the right
  if (y < 0) y = at[1]; // no room above: inside
  x = Math.max(0, x);
  return svg('g', { class: 'annotation', 'data-annotation': a.label, 'data-id': a.id, style: `--c: ${labelColor(a.label)}` },
    svg('title', {}, `${text}${a.model ? ` by ${a.model}` : ''}`),
    mark,
    svg('rect', { class: 'tag', x, y, width: tag[0], height: tag[1], rx: 2 * k }),
    svg('text', { x: x + 4 * k, y: y + font + 1.5 * k, 'font-size': font }, text));
}

function highlight(id, on) {
  $('#item-overlay')?.querySelector(`[data-id="${CSS.escape(id)}"]`)?.classList.toggle('hot', on);
}

const caption = (a) => (a.confidence == null ? a.label : `${a.label} ${Math.round(a.confidence * 100)}%`);
const geometryKind = (g) => (typeof g === 'string' ? g : Object.keys(g)[0]);

const LABEL_COLORS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#0f9fae', '#d6338a', '#808000'];
function labelColor(label) {
  let hash = 0;
  for (const c of label) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
  return LABEL_COLORS[hash % LABEL_COLORS.length];
}

async function download(item) {
  try {
    const { url } = await itemBlob(item);
    el('a', { href: url, download: item.name }).click();
  } catch (e) {
    $('#detail-info').replaceChildren(el('span', { class: 'error' }, `Cannot download: ${e.message}`));
  }
}

// Uploads: into the selected dataset, under the dir typed in the filter.

async function upload(files) {
  if (!files.length || !items.dataset) return;
  const dir = dirFilter() || '/';
  const failed = [];
  for (const [i, file] of files.entries()) {
    setItemsStatus(`Uploading ${file.name} (${i + 1} of ${files.length}) to ${dir}…`);
    try {
      const r = await api(`${itemsPath()}?${new URLSearchParams({ dir, name: file.name })}`, {
        method: 'POST', headers: { 'content-type': file.type || 'application/octet-stream' }, body: file,
      });
      if (!r.ok) failed.push(`${file.name}: ${errorText(r)}`);
    } catch (e) {
      failed.push(`${file.name}: ${e.message}`);
    }
  }
  await loadItems();
  if (failed.length) setItemsStatus(`Upload failed: ${failed.join('; ')}`, 'error');
}

$('#items-app').addEventListener('change', (e) => chooseApp(e.target.value));
$('#items-dataset').addEventListener('change', (e) => chooseDataset(items.app, e.target.value));
$('#items-filter').addEventListener('submit', (e) => { e.preventDefault(); loadItems(); });
$('#items-more').addEventListener('click', () => loadItems(items.cursor));
$('#items-upload').addEventListener('change', (e) => upload([...e.target.files]).finally(() => { e.target.value = ''; }));
$('#detail-close').addEventListener('click', closeDetail);

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) [value, unit] = [value / 1024, unit + 1];
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

showView();
refresh();
let ticks = 0;
setInterval(() => {
  if (state.needToken || document.hidden || currentView() !== 'dashboard') return;
  loadCalls();
  ticks += 1;
  if (ticks % 5 === 0) loadHistory();
}, 2000);
