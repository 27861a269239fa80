// Dashboard for `host serve`: apps and functions, an invoke form, recent calls.
// Plain DOM, no dependencies; server data only ever goes through textContent and attributes.
'use strict';

const TOKEN_KEY = 'host-token';
const $ = (selector) => document.querySelector(selector);
const state = { apps: [], selected: null, needToken: false };

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

// --- API with the optional bearer token ---------------------------------------------------

/** Fetch `path`; answers `{ status, statusText, ok, body, json, timing }`. A 401 asks for a token. */
async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { accept: 'application/json', ...options.headers };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body = text;
  let json = false;
  try { [body, json] = [text ? JSON.parse(text) : null, true]; } catch { /* not JSON: keep the text */ }
  if (response.status === 401) askToken(token ? 'That token was refused.' : body?.message, !!token);
  return {
    status: response.status, statusText: response.statusText, ok: response.ok, body, json,
    timing: response.headers.get('server-timing'),
  };
}

function askToken(message, refused) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (refused || !state.needToken) $('#auth-message').textContent = message || '';
  state.needToken = true;
  $('#auth').hidden = false;
  $('#token').focus();
}

$('#auth').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('#token').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('#token').value = '';
  $('#auth').hidden = true;
  state.needToken = false;
  refresh();
});

// --- Apps and functions -------------------------------------------------------------------

async function loadApps() {
  const box = $('#apps');
  try {
    const r = await api('/v1/apps');
    if (!r.ok) return box.replaceChildren(el('p', { class: 'error' }, errorText(r)));
    state.apps = r.body;
    box.replaceChildren(...(r.body.length ? r.body.map(renderApp) : [el('p', { class: 'muted' }, 'No apps loaded.')]));
    if (state.selected) showSelected(false);
  } catch (e) {
    box.replaceChildren(el('p', { class: 'error' }, `Cannot reach the server: ${e.message}`));
  }
}

function renderApp(app) {
  const key = (f) => `${app.name}/${f.name}`;
  return el('article', { class: 'app' },
    el('h3', {}, app.name, ' ', el('span', { class: 'muted small' }, plural(app.functions.length, 'function'))),
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

const fnPath = (key) => {
  const f = key.indexOf('/');
  return `/v1/apps/${encodeURIComponent(key.slice(0, f))}/functions/${encodeURIComponent(key.slice(f + 1))}`;
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
  const r = await api(`${fnPath(state.selected)}/${paused ? 'pause' : 'resume'}`, { method: 'POST' });
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
    const r = await api('/v1/calls');
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

function refresh() {
  loadApps();
  loadCalls();
}

refresh();
setInterval(() => { if (!state.needToken && !document.hidden) loadCalls(); }, 2000);
