// Flux console: one page over the public API (same-origin fetch + /api/ws).
// The token lives in this variable only: never in the URL, storage or a cookie.
'use strict';

const $ = (id) => document.getElementById(id);
let token = '';
let authMode = false;
let isAdmin = false;
let canRead = true;

// ---------- small helpers ----------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}
function fmt(n) { return n === undefined || n === null ? '–' : Number(n).toLocaleString('en-US'); }
function fmtBytes(n) { return n >= 1048576 ? (n / 1048576).toFixed(1) + ' MiB' : n >= 1024 ? (n / 1024).toFixed(1) + ' KiB' : n + ' B'; }
function fmtTime(t) { const d = new Date(t); return isNaN(d) ? String(t) : d.toISOString().replace('T', ' ').replace('Z', ''); }
function message(text, info) {
  const m = $('message');
  m.textContent = text || '';
  m.className = info ? 'info' : '';
  m.hidden = !text;
}

async function api(method, path, body) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!res.ok) {
    const why = data && data.error ? data.error : res.statusText;
    const err = new Error(explain(res.status, why));
    err.status = res.status;
    throw err;
  }
  return data;
}
function explain(status, why) {
  if (status === 401) return authMode && token ? 'The server refused this token (401: ' + why + '). Check it and enter it again.' : 'This server runs in auth mode: enter a token above (401: ' + why + ').';
  if (status === 403) return 'This token may not do that (403: ' + why + ').';
  if (status === 429) return 'Rate limited (429): ' + why;
  return why + ' (HTTP ' + status + ')';
}

// ---------- WebSocket: one connection, shared by every view ----------
const ws = { sock: null, subs: new Set(), retry: 0, gen: 0 };
const listeners = { update: [], metrics: [] };

function wsConnect() {
  const gen = ++ws.gen;
  if (ws.sock) ws.sock.close(1000);
  ws.sock = null;
  if (!canRead) { setLive('no token', 'bad'); return; }
  const q = token ? '?token=' + encodeURIComponent(token) : '';
  const sock = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/api/ws' + q);
  ws.sock = sock;
  setLive('connecting', '');
  sock.onopen = () => {
    ws.retry = 0;
    setLive('live', 'ok');
    for (const p of ws.subs) sock.send(JSON.stringify({ type: 'subscribe', entity_id: p }));
  };
  sock.onmessage = (ev) => {
    const raw = ev.data;
    // Updates are matched before parsing: a busy tail must not cost a parse per message.
    if (raw.startsWith('{"type":"metrics_update"')) { const m = JSON.parse(raw); for (const f of listeners.metrics) f(m); return; }
    if (raw.startsWith('{"type":"state_update"') || raw.startsWith('{"type":"entity_deleted"')) { for (const f of listeners.update) f(raw); return; }
    const m = JSON.parse(raw);
    if (m.type === 'error') message('WebSocket: ' + m.error);
  };
  sock.onclose = (ev) => {
    if (gen !== ws.gen) return;
    ws.retry = Math.min(ws.retry + 1, 5);
    let delay = 500 * ws.retry;
    if (ev.code === 1008) {
      // The server closed a subscriber that fell behind (`slow consumer`): the tail asks
      // for more than this page can take. Waiting before subscribing again keeps what
      // the console costs the server small.
      delay = 3000;
      setLive('closed by the server: ' + (ev.reason || 'policy') + ' (too many updates for this page); reconnecting in 3 s', 'bad');
    } else {
      setLive('disconnected, retrying', 'bad');
    }
    setTimeout(() => { if (gen === ws.gen) wsConnect(); }, delay);
  };
}
function setLive(text, cls) { const b = $('live'); b.textContent = text; b.className = 'badge ' + cls; }
function subscribe(p) { ws.subs.add(p); if (ws.sock && ws.sock.readyState === 1) ws.sock.send(JSON.stringify({ type: 'subscribe', entity_id: p })); }
function unsubscribe(p) { ws.subs.delete(p); if (ws.sock && ws.sock.readyState === 1) ws.sock.send(JSON.stringify({ type: 'unsubscribe', entity_id: p })); }

// ---------- overview ----------
const rateSeries = []; // [ms, events/s], last 5 minutes
function onMetrics(m) {
  $('m-rate').textContent = m.events.rate_per_second.toFixed(1);
  $('m-events').textContent = fmt(m.events.total);
  $('m-entities').textContent = fmt(m.entities.total);
  $('m-ws').textContent = fmt(m.websocket.connections);
  $('m-publishers').textContent = fmt(m.publishers.active);
  const now = Date.parse(m.timestamp) || Date.now();
  rateSeries.push([now, m.events.rate_per_second]);
  while (rateSeries.length && rateSeries[0][0] < now - 300000) rateSeries.shift();
  drawChart();
}
function drawChart() {
  const c = $('rate-chart');
  if (c.offsetParent === null) return;
  const w = c.width = c.clientWidth * (window.devicePixelRatio || 1);
  const h = c.height = c.clientHeight * (window.devicePixelRatio || 1);
  const g = c.getContext('2d');
  g.clearRect(0, 0, w, h);
  const pad = 40 * (window.devicePixelRatio || 1);
  const max = Math.max(1, ...rateSeries.map((p) => p[1])) * 1.1;
  const now = rateSeries.length ? rateSeries[rateSeries.length - 1][0] : Date.now();
  // The axis spans what was seen, from 30 s up to the 5 minutes kept.
  const span = Math.min(300000, Math.max(30000, rateSeries.length ? now - rateSeries[0][0] : 0));
  const x = (t) => pad + (w - pad - 8) * (1 - (now - t) / span);
  const y = (v) => h - 18 - (h - 30) * (v / max);
  g.strokeStyle = '#e3e6ec'; g.fillStyle = '#667085'; g.font = (11 * (window.devicePixelRatio || 1)) + 'px system-ui';
  for (const f of [0, 0.5, 1]) { g.beginPath(); g.moveTo(pad, y(max * f / 1.1)); g.lineTo(w, y(max * f / 1.1)); g.stroke(); g.fillText(fmt(Math.round(max * f / 1.1)), 2, y(max * f / 1.1) + 4); }
  g.fillText(span >= 120000 ? '−' + Math.round(span / 60000) + ' min' : '−' + Math.round(span / 1000) + ' s', pad, h - 4); g.fillText('now', w - 30, h - 4);
  if (rateSeries.length < 2) return;
  g.strokeStyle = '#2f6fde'; g.lineWidth = 2 * (window.devicePixelRatio || 1); g.beginPath();
  rateSeries.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
  g.stroke();
}

// Prometheus text → {name: [{labels, value}]}
function parseProm(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const kv of m[3].split(',')) { const i = kv.indexOf('='); labels[kv.slice(0, i)] = kv.slice(i + 2, -1); }
    (out[m[1]] = out[m[1]] || []).push({ labels, value: Number(m[4]) });
  }
  return out;
}
// A quantile from cumulative buckets, interpolated linearly inside its bucket.
function quantile(buckets, q) {
  const finite = buckets.filter((b) => b.labels.le !== '+Inf').map((b) => [Number(b.labels.le), b.value]).sort((a, b) => a[0] - b[0]);
  const inf = buckets.find((b) => b.labels.le === '+Inf');
  const total = inf ? inf.value : 0;
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0, prevN = 0;
  for (const [le, n] of finite) {
    if (n >= rank) return prevLe + (le - prevLe) * ((rank - prevN) / Math.max(1, n - prevN));
    prevLe = le; prevN = n;
  }
  return Infinity;
}
function fmtSeconds(s) { return s === null ? '–' : s === Infinity ? '> ' + 10 + ' s' : s < 0.001 ? (s * 1e6).toFixed(0) + ' µs' : s < 1 ? (s * 1000).toFixed(2) + ' ms' : s.toFixed(2) + ' s'; }

async function pollProm() {
  if (!$('view-overview').hidden) {
    try {
      const headers = token ? { Authorization: 'Bearer ' + token } : {};
      const res = await fetch('/metrics', { headers, cache: 'no-store' });
      if (!res.ok) throw Object.assign(new Error(), { status: res.status });
      const p = parseProm(await res.text());
      $('prom-note').hidden = true;
      renderLatency(p);
      renderShards(p);
    } catch (e) {
      $('prom-note').hidden = false;
      $('prom-note').textContent = e.status === 401 || e.status === 403 ? 'Latency and per-shard figures come from /metrics, which covers every namespace: they need the admin token.' : 'Could not read /metrics.';
    }
  }
  setTimeout(pollProm, 2000);
}
function renderLatency(p) {
  const body = $('latency').tBodies[0];
  body.replaceChildren();
  for (const [name, label] of [['flux_ingest_latency_seconds', 'ingest (request → response queued)'], ['flux_ws_fanout_latency_seconds', 'fan-out (applied → queued to subscribers)']]) {
    const b = p[name + '_bucket'] || [];
    const count = (p[name + '_count'] || [{ value: 0 }])[0].value;
    body.append(el('tr', {}, el('td', {}, label), ...[0.5, 0.9, 0.99].map((q) => el('td', { class: 'num' }, fmtSeconds(quantile(b, q)))), el('td', { class: 'num' }, fmt(count))));
  }
  const one = (n) => (p[n] ? p[n][0].value : undefined);
  $('m-wsq').textContent = fmtBytes(one('flux_ws_queue_bytes') || 0);
  $('m-slow').textContent = fmt(one('flux_ws_slow_consumer_closes_total'));
  $('m-failed').textContent = fmt(one('flux_shards_failed'));
  $('m-stalled').textContent = fmt(one('flux_shards_stalled'));
}
function ago(unixSeconds) {
  if (!unixSeconds) return 'none since start';
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  return s < 120 ? s + ' s ago' : s < 7200 ? Math.round(s / 60) + ' min ago' : Math.round(s / 3600) + ' h ago';
}
const SHARD_COLUMNS = [['flux_shard_events_total', fmt], ['flux_shard_entities', fmt], ['flux_shard_ws_inbox_items', fmt], ['flux_shard_log_bytes', fmtBytes], ['flux_shard_last_snapshot_timestamp_seconds', ago]];
function renderShards(p) {
  const rows = {};
  SHARD_COLUMNS.forEach(([name], col) => {
    for (const s of p[name] || []) (rows[s.labels.shard] = rows[s.labels.shard] || [])[col] = s.value;
  });
  const body = $('shards').tBodies[0];
  body.replaceChildren(...Object.keys(rows).sort((a, b) => a - b).map((k) => el('tr', {}, el('td', {}, k), ...SHARD_COLUMNS.map(([, f], col) => el('td', { class: 'num' }, f(rows[k][col]))))));
}

// ---------- entities ----------
const PAGE = 50;
const listing = { prefix: '', pages: [], more: false };
async function search(after) {
  const ns = $('ns-select').value;
  let prefix = $('search-prefix').value;
  const q = new URLSearchParams({ limit: String(PAGE + 1) });
  if (prefix) q.set('prefix', prefix);
  if (ns) q.set('namespace', ns);
  if (after) q.set('after', after);
  try {
    const list = await api('GET', '/api/state/entities?' + q);
    listing.more = list.length > PAGE;
    const page = list.slice(0, PAGE);
    const body = $('entity-list').tBodies[0];
    body.replaceChildren(...page.map((e) => el('tr', {}, el('td', {}, el('a', { href: '#/entity/' + encodeURIComponent(e.id) }, e.id)), el('td', { class: 'num' }, Object.keys(e.properties).length), el('td', {}, fmtTime(e.lastUpdated)))));
    if (!after) listing.pages = [];
    listing.pages.push(page.length ? page[page.length - 1].id : after);
    $('page-next').disabled = !listing.more;
    $('page-info').textContent = page.length ? 'page ' + listing.pages.length + ', ' + page.length + ' entities' + (listing.more ? '' : ' (last page)') : 'no entities match';
    message('');
  } catch (e) { message(e.message); }
}

// ---------- one entity ----------
const current = { id: null, props: {} };
function openEntity(id) {
  if (current.id && current.id !== id) unsubscribe(current.id);
  current.id = id;
  current.props = {};
  $('entity-id').textContent = id;
  $('entity-state').textContent = 'loading';
  $('entity-state').className = 'badge';
  $('entity-delete').disabled = false;
  subscribe(id);
  const path = '/api/state/entities/' + encodeURIComponent(id);
  api('GET', path).then((e) => {
    if (current.id !== id) return;
    for (const [k, v] of Object.entries(e.properties)) if (!current.props[k]) current.props[k] = { value: JSON.stringify(v), at: e.lastUpdated };
    $('entity-updated').textContent = fmtTime(e.lastUpdated);
    $('entity-state').textContent = 'live';
    $('entity-state').className = 'badge ok';
    renderProps();
  }, (e) => {
    if (current.id !== id) return;
    $('entity-state').textContent = e.status === 404 ? 'not found' : 'error';
    $('entity-state').className = 'badge bad';
    if (e.status !== 404) message(e.message);
    renderProps();
  });
  loadHistory(id);
}
function loadHistory(id) {
  api('GET', '/api/events?entity=' + encodeURIComponent(id) + '&limit=50').then((evs) => {
    if (current.id !== id) return;
    $('entity-history').tBodies[0].replaceChildren(...evs.map((e) => el('tr', {}, el('td', {}, fmtTime(e.timestamp)), el('td', {}, e.stream), el('td', {}, e.source), el('td', {}, JSON.stringify(e.payload.properties)))));
  }, () => {});
}
function renderProps() {
  const body = $('entity-props').tBodies[0];
  body.replaceChildren(...Object.keys(current.props).sort().map((k) => el('tr', {}, el('td', {}, k), el('td', {}, current.props[k].value), el('td', {}, fmtTime(current.props[k].at)))));
}
let historyTimer = null;
function onEntityUpdate(raw) {
  if (!current.id || $('view-entity').hidden || raw.indexOf(JSON.stringify(current.id)) < 0) return;
  const m = JSON.parse(raw);
  if (m.entity_id !== current.id) return;
  if (m.type === 'entity_deleted') {
    current.props = {};
    renderProps();
    $('entity-state').textContent = 'deleted';
    $('entity-state').className = 'badge bad';
    $('entity-updated').textContent = fmtTime(m.timestamp);
    return;
  }
  current.props[m.property] = { value: JSON.stringify(m.value), at: m.timestamp };
  $('entity-updated').textContent = fmtTime(m.timestamp);
  $('entity-state').textContent = 'live';
  $('entity-state').className = 'badge ok';
  renderProps();
  clearTimeout(historyTimer);
  historyTimer = setTimeout(() => loadHistory(current.id), 1000);
}
async function deleteEntity() {
  const id = current.id;
  if (!id || !confirm('Delete entity "' + id + '"? Its state is removed for every reader (a tombstone is logged).')) return;
  try {
    await api('DELETE', '/api/state/entities/' + encodeURIComponent(id));
    if (current.id === id) {
      current.props = {};
      renderProps();
      $('entity-state').textContent = 'deleted';
      $('entity-state').className = 'badge bad';
    }
    message('Deleted ' + id + '.', true);
  } catch (e) { message(e.message); }
}

// ---------- live tail ----------
const TAIL_ROWS = 200, TAIL_PENDING = 1000, TAIL_FRAME_MS = 250, TAIL_PER_FRAME = 50;
const tail = { pattern: null, paused: false, pending: [], received: 0, shown: 0, skipped: 0 };
// Whether an update (raw JSON, `entity_id` right after `type`) is the tail's: the
// connection also carries the open entity's updates.
function tailMatches(raw) {
  const p = tail.pattern;
  if (p === '*') return true;
  const at = raw.indexOf('"entity_id":"') + 13;
  const want = JSON.stringify(p.endsWith('*') ? p.slice(0, -1) : p).slice(1, -1);
  return raw.startsWith(want, at) && (p.endsWith('*') || raw[at + want.length] === '"');
}
function onTailUpdate(raw) {
  if (tail.pattern === null || !tailMatches(raw)) return;
  tail.received++;
  if (tail.paused) { tail.skipped++; return; }
  tail.pending.push(raw);
  if (tail.pending.length > TAIL_PENDING) { tail.pending.shift(); tail.skipped++; }
}
function tailFrame() {
  if (tail.pending.length) {
    const take = tail.pending.splice(Math.max(0, tail.pending.length - TAIL_PER_FRAME));
    tail.skipped += tail.pending.length;
    tail.pending.length = 0;
    const body = $('tail').tBodies[0];
    const rows = [];
    for (let i = take.length - 1; i >= 0; i--) {
      const m = JSON.parse(take[i]);
      rows.push(m.type === 'entity_deleted'
        ? el('tr', {}, el('td', {}, fmtTime(m.timestamp)), el('td', {}, m.entity_id), el('td', { colspan: '2' }, '(deleted)'))
        : el('tr', {}, el('td', {}, fmtTime(m.timestamp)), el('td', {}, m.entity_id), el('td', {}, m.property), el('td', {}, JSON.stringify(m.value))));
    }
    tail.shown += rows.length;
    body.prepend(...rows);
    while (body.rows.length > TAIL_ROWS) body.lastChild.remove();
  }
  $('tail-received').textContent = fmt(tail.received);
  $('tail-shown').textContent = fmt(tail.shown);
  $('tail-skipped').textContent = fmt(tail.skipped);
}
function startTail(p) {
  if (tail.pattern !== null) unsubscribe(tail.pattern);
  tail.pattern = p;
  subscribe(p);
  $('tail-status').textContent = '(subscribed to ' + p + ')';
}
function setPaused(p) {
  tail.paused = p;
  $('tail-pause').textContent = p ? 'Resume' : 'Pause';
  $('tail-status').textContent = p ? '(paused: updates are counted, not shown)' : '(subscribed to ' + tail.pattern + ')';
}

// ---------- admin ----------
async function loadAdmin() {
  $('admin-namespaces').hidden = !(authMode && isAdmin);
  if (authMode && isAdmin) loadNamespaces();
  try {
    const c = await api('GET', '/api/admin/config');
    for (const [k, v] of Object.entries(c)) { const i = $('l-' + k); if (i) i.value = String(v); }
    $('limits-form').hidden = false;
  } catch (e) { $('limits-form').hidden = true; message(e.message); }
}
async function loadNamespaces() {
  try {
    const { namespaces } = await api('GET', '/api/state/namespaces');
    const body = $('ns-list').tBodies[0];
    body.replaceChildren(...namespaces.map((n) => {
      const count = el('td', { class: 'num' }, '…');
      api('GET', '/api/namespaces/' + encodeURIComponent(n.name)).then((d) => { count.textContent = fmt(d.entityCount); }, () => { count.textContent = '?'; });
      return el('tr', {}, el('td', {}, n.name), el('td', {}, fmtTime(n.createdAt)), count,
        el('td', {}, el('button', { type: 'button', class: 'danger', onclick: () => deleteNamespace(n.name) }, 'Delete…')));
    }));
  } catch (e) { message(e.message); }
}
async function deleteNamespace(name) {
  if (!confirm('Delete namespace "' + name + '" and all of its entities? Its token stops working at once.')) return;
  try { await api('DELETE', '/api/namespaces/' + encodeURIComponent(name)); message('Deleted namespace ' + name + '.', true); loadNamespaces(); refreshNamespaces(); } catch (e) { message(e.message); }
}

// ---------- token and mode ----------
async function detectMode() {
  // /api/admin/config is open with auth off and needs the admin token with auth on.
  const res = await fetch('/api/admin/config', { headers: token ? { Authorization: 'Bearer ' + token } : {}, cache: 'no-store' });
  if (!token) authMode = res.status === 401 || res.status === 403;
  isAdmin = res.ok;
  // Reads without a token: auth off, or auth mode with public reads.
  canRead = !!token || (await fetch('/api/state/entities?limit=1', { cache: 'no-store' })).ok;
  $('token-form').hidden = !authMode;
  $('ns-label').hidden = !(authMode && isAdmin);
  document.querySelector('a[data-view=admin]').hidden = authMode && !isAdmin;
}
async function useToken(t) {
  if (t) {
    const res = await fetch('/api/state/namespaces', { headers: { Authorization: 'Bearer ' + t }, cache: 'no-store' });
    if (res.status === 401) {
      // Keep showing nothing the previous token could read.
      token = '';
      clearData();
      await detectMode();
      wsConnect();
      $('who').textContent = '';
      message('The server refused this token (401): it is neither the admin token nor a namespace token. Nothing is shown until a valid token is entered.');
      return;
    }
  }
  token = t;
  clearData();
  await detectMode();
  await refreshNamespaces();
  message('');
  wsConnect();
  route();
}
function clearData() {
  listing.pages = [];
  for (const t of ['entity-list', 'entity-props', 'entity-history', 'tail', 'ns-list', 'latency', 'shards']) $(t).tBodies[0].replaceChildren();
  current.props = {};
  $('ns-token').hidden = true;
}
async function refreshNamespaces() {
  if (!authMode || !token) { $('who').textContent = authMode ? 'no token: public reads only' : ''; return; }
  try {
    const { namespaces } = await api('GET', '/api/state/namespaces');
    $('who').textContent = isAdmin ? 'admin token' : 'namespace ' + namespaces.map((n) => n.name).join(', ');
    const sel = $('ns-select');
    sel.replaceChildren(el('option', { value: '' }, 'all'), ...namespaces.map((n) => el('option', { value: n.name }, n.name)));
  } catch (e) { message(e.message); }
}

// ---------- routing between views ----------
function route() {
  const h = decodeURIComponent(location.hash.slice(2));
  let view = h.split('/')[0] || 'overview';
  if (h.startsWith('entity/')) view = 'entity';
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== 'view-' + view;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view || (view === 'entity' && a.dataset.view === 'entities'));
  if (view !== 'entity' && current.id) { unsubscribe(current.id); current.id = null; }
  if (view === 'entity') openEntity(h.slice('entity/'.length));
  if (view === 'entities' && !listing.pages.length) search();
  if (view === 'admin') loadAdmin();
  if (view === 'overview') drawChart();
}

function init() {
  listeners.metrics.push(onMetrics);
  listeners.update.push(onEntityUpdate, onTailUpdate);
  $('token-form').addEventListener('submit', (e) => { e.preventDefault(); useToken($('token').value.trim()); });
  $('token-clear').addEventListener('click', () => { $('token').value = ''; useToken(''); });
  $('search-form').addEventListener('submit', (e) => { e.preventDefault(); search(); });
  $('page-first').addEventListener('click', () => search());
  $('page-next').addEventListener('click', () => search(listing.pages[listing.pages.length - 1]));
  $('entity-delete').addEventListener('click', deleteEntity);
  $('tail-form').addEventListener('submit', (e) => { e.preventDefault(); startTail($('tail-pattern').value.trim() || '*'); setPaused(false); });
  $('tail-pause').addEventListener('click', () => setPaused(!tail.paused));
  $('tail-clear').addEventListener('click', () => { $('tail').tBodies[0].replaceChildren(); tail.received = tail.shown = tail.skipped = 0; tailFrame(); });
  $('ns-create').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const r = await api('POST', '/api/namespaces', { name: $('ns-name').value.trim() });
      $('ns-token-name').textContent = r.name;
      $('ns-token-value').textContent = r.token;
      $('ns-token').hidden = false;
      $('ns-name').value = '';
      message('');
      loadNamespaces();
      refreshNamespaces();
    } catch (err) { message(err.message); }
  });
  $('limits-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { rate_limit_enabled: $('l-rate_limit_enabled').value === 'true' };
    for (const k of ['rate_limit_per_namespace_per_minute', 'body_size_limit_single_bytes', 'body_size_limit_batch_bytes', 'max_batch_delete']) body[k] = Number($('l-' + k).value);
    try { await api('PUT', '/api/admin/config', body); message('Limits saved on every shard.', true); loadAdmin(); } catch (err) { message(err.message); }
  });
  window.addEventListener('hashchange', route);
  window.addEventListener('resize', drawChart);
  setInterval(tailFrame, TAIL_FRAME_MS);
  pollProm();
  useToken('');
}
init();
