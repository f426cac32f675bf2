#include "scheduler/server/status_assets.h"

namespace farm::scheduler::server {

namespace {

// Untrusted strings (build names, tags, tenants, log lines, errors) only ever go through
// text() / textContent; links are built from encodeURIComponent'd ids under a fixed prefix.
constexpr char kScript[] = R"JS('use strict';
(function () {
  const TOKEN_KEY = 'farm.status.token';
  const POLL_MS = 2000;
  const MAX_LOG_LINES = 20000;

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function buildLink(id) {
    return el('a', {href: '/builds/' + encodeURIComponent(id), class: 'mono'}, id);
  }

  class AuthError extends Error {}

  async function api(path) {
    const headers = {};
    if (token()) headers['Authorization'] = 'Bearer ' + token();
    const r = await fetch(path, {headers: headers, cache: 'no-store'});
    let body;
    try { body = await r.json(); } catch (e) { body = {error: r.status + ' ' + r.statusText}; }
    if (r.status === 401) { showLogin(body.error); throw new AuthError(body.error); }
    if (!r.ok) throw new Error(body.error || (r.status + ' ' + r.statusText));
    return body;
  }

  function showLogin(message) {
    document.getElementById('content').hidden = true;
    document.getElementById('login').hidden = false;
    document.getElementById('login-error').textContent = token() ? (message || '') : '';
  }
  function showError(e) {
    const p = document.getElementById('error');
    if (!e) { p.hidden = true; return; }
    p.hidden = false;
    p.textContent = String(e.message || e);
  }
  function showViewer(v) {
    const who = clear(document.getElementById('who'));
    if (!v || !v.auth) { who.textContent = 'open (no authentication)'; return; }
    who.appendChild(document.createTextNode(
        (v.subject || 'token') + (v.all_tenants ? ' (admin)' : ' (tenant ' + v.tenant + ')') + ' '));
    who.appendChild(el('button', {type: 'button', onclick: () => {
      sessionStorage.removeItem(TOKEN_KEY); location.reload();
    }}, 'Sign out'));
  }
  function stamp() {
    document.getElementById('updated').textContent =
        'updated ' + new Date().toLocaleTimeString();
  }

  // ----- formatting
  function dur(micros) {
    if (!micros || micros < 0) return '';
    const s = micros / 1e6;
    if (s < 1) return Math.round(micros / 1000) + ' ms';
    if (s < 60) return s.toFixed(1) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + Math.round(s % 60) + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }
  function ago(micros, now) {
    if (!micros) return '';
    const d = dur(now - micros);
    return d ? d + ' ago' : 'just now';
  }
  function pct(x) { return (100 * x).toFixed(1) + '%'; }
  function waitSeconds(s) { return s > 0 ? dur(s * 1e6) : ''; }
  function card(label, value, cls) {
    return el('div', {class: 'card' + (cls ? ' ' + cls : '')},
              el('div', {class: 'value'}, value), el('div', {class: 'label'}, label));
  }
  function stateBadge(state) { return el('span', {class: 'state state-' + state}, state); }
  function buildDuration(b, now) {
    if (!b.started_unix_micros) return '';
    return dur((b.finished_unix_micros || now) - b.started_unix_micros);
  }
  function fillRows(table, rows, empty, columns) {
    const body = clear(table.tBodies[0]);
    if (rows.length === 0) {
      body.appendChild(el('tr', {}, el('td', {colspan: columns, class: 'muted'}, empty)));
    }
    for (const r of rows) body.appendChild(r);
  }

  // ----- overview: builds, tenants, queue, cache
  function filters() {
    const q = new URLSearchParams(location.search);
    return {tenant: q.get('tenant') || '', state: q.get('state') || ''};
  }
  async function overview() {
    const f = filters();
    const q = new URLSearchParams();
    if (f.tenant) q.set('tenant', f.tenant);
    if (f.state) q.set('state', f.state);
    const d = await api('/api/overview?' + q.toString());
    showViewer(d.viewer);
    const now = d.now_unix_micros;
    const disp = d.dispatch || {};
    const summary = clear(document.getElementById('summary'));
    summary.append(
        card('builds running', d.counts.running), card('builds queued', d.counts.queued),
        card('steps running', disp.running === undefined ? '-' : disp.running),
        card('steps queued', disp.queued === undefined ? '-' : disp.queued),
        card('slots busy', disp.slots_total === undefined ? '-' :
             disp.slots_busy + ' / ' + disp.slots_total),
        card('workers', disp.workers_connected === undefined ? '-' : disp.workers_connected),
        card('cache hit rate', d.cache.steps ? pct(d.cache.hit_rate) : '-'),
        card('cached steps', d.cache.cached + ' / ' + d.cache.steps));
    fillRows(document.getElementById('builds'), d.builds.map(b => el('tr', {},
        el('td', {}, buildLink(b.id)), el('td', {}, stateBadge(b.state)), el('td', {}, b.tenant === '' ? '(none)' : b.tenant),
        el('td', {class: 'wrap'}, b.dockerfile), el('td', {}, b.tags.join(', ')),
        el('td', {}, b.steps_done + ' / ' + b.steps_total), el('td', {}, b.steps_cached),
        el('td', {title: new Date(b.submitted_unix_micros / 1000).toISOString()},
           ago(b.submitted_unix_micros, now)),
        el('td', {}, buildDuration(b, now)))), 'No builds.', 9);
    fillRows(document.getElementById('tenants'), d.tenants.map(t => el('tr', {},
        el('td', {}, t.tenant === '' ? '(none)' : t.tenant), el('td', {}, t.weight),
        el('td', {}, t.share === null ? '' : pct(t.share)), el('td', {}, t.queued_builds),
        el('td', {}, t.running_builds), el('td', {}, d.queues_known ? t.queued_tasks : '-'),
        el('td', {}, waitSeconds(t.oldest_wait_seconds)),
        el('td', {}, t.steps ? pct(t.hit_rate) + ' (' + t.cached + ' / ' + t.steps + ')' : '-'))),
        'No tenants with builds.', 8);
    fillRows(document.getElementById('queues'), d.queues.map(q => el('tr', {},
        el('td', {}, q.platform), el('td', {}, q.tenant === '' ? '(none)' : q.tenant),
        el('td', {}, q.queued), el('td', {}, waitSeconds(q.oldest_wait_seconds)))),
        d.queues_known ? 'No steps waiting.' :
            'Totals only: ' + (disp.queued || 0) + ' steps waiting.', 4);
  }
  function setupFilters() {
    const f = filters();
    document.getElementById('f-tenant').value = f.tenant;
    document.getElementById('f-state').value = f.state;
    document.getElementById('filters').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      const t = document.getElementById('f-tenant').value.trim();
      const s = document.getElementById('f-state').value;
      if (t) q.set('tenant', t);
      if (s) q.set('state', s);
      history.replaceState(null, '', q.toString() ? '?' + q.toString() : location.pathname);
      overview().catch(onError);
    });
  }

  // ----- workers
  async function workers() {
    const d = await api('/api/workers');
    showViewer(d.viewer);
    const now = d.now_unix_micros;
    const disp = d.dispatch || {};
    const summary = clear(document.getElementById('summary'));
    summary.append(
        card('workers connected', disp.workers_connected === undefined ? '-' :
             disp.workers_connected),
        card('slots busy', disp.slots_total === undefined ? '-' :
             disp.slots_busy + ' / ' + disp.slots_total),
        card('steps queued', disp.queued === undefined ? '-' : disp.queued),
        card('steps dispatched', disp.dispatched === undefined ? '-' : disp.dispatched),
        card('deduplicated', disp.deduplicated === undefined ? '-' : disp.deduplicated),
        card('requeued', disp.requeued === undefined ? '-' : disp.requeued));
    fillRows(document.getElementById('workers'), d.workers.map(w => {
      const state = !w.connected ? 'disconnected' : (w.draining ? 'draining' : 'connected');
      return el('tr', {},
          el('td', {class: 'mono'}, w.id), el('td', {}, stateBadge(state)),
          el('td', {}, w.platform + ((w.emulated_platforms || []).length === 0 ? '' :
              ' (+' + w.emulated_platforms.join(', +') + ' emulated)')),
          el('td', {}, w.slots), el('td', {}, w.busy),
          el('td', {}, w.layers), el('td', {}, w.tasks_done),
          el('td', {}, ago(w.last_heartbeat_unix_micros, now)), el('td', {}, w.address),
          el('td', {}, Object.entries(w.labels).map(([k, v]) => k + '=' + v).join(', ')));
    }), 'No workers.', 10);
  }

  // ----- one build
  const logState = {next: 0, lines: 0, done: false};
  function buildId() { return document.body.dataset.buildId; }
  function buildPath(suffix) { return '/api/builds/' + encodeURIComponent(buildId()) + suffix; }

  async function whyMiss(vertex) {
    const box = document.getElementById('why-miss');
    const text = document.getElementById('why-miss-text');
    box.hidden = false;
    text.textContent = 'asking...';
    try {
      const d = await api(buildPath('/why-miss?vertex=' + vertex));
      text.textContent = d.text;
    } catch (e) {
      text.textContent = String(e.message || e);
    }
  }

  async function build() {
    const d = await api(buildPath(''));
    showViewer(d.viewer);
    const b = d.build;
    const now = d.now_unix_micros;
    const info = clear(document.getElementById('build-info'));
    info.append(
        card('state', stateBadge(b.state)), card('tenant', b.tenant || '(none)'),
        card('Dockerfile', b.dockerfile), card('tags', b.tags.join(', ') || '-'),
        card('steps', b.steps_done + ' / ' + b.steps_total),
        card('cached', b.steps_cached), card('submitted', ago(b.submitted_unix_micros, now)),
        card('duration', buildDuration(b, now) || '-'), card('client', b.client || '-'));
    if (b.outcome && b.outcome.image_id) info.append(card('image', b.outcome.image_id, 'wide'));
    if (b.outcome && b.outcome.error) info.append(card('error', b.outcome.error, 'wide bad'));
    fillRows(document.getElementById('steps'), d.steps.map(s => el('tr', {},
        el('td', {class: 'nowrap'}, '#' + s.vertex), el('td', {class: 'mono wrap'}, s.name),
        el('td', {}, stateBadge(s.cached ? 'cached' : (s.state === 'done' ? 'run' : s.state)),
           s.error ? el('div', {class: 'error'}, s.error) : null),
        el('td', {class: 'mono'}, s.cached ? '' : s.worker),
        el('td', {}, s.state === 'running' && s.started_unix_micros ?
           dur(now - s.started_unix_micros) + '…' : dur(s.duration_micros)),
        el('td', {}, s.log_lines || ''),
        el('td', {}, s.missed && s.state !== 'running' ?
           el('button', {type: 'button', class: 'why', onclick: () => whyMiss(s.vertex)},
              'why-miss') : null))), 'No steps yet.', 7);
    return d.active;
  }

  async function buildLog() {
    const pre = document.getElementById('log');
    for (;;) {
      const d = await api(buildPath('/log?after=' + logState.next));
      for (const l of d.lines) {
        if (logState.lines >= MAX_LOG_LINES) break;
        pre.appendChild(el('span', {class: l.stderr ? 'stderr' : ''},
                           (l.vertex ? '#' + l.vertex + ' ' : '') + l.text + '\n'));
        logState.lines++;
      }
      logState.next = d.next;
      logState.done = d.done;
      if (d.lines.length === 0 || logState.lines >= MAX_LOG_LINES) break;
    }
  }

  function onError(e) {
    if (e instanceof AuthError) return;
    showError(e);
  }

  async function refresh(page) {
    try {
      let again = true;
      if (page === 'overview') await overview();
      else if (page === 'workers') await workers();
      else if (page === 'build') {
        const active = await build();
        await buildLog();
        again = active || !logState.done;
      } else {
        return;
      }
      showError(null);
      stamp();
      if (again) setTimeout(() => refresh(page), POLL_MS);
    } catch (e) {
      onError(e);
      if (!(e instanceof AuthError)) setTimeout(() => refresh(page), POLL_MS * 2);
    }
  }

  function start() {
    const page = document.body.dataset.page;
    document.getElementById('login').addEventListener('submit', (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, document.getElementById('token').value.trim());
      location.reload();
    });
    if (page === 'overview') setupFilters();
    refresh(page);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
)JS";

constexpr char kStyle[] =
    R"CSS(:root { --fg: #1d2430; --muted: #6b7585; --line: #dde2ea; --bg: #f6f8fb;
  --ok: #1a7f37; --bad: #c62828; --run: #0b63c5; --warn: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1.2em;
  background: #1d2430; color: #fff; }
header a { color: #fff; text-decoration: none; }
header nav a { margin-right: 1em; opacity: .85; }
header nav a:hover { opacity: 1; text-decoration: underline; }
header .brand { font-weight: 700; letter-spacing: .05em; }
header #who { margin-left: auto; }
header .muted { color: #aab3c2; }
main, #login, #error { padding: .5em 1.2em; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid var(--line);
  vertical-align: top; }
td.wrap { overflow-wrap: anywhere; }
th { background: #eef1f6; font-weight: 600; font-size: .92em; white-space: nowrap; }
.cards { display: flex; flex-wrap: wrap; gap: .6em; margin-top: 1em; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .5em .8em;
  min-width: 8em; }
.card.wide { flex-basis: 100%; }
.card .value { font-size: 1.15em; font-weight: 600; overflow-wrap: anywhere; }
.card .label { color: var(--muted); font-size: .85em; }
.card.bad .value { color: var(--bad); font-size: 1em; }
.muted { color: var(--muted); }
.nowrap { white-space: nowrap; }
.mono, code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .92em; }
.error { color: var(--bad); white-space: pre-wrap; }
.state { display: inline-block; white-space: nowrap; padding: 0 .5em; border-radius: 9px; font-size: .85em;
  background: #e8ebf0; }
.state-succeeded, .state-connected, .state-run, .state-done { background: #dcf3e2; color: var(--ok); }
.state-cached { background: #e3eefc; color: var(--run); }
.state-failed, .state-disconnected { background: #fde3e3; color: var(--bad); }
.state-running, .state-queued { background: #fff4d6; color: var(--warn); }
.state-draining, .state-canceled { background: #efe6fb; color: #6639ba; }
.filters { display: flex; gap: 1em; align-items: end; margin-bottom: .6em; }
pre.log { background: #0f1419; color: #d8dee9; padding: .8em; border-radius: 6px; max-height: 40em;
  overflow: auto; white-space: pre-wrap; }
pre.log .stderr { color: #f0a8a8; }
#why-miss pre { background: #fff; border: 1px solid var(--line); padding: .6em;
  white-space: pre-wrap; }
button { font: inherit; padding: .15em .7em; cursor: pointer; }
button.why { font-size: .85em; }
#login { max-width: 32em; }
#login input { width: 100%; margin: .3em 0; font: inherit; padding: .3em; }
)CSS";

}  // namespace

absl::string_view StatusScript() { return absl::string_view(kScript, sizeof(kScript) - 1); }
absl::string_view StatusStyle() { return absl::string_view(kStyle, sizeof(kStyle) - 1); }

}  // namespace farm::scheduler::server
