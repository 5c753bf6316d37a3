// Drives Debian's chromium (headless, through playwright-core) against a running Flux
// server and checks the console as a user would see it.
//
//   node console.mjs open <base-url>    # auth off
//   node console.mjs auth <base-url>    # auth on; FLUX_ADMIN holds the admin token
//   node console.mjs hold <base-url> <s> # keep a `*` tail open for s seconds (prints
//                                        # "ready" once subscribed, then its counters)
//
// FLUX_CONSOLE_SCREENSHOTS=<dir> also saves PNGs of the main views there.
// Exits non-zero, naming the failed check, on the first failure.
import { chromium } from 'playwright-core';

const [mode, base] = process.argv.slice(2);
const shots = process.env.FLUX_CONSOLE_SCREENSHOTS;
const admin = process.env.FLUX_ADMIN || '';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const run = Date.now().toString(36);

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}
async function step(name, fn) {
  const t = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - t} ms)`);
}
async function call(method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = 'Bearer ' + token;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
function ev(id, props, source = 'browser-test') {
  return { stream: 'console', source, payload: { entity_id: id, properties: props } };
}
async function post(id, props, token) {
  const r = await call('POST', '/api/events', ev(id, props), token);
  check(r.status === 200, `POST ${id} answered ${r.status} ${JSON.stringify(r.body)}`);
}
async function batch(events, token) {
  const r = await call('POST', '/api/events/batch', { events }, token);
  check(r.status === 200, `batch answered ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
}
const text = (page, sel) => page.locator(sel).textContent();
const rows = (page, sel) => page.locator(sel + ' tbody tr').count();
async function shot(page, name) {
  if (!shots) return;
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${shots}/console-${name}.png` });
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1100, height: 680 } });
const page = await context.newPage();
const problems = [];
page.on('pageerror', (e) => problems.push('page error: ' + e.message));
page.on('console', (m) => { if (m.type() === 'error' && !/status of 40[134]/.test(m.text())) problems.push('console error: ' + m.text()); });
// Nothing may come from anywhere but this server.
const foreign = [];
page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith(base.replace('http', 'ws')) && !r.url().startsWith('data:')) foreign.push(r.url()); });

try {
  if (mode === 'open') await openMode();
  else if (mode === 'auth') await authMode();
  else if (mode === 'hold') await hold(Number(process.argv[4]));
  else throw new Error('mode must be open or auth');
  check(foreign.length === 0, 'requests left the origin: ' + foreign.join(', '));
  check(problems.length === 0, problems.join('\n'));
  console.log('all browser checks passed');
} catch (e) {
  console.error(e.stack || String(e));
  if (shots) await page.screenshot({ path: `${shots}/failure-${mode}.png` }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}

async function openMode() {
  const prefix = `bt-${run}-`;
  const ids = Array.from({ length: 55 }, (_, i) => prefix + String(i).padStart(3, '0'));

  await step('the page loads and its WebSocket goes live', async () => {
    await page.goto(base + '/');
    await page.waitForFunction(() => document.getElementById('live').textContent === 'live', null, { timeout: 5000 });
    check(await page.locator('#token-form').isHidden(), 'auth off: no token field');
  });

  await step('the overview shows the ingest rate after events are posted', async () => {
    await batch(ids.map((id, i) => ev(id, { temperature: 20 + i / 10, unit: 'celsius' }, 'src-' + (i % 3))));
    for (let i = 0; i < 20; i++) await post(ids[i % 5], { seq: i });
    await page.waitForFunction(() => parseFloat(document.getElementById('m-rate').textContent) > 0, null, { timeout: 5000 });
    await page.waitForFunction(() => Number(document.getElementById('m-entities').textContent.replace(/,/g, '')) >= 55, null, { timeout: 5000 });
    // Latency percentiles and per-shard figures come from /metrics.
    await page.waitForFunction(() => document.querySelectorAll('#shards tbody tr').length === 2, null, { timeout: 5000 });
    const shard0 = await page.locator('#shards tbody tr').first().locator('td').allTextContents();
    check(/(MiB|KiB| B)$/.test(shard0[4]) && shard0[5] !== '', 'per-shard log size and snapshot shown: ' + shard0.join(' | '));
    const ingest = await page.locator('#latency tbody tr').first().locator('td').nth(1).textContent();
    check(/(µs|ms|s)$/.test(ingest), 'ingest p50 shown, got ' + ingest);
    const publishers = Number(await text(page, '#m-publishers'));
    check(publishers >= 3, 'active publishers ≥ 3, got ' + publishers);
    // A varying rate for a few seconds draws a line on the chart.
    for (let k = 1; k <= 6; k++) {
      await batch(Array.from({ length: 40 * k }, (_, i) => ev(ids[i % 55], { load: k }, 'src-' + (i % 4))));
      await page.waitForTimeout(500);
    }
    const drawn = await page.evaluate(() => {
      const c = document.getElementById('rate-chart');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let blue = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 200 && d[i] < 100) blue++;
      return blue;
    });
    check(drawn > 50, 'the rate chart draws a line (' + drawn + ' line pixels)');
    await shot(page, 'overview');
  });

  await step('a prefix search finds the posted entities, paged', async () => {
    await page.click('nav a[data-view=entities]');
    await page.fill('#search-prefix', prefix);
    await page.click('#search-form button[type=submit]');
    await page.waitForFunction((p) => { const r = document.querySelectorAll('#entity-list tbody tr'); return r.length === 50 && r[0].textContent.startsWith(p); }, prefix, { timeout: 5000 });
    const first = await page.locator('#entity-list tbody tr td a').allTextContents();
    check(first.every((t, i) => t === ids[i]), 'first page is ids 0–49 in order');
    await shot(page, 'entities');
    await page.click('#page-next');
    await page.waitForFunction(() => document.querySelectorAll('#entity-list tbody tr').length === 5, null, { timeout: 5000 });
    const second = await page.locator('#entity-list tbody tr td a').allTextContents();
    check(second.join() === ids.slice(50).join(), 'second page is ids 50–54, got ' + second.join());
    check(await page.locator('#page-next').isDisabled(), 'no next page after the last');
    await page.fill('#search-prefix', 'no-such-prefix-' + run);
    await page.click('#search-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('page-info').textContent === 'no entities match', null, { timeout: 5000 });
  });

  const target = ids[7];
  await step('an entity page updates within a second of a new event', async () => {
    await page.fill('#search-prefix', prefix);
    await page.click('#search-form button[type=submit]');
    await page.click(`#entity-list a:text-is("${target}")`);
    await page.waitForFunction(() => document.getElementById('entity-state').textContent === 'live', null, { timeout: 5000 });
    check((await text(page, '#entity-id')) === target, 'entity page names ' + target);
    check(!page.url().includes('token'), 'no token in the URL');
    await page.waitForTimeout(300); // the subscription is acknowledged
    const t0 = Date.now();
    await post(target, { temperature: 99.5, status: 'hot' });
    await page.waitForFunction(() => [...document.querySelectorAll('#entity-props tbody tr')].some((r) => r.cells[1].textContent === '99.5'), null, { timeout: 1000 });
    const ms = Date.now() - t0;
    console.log(`     update visible ${ms} ms after the POST was sent`);
    check(ms < 1000, 'within a second');
    await page.waitForFunction(() => document.querySelectorAll('#entity-history tbody tr').length >= 2, null, { timeout: 3000 });
    await shot(page, 'entity');
  });

  await step('delete (confirmed) makes the entity disappear', async () => {
    page.once('dialog', (d) => d.accept());
    await page.click('#entity-delete');
    await page.waitForFunction(() => document.getElementById('entity-state').textContent === 'deleted', null, { timeout: 3000 });
    check((await rows(page, '#entity-props')) === 0, 'no properties left');
    check((await call('GET', '/api/state/entities/' + encodeURIComponent(target))).status === 404, 'the API answers 404');
    await page.click('nav a[data-view=entities]');
    await page.fill('#search-prefix', prefix);
    await page.click('#search-form button[type=submit]');
    // The fresh first page: 50 entities, the deleted one not among them, the 51st in.
    await page.waitForFunction(([t, last]) => {
      const ids = [...document.querySelectorAll('#entity-list tbody tr td a')].map((a) => a.textContent);
      return ids.length === 50 && !ids.includes(t) && ids.includes(last);
    }, [target, ids[50]], { timeout: 5000 });
  });

  await step('a deletion by someone else shows on an open entity page', async () => {
    await page.goto(base + '/#/entity/' + encodeURIComponent(ids[8]));
    await page.waitForFunction(() => document.getElementById('entity-state').textContent === 'live', null, { timeout: 5000 });
    await page.waitForTimeout(300);
    const r = await call('DELETE', '/api/state/entities/' + encodeURIComponent(ids[8]));
    check(r.status === 200, 'DELETE answered ' + r.status);
    await page.waitForFunction(() => document.getElementById('entity-state').textContent === 'deleted', null, { timeout: 1000 });
  });

  await step('the live tail of * stays responsive under a flood, pauses and resumes', async () => {
    await page.click('nav a[data-view=tail]');
    await page.click('#tail-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('tail-status').textContent.includes('subscribed'), null, { timeout: 2000 });
    await page.waitForTimeout(300);
    // ~20,000 updates as fast as this process can post them, in batches of 500 events
    // of 2 properties each.
    const flood = [];
    for (let b = 0; b < 20; b++) {
      flood.push(batch(Array.from({ length: 500 }, (_, i) => ev(`tail-${run}-${i % 100}`, { n: b * 500 + i, x: i }))));
    }
    // The page keeps answering while updates pour in.
    let worst = 0;
    for (let i = 0; i < 10; i++) {
      const t = Date.now();
      await page.evaluate(() => document.getElementById('tail-received').textContent);
      worst = Math.max(worst, Date.now() - t);
      await page.waitForTimeout(100);
    }
    await Promise.all(flood);
    await page.waitForFunction(() => Number(document.getElementById('tail-received').textContent.replace(/,/g, '')) >= 20000, null, { timeout: 10000 });
    console.log(`     slowest page round trip during the flood: ${worst} ms`);
    // Typically 230-450 ms here; one CI run on the 2-core machine saw 1,045 ms (the
    // server, this process's 20 posts and chromium share the two cores). A page that
    // rendered every update as it came would stall for many seconds.
    check(worst < 2000, 'the page answered within 2 s during the flood');
    const shown = Number((await text(page, '#tail-shown')).replace(/,/g, ''));
    const skipped = Number((await text(page, '#tail-skipped')).replace(/,/g, ''));
    console.log(`     received 20,000+, shown ${shown}, skipped ${skipped}`);
    check(skipped > 0 && shown + skipped === 20000, `every update is shown or counted skipped (${shown} + ${skipped})`);
    check((await rows(page, '#tail')) <= 200, 'at most 200 rows in the page');
    await shot(page, 'tail');

    await page.click('#tail-pause');
    check((await text(page, '#tail-pause')) === 'Resume', 'the button offers to resume');
    const before = await text(page, '#tail-shown');
    const firstRow = await page.locator('#tail tbody tr').first().textContent();
    await post(`tail-${run}-paused`, { p: 1 });
    await page.waitForFunction(() => Number(document.getElementById('tail-received').textContent.replace(/,/g, '')) >= 20001, null, { timeout: 3000 });
    await page.waitForTimeout(400);
    check((await text(page, '#tail-shown')) === before, 'nothing is drawn while paused');
    check((await page.locator('#tail tbody tr').first().textContent()) === firstRow, 'rows stand still while paused');
    await page.click('#tail-pause');
    await post(`tail-${run}-resumed`, { r: 1 });
    await page.waitForFunction((id) => document.querySelector('#tail tbody tr')?.cells[1].textContent === id, `tail-${run}-resumed`, { timeout: 2000 });
  });

  await step('a prefix tail shows only its prefix', async () => {
    await page.fill('#tail-pattern', `only-${run}-*`);
    await page.click('#tail-clear');
    await page.click('#tail-form button[type=submit]');
    await page.waitForTimeout(300);
    await post(`other-${run}-1`, { a: 1 });
    await post(`only-${run}-1`, { a: 2 });
    await page.waitForFunction(() => document.querySelectorAll('#tail tbody tr').length >= 1, null, { timeout: 2000 });
    await page.waitForTimeout(400);
    const seen = await page.locator('#tail tbody tr td:nth-child(2)').allTextContents();
    check(seen.length === 1 && seen[0] === `only-${run}-1`, 'only the prefix: ' + seen.join());
  });

  await step('admin view shows and changes the runtime limits', async () => {
    await page.click('nav a[data-view=admin]');
    await page.waitForFunction(() => document.getElementById('l-max_batch_delete').value !== '', null, { timeout: 3000 });
    check(await page.locator('#admin-namespaces').isHidden(), 'no namespaces with auth off');
    await page.fill('#l-max_batch_delete', '1234');
    await page.click('#limits-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('message').textContent.includes('saved'), null, { timeout: 3000 });
    check((await call('GET', '/api/admin/config')).body.max_batch_delete === 1234, 'the server took the new limit');
  });
}

// A console left open on a `*` tail (loadtest/reference/console-ab.sh measures the
// server's throughput with and without one).
async function hold(seconds) {
  await page.goto(base + '/#/tail');
  await page.waitForFunction(() => document.getElementById('live').textContent === 'live', null, { timeout: 10000 });
  await page.click('#tail-form button[type=submit]');
  await page.waitForTimeout(500);
  console.log('ready');
  let reconnects = 0;
  page.on('websocket', () => reconnects++);
  await page.waitForTimeout(seconds * 1000);
  const [received, shown, skipped] = await page.evaluate(() => ['tail-received', 'tail-shown', 'tail-skipped'].map((id) => document.getElementById(id).textContent));
  console.log(`tail: received ${received}, shown ${shown}, skipped ${skipped}, WebSocket reconnects after slow-consumer closes ${reconnects}`);
}

async function authMode() {
  check(admin.length >= 32, 'FLUX_ADMIN holds the admin token');
  const ns = {};
  await step('setup: two namespaces with entities', async () => {
    for (const name of ['alpha', 'beta']) {
      const r = await call('POST', '/api/namespaces', { name }, admin);
      check(r.status === 201, 'namespace created: ' + r.status);
      ns[name] = r.body.token;
      await batch(Array.from({ length: 12 }, (_, i) => ev(`${name}/e-${i}`, { v: i })), r.body.token);
    }
  });

  await step('without a token the page asks for one', async () => {
    await page.goto(base + '/#/entities');
    await page.waitForFunction(() => !document.getElementById('token-form').hidden, null, { timeout: 5000 });
    await page.waitForFunction(() => document.getElementById('message').textContent.includes('enter a token'), null, { timeout: 5000 });
    check((await rows(page, '#entity-list')) === 0, 'nothing listed without a token');
  });

  await step('a bad token gets a clear message', async () => {
    await page.fill('#token', 'flux_' + '0'.repeat(64));
    await page.click('#token-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('message').textContent.includes('refused this token'), null, { timeout: 5000 });
    check((await rows(page, '#entity-list')) === 0, 'nothing listed with a bad token');
    await shot(page, 'bad-token');
  });

  await step('a namespace token sees only its namespace', async () => {
    await page.fill('#token', ns.alpha);
    await page.click('#token-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('who').textContent === 'namespace alpha', null, { timeout: 5000 });
    await page.click('#search-form button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('#entity-list tbody tr').length === 12, null, { timeout: 5000 });
    const ids = await page.locator('#entity-list tbody tr td a').allTextContents();
    check(ids.every((id) => id.startsWith('alpha/')), 'only alpha: ' + ids.join());
    check(await page.locator('nav a[data-view=admin]').isHidden(), 'no admin view for a namespace token');
    // Another namespace's entity is not found, even by its exact id.
    await page.goto(base + '/#/entity/' + encodeURIComponent('beta/e-1'));
    await page.waitForFunction(() => document.getElementById('entity-state').textContent === 'not found', null, { timeout: 5000 });
    // The tail of * is confined to the namespace.
    await page.click('nav a[data-view=tail]');
    await page.click('#tail-clear');
    await page.click('#tail-form button[type=submit]');
    await page.waitForTimeout(400);
    await post('beta/e-1', { secret: 1 }, ns.beta);
    await post('alpha/e-1', { visible: 1 }, ns.alpha);
    await page.waitForFunction(() => document.querySelectorAll('#tail tbody tr').length >= 1, null, { timeout: 2000 });
    await page.waitForTimeout(400);
    const seen = await page.locator('#tail tbody tr td:nth-child(2)').allTextContents();
    check(seen.length === 1 && seen[0] === 'alpha/e-1', 'the tail shows alpha only: ' + seen.join());
    // /metrics covers every namespace: the overview says why it lacks latency.
    await page.click('nav a[data-view=overview]');
    await page.waitForFunction(() => document.getElementById('prom-note').textContent.includes('admin token'), null, { timeout: 5000 });
    const stored = await page.evaluate(() => localStorage.length + sessionStorage.length + document.cookie.length);
    check(stored === 0, 'the token is not stored in the browser');
    check(!page.url().includes(ns.alpha), 'the token is not in the URL');
  });

  await step('the admin token manages namespaces', async () => {
    await page.fill('#token', admin);
    await page.click('#token-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('who').textContent === 'admin token', null, { timeout: 5000 });
    await page.click('nav a[data-view=admin]');
    await page.waitForFunction(() => document.querySelectorAll('#ns-list tbody tr').length === 2, null, { timeout: 5000 });
    await page.fill('#ns-name', 'gamma');
    await page.click('#ns-create button[type=submit]');
    await page.waitForFunction(() => !document.getElementById('ns-token').hidden, null, { timeout: 5000 });
    const shown = await text(page, '#ns-token-value');
    check(/^flux_[0-9a-f]{64}$/.test(shown), 'the new token is shown once');
    await post('gamma/x', { ok: 1 }, shown);
    await page.waitForFunction(() => document.querySelectorAll('#ns-list tbody tr').length === 3, null, { timeout: 5000 });
    await shot(page, 'admin');
    page.once('dialog', (d) => d.accept());
    await page.locator('#ns-list tbody tr', { hasText: 'gamma' }).locator('button').click();
    await page.waitForFunction(() => document.querySelectorAll('#ns-list tbody tr').length === 2, null, { timeout: 5000 });
    check((await call('GET', '/api/state/entities', undefined, shown)).status === 401, 'the deleted namespace token stopped working');
    await page.click('nav a[data-view=overview]');
    await page.waitForFunction(() => document.querySelectorAll('#shards tbody tr').length === 2, null, { timeout: 5000 });
  });
}
