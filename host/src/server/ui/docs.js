// API docs for `host serve`: renders /v1/openapi.json grouped by tag. No dependencies;
// document text only ever goes through textContent and attributes. API paths come from `ROUTES`,
// the server's route table, which the server puts after the next line.
'use strict';

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];
const $ = (selector) => document.querySelector(selector);

/** `el('a', { href: '/x', class: 'y' }, 'text', child)`: an element with attributes and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value != null && value !== false) node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return node;
}

/** Text where `backticked` parts become <code>. */
const rich = (text = '') => text.split('`').map((part, i) => (i % 2 ? el('code', {}, part) : part));
const anchor = (kind, name) => `${kind}-${name.replace(/[^A-Za-z0-9_-]+/g, '-')}`;

// The token is traded for an HttpOnly session cookie (POST /ui/session): no script, this one
// included, can read the credential back.
async function load(refused) {
  try {
    const response = await fetch(ROUTES.openapi, { headers: { accept: 'application/json' } });
    if (response.status === 401) {
      const body = await response.json().catch(() => ({}));
      return askToken(refused ? 'That token was refused.' : body.message);
    }
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    render(await response.json());
  } catch (e) {
    $('#description').textContent = `Cannot load the OpenAPI document: ${e.message}`;
    $('#description').className = 'error';
  }
}

function askToken(message) {
  $('#auth').hidden = false;
  $('#auth-message').textContent = message || '';
  $('#description').textContent = 'The OpenAPI document needs a token.';
  $('#token').focus();
}

$('#auth').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('#token').value.trim();
  if (!token) return;
  $('#token').value = '';
  $('#auth').hidden = true;
  fetch(ROUTES.login, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
    .then((r) => load(!r.ok), () => load(true));
});

function render(doc) {
  const info = doc.info || {};
  $('#title').textContent = info.title || 'API';
  $('#version').textContent = `v${info.version ?? '?'} · OpenAPI ${doc.openapi ?? ''}`;
  $('#version').hidden = false;
  $('#description').replaceChildren(...rich(info.description));
  document.title = `${info.title || 'API'} · API docs`;

  // Operations by tag: "host" first, then the apps by name.
  const tags = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS.filter((m) => item[m])) {
      const op = item[method];
      const tag = op.tags?.[0] ?? 'other';
      if (!tags.has(tag)) tags.set(tag, []);
      tags.get(tag).push({ path, method, op, parameters: [...(item.parameters || []), ...(op.parameters || [])] });
    }
  }
  const order = [...tags.keys()].sort((a, b) => (a === 'host' ? -1 : b === 'host' ? 1 : a.localeCompare(b)));
  // Badges only when the server has a token: which operations need it.
  const access = (op) => doc.security && ((op.security ?? doc.security).length > 0 ? 'token' : 'public');

  $('#toc').replaceChildren(...order.map((tag) =>
    el('a', { href: `#${anchor('tag', tag)}` }, tag, ' ', el('span', { class: 'muted' }, String(tags.get(tag).length)))));
  $('#operations').replaceChildren(...order.map((tag) => el('section', { class: 'tag', id: anchor('tag', tag) },
    el('h3', {}, tag), tags.get(tag).map((o) => operation(o, access(o.op))))));

  const schemas = Object.entries(doc.components?.schemas || {});
  $('#schemas').hidden = schemas.length === 0;
  $('#schema-list').replaceChildren(...schemas.map(([name, schema]) =>
    el('details', { class: 'schema', id: anchor('schema', name) }, el('summary', {}, el('code', {}, name)), json(schema))));
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

function operation({ path, method, op, parameters }, access) {
  const body = op.requestBody;
  return el('details', { class: 'op', id: anchor('op', op.operationId || `${method}-${path}`) },
    el('summary', {},
      el('span', { class: `method ${method}` }, method),
      el('code', { class: 'path' }, path),
      el('span', { class: 'summary' }, rich(op.summary)),
      access && el('span', { class: 'badge', title: access === 'token' ? 'needs the bearer token' : 'no token needed' },
        access)),
    el('div', { class: 'op-body' },
      op.description && el('p', {}, rich(op.description)),
      parameters.length > 0 && [el('h4', {}, 'Parameters'), el('table', {},
        el('thead', {}, el('tr', {}, ['name', 'in', 'required', 'schema'].map((h) => el('th', {}, h)))),
        el('tbody', {}, parameters.map((p) => el('tr', {},
          el('td', {}, el('code', {}, p.name)), el('td', {}, p.in), el('td', {}, p.required ? 'yes' : 'no'),
          el('td', {}, el('code', {}, JSON.stringify(p.schema ?? {})))))))],
      body && [el('h4', {}, `Request body${body.required ? '' : ' (optional)'}`),
        body.description && el('p', {}, rich(body.description)),
        content(body.content, true)],
      el('h4', {}, 'Responses'),
      Object.entries(op.responses || {}).map(([status, r]) => el('div', { class: 'response' },
        el('div', {},
          el('span', { class: `status-code s${status[0]}` }, status),
          el('span', {}, rich(r.description))),
        content(r.content, false)))));
}

/** One collapsible schema per media type (open for request bodies). */
function content(media = {}, open) {
  return Object.entries(media).map(([type, { schema }]) => {
    const ref = schema?.$ref && Object.keys(schema).length === 1 ? schema.$ref.split('/').pop() : null;
    if (ref) {
      return el('div', { class: 'schema muted small' }, type, ' → ', el('a', { href: `#${anchor('schema', ref)}` }, ref));
    }
    return el('details', { class: 'schema', open },
      el('summary', {}, `${type} schema`), json(schema ?? {}));
  });
}

const json = (value) => el('pre', {}, JSON.stringify(value, null, 2));

// Following a link to a schema opens it.
window.addEventListener('hashchange', () => {
  const target = document.getElementById(location.hash.slice(1));
  if (target?.tagName === 'DETAILS') target.open = true;
});

load();
