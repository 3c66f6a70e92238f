// The rollouts dashboard: hash routes, JSON from /api, live updates from
// /api/watch (Server-Sent Events), actions as POSTs. Each page is rendered
// from its data as a fresh DOM tree, then morphed into the page, so a live
// update keeps focus, scroll, typed text and open details. Server data only
// ever reaches the DOM as text nodes and attribute values.
'use strict';

const ACTIONS = ['promote', 'promote-full', 'abort', 'retry', 'pause', 'resume', 'restart'];
const ACTION_LABELS = {
  'promote': 'Promote', 'promote-full': 'Promote full', 'abort': 'Abort', 'retry': 'Retry',
  'pause': 'Pause', 'resume': 'Resume', 'restart': 'Restart',
};
const PHASES = ['Progressing', 'Paused', 'Healthy', 'Degraded'];
const MAX_RUNS = 5;
const SVG_NS = 'http://www.w3.org/2000/svg';

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? '';
const TOKEN = meta('rollouts-token');
const NAMESPACE = meta('rollouts-namespace');

// ---- DOM building ----------------------------------------------------------

// build is what the list of 1000 rollouts spends its time in: it walks
// attributes and nested kids in place rather than copying them.
function build(el, attrs, kids) {
  for (const k in attrs) {
    const v = attrs[k];
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  appendKids(el, kids);
  return el;
}
function appendKids(el, kids) {
  for (const kid of kids) {
    if (kid === null || kid === undefined || kid === false) continue;
    if (Array.isArray(kid)) appendKids(el, kid);
    else el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
}
// h builds an HTML element; s an SVG one. Attributes are set with
// setAttribute and children appended as text nodes: nothing is parsed.
const h = (tag, attrs, ...kids) => build(document.createElement(tag), attrs, kids);
const s = (tag, attrs, ...kids) => build(document.createElementNS(SVG_NS, tag), attrs, kids);

// morph makes `from` look like `to`, reusing nodes so focus, scroll and the
// state of form fields survive. Children are matched by data-key (or id)
// when they have one, else by position among the unkeyed ones.
function morph(from, to) {
  if (from.nodeType !== Node.ELEMENT_NODE) {
    if (from.nodeValue !== to.nodeValue) from.nodeValue = to.nodeValue;
    return;
  }
  for (const a of [...from.attributes]) if (!to.hasAttribute(a.name)) from.removeAttribute(a.name);
  for (const a of to.attributes) if (from.getAttribute(a.name) !== a.value) from.setAttribute(a.name, a.value);
  morphChildren(from, to);
}

const keyOf = (n) => (n.nodeType === Node.ELEMENT_NODE && (n.dataset?.key || n.id)) || '';
const sameKind = (a, b) => a.nodeType === b.nodeType && a.nodeName === b.nodeName && keyOf(a) === keyOf(b);

function morphChildren(from, to) {
  const old = [...from.childNodes];
  const keyed = new Map(old.filter(keyOf).map((n) => [keyOf(n), n]));
  const unkeyed = old.filter((n) => !keyOf(n));
  const used = new Set();
  let next = 0;
  let ref = from.firstChild;
  for (const n of [...to.childNodes]) {
    const k = keyOf(n);
    let match = k ? keyed.get(k) : unkeyed[next++];
    if (match && (used.has(match) || !sameKind(match, n))) match = null;
    const node = match ?? n;
    if (match) morph(match, n);
    used.add(node);
    if (node === ref) ref = ref.nextSibling;
    else from.insertBefore(node, ref);
  }
  for (const n of old) if (!used.has(n)) n.remove();
}

// ---- formatting ------------------------------------------------------------

const parseTime = (t) => (t ? Date.parse(t) : NaN);

function duration(ms) {
  const sec = Math.max(0, Math.floor(ms / 1000));
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h`;
  return `${Math.floor(sec / 86400)}d`;
}

// timeLeft is a countdown that changes every second: 45s, 4m 05s, 1h 02m.
function timeLeft(ms) {
  const sec = Math.max(0, Math.ceil(ms / 1000));
  const pad = (n) => String(n).padStart(2, '0');
  if (sec < 60) return `${sec}s`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m ${pad(sec % 60)}s`;
  return `${Math.floor(sec / 3600)}h ${pad(Math.floor(sec / 60) % 60)}m`;
}

// Ages and countdowns carry their instant in data-since / data-until and are
// refreshed by tick() every second; render() writes the same text.
function ageText(el) {
  const t = parseTime(el.dataset.since);
  return Number.isNaN(t) ? '—' : duration(Date.now() - t) + (el.dataset.suffix ?? '');
}
function untilText(el) {
  const left = parseTime(el.dataset.until) - Date.now();
  if (Number.isNaN(left)) return '—';
  return left > 0 ? `${timeLeft(left)} left` : 'ending…';
}
function age(time, suffix = '') {
  const el = h('time', { 'data-since': time, 'data-suffix': suffix || null, datetime: time || null, title: time || null });
  el.textContent = ageText(el);
  return el;
}
function countdown(until) {
  const el = h('span', { class: 'countdown', 'data-until': until, title: `until ${until}` });
  el.textContent = untilText(el);
  return el;
}
function tick() {
  for (const el of document.querySelectorAll('[data-since]')) {
    const t = ageText(el);
    if (el.textContent !== t) el.textContent = t;
  }
  for (const el of document.querySelectorAll('[data-until]')) {
    const t = untilText(el);
    if (el.textContent !== t) el.textContent = t;
  }
}

function num(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(4)));
}
const clock = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

// ---- icons and badges ------------------------------------------------------

const ICONS = {
  Healthy: ['ok', () => s('path', { d: 'M4 8.5l2.5 2.5L12 5.5' })],
  Successful: ['ok', () => s('path', { d: 'M4 8.5l2.5 2.5L12 5.5' })],
  Progressing: ['info', () => s('path', { d: 'M12.5 8A4.5 4.5 0 1 1 8 3.5h2M8.5 1.5l2 2-2 2' })],
  Running: ['info', () => s('path', { d: 'M12.5 8A4.5 4.5 0 1 1 8 3.5h2M8.5 1.5l2 2-2 2' })],
  Paused: ['warn', () => [s('path', { d: 'M6 4.5v7M10 4.5v7' })]],
  Inconclusive: ['warn', () => s('path', { d: 'M6 6a2 2 0 1 1 2.5 2c-.4.2-.5.5-.5 1v.5M8 12v.01' })],
  Degraded: ['bad', () => s('path', { d: 'M8 4v5M8 11.5v.01' })],
  Failed: ['bad', () => s('path', { d: 'M5 5l6 6M11 5l-6 6' })],
  Error: ['bad', () => s('path', { d: 'M8 4v5M8 11.5v.01' })],
};

const tone = (phase) => (ICONS[phase] ?? ['idle'])[0];

// icon is a small status glyph; label is what a screen reader says for it.
// Icons are cloned from the first of each kind: the list has one per row.
const icons = new Map();
function icon(phase, label) {
  const key = `${phase} ${label}`;
  let el = icons.get(key);
  if (!el) {
    const [t, draw] = ICONS[phase] ?? ['idle', () => s('circle', { cx: 8, cy: 8, r: 2.5 })];
    el = s('svg', { class: `icon ${t}`, viewBox: '0 0 16 16', width: 16, height: 16, role: 'img', 'aria-label': label },
      s('circle', { class: 'ring', cx: 8, cy: 8, r: 7 }), draw());
    icons.set(key, el);
  }
  return el.cloneNode(true);
}

function badge(phase) {
  const text = phase || 'Pending';
  return h('span', { class: `badge ${tone(phase)}` }, icon(phase, text), h('span', {}, text));
}

// ---- routing -----------------------------------------------------------------

function parseRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  const params = new URLSearchParams(query);
  if (parts.length === 0) return { view: 'list', q: params.get('q') ?? '', status: params.get('status') ?? '' };
  const views = { rollouts: 'rollout', analysisruns: 'analysisrun', experiments: 'experiment' };
  if (parts.length === 3 && views[parts[0]]) return { view: views[parts[0]], ns: parts[1], name: parts[2] };
  return { view: 'notfound', path: raw };
}

const routeKey = (r) => (r.view === 'list' ? 'list' : `${r.view}:${r.ns}/${r.name}`);
const enc = encodeURIComponent;
const href = (kind, ns, name) => `#/${kind}/${enc(ns)}/${enc(name)}`;

function listHash(q, status) {
  const p = new URLSearchParams();
  if (q) p.set('q', q);
  if (status) p.set('status', status);
  const qs = p.toString();
  return qs ? `#/?${qs}` : '#/';
}

// ---- state -----------------------------------------------------------------

const state = {
  route: parseRoute(),
  data: null, // what the current page was last rendered from
  error: '', // why the current page could not be loaded
  gen: 0, // bumped per load; a late answer for an older load is dropped
  phases: new Map(), // last phase seen per rollout, to announce changes
  busy: '', // the action being posted
  result: null, // {text, error} of the last action on this page
  focusTitle: false, // after a navigation: focus the new page's h1 once it is there
  listMarked: false, // the list's first drawing is marked (render)
};

// ---- API -------------------------------------------------------------------

async function getJSON(url) {
  const res = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
  const body = await readBody(res);
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

async function readBody(res) {
  const text = await res.text();
  try {
    return JSON.parse(text) ?? {};
  } catch {
    return { error: text.trim() };
  }
}

async function fetchPage(route) {
  switch (route.view) {
    case 'list':
      return getJSON('/api/rollouts');
    case 'rollout': {
      const ro = await getJSON(`/api/rollouts/${enc(route.ns)}/${enc(route.name)}`);
      const runs = [...(ro.analysisRuns ?? [])]
        .sort((a, b) => (parseTime(b.created) || 0) - (parseTime(a.created) || 0))
        .slice(0, MAX_RUNS);
      ro.runDetails = await Promise.all(runs.map((r) =>
        getJSON(`/api/analysisruns/${enc(route.ns)}/${enc(r.name)}`).catch((e) => ({ ...r, loadError: e.message }))));
      return ro;
    }
    case 'analysisrun':
      return getJSON(`/api/analysisruns/${enc(route.ns)}/${enc(route.name)}`);
    case 'experiment':
      return getJSON(`/api/experiments/${enc(route.ns)}/${enc(route.name)}`);
    default:
      return null;
  }
}

async function load() {
  const gen = ++state.gen;
  const route = state.route;
  try {
    const data = await fetchPage(route);
    if (gen !== state.gen) return;
    state.data = data;
    state.error = '';
  } catch (e) {
    if (gen !== state.gen) return;
    state.error = e.message;
  }
  render();
}

async function postAction(action) {
  const { ns, name } = state.route;
  const key = routeKey(state.route);
  state.busy = action;
  state.result = { text: `${ACTION_LABELS[action]}…`, error: false };
  render();
  let result;
  try {
    const res = await fetch(`/api/rollouts/${enc(ns)}/${enc(name)}/actions/${enc(action)}`, {
      method: 'POST',
      headers: { 'X-Rollouts-Token': TOKEN },
    });
    const body = await readBody(res);
    result = res.ok
      ? { text: body.message || `${action}: done`, error: false }
      : { text: body.error || `${res.status} ${res.statusText}`, error: true };
  } catch (e) {
    result = { text: `${action}: ${e.message}`, error: true };
  }
  state.busy = '';
  if (routeKey(state.route) !== key) return;
  state.result = result;
  render();
  load();
}

// ---- live updates ----------------------------------------------------------

// refreshSoon reloads the page's data 100 ms after a change, which gathers
// the changes that come meanwhile; changes that come during the reload make
// one more once it is done. A busy cluster sends changes without a pause,
// and a page that waited for a quiet moment, or started its reload again at
// every change, would stay stale for as long as they come.
let refreshing = false;
let changedSince = false;
function refreshSoon() {
  if (refreshing) {
    changedSince = true;
    return;
  }
  refreshing = true;
  setTimeout(async () => {
    await load();
    refreshing = false;
    if (changedSince) {
      changedSince = false;
      refreshSoon();
    }
  }, 100);
}

// relevant says whether a change pushed by the server concerns the page.
function relevant(ch, route, data) {
  const sameNs = ch.namespace === route.ns;
  switch (route.view) {
    case 'list':
      return ch.kind === 'Rollout' || ch.kind === 'ReplicaSet';
    case 'rollout': {
      if (!sameNs) return false;
      if (ch.kind === 'Rollout') return ch.name === route.name;
      if (ch.rollout) return ch.rollout === route.name;
      if (ch.kind === 'AnalysisRun') return (data?.analysisRuns ?? []).some((r) => r.name === ch.name);
      if (ch.kind === 'Experiment') return (data?.experiments ?? []).some((r) => r.name === ch.name);
      return true; // owner unknown: refetch rather than miss it
    }
    case 'analysisrun':
      return sameNs && ch.kind === 'AnalysisRun' && ch.name === route.name;
    case 'experiment':
      return sameNs && (ch.kind === 'Experiment' ? ch.name === route.name : ch.kind !== 'Rollout' && ch.kind !== 'Event');
    default:
      return false;
  }
}

function setLive(open) {
  const el = document.getElementById('live');
  el.textContent = open ? 'live' : 'reconnecting…';
  el.dataset.state = open ? 'on' : 'off';
}

function watch() {
  const es = new EventSource('/api/watch');
  let missed = false; // true after a drop: changes may have been lost meanwhile
  es.onopen = () => {
    setLive(true);
    if (missed) refreshSoon();
  };
  es.onerror = () => {
    setLive(false);
    missed = true;
    // EventSource retries by itself unless the server answered with an
    // error status or a wrong content type; then start over.
    if (es.readyState === EventSource.CLOSED) setTimeout(watch, 2000);
  };
  es.addEventListener('change', (ev) => {
    let ch;
    try {
      ch = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (relevant(ch, state.route, state.data)) refreshSoon();
  });
}

// ---- rendering -------------------------------------------------------------

function render() {
  const main = document.getElementById('main');
  const r = state.route;
  let page;
  if (r.view === 'notfound') page = notFound(r);
  else if (state.data === null && !state.error) page = [h('p', { class: 'loading' }, 'Loading…')];
  else if (state.data === null) page = errorPage(r, state.error);
  else page = { list: listPage, rollout: rolloutPage, analysisrun: runPage, experiment: experimentPage }[r.view](state.data, r);
  if (state.data !== null && state.error) {
    // keep showing the last data, but say it is stale
    page = [h('p', { class: 'alert error', role: 'alert', 'data-key': 'stale' }, `Could not refresh: ${state.error}`), page];
  }
  morphChildren(main, h('main', {}, page));
  // The first list drawn with its rows, which the dashboard benchmark
  // (test/bench/scale) times from the navigation's start: marked once the
  // frame that shows it is painted (the next task after its animation
  // frame), since laying out 1000 rows takes longer than building them.
  if (r.view === 'list' && state.data !== null && !state.listMarked) {
    state.listMarked = true;
    requestAnimationFrame(() => setTimeout(() => performance.mark('rollouts-list-rendered')));
  }
  syncFilters(r);
  const h1 = main.querySelector('h1');
  if (state.focusTitle && h1) {
    state.focusTitle = false;
    h1.focus({ preventScroll: true });
  }
  document.title = r.view === 'list' ? 'Rollouts' : `${r.name ?? 'Not found'} · Rollouts`;
}

function errorPage(r, err) {
  return [
    crumbs(r),
    h('h1', { id: r.view === 'rollout' ? 'rollout-name' : 'page-title', tabindex: -1 }, r.name ?? 'Rollouts'),
    h('p', { class: 'alert error', role: 'alert' }, `Could not load: ${err}`),
  ];
}

function notFound(r) {
  return [
    h('h1', { id: 'page-title', tabindex: -1 }, 'Not found'),
    h('p', {}, `There is no page at “${r.path}”. `, h('a', { href: '#/' }, 'All rollouts')),
  ];
}

function crumbs(r) {
  if (r.view === 'list') return null;
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
    h('ol', {},
      h('li', {}, h('a', { href: '#/' }, 'Rollouts')),
      h('li', {}, r.ns),
      h('li', { 'aria-current': 'page' }, r.name)));
}

function section(id, title, ...body) {
  return h('section', { id, 'aria-labelledby': `${id}-h` }, h('h2', { id: `${id}-h` }, title), ...body);
}

// announce tells screen readers about a rollout's phase change; the first
// sighting is not a change.
function announce(ns, name, phase) {
  const k = `${ns}/${name}`;
  const before = state.phases.get(k);
  state.phases.set(k, phase);
  if (before !== undefined && before !== phase) {
    document.getElementById('announce').textContent = `Rollout ${name} is now ${phase || 'pending'}.`;
  }
}

// ---- list page ---------------------------------------------------------------

function matches(it, q, status) {
  if (status && it.phase !== status) return false;
  if (!q) return true;
  const hay = [it.namespace, it.name, it.strategy, it.phase, it.revision, ...(it.images ?? [])].join(' ').toLowerCase();
  return q.toLowerCase().split(/\s+/).filter(Boolean).every((w) => hay.includes(w));
}

function stepText(step) {
  return step && step.current !== null && step.current !== undefined ? `${step.current}/${step.count}` : '—';
}

// compareText orders as localeCompare does, without making a collator per
// call: the list sorts 1000 rollouts.
const compareText = new Intl.Collator().compare;

function listPage(data, r) {
  const items = [...(data.items ?? [])].sort((a, b) =>
    compareText(a.namespace, b.namespace) || compareText(a.name, b.name));
  for (const it of items) announce(it.namespace, it.name, it.phase);
  const shown = items.filter((it) => matches(it, r.q, r.status));
  const allNs = NAMESPACE === '';
  const cols = ['Name', 'Strategy', 'Status', 'Step', 'Weight', 'Revision', 'Images', 'Age'];
  if (allNs) cols.unshift('Namespace');

  return [
    h('h1', { id: 'page-title', tabindex: -1 }, 'Rollouts'),
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter rollouts', 'data-key': 'filters' },
      h('label', { for: 'filter' }, 'Filter'),
      h('input', { id: 'filter', type: 'search', placeholder: 'name, namespace or image', autocomplete: 'off', spellcheck: 'false' }),
      h('label', { for: 'status-filter' }, 'Status'),
      h('select', { id: 'status-filter' },
        h('option', { value: '' }, 'all'),
        PHASES.map((p) => h('option', { value: p }, p)))),
    h('p', { class: 'count', id: 'count' },
      shown.length === items.length ? `${items.length} rollout${items.length === 1 ? '' : 's'}` : `${shown.length} of ${items.length} rollouts`),
    h('div', { class: 'table-wrap', 'data-key': 'wrap' },
      h('table', { id: 'rollouts', class: allNs ? 'cards all-ns' : 'cards', role: 'table' },
        tableHead(cols),
        h('tbody', { role: 'rowgroup' },
          shown.map((it) => rolloutRow(it, allNs)),
          shown.length === 0 && h('tr', { class: 'empty', 'data-key': 'empty', role: 'row' },
            h('td', { colspan: cols.length, role: 'cell' }, items.length ? 'No rollout matches the filter.' : 'No rollouts.'))))),
  ];
}

function rolloutRow(it, allNs) {
  const id = `${it.namespace}/${it.name}`;
  const flags = [it.aborted && 'aborted', it.specPaused && 'paused by spec'].filter(Boolean);
  const label = [it.phase || 'no status yet', ...flags].join(', ');
  const td = (cls, label, ...kids) => cell('td', cls, label, ...kids);
  return h('tr', { 'data-rollout': id, 'data-key': id, role: 'row' },
    allNs && td('namespace', 'Namespace', it.namespace),
    td('name', 'Name', h('a', { href: href('rollouts', it.namespace, it.name), 'data-key': 'link' }, it.name)),
    td('strategy', 'Strategy', it.strategy),
    td('status', 'Status', h('span', { class: `badge ${tone(it.phase)}`, title: it.message || null },
      icon(it.phase, label), it.phase || '—'),
    // shown by CSS, so the cell's text stays the phase; the icon's label says it too
    flags.length ? h('span', { class: 'flags', 'data-flags': flags.join(', '), 'aria-hidden': 'true' }) : null),
    td('step', 'Step', stepText(it.step)),
    td('weight', 'Weight', it.canaryWeight === null || it.canaryWeight === undefined ? '—' : `${it.canaryWeight}%`),
    td('revision', 'Revision', it.revision || '—'),
    td('images', 'Images', (it.images ?? []).length ? it.images.map((img) => h('code', {}, img)) : '—'),
    td('age', 'Age', age(it.created)));
}

// The filter fields keep what the user typed; they only follow the URL
// when it changed under them (back/forward, a pasted link).
function syncFilters(r) {
  const f = document.getElementById('filter');
  if (f && document.activeElement !== f && f.value !== r.q) f.value = r.q;
  const sel = document.getElementById('status-filter');
  if (sel && sel.value !== r.status) sel.value = PHASES.includes(r.status) ? r.status : '';
}

function onFilter() {
  const q = document.getElementById('filter').value;
  const status = document.getElementById('status-filter').value;
  history.replaceState(null, '', listHash(q, status));
  state.route = parseRoute();
  render();
}

// ---- rollout page ------------------------------------------------------------

function rolloutPage(ro, r) {
  announce(r.ns, r.name, ro.phase);
  const flags = [ro.aborted && 'aborted', ro.specPaused && 'paused by spec'].filter(Boolean);
  return [
    crumbs(r),
    h('div', { class: 'title-row', 'data-key': 'title' },
      h('h1', { id: 'rollout-name', tabindex: -1 }, ro.name),
      h('span', { id: 'phase', class: `badge big ${tone(ro.phase)}` }, icon(ro.phase, 'phase'), ro.phase || 'No status yet'),
      flags.length ? h('span', { class: 'flags' }, flags.join(', ')) : null),
    h('p', { class: 'summary' },
      h('span', {}, ro.strategy === 'blueGreen' ? 'Blue-green' : 'Canary'),
      ro.step?.current ? h('span', {}, `step ${stepText(ro.step)}`) : null,
      ro.revision ? h('span', {}, `revision ${ro.revision}`) : null,
      h('span', {}, 'created ', age(ro.created, ' ago'))),
    ro.message ? h('p', { class: 'message' }, ro.message) : null,
    actionBar(ro),
    section('traffic-section', 'Traffic', trafficBar(ro.traffic)),
    section('steps-section', ro.strategy === 'blueGreen' ? 'Pauses' : 'Steps', stepList(ro), pauseList(ro.pauses)),
    section('revisions', 'Revisions', revisionList(ro.revisions)),
    section('analysis', 'Analysis runs', runsOf(ro)),
    (ro.experiments ?? []).length ? section('experiments', 'Experiments', runLinks('experiments', r.ns, ro.experiments)) : null,
    section('conditions', 'Conditions', conditionTable(ro.conditions)),
    section('events', 'Recent events', eventList(ro.events)),
    section('handled', 'Last handled requests', handledTable(ro.lastHandled)),
  ];
}

function actionBar(ro) {
  const byName = new Map((ro.actions ?? []).map((a) => [a.name, a]));
  const res = state.result;
  return h('section', { class: 'actions', 'aria-label': 'Actions', id: 'actions' },
    h('div', { class: 'buttons' },
      ACTIONS.map((name) => {
        const a = byName.get(name) ?? { allowed: true, reason: '' };
        const why = !a.allowed && a.reason ? `why-${name}` : null;
        return [
          h('button', {
            type: 'button', 'data-action': name, 'data-key': `action-${name}`,
            class: name === 'abort' ? 'danger' : null,
            disabled: !a.allowed || state.busy !== '',
            'aria-busy': state.busy === name ? 'true' : null,
            title: !a.allowed ? a.reason || 'not possible now' : null,
            'aria-describedby': why,
          }, ACTION_LABELS[name]),
          why && h('span', { id: why, class: 'visually-hidden' }, a.reason),
        ];
      })),
    h('div', { id: 'action-result', role: 'status', class: res?.error ? 'error' : null }, res?.text ?? ''));
}

function trafficBar(t) {
  if (!t) return h('p', { class: 'muted' }, 'No traffic weights: the Services switch all at once.');
  const parts = [
    { role: 'stable', ...t.stable },
    { role: 'canary', ...t.canary },
    ...(t.additional ?? []).map((d) => ({ role: 'extra', ...d })),
  ];
  const desc = parts.map((p) => `${p.role} ${p.name}: ${p.weight}%`).join(', ');
  const verified = t.verified === null || t.verified === undefined
    ? ['pending', 'not checked by the routers yet']
    : t.verified ? ['ok', 'verified: the routers report these weights'] : ['bad', 'not verified: a router reports other weights'];
  return h('div', { id: 'traffic', 'data-canary-weight': t.canary.weight, 'data-verified': String(t.verified ?? '') },
    h('div', { class: 'bar', role: 'img', 'aria-label': `Traffic set: ${desc}` },
      parts.filter((p) => p.weight > 0).map((p) => h('span', {
        class: `seg ${p.role}`, style: `flex-grow:${p.weight}`, 'data-key': `${p.role}-${p.name}`,
      }, p.weight >= 8 ? `${p.weight}%` : ''))),
    h('ul', { class: 'legend' },
      parts.map((p) => h('li', { 'data-key': `${p.role}-${p.name}` },
        h('span', { class: `swatch ${p.role}`, 'aria-hidden': 'true' }),
        `${p.role} `, h('code', {}, p.name), `: ${p.weight}%`))),
    h('p', { class: `verified ${verified[0]}` }, icon(verified[0] === 'ok' ? 'Healthy' : verified[0] === 'bad' ? 'Failed' : '', verified[0]),
      ` Set by the controller; ${verified[1]}.`));
}

function stepList(ro) {
  if (ro.strategy === 'blueGreen' || !(ro.steps ?? []).length) return null;
  const timed = (ro.pauses ?? []).find((p) => p.until);
  return h('ol', { id: 'steps' },
    ro.steps.map((st) => h('li', {
      'data-state': st.state, 'data-kind': st.kind, 'data-key': `step-${st.index}`,
      'aria-current': st.state === 'current' ? 'step' : null,
    },
    h('span', { class: 'mark', 'aria-hidden': 'true' }, { done: '✓', current: '▶' }[st.state] ?? '○'),
    h('span', { class: 'text' }, st.text),
    h('span', { class: 'visually-hidden' }, ` (${st.state})`),
    st.state === 'current' && st.kind === 'pause' && timed ? [' · ', countdown(timed.until)] : null)));
}

function pauseList(pauses) {
  if (!(pauses ?? []).length) return h('p', { class: 'muted', id: 'pauses' }, 'Not paused.');
  return h('ul', { id: 'pauses', class: 'pauses' },
    pauses.map((p) => h('li', { 'data-key': `pause-${p.reason}` },
      icon('Paused', 'paused'), ' ', h('strong', {}, p.reason), ' since ', age(p.startTime), ' · ',
      p.until ? countdown(p.until) : 'until promoted')));
}

function revisionList(revs) {
  if (!(revs ?? []).length) return h('p', { class: 'muted' }, 'No ReplicaSets yet.');
  return h('div', { class: 'revisions' },
    revs.map((rv) => h('article', { class: `rev-card ${rv.role}`, 'data-key': `rs-${rv.name}`, 'data-revision': rv.revision },
      h('h3', {}, `Revision ${rv.revision || '?'}`, ' ', h('span', { class: `role ${rv.role}` }, rv.role)),
      h('dl', {},
        h('dt', {}, 'ReplicaSet'), h('dd', {}, h('code', {}, rv.name)),
        h('dt', {}, 'Images'), h('dd', {}, (rv.images ?? []).map((i) => h('code', {}, i))),
        h('dt', {}, 'Pods'), h('dd', {}, `${rv.ready}/${rv.replicas} ready, ${rv.available} available`)),
      (rv.pods ?? []).length ? h('ul', { class: 'pods', 'aria-label': `Pods of revision ${rv.revision}` },
        rv.pods.map((p) => h('li', { 'data-key': p.name, class: p.ready ? 'ready' : 'unready' },
          icon(p.ready ? 'Healthy' : p.phase === 'Failed' ? 'Failed' : '', p.ready ? 'ready' : 'not ready'),
          ' ', h('code', {}, p.name), ` ${p.phase}`))) : null)));
}

function runsOf(ro) {
  const all = ro.analysisRuns ?? [];
  if (!all.length) return h('p', { class: 'muted' }, 'No analysis runs.');
  return [
    all.length > MAX_RUNS ? h('p', { class: 'muted' }, `The newest ${MAX_RUNS} of ${all.length}.`) : null,
    ro.runDetails.map((run) => runBlock(run, ro.namespace)),
  ];
}

function runBlock(run, ns) {
  return h('article', { class: 'run', 'data-key': `run-${run.name}`, 'data-run': run.name },
    h('h3', {}, h('a', { href: href('analysisruns', ns, run.name) }, run.name), ' ', badge(run.phase), ' ',
      h('span', { class: 'muted' }, age(run.created, ' ago'))),
    run.message ? h('p', { class: 'message' }, run.message) : null,
    run.loadError ? h('p', { class: 'alert error' }, `Could not load: ${run.loadError}`) : metricList(run.metrics));
}

function metricList(metrics) {
  if (!(metrics ?? []).length) return h('p', { class: 'muted' }, 'No metrics.');
  return h('div', { class: 'metrics' }, metrics.map(metricFigure));
}

function metricFigure(m) {
  const ms = m.measurements ?? [];
  const last = ms.length ? ms[ms.length - 1] : null;
  return h('figure', { class: 'metric', 'data-metric': m.name, 'data-key': `metric-${m.name}` },
    chart(m),
    h('figcaption', {},
      h('strong', {}, m.name), ' ', badge(m.phase),
      h('span', { class: 'last' }, last ? `last value ${last.value === '' ? '—' : last.value}` : 'no measurements yet'),
      last?.message ? h('span', { class: 'muted' }, ` (${last.message})`) : null,
      m.successCondition ? h('span', { class: 'cond success' }, 'success when ', h('code', {}, m.successCondition)) : null,
      m.failureCondition ? h('span', { class: 'cond failure' }, 'failure when ', h('code', {}, m.failureCondition)) : null),
    m.judge ? judgeBlock(m.judge) : null);
}

function judgeBlock(j) {
  return h('div', { class: 'judge' },
    h('p', {}, 'Judge: ', h('strong', { class: `class-${j.classification}` }, j.classification), ` (score ${num(j.score)})`),
    (j.metrics ?? []).length ? h('ul', {},
      j.metrics.map((jm) => h('li', { 'data-key': jm.name, 'data-classification': jm.classification },
        h('code', {}, jm.name), ': ', h('strong', {}, jm.classification),
        `, interval [${num(jm.ciLower)}, ${num(jm.ciUpper)}], estimate ${num(jm.estimate)}`,
        jm.reason ? h('span', { class: 'muted' }, ` (${jm.reason})`) : null))) : null);
}

// niceRange widens [lo, hi] a little, to round numbers for the axis (not
// below 0 when no value is).
function niceRange(min, max) {
  const pad = max === min ? Math.abs(max) * 0.1 || 1 : (max - min) * 0.05;
  const span = max - min + 2 * pad;
  const mag = 10 ** Math.floor(Math.log10(span));
  const step = mag / (span / mag < 2 ? 5 : span / mag < 5 ? 2 : 1);
  let lo = Math.floor((min - pad) / step) * step;
  if (min >= 0) lo = Math.max(lo, 0);
  return [lo, Math.ceil((max + pad) / step) * step].map((v) => Number(v.toPrecision(6)));
}

// chart draws a metric's numeric measurements over time with its thresholds.
function chart(m) {
  const W = 320, H = 140, L = 44, R = 10, T = 10, B = 22;
  const pts = (m.measurements ?? [])
    .filter((x) => typeof x.number === 'number' && Number.isFinite(x.number))
    .map((x, i) => ({ ...x, t: parseTime(x.finishedAt || x.startedAt), i }));
  const ths = (m.thresholds ?? []).filter((t) => Number.isFinite(t.value));
  const ys = [...pts.map((p) => p.number), ...ths.map((t) => t.value)];
  const [lo, hi] = niceRange(ys.length ? Math.min(...ys) : 0, ys.length ? Math.max(...ys) : 1);
  const timed = pts.length && pts.every((p) => !Number.isNaN(p.t));
  const xs = pts.map((p) => (timed ? p.t : p.i));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const X = (v) => (x1 === x0 ? (L + W - R) / 2 : L + ((v - x0) / (x1 - x0)) * (W - L - R));
  const Y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const r1 = (v) => Math.round(v * 10) / 10;

  const label = [`${m.name}: ${pts.length} numeric measurement${pts.length === 1 ? '' : 's'}`,
    pts.length ? `, last ${num(pts[pts.length - 1].number)}` : '',
    ...ths.map((t) => `, ${t.kind} threshold ${num(t.value)}`)].join('');
  return s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': label },
    s('rect', { class: 'frame', x: L, y: T, width: W - L - R, height: H - T - B }),
    s('text', { class: 'axis', x: L - 4, y: T + 4, 'text-anchor': 'end' }, num(hi)),
    s('text', { class: 'axis', x: L - 4, y: H - B, 'text-anchor': 'end' }, num(lo)),
    timed ? [
      s('text', { class: 'axis', x: L, y: H - 6 }, clock(x0)),
      x1 !== x0 ? s('text', { class: 'axis', x: W - R, y: H - 6, 'text-anchor': 'end' }, clock(x1)) : null,
    ] : null,
    ths.map((t) => [
      s('line', { class: `threshold ${t.kind}`, x1: L, x2: W - R, y1: r1(Y(t.value)), y2: r1(Y(t.value)), 'data-value': t.value },
        s('title', {}, `${t.kind} threshold ${num(t.value)}`)),
      s('text', { class: `tlabel ${t.kind}`, x: W - R - 2, y: r1(Y(t.value)) - 3, 'text-anchor': 'end' }, `${t.kind} ${num(t.value)}`),
    ]),
    pts.length > 1 ? s('polyline', { class: 'trend', points: pts.map((p, k) => `${r1(X(xs[k]))},${r1(Y(p.number))}`).join(' ') }) : null,
    pts.map((p, k) => s('circle', {
      class: `point ${(p.phase || '').toLowerCase()}`, cx: r1(X(xs[k])), cy: r1(Y(p.number)), r: 3.5, 'data-value': p.number,
    }, s('title', {}, `${num(p.number)}${timed ? ` at ${clock(p.t)}` : ''} (${p.phase || 'no phase'})`))),
    pts.length ? null : s('text', { class: 'axis', x: (L + W - R) / 2, y: H / 2, 'text-anchor': 'middle' }, 'no numeric measurements'));
}

function runLinks(kind, ns, runs) {
  return h('ul', { class: 'runs' },
    runs.map((run) => h('li', { 'data-key': run.name },
      h('a', { href: href(kind, ns, run.name) }, run.name), ' ', badge(run.phase),
      run.message ? h('span', { class: 'muted' }, ` ${run.message}`) : null)));
}

// Tables carry their roles (table, rowgroup, row, columnheader, rowheader,
// cell) explicitly: the style sheet lays out the list of rollouts, and every
// table on a narrow screen, as blocks and grids rather than as a table,
// which would otherwise cost them a table's semantics.

// cell is a table cell whose label shows before it when the table turns
// into cards on a narrow screen.
// Cells are cloned from an empty one per column: a list of 1000 rollouts
// has 8000 of them.
const emptyCells = new Map();
function cell(tag, cls, label, ...kids) {
  const key = `${tag} ${cls} ${label}`;
  let empty = emptyCells.get(key);
  if (!empty) {
    const row = tag === 'th';
    empty = h(tag, { class: cls, 'data-label': label, scope: row ? 'row' : null, role: row ? 'rowheader' : 'cell' }, h('span', { class: 'v' }));
    emptyCells.set(key, empty);
  }
  const el = empty.cloneNode(true);
  appendKids(el.firstChild, kids);
  return el;
}

// tableHead is a table's row of column headers.
function tableHead(cols) {
  return h('thead', { role: 'rowgroup' }, h('tr', { role: 'row' }, cols.map((c) => h('th', { scope: 'col', role: 'columnheader' }, c))));
}

// table has a row per [key, header cell, ...cells].
function table(caption, cols, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('table', { class: 'cards', role: 'table' },
    h('caption', { class: 'visually-hidden' }, caption),
    tableHead(cols),
    h('tbody', { role: 'rowgroup' }, rows.map(([key, ...cells]) => h('tr', { 'data-key': key, role: 'row' },
      cells.map((c, i) => cell(i === 0 ? 'th' : 'td', null, cols[i], c))))));
}

function conditionTable(conds) {
  return table('Conditions', ['Type', 'Status', 'Reason', 'Message', 'Since'], (conds ?? []).map((c) => [
    c.type, c.type, h('span', { class: `cond-${c.status}` }, c.status), c.reason, c.message, age(c.lastTransitionTime),
  ]), 'No conditions.');
}

function eventList(events) {
  if (!(events ?? []).length) return h('p', { class: 'muted' }, 'No recent events.');
  return h('ol', { class: 'events' },
    events.map((e) => h('li', { class: e.type === 'Warning' ? 'warning' : 'normal' },
      icon(e.type === 'Warning' ? 'Degraded' : '', e.type), ' ',
      h('strong', {}, e.reason), ' ', h('span', {}, e.message),
      e.count > 1 ? h('span', { class: 'muted' }, ` ×${e.count}`) : null,
      ' ', h('span', { class: 'muted' }, age(e.time, ' ago')))));
}

function handledTable(m) {
  const rows = Object.entries(m ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return table('Last handled requests', ['Request', 'Last token handled'], rows.map(([k, v]) =>
    [k, k, h('code', {}, v)]), 'None yet.');
}

// ---- analysis run and experiment pages -----------------------------------

function runSummary(ns, run) {
  return h('p', { class: 'summary' },
    run.rollout ? h('span', {}, 'rollout ', h('a', { href: href('rollouts', ns, run.rollout) }, run.rollout)) : null,
    h('span', {}, 'created ', age(run.created, ' ago')));
}

function runPage(run, r) {
  return [
    crumbs(r),
    h('div', { class: 'title-row', 'data-key': 'title' },
      h('h1', { id: 'page-title', tabindex: -1 }, h('span', { class: 'kind' }, 'AnalysisRun '), run.name),
      h('span', { id: 'phase', class: `badge big ${tone(run.phase)}` }, icon(run.phase, 'phase'), run.phase || 'Pending')),
    runSummary(r.ns, run),
    run.message ? h('p', { class: 'message' }, run.message) : null,
    section('metrics', 'Metrics', metricList(run.metrics)),
  ];
}

function experimentPage(ex, r) {
  return [
    crumbs(r),
    h('div', { class: 'title-row', 'data-key': 'title' },
      h('h1', { id: 'page-title', tabindex: -1 }, h('span', { class: 'kind' }, 'Experiment '), ex.name),
      h('span', { id: 'phase', class: `badge big ${tone(ex.phase)}` }, icon(ex.phase, 'phase'), ex.phase || 'Pending')),
    runSummary(r.ns, ex),
    ex.message ? h('p', { class: 'message' }, ex.message) : null,
    section('templates', 'Templates', table('Templates', ['Template', 'Status', 'Available', 'Replicas'],
      (ex.templates ?? []).map((t) => [t.name, t.name, badge(t.status), t.available, t.replicas]), 'No templates.')),
    section('analyses', 'Analyses', (ex.analyses ?? []).length
      ? runLinks('analysisruns', r.ns, ex.analyses) : h('p', { class: 'muted' }, 'No analyses.')),
  ];
}

// ---- events ----------------------------------------------------------------

function onRoute() {
  const route = parseRoute();
  const changed = routeKey(route) !== routeKey(state.route);
  state.route = route;
  if (!changed) {
    render(); // only the list's filters moved
    return;
  }
  state.data = null;
  state.error = '';
  state.result = null;
  state.focusTitle = true;
  render();
  window.scrollTo(0, 0);
  load();
}

const dialog = () => document.getElementById('confirm');

function onClick(ev) {
  const skip = ev.target.closest('a.skip');
  if (skip) {
    // the hash is the route: focus the content instead of jumping to #main
    ev.preventDefault();
    document.getElementById('main').focus();
    return;
  }
  const btn = ev.target.closest('button[data-action]');
  if (!btn || btn.disabled) return;
  const action = btn.dataset.action;
  if (action !== 'abort') {
    postAction(action);
    return;
  }
  document.getElementById('confirm-text').textContent =
    `Abort the update of rollout ${state.route.ns}/${state.route.name}? All traffic goes back to the stable version.`;
  dialog().returnValue = '';
  dialog().showModal();
}

function init() {
  document.getElementById('scope').textContent = NAMESPACE ? `namespace ${NAMESPACE}` : 'all namespaces';
  document.addEventListener('click', onClick);
  document.addEventListener('input', (ev) => { if (ev.target.id === 'filter') onFilter(); });
  document.addEventListener('change', (ev) => { if (ev.target.id === 'status-filter') onFilter(); });
  document.addEventListener('submit', (ev) => { if (ev.target.closest('.filters')) ev.preventDefault(); });
  document.getElementById('confirm-no').addEventListener('click', () => dialog().close('no'));
  document.getElementById('confirm-yes').addEventListener('click', () => dialog().close('yes'));
  dialog().addEventListener('close', () => {
    if (dialog().returnValue === 'yes' && state.route.view === 'rollout') postAction('abort');
  });
  window.addEventListener('hashchange', onRoute);
  setInterval(tick, 1000);
  render();
  load();
  watch();
}

init();
