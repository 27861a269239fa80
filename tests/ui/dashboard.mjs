#!/usr/bin/env node
// Drives the dashboard (/ui) and API docs (/docs) of a running `host serve` in headless Chromium:
// calls from the form, recent calls, the last hour's charts of a function, and the views below.
//
//   node tests/ui/dashboard.mjs BASE_URL SCREENSHOT_PATH [TOKEN]
//
// The server must have the `hello` example app loaded (and run with `--token TOKEN` when TOKEN
// is given). Exits 1 with a message naming the failed step; prints a JSON summary on success.
// With ITEMS_APP=app/dataset and ITEMS_ITEM=<id of an item there with a box annotation labelled
// `face`>, it also opens the Items view, that item's detail with its drawn annotations, and saves
// a second screenshot (SCREENSHOT_PATH with `-items` before `.png`); the summary then has `items`,
// the number of grid cells shown. With ITEMS_APP, it then uploads a slow text file to
// `/once` of that dataset (its `once` item trigger runs `probe.probe`, which prints a line and
// sleeps for the `sleep-ms` of the item's metadata), opens that item's executions from its detail,
// follows the running execution's logs live until it ends, cancels another running one, filters
// the executions by function and status, and saves a third screenshot (`-executions`); the summary then has `executions`.
// Chromium: $CHROMIUM, else /usr/bin/chromium (Debian: `apt-get install -y chromium`).

import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { chromium } from 'playwright-core';

const [baseArg, screenshot, token] = process.argv.slice(2);
if (!baseArg || !screenshot) {
  console.error('usage: node tests/ui/dashboard.mjs BASE_URL SCREENSHOT_PATH [TOKEN]');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const FUNCTION = 'hello/hello.greet';
const FUNCTION_PATH = '/v1/apps/hello/functions/hello.greet';
const GREETING = 'Hello, Ada! You are 36.';
const TIMEOUT = 15_000;
const ITEMS_APP = process.env.ITEMS_APP;
const ITEMS_ITEM = process.env.ITEMS_ITEM;
const ROUTE_PAGE = process.env.ROUTE_PAGE; // a route of the server, for the credential check
if (ITEMS_APP && (!ITEMS_ITEM || !/^[^/]+\/[^/]+$/.test(ITEMS_APP))) {
  console.error('ITEMS_APP must be `app/dataset` and ITEMS_ITEM an item id');
  process.exit(2);
}

let step = 'launch Chromium';
const started = Date.now();
const pageErrors = [];

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message);
}

/** Wait until `predicate(arg)` holds in the page; on timeout, fail with `what` and the #result text. */
async function waitUntil(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: TIMEOUT });
  } catch {
    const result = await page.locator('#result').evaluate((r) => `[class="${r.className}"] ${r.textContent}`).catch(() => '?');
    throw new Failure(`timed out waiting for ${what}; #result is ${result.replace(/\s+/g, ' ').trim()}`);
  }
}

/** Put `args` in #args, press #call, wait for a #result with `cls` containing `text`. */
async function call(page, args, cls, text) {
  await page.locator('#args').fill(args);
  await page.locator('#call').click();
  await waitUntil(page, `#result.${cls} containing "${text}"`, ([cls, text]) => {
    const r = document.querySelector('#result');
    return r && !r.hidden && r.classList.contains(cls) && r.textContent.includes(text);
  }, [cls, text]);
  return (await page.locator('#result pre').textContent()).trim();
}

/** Upload a text item to `/once` of `app/dataset` from the page (with its session), with
 * metadata `sleep-ms`: the `once` trigger's run of `probe.probe` then lasts that long. */
async function uploadSlow(page, app, dataset, name, sleepMs) {
  const id = await page.evaluate(async ([app, dataset, name, sleepMs]) => {
    const query = new URLSearchParams({ dir: '/once', name, metadata: JSON.stringify({ 'sleep-ms': sleepMs }) });
    const r = await fetch(`/v1/apps/${app}/datasets/${dataset}/items?${query}`, {
      method: 'POST', headers: { 'content-type': 'text/plain' }, body: name, credentials: 'same-origin',
    });
    return r.ok ? (await r.json()).id : `upload answered ${r.status}: ${await r.text()}`;
  }, [app, dataset, name, sleepMs]);
  check(/^[0-9a-f]+$/.test(id), `${name} was not uploaded: ${id}`);
  return id;
}

/** Press Show until `row` lists something: the trigger queues an item's execution moments after
 * the upload. */
async function showUntilListed(page, row, item) {
  for (let tries = 0; !(await row.count()); tries += 1) {
    check(tries < 50, `no execution of item ${item} listed: ${await page.locator('#exec-line').textContent()}`);
    await page.waitForTimeout(200);
    await page.locator('#exec-show').click();
  }
}

/** If the page asks for a token, give it (required when `expected`). */
async function maybeToken(page, ready, expected) {
  const auth = page.locator('#auth');
  await page.locator(`${ready}, #auth:not([hidden])`).first().waitFor({ timeout: TIMEOUT });
  const asked = await auth.isVisible();
  if (expected) check(asked, 'the server has a token but the page did not show the token box');
  if (!asked) return false;
  check(token, 'the page asks for a token but none was given on the command line');
  await page.locator('#token').fill(token);
  await page.locator('#use-token').click();
  // The form hides on submit and comes back if the server refuses the token.
  await page.locator(`${ready}, #auth:not([hidden])`).first().waitFor({ timeout: TIMEOUT });
  if (await auth.isVisible()) {
    throw new Failure(`the token was refused: ${await page.locator('#auth-message').textContent()}`);
  }
  return true;
}

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
let browser;
try {
  browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
} catch (e) {
  console.error(`dashboard test failed: cannot launch Chromium at ${executablePath}: ${e.message}`);
  process.exit(1);
}
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => pageErrors.push(e.message));

  step = '1. open /ui';
  const response = await page.goto(`${base}/ui`);
  check(response?.ok(), `GET /ui answered ${response?.status()}`);
  const usedToken = await maybeToken(page, '[data-function]', Boolean(token));

  step = '2. function list';
  const fn = page.locator(`[data-function="${FUNCTION}"]`);
  await fn.waitFor();
  const listed = await fn.textContent();
  check(listed.includes('func(who:'), `the ${FUNCTION} entry does not show its signature: ${listed}`);

  step = '3. call hello.greet';
  await fn.click();
  check((await page.locator('#fn-name').textContent()) === FUNCTION, 'the invoke form does not name the function');
  const prefilled = await page.locator('#args').inputValue();
  let skeleton;
  try { skeleton = JSON.parse(prefilled); } catch { throw new Failure(`#args is not JSON: ${prefilled}`); }
  check(skeleton?.who?.name === '' && skeleton?.who?.age === 0, `unexpected #args skeleton: ${prefilled}`);
  const ok = await call(page, '{"who":{"name":"Ada","age":36}}', 'ok', GREETING);

  step = '4. call with a missing field';
  const error = await call(page, '{"who":{"name":"Ada"}}', 'error', 'bad-argument');

  step = '5. recent calls';
  await waitUntil(page, 'a #calls row for hello.greet with outcome ok', () =>
    [...document.querySelectorAll('#calls tbody tr')].some((tr) => {
      const cells = [...tr.cells].map((c) => c.textContent.trim());
      return cells.includes('hello.greet') && cells.includes('ok');
    }));
  const calls = await page.locator('#calls tbody tr').count();

  step = '5b. charts of the last hour';
  await page.locator(`#chart-function option[value="${FUNCTION}"]`).waitFor({ state: 'attached' });
  await page.locator('#chart-function').selectOption(FUNCTION);
  await waitUntil(page, `charts of ${FUNCTION} with a bar of calls and three latency series`, (fn) => {
    const box = document.querySelector(`#charts[data-function="${fn}"]`);
    const bars = [...(box?.querySelectorAll('[data-chart="Calls per second"] g[data-calls]') ?? [])];
    const calls = bars.reduce((n, g) => n + Number(g.dataset.calls), 0);
    const series = box?.querySelectorAll('[data-chart="Latency"] g[data-series] circle').length ?? 0;
    const sized = bars.every((g) => g.querySelector('rect.bar').getBoundingClientRect().height > 0);
    return calls >= 1 && sized && series >= 3;
  }, FUNCTION);
  const charted = await page.locator('#charts [data-chart="Calls per second"] g[data-calls]').evaluateAll(
    (bars) => bars.reduce((n, g) => n + Number(g.dataset.calls), 0));

  step = '5c. pause and resume an app';
  const counter = page.locator('[data-app="counter"]');
  await counter.locator('button[data-action="pause"]').click();
  await waitUntil(page, 'every counter function to show paused', () =>
    [...document.querySelectorAll('[data-app="counter"] button.function')].every((b) => b.querySelector('.badge.paused'))
      && document.querySelector('[data-app="counter"] button[data-action="resume"]'));
  await counter.locator('button[data-action="resume"]').click();
  await waitUntil(page, 'no counter function to show paused', () =>
    ![...document.querySelectorAll('[data-app="counter"] button.function')].some((b) => b.querySelector('.badge.paused'))
      && document.querySelector('[data-app="counter"] button[data-action="pause"]'));
  check(await counter.locator('.app-version').textContent() === 'from its manifest file', 'counter does not say it runs from its file');

  step = '5d. a deployed app\'s versions';
  const kv = page.locator('[data-app="kv"]');
  check((await kv.locator('.app-version').getAttribute('data-version')) === '1', 'the deployed kv app does not show version 1');
  await kv.locator('button[data-action="versions"]').click();
  await kv.locator('.versions tr[data-version="1"][aria-current="true"]').waitFor();
  const deployed = `version ${await kv.locator('.versions tr[aria-current="true"]').getAttribute('data-version')} ${(await kv.locator('.versions tr[aria-current="true"] td').first().textContent())}`;

  step = '5e. queues';
  await page.locator('.top nav a[data-view="queues"]').click();
  await waitUntil(page, 'the messaging queues: direct with 1 ready and 1 leased, short with 2 dead letters', () => {
    const direct = document.querySelector('#queues tr[data-queue="messaging/direct"]');
    const short = document.querySelector('#queues tr[data-queue="messaging/short"]');
    return direct?.dataset.ready === '1' && direct?.dataset.leased === '1' && short?.dataset.dead === '2';
  });
  const queues = {
    direct: Number(await page.locator('#queues tr[data-queue="messaging/direct"]').getAttribute('data-ready')),
    directLeased: Number(await page.locator('#queues tr[data-queue="messaging/direct"]').getAttribute('data-leased')),
    shortDead: Number(await page.locator('#queues tr[data-queue="messaging/short"]').getAttribute('data-dead')),
  };
  await page.locator('#queues tr[data-queue="messaging/short"] button[data-action="dead-letters"]').click();
  const requeue = page.locator('#dead tr[data-message]', { hasText: 'to requeue' });
  await requeue.locator('button[data-action="requeue"]').click();
  await waitUntil(page, 'the requeued dead letter back in short', () => {
    const short = document.querySelector('#queues tr[data-queue="messaging/short"]');
    return short?.dataset.ready === '1' && short?.dataset.dead === '1' && document.querySelectorAll('#dead tr[data-message]').length === 1;
  });
  await mkdir(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot.replace(/(\.png)?$/i, '-queues.png'), fullPage: true });
  await page.locator('#dead tr[data-message]', { hasText: 'to delete' }).locator('button[data-action="delete"]').click();
  await waitUntil(page, 'no dead letter left in short', () => {
    const short = document.querySelector('#queues tr[data-queue="messaging/short"]');
    return short?.dataset.dead === '0' && document.querySelector('#dead-line').textContent === 'None left.';
  });
  // With their function paused, an event on `news` waits in both subscriptions; resumed, it is
  // handled and neither lags.
  const post = (path) => page.evaluate(async ([path]) => (await fetch(path, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"hello":"news"}', credentials: 'same-origin',
  })).status, [path]);
  const lagsBecome = async (expected) => {
    for (let tries = 0; ; tries += 1) {
      await page.locator('#queues-refresh').click();
      await page.waitForTimeout(200);
      const lags = await page.locator('#subscriptions tr[data-subscription]').evaluateAll((rows) =>
        rows.map((r) => `${r.dataset.subscription}=${r.dataset.lag}`).sort().join(' '));
      if (lags === expected) return;
      check(tries < 75, `the news subscriptions' lags are "${lags}", expected "${expected}"`);
    }
  };
  check(await post('/v1/apps/messaging/functions/messaging.on-event-a/pause') === 200, 'pausing messaging failed');
  check(await post('/v1/apps/messaging/topics/news') === 201, 'publishing to news failed');
  await lagsBecome('messaging/news-a=1 messaging/news-b=1');
  check(await post('/v1/apps/messaging/functions/messaging.on-event-a/resume') === 200, 'resuming messaging failed');
  await lagsBecome('messaging/news-a=0 messaging/news-b=0');
  await page.locator('.top nav a[data-view="dashboard"]').click();

  step = '6. screenshot';
  await mkdir(dirname(screenshot), { recursive: true });
  await page.evaluate(() => window.scrollTo(0, 0)); // the invoke panel is sticky
  await page.screenshot({ path: screenshot, fullPage: true });

  let items;
  if (ITEMS_APP) {
    step = '7. items';
    const [app, dataset] = ITEMS_APP.split('/');
    await page.locator('.top nav a[data-view="items"]').click();
    await page.locator('#items-view').waitFor();
    await page.locator(`#items-app option[value="${app}"]`).waitFor({ state: 'attached' });
    await page.locator('#items-app').selectOption(app);
    await page.locator(`#items-dataset option[value="${dataset}"]`).waitFor({ state: 'attached' });
    await page.locator('#items-dataset').selectOption(dataset);
    try {
      await page.locator(`#items-grid[data-dataset="${ITEMS_APP}"]`).waitFor({ state: 'attached' });
    } catch {
      throw new Failure(`the grid did not list ${ITEMS_APP}; #items-status is "${await page.locator('#items-status').textContent()}"`);
    }
    // Page with "More" until the item shows.
    const cell = page.locator(`[data-item="${ITEMS_ITEM}"]`);
    const cells = page.locator('#items-grid [data-item]');
    while (!(await cell.count())) {
      check(await page.locator('#items-more').isVisible(),
        `no grid cell for item ${ITEMS_ITEM} in ${await cells.count()} cells; #items-status is "${await page.locator('#items-status').textContent()}"`);
      const shown = await cells.count();
      await page.locator('#items-more').click();
      await waitUntil(page, 'the next page of items', (n) => document.querySelectorAll('#items-grid [data-item]').length > n, shown);
    }
    await cell.click();
    await page.locator('#item-detail').waitFor();
    try {
      await page.locator('#item-overlay [data-annotation="face"]').waitFor();
    } catch {
      const detail = await page.locator('#detail-info, #detail-preview').allTextContents();
      throw new Failure(`no "face" annotation drawn over item ${ITEMS_ITEM}; detail: ${detail.join(' | ')}`);
    }
    // The box takes its size from the image once the image has loaded.
    await waitUntil(page, 'the "face" box to have a size on screen', () => {
      const box = document.querySelector('#item-overlay [data-annotation="face"] rect.mark')?.getBoundingClientRect();
      return box && box.width > 0 && box.height > 0;
    });
    items = await page.locator('#items-grid [data-item]').count();
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot.replace(/(\.png)?$/i, '-items.png'), fullPage: true });
  }

  let executions;
  if (ITEMS_APP) {
    step = '8. an item\'s execution, followed live';
    const [app, dataset] = ITEMS_APP.split('/');
    const slow = await uploadSlow(page, app, dataset, 'slow.txt', 6000);
    await page.locator('#items-show').click();
    await waitUntil(page, 'the grid to list the slow item or offer more', (id) => {
      const more = document.querySelector('#items-more');
      return document.querySelector(`[data-item="${id}"]`) || (!more.hidden && !more.disabled);
    }, slow);
    const slowCell = page.locator(`[data-item="${slow}"]`);
    while (!(await slowCell.count())) {
      check(await page.locator('#items-more').isVisible(), `no grid cell for the slow item ${slow}`);
      const shown = await page.locator('#items-grid [data-item]').count();
      await page.locator('#items-more').click();
      await waitUntil(page, 'the next page of items', (n) => document.querySelectorAll('#items-grid [data-item]').length > n, shown);
    }
    await slowCell.click();
    await page.locator('#detail-executions').click();
    await page.locator('#executions-view').waitFor();
    check((await page.locator('#exec-item').textContent()).includes(slow), 'the executions view does not name the item');
    // The trigger queues the execution within moments of the upload: show again until it is listed.
    const row = page.locator('#executions tbody tr[data-execution]');
    await showUntilListed(page, row, slow);
    check(await row.count() === 1, `item ${slow} has ${await row.count()} executions listed, expected 1`);
    const firstStatus = await row.getAttribute('data-status');
    await row.click();
    await page.locator('#exec-detail').waitFor();
    check(!['succeeded', 'failed'].includes(firstStatus), `the execution was already ${firstStatus} when opened: nothing to follow`);
    await page.locator('#exec-live').waitFor();
    await waitUntil(page, 'the live logs to show the probe\'s line', (id) =>
      document.querySelector('#exec-logs').textContent.includes(`probe: item ${id} run 1`)
        && !document.querySelector('#exec-live').hidden, slow);
    await page.locator('#exec-badge', { hasText: 'succeeded' }).waitFor({ timeout: 30_000 });
    await waitUntil(page, 'the kept logs with their attempt header, and the output', () =>
      document.querySelector('#exec-logs').textContent.includes('--- attempt 1 ---')
        && document.querySelector('#exec-result').textContent.trim() === '1'
        && document.querySelector('#exec-live').hidden);
    check(await page.locator('#exec-cancel').isHidden(), 'a finished execution still offers Cancel');
    check((await page.locator('#exec-input').textContent()).includes(slow), 'the input does not show the item');

    step = '9. cancel a running execution';
    const doomed = await uploadSlow(page, app, dataset, 'doomed.txt', 8000);
    // As the item detail's Executions button does, from the executions view.
    await page.evaluate((args) => itemExecutions(...args), [app, dataset, doomed]);
    await showUntilListed(page, row, doomed);
    await row.click();
    await page.locator('#exec-cancel').click();
    await page.locator('#exec-badge', { hasText: 'cancelled' }).waitFor();
    await waitUntil(page, 'the list row to say cancelled and Cancel to go', () =>
      document.querySelector('#executions tbody tr[data-execution]')?.dataset.status === 'cancelled'
        && document.querySelector('#exec-cancel').hidden);

    step = '10. filter the executions';
    await page.locator('#exec-item button').click();
    await page.locator('#exec-app').selectOption('hello');
    await page.locator('#exec-function').fill('hello.greet');
    await page.locator('#exec-status').selectOption('succeeded');
    await page.locator('#exec-show').click();
    await waitUntil(page, 'only succeeded hello.greet executions listed', () => {
      const rows = [...document.querySelectorAll('#executions tbody tr[data-execution]')];
      return rows.length > 0 && rows.every((tr) => tr.dataset.status === 'succeeded'
        && tr.cells[2].textContent === 'hello/hello.greet');
    });
    executions = await row.count();
    await page.locator('#exec-trigger').fill('no-such-trigger');
    await page.locator('#exec-show').click();
    await waitUntil(page, 'an empty list for an unknown trigger', () =>
      document.querySelector('#exec-line').textContent === 'No executions match.'
        && !document.querySelector('#executions tbody tr[data-execution]'));
    await page.locator('#exec-trigger').fill('');
    await page.locator('#exec-show').click();
    await row.first().click();
    await page.locator('#exec-badge', { hasText: 'succeeded' }).waitFor();
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot.replace(/(\.png)?$/i, '-executions.png'), fullPage: true });
  }

  step = '11. open /docs';
  const docs = await page.goto(`${base}/docs`);
  check(docs?.ok(), `GET /docs answered ${docs?.status()}`);
  await maybeToken(page, 'code.path', false);
  const path = page.locator('code.path').filter({ hasText: new RegExp(`^${FUNCTION_PATH.replace(/\./g, '\\.')}$`) });
  await path.first().waitFor();
  const operations = await page.locator('details.op').count();
  check(await page.locator('#title').textContent() !== 'API', 'the docs page shows no title');

  check(pageErrors.length === 0, `JavaScript errors in the pages: ${pageErrors.join('; ')}`);

  // A page a guest serves on a route runs in the same origin as the dashboard. With the
  // dashboard logged in, everything its script can reach must be free of the credential.
  let credentialReadable = null;
  if (ROUTE_PAGE) {
    step = '12. a route page looks for the credential';
    const routePage = await context.newPage();
    const answer = await routePage.goto(`${base}${ROUTE_PAGE}`);
    check(answer?.ok(), `GET ${ROUTE_PAGE} answered ${answer?.status()}`);
    const seen = await routePage.evaluate(async () => {
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const found = { cookie: document.cookie, session: JSON.stringify({ ...sessionStorage }), local: JSON.stringify({ ...localStorage }) };
      const frame = document.createElement('iframe');
      frame.src = '/ui';
      document.body.append(frame);
      await sleep(1000);
      try { found.frame = frame.contentDocument?.documentElement?.outerHTML ?? ''; } catch (e) { found.frame = `blocked: ${e.name}`; }
      const opened = window.open('/ui');
      await sleep(1000);
      try { found.opened = opened?.document?.documentElement?.outerHTML ?? ''; } catch (e) { found.opened = `blocked: ${e.name}`; }
      try { found.openedStorage = JSON.stringify({ ...opened.sessionStorage }); } catch (e) { found.openedStorage = `blocked: ${e.name}`; }
      return found;
    });
    const all = JSON.stringify(seen);
    credentialReadable = all.includes(token) || all.includes('host_session');
    check(!credentialReadable, `a route page could read the credential: ${all.slice(0, 500)}`);
    const cookies = await context.cookies(base);
    const session = cookies.find((c) => c.name === 'host_session');
    check(session?.httpOnly && session.sameSite === 'Strict', `the session cookie is not HttpOnly + SameSite=Strict: ${JSON.stringify(cookies)}`);
  }
  console.log(JSON.stringify({
    ok: true, base, token: usedToken, screenshot, result: JSON.parse(ok), error: JSON.parse(error).code,
    calls, charted, deployed, queues, docsOperations: operations, items, executions, credentialReadable, ms: Date.now() - started,
  }));
} catch (e) {
  const detail = e instanceof Error ? e.message : String(e);
  console.error(`dashboard test failed at step "${step}": ${detail}`);
  if (pageErrors.length) console.error(`JavaScript errors in the pages: ${pageErrors.join('; ')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
