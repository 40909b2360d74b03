// Corral's web UI: one page of hash-routed views over the master's JSON API (/api/v1/).
// Agents, frameworks and tasks update live from the event stream (/api/v1/events); only
// file contents (stdout, stderr) and jobs, which have no events, are polled.
'use strict';

const TASK_STATES = ['STAGING', 'STARTING', 'RUNNING', 'KILLING', 'FINISHED', 'FAILED', 'KILLED',
  'ERROR', 'LOST', 'DROPPED', 'UNREACHABLE', 'GONE', 'UNKNOWN'];
const TERMINAL = new Set(['FINISHED', 'FAILED', 'KILLED', 'ERROR', 'LOST', 'DROPPED', 'GONE']);
const PAGE_SIZE = 100;
const MAX_TERMINAL_TASKS = 5000; // terminal tasks kept from events; the oldest go first
const LOG_CHUNK = 64 * 1024; // bytes asked for per read of stdout or stderr
const MAX_LOG_CHARS = 1 << 20; // a log <pre> keeps about this much of the output's tail

// ---- Helpers ----

const $ = id => document.getElementById(id);
const enc = encodeURIComponent;
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** A new element: attributes (`class`, `dataset`, `on<event>` listeners, others as given) and
 * children (nodes, or strings that become text nodes: never parsed as HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.filter(c => c != null));
  return node;
}

/** Sets a node's text, only when it changes (no needless layout, no repeated announcements). */
function setText(node, text) {
  const s = text == null ? '-' : String(text);
  if (node.textContent !== s) node.textContent = s;
}

/** A state cell's text, and `data-value` for its colour. */
function setState(cell, state) {
  setText(cell, state);
  cell.dataset.value = state ?? '';
}

function fmtBytes(n) {
  if (n == null) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? +n.toFixed(n < 10 ? 2 : 1) : n} ${units[i]}`;
}

/** Thousandths of a CPU (or of any scalar) as a number: 250 → "0.25". */
const milli = m => (m == null ? '-' : String(+(m / 1000).toFixed(3)));

function fmtDuration(nanos) {
  if (nanos == null) return '-';
  const ms = nanos / 1e6;
  if (ms < 1000) return `${+ms.toFixed(1)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${+s.toFixed(2)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.floor(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

const fmtTime = ms => (ms ? new Date(ms).toLocaleString() : '-');

/** A resources document: "0.25 CPU, 32 MiB mem, 1 GiB disk, gpu 1". */
function fmtRes(r) {
  if (!r) return '-';
  const parts = [`${milli(r.cpus_milli)} CPU`, `${fmtBytes(r.mem_bytes)} mem`];
  if (r.disk_bytes) parts.push(`${fmtBytes(r.disk_bytes)} disk`);
  for (const [name, m] of Object.entries(r.scalars_milli ?? {})) if (m) parts.push(`${name} ${milli(m)}`);
  return parts.join(', ');
}

/** Quota limits: a null kind is unlimited. */
function fmtLimits(l) {
  if (!l) return 'unlimited';
  const parts = [];
  if (l.cpus_milli != null) parts.push(`${milli(l.cpus_milli)} CPU`);
  if (l.mem_bytes != null) parts.push(`${fmtBytes(l.mem_bytes)} mem`);
  if (l.disk_bytes != null) parts.push(`${fmtBytes(l.disk_bytes)} disk`);
  for (const [name, m] of Object.entries(l.scalars_milli ?? {})) parts.push(`${name} ${milli(m)}`);
  return parts.length ? parts.join(', ') : 'unlimited';
}

const fmtQuota = q => (q ? `guarantee ${fmtRes(q.guarantee)}; limit ${fmtLimits(q.limit)}` : 'none');

/** Counts by state ({RUNNING: 3}) as "RUNNING 3, DRAINING 1", leaving out zeros. */
function fmtCounts(counts) {
  const parts = Object.entries(counts ?? {}).filter(([, n]) => n).map(([s, n]) => `${s} ${n}`);
  return parts.length ? parts.join(', ') : 'none';
}

/** A call to the API: the parsed JSON, or an Error with the server's message. */
async function api(path, options) {
  const res = await fetch(path, options);
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page): the status says what there is to say.
  }
  if (res.status === 401) needSignIn(body?.error?.message ?? 'This master needs an access token.');
  if (!res.ok) throw new Error(body?.error?.message ?? `${res.status} ${res.statusText || 'error'}`);
  return body;
}

// ---- Signing in ----
// A master that authenticates answers 401 until the browser signs in: the token is checked
// by the master and kept in an HttpOnly cookie (no script here can read it back), which the
// API and the event stream then present.

let signedOut = false;

/** Shows the sign-in form instead of the views, saying why. */
function needSignIn(why) {
  const first = !signedOut;
  signedOut = true;
  clearError();
  for (const v of allViews) $(v.section).hidden = true;
  $('view-login').hidden = false;
  setText($('login-why'), why);
  document.title = 'Sign in · Corral';
  if (first) $('login-token').focus();
}

$('login-form').addEventListener('submit', async e => {
  e.preventDefault();
  const token = $('login-token').value.trim();
  try {
    await api('/api/v1/session', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    location.reload();
  } catch (err) {
    setText($('login-why'), err.message);
    $('login-token').value = '';
    $('login-token').focus();
  }
});

$('sign-out').addEventListener('click', async () => {
  await fetch('/api/v1/session', { method: 'DELETE' });
  location.reload();
});

/** Shows who is signed in (nothing when the master does not authenticate). */
async function whoAmI() {
  try {
    const who = await api('/api/v1/session');
    if (who?.principal) {
      setText($('principal'), `Signed in as ${who.principal}`);
      $('signed-in').hidden = false;
    }
  } catch {
    // A 401 shows the sign-in form; anything else shows in the views' own errors.
  }
}

/** Calls `fn` at once, then at most once per `ms`; calls made meanwhile run once, at the end. */
function throttle(fn, ms) {
  let timer = 0;
  let pending = false;
  return function run() {
    if (timer) { pending = true; return; }
    fn();
    timer = setTimeout(() => {
      timer = 0;
      if (pending) { pending = false; run(); }
    }, ms);
  };
}

function showError(message) {
  if (signedOut) return; // the sign-in form says why
  setText($('error'), message);
  $('error-dismiss').hidden = false;
}

function clearError() {
  setText($('error'), '');
  $('error-dismiss').hidden = true;
}

const notice = message => setText($('notice'), message);

/** Runs a user's action with its button disabled; its failure is shown. */
async function act(button, fn) {
  button.disabled = true;
  clearError();
  try {
    await fn();
  } catch (e) {
    showError(e.message);
  } finally {
    button.disabled = false;
  }
}

/** A whole number from an input, '' when empty, or null (after saying so) when not one. */
function wholeNumber(input, what) {
  const v = input.value.trim();
  // A number input's value is '' for text that is not a number: badInput tells them apart.
  if (!input.validity.badInput && (v === '' || /^\d+$/.test(v))) return v;
  showError(`${what} must be a whole number`);
  input.focus();
  return null;
}

/** A <progress> with its text ("0.5 / 4"), for used / total. */
function meter(label) {
  return el('div', { class: 'meter' }, el('progress', { max: 1, value: 0, 'aria-label': label }), el('span'));
}

function setMeter(div, used, total, fmt) {
  const [bar, text] = div.children;
  bar.max = total || 1;
  bar.value = Math.min(used, total || 1);
  setText(text, `${fmt(used)} / ${fmt(total)}`);
}

/** A tbody whose rows are kept by key: a new list updates rows in place, so focus, what was
 * typed into inputs and the scroll position survive updates. */
class KeyedRows {
  constructor(tbody, empty, create, update) {
    Object.assign(this, { tbody, empty, create, update });
    this.rows = new Map();
  }

  sync(items, keyOf) {
    const seen = new Map();
    let cursor = this.tbody.firstElementChild;
    for (const item of items) {
      const key = keyOf(item);
      const row = this.rows.get(key) ?? this.create(item);
      this.update(row, item);
      seen.set(key, row);
      // Rows already in place are not moved: moving the focused one would blur it.
      if (row === cursor) cursor = cursor.nextElementSibling;
      else this.tbody.insertBefore(row, cursor);
    }
    // Every row from the cursor on is no longer listed.
    while (cursor) {
      const next = cursor.nextElementSibling;
      cursor.remove();
      cursor = next;
    }
    this.rows = seen;
    this.empty.hidden = seen.size > 0;
  }
}

// ---- State from the event stream ----

const taskKey = t => `${t.framework_id}\n${t.id}`; // task IDs are unique per framework

const store = {
  master: null,
  summary: null, // /api/v1/summary: exact counts, which 1000 tasks from events cannot give
  agents: new Map(),
  frameworks: new Map(),
  roles: [],
  tasks: new Map(), // taskKey → task, least recently updated first
  terminalTasks: 0,
  added: [], // times of TASK_ADDED events in the last minute
  since: Date.now(), // when the stream subscribed: the launch rate's window starts there
};

function putTask(t) {
  const key = taskKey(t);
  const old = store.tasks.get(key);
  if (old) {
    store.tasks.delete(key); // re-inserted last: the Map stays in update order
    if (TERMINAL.has(old.state)) store.terminalTasks--;
  }
  store.tasks.set(key, t);
  if (TERMINAL.has(t.state)) store.terminalTasks++;
  if (store.terminalTasks > MAX_TERMINAL_TASKS) {
    // Down to 80% at once, so that the walk from the oldest is not made on every event.
    for (const [k, task] of store.tasks) {
      if (store.terminalTasks <= MAX_TERMINAL_TASKS * 0.8) break;
      if (TERMINAL.has(task.state)) { store.tasks.delete(k); store.terminalTasks--; }
    }
  }
}

function findTask(id) {
  for (const t of store.tasks.values()) if (t.id === id) return t;
  return null;
}

/** Tasks added per second over the last minute (or since subscribing, if more recent). */
function launchRate() {
  const now = Date.now();
  const cutoff = now - 60000;
  let i = 0;
  while (i < store.added.length && store.added[i] < cutoff) i++;
  if (i) store.added.splice(0, i);
  return store.added.length / Math.min(60, Math.max(1, (now - store.since) / 1000));
}

const agentName = id => store.agents.get(id)?.hostname || id || '-';
const frameworkName = id => store.frameworks.get(id)?.name || id || '-';

// Changes of agents and frameworks are rendered in batches: a busy cluster sends many events.
const changed = new Set();
let flushTimer = 0;

function dirty(kind) {
  changed.add(kind);
  flushTimer ||= setTimeout(() => {
    flushTimer = 0;
    const kinds = new Set(changed);
    changed.clear();
    current?.onChange?.(kinds);
  }, 50);
}

function onTask(t, added) {
  putTask(t);
  current?.onTask?.(t, added);
}

const handlers = {
  SUBSCRIBED(m) {
    const s = m.state;
    store.master = s.master;
    store.agents = new Map(s.agents.map(a => [a.id, a]));
    store.frameworks = new Map(s.frameworks.map(f => [f.id, f]));
    store.roles = s.roles;
    store.tasks = new Map();
    store.terminalTasks = 0;
    for (let i = s.tasks.length - 1; i >= 0; i--) putTask(s.tasks[i]); // newest last
    // Launches missed while disconnected are unknown: the rate's window starts again.
    store.added = [];
    store.since = Date.now();
    stream.heartbeatMs = (m.heartbeat_interval_seconds || 15) * 1000;
    dirty('sync');
  },
  TASK_ADDED(m) {
    store.added.push(Date.now());
    onTask(m.task, true);
  },
  // An update carries only what can change (state, usage, progress, result): it is applied
  // over the task held. Views that hold a task this store has let go merge it themselves.
  TASK_UPDATED(m) {
    const held = store.tasks.get(taskKey(m.task));
    onTask(held ? { ...held, ...m.task } : m.task, false);
  },
  AGENT_ADDED(m) { store.agents.set(m.agent.id, m.agent); dirty('agents'); },
  AGENT_UPDATED(m) { store.agents.set(m.agent.id, m.agent); dirty('agents'); },
  AGENT_REMOVED(m) { store.agents.delete(m.agent_id); dirty('agents'); },
  FRAMEWORK_ADDED(m) { store.frameworks.set(m.framework.id, m.framework); dirty('frameworks'); },
  FRAMEWORK_UPDATED(m) { store.frameworks.set(m.framework.id, m.framework); dirty('frameworks'); },
  FRAMEWORK_REMOVED(m) { store.frameworks.delete(m.framework_id); dirty('frameworks'); },
  HEARTBEAT() {},
};

const stream = { source: null, watchdog: 0, heartbeatMs: 15000 };

function setConnection(live) {
  setText($('connection'), live ? 'live' : 'reconnecting');
  $('connection').dataset.live = live;
}

/** Restarts the watchdog: a stream silent for three heartbeats is dead even if its socket is not. */
function alive() {
  clearTimeout(stream.watchdog);
  stream.watchdog = setTimeout(() => { setConnection(false); connect(); }, 3 * stream.heartbeatMs);
}

function connect() {
  stream.source?.close();
  const es = new EventSource('/api/v1/events');
  stream.source = es;
  es.onopen = () => { setConnection(true); alive(); };
  es.onerror = () => {
    setConnection(false);
    // EventSource reconnects by itself, except after an HTTP error (a 503 while no master
    // leads): then it is closed for good, and a new one is needed.
    if (es.readyState === EventSource.CLOSED) {
      setTimeout(() => { if (stream.source === es) connect(); }, 3000);
    }
  };
  for (const [type, handle] of Object.entries(handlers)) {
    es.addEventListener(type, e => { alive(); handle(JSON.parse(e.data)); });
  }
}

// ---- Views ----
// Each view has a section; enter(arg) and leave() when routed to and away; onChange(kinds)
// for batched changes ('agents', 'frameworks', 'sync' for a new SUBSCRIBED); onTask(task, added).

const overview = {
  section: 'view-overview',
  counts: new Map(), // task state → its count's element

  init() {
    for (const state of TASK_STATES) {
      const count = el('span', { class: 'count', dataset: { state } }, '0');
      this.counts.set(state, count);
      $('overview-tasks').append(el('li', { class: 'zero' }, count, ` ${state}`));
    }
    this.capacity = new KeyedRows($('capacity-rows'), $('capacity-empty'), a => el('tr', {},
      el('th', { scope: 'row' }, el('span'), el('br'), el('code')),
      el('td', { class: 'state' }),
      el('td', {}, meter(`CPUs of ${a.hostname || a.id}`)),
      el('td', {}, meter(`Memory of ${a.hostname || a.id}`)),
    ), (tr, a) => {
      const [name, state, cpus, mem] = tr.cells;
      setText(name.firstChild, a.hostname || a.id);
      setText(name.lastChild, a.id);
      setState(state, a.state);
      setMeter(cpus.firstChild, a.used?.cpus_milli ?? 0, a.total?.cpus_milli ?? 0, milli);
      setMeter(mem.firstChild, a.used?.mem_bytes ?? 0, a.total?.mem_bytes ?? 0, fmtBytes);
    });
  },
  // Counts come from the summary, fetched again (at most once a second) when things change.
  refreshSummary: throttle(async () => {
    try {
      store.summary = await api('/api/v1/summary');
      if (current === overview) overview.render();
    } catch (e) {
      showError(e.message);
    }
  }, 1000),
  enter() {
    this.render();
    this.refreshSummary();
    this.tick = setInterval(() => setText($('launch-rate'), `${launchRate().toFixed(1)} tasks/s`), 1000);
  },
  leave() { clearInterval(this.tick); },
  onChange() {
    this.render();
    this.refreshSummary();
  },
  onTask() { this.refreshSummary(); },
  render() {
    const m = store.summary?.master ?? store.master;
    setText($('master-id'), m?.id);
    setText($('master-address'), m?.address);
    setText($('master-epoch'), m?.epoch);
    setText($('master-started'), fmtTime(m?.started_at_millis));
    const s = store.summary;
    if (s) {
      setText($('overview-agents'), fmtCounts(s.agents));
      setText($('overview-frameworks'), fmtCounts(s.frameworks));
      setText($('overview-offers'), s.offers_outstanding);
      for (const [state, count] of this.counts) {
        const n = s.tasks?.[state] ?? 0;
        setText(count, n);
        count.parentElement.classList.toggle('zero', !n);
      }
    }
    setText($('launch-rate'), `${launchRate().toFixed(1)} tasks/s`);
    this.capacity.sync(sortedAgents(), a => a.id);
  },
};

const sortedAgents = () => [...store.agents.values()]
  .sort((a, b) => (a.hostname || a.id).localeCompare(b.hostname || b.id) || a.id.localeCompare(b.id));

const agentsView = {
  section: 'view-agents',
  init() {
    this.rows = new KeyedRows($('agent-rows'), $('agents-empty'), a => this.createRow(a), (tr, a) => {
      const [id, host, address, state, cpus, mem, tasks, actions] = tr.cells;
      setText(id, a.id);
      setText(host, a.hostname);
      setText(address, a.address);
      setState(state, a.state);
      setText(cpus, `${milli(a.used?.cpus_milli ?? 0)} / ${milli(a.total?.cpus_milli ?? 0)}`);
      setText(mem, `${fmtBytes(a.used?.mem_bytes ?? 0)} / ${fmtBytes(a.total?.mem_bytes ?? 0)}`);
      setText(tasks, a.active_tasks ?? 0);
      const [deadline, drain, reactivate, until] = actions.children;
      deadline.hidden = drain.hidden = ['DRAINING', 'DRAINED', 'GONE'].includes(a.state);
      reactivate.hidden = !['DRAINING', 'DRAINED'].includes(a.state);
      until.hidden = a.drain_deadline_millis == null;
      setText(until, until.hidden ? '' : `tasks killed at ${fmtTime(a.drain_deadline_millis)}`);
    });
  },
  createRow(a) {
    const input = el('input', { type: 'number', min: 0, step: 1, inputmode: 'numeric', class: 'drain-deadline', placeholder: 'seconds' });
    const drain = el('button', { type: 'button', class: 'drain', 'aria-label': `Drain ${a.id}` }, 'Drain');
    const reactivate = el('button', { type: 'button', class: 'reactivate', 'aria-label': `Reactivate ${a.id}` }, 'Reactivate');
    drain.addEventListener('click', () => {
      const seconds = wholeNumber(input, 'The drain deadline');
      if (seconds === null) return;
      act(drain, async () => {
        await api(`/api/v1/agents/${enc(a.id)}/drain${seconds ? `?deadline_seconds=${seconds}` : ''}`, { method: 'POST' });
        input.value = '';
        notice(`Agent ${a.id} is draining.`);
        await this.refetch(a.id, reactivate);
      });
    });
    reactivate.addEventListener('click', () => act(reactivate, async () => {
      await api(`/api/v1/agents/${enc(a.id)}/reactivate`, { method: 'POST' });
      notice(`Agent ${a.id} is reactivated.`);
      await this.refetch(a.id, drain);
    }));
    return el('tr', { dataset: { agentId: a.id } },
      el('td', { class: 'id' }), el('td'), el('td'), el('td', { class: 'state' }),
      el('td', { class: 'num' }), el('td', { class: 'num' }), el('td', { class: 'num' }),
      el('td', { class: 'actions' },
        el('label', {}, el('span', { class: 'vh' }, `Drain deadline in seconds for ${a.id}`), input),
        drain, reactivate, el('span', { class: 'drain-until' })));
  },
  /** The agent's new state at once (its AGENT_UPDATED event may come later), and focus on
   * the button that now applies, since the clicked one may have been hidden. */
  async refetch(id, next) {
    const agent = await api(`/api/v1/agents/${enc(id)}`);
    store.agents.set(agent.id, agent);
    this.render();
    if (!next.hidden) next.focus();
  },
  enter() { this.render(); },
  onChange() { this.render(); },
  render() { this.rows.sync(sortedAgents(), a => a.id); },
};

const frameworksView = {
  section: 'view-frameworks',
  init() {
    this.frameworks = new KeyedRows($('framework-rows'), $('frameworks-empty'), () => el('tr', {},
      el('td', { class: 'id' }), el('td'), el('td'), el('td', { class: 'state' }), el('td'), el('td'),
      el('td', { class: 'num' }), el('td'),
    ), (tr, f) => {
      const [id, name, user, state, roles, allocated, tasks, registered] = tr.cells;
      setText(id, f.id);
      setText(name, f.name);
      setText(user, f.user);
      setState(state, f.state);
      setText(roles, (f.roles ?? []).join(', '));
      setText(allocated, fmtRes(f.allocated));
      setText(tasks, f.active_tasks ?? 0);
      setText(registered, fmtTime(f.registered_at_millis));
    });
    this.roles = new KeyedRows($('role-rows'), $('roles-empty'), () => el('tr', {},
      el('td'), el('td', { class: 'num' }), el('td'), el('td'), el('td', { class: 'num' }), el('td', { class: 'num' }),
    ), (tr, r) => {
      const [name, weight, quota, allocated, share, frameworks] = tr.cells;
      setText(name, r.name);
      setText(weight, r.weight);
      setText(quota, fmtQuota(r.quota));
      setText(allocated, fmtRes(r.allocated));
      setText(share, `${((r.dominant_share ?? 0) * 100).toFixed(1)}%`);
      setText(frameworks, r.frameworks ?? 0);
    });
  },
  // Roles have no events: their allocation is fetched again when frameworks or tasks change.
  refreshRoles: throttle(async () => {
    try {
      store.roles = (await api('/api/v1/roles')).roles;
      if (current === frameworksView) frameworksView.render();
    } catch (e) {
      showError(e.message);
    }
  }, 2000),
  enter() {
    this.render();
    this.refreshRoles();
  },
  onChange(kinds) {
    this.render();
    if (kinds.has('frameworks')) this.refreshRoles();
  },
  onTask() { this.refreshRoles(); },
  render() {
    const frameworks = [...store.frameworks.values()]
      .sort((a, b) => (a.name || '').localeCompare(b.name || '') || a.id.localeCompare(b.id));
    this.frameworks.sync(frameworks, f => f.id);
    this.roles.sync(store.roles, r => r.name);
  },
};

const tasksView = {
  section: 'view-tasks',
  filters: {},
  token: '', // this page's page_token
  nextToken: '',
  page: 1,
  seq: 0, // the latest query: older answers are dropped

  init() {
    const select = $('f-state');
    select.append(el('option', { value: TASK_STATES.filter(s => !TERMINAL.has(s) && s !== 'UNKNOWN').join(',') }, 'Not terminal'));
    for (const s of TASK_STATES) select.append(el('option', { value: s }, s));
    const form = $('task-filters');
    form.addEventListener('submit', e => {
      e.preventDefault();
      this.setFilters(form);
    });
    // The form's values are reset after the reset event.
    form.addEventListener('reset', () => setTimeout(() => this.setFilters(form)));
    $('tasks-first').addEventListener('click', () => this.goTo('', 1));
    $('tasks-next').addEventListener('click', () => this.goTo(this.nextToken, this.page + 1));
    $('tasks-first').disabled = $('tasks-next').disabled = true;
    this.rows = new KeyedRows($('task-rows'), $('tasks-empty'), t => el('tr', { dataset: { taskId: t.id } },
      el('td', { class: 'id' }, el('a', { href: `#/tasks/${enc(t.id)}` }, t.id)),
      el('td'), el('td', { class: 'state' }), el('td'), el('td'), el('td'), el('td'), el('td'),
    ), (tr, update) => {
      const t = tr.task = { ...tr.task, ...update };
      const [, name, state, reason, framework, agent, resources, updated] = tr.cells;
      setText(name, t.name);
      setState(state, t.state);
      setText(reason, t.reason);
      setText(framework, frameworkName(t.framework_id));
      setText(agent, agentName(t.agent_id));
      setText(resources, fmtRes(t.resources));
      setText(updated, fmtTime(t.updated_at_millis));
    });
  },
  setFilters(form) {
    this.filters = {};
    for (const [k, v] of new FormData(form)) if (v.trim()) this.filters[k] = v.trim();
    this.goTo('', 1);
  },
  goTo(token, page) {
    clearError();
    this.token = token;
    this.page = page;
    this.query();
  },
  async query() {
    const seq = ++this.seq;
    const params = new URLSearchParams({ ...this.filters, page_size: PAGE_SIZE });
    if (this.token) params.set('page_token', this.token);
    try {
      const r = await api(`/api/v1/tasks?${params}`);
      if (seq !== this.seq) return;
      this.nextToken = r.next_page_token ?? '';
      this.rows.sync(r.tasks, taskKey);
      const n = r.tasks.length;
      setText($('tasks-caption'), `Tasks, page ${this.page}: ${n} task${n === 1 ? '' : 's'}${this.nextToken ? '' : ' (last page)'}`);
      $('tasks-next').disabled = !this.nextToken;
      $('tasks-first').disabled = this.page === 1;
    } catch (e) {
      if (seq === this.seq) showError(e.message);
    }
  },
  // New tasks may belong on this page: ask again, at most once per 2 s.
  requery: throttle(() => tasksView.query(), 2000),
  /** Whether a task may pass the filters (labels are not in task documents: they may). */
  mayMatch(t) {
    const f = this.filters;
    return (!f.state || f.state.split(',').includes(t.state))
      && (!f.framework || f.framework === t.framework_id)
      && (!f.agent || f.agent === t.agent_id)
      && (!f.job || t.id.startsWith(`${f.job}.`)); // a job's instances are <job>.<index>...
  },
  enter() { this.query(); },
  onChange(kinds) { if (kinds.has('sync')) this.query(); },
  onTask(t, added) {
    const row = this.rows.rows.get(taskKey(t));
    if (row) this.rows.update(row, t);
    // A task off this page belongs here if it is new, or now has the state filtered for.
    else if ((added || this.filters.state) && this.mayMatch(t)) this.requery();
  },
};

const taskView = {
  section: 'view-task',
  id: '',
  task: null,
  gen: 0, // bumped on leave: the log readers and fetches of an older visit stop

  init() {
    this.files = new KeyedRows($('file-rows'), $('files-empty'), f => el('tr', {},
      el('td', {}, f.is_dir
        ? `${f.path}/`
        : el('a', { href: `/api/v1/tasks/${enc(this.id)}/files/download?path=${enc(f.path)}`, download: f.path.split('/').pop() }, f.path)),
      el('td', { class: 'num' }), el('td'),
    ), (tr, f) => {
      setText(tr.cells[1], f.is_dir ? '-' : fmtBytes(f.size));
      setText(tr.cells[2], fmtTime(f.modified_millis));
    });
  },
  enter(id) {
    this.id = id;
    this.task = null;
    const gen = ++this.gen;
    setText($('task-title'), `Task ${id}`);
    for (const dd of document.querySelectorAll('#view-task dd')) setText(dd, '-');
    $('task-state').dataset.value = '';
    $('task-progress').hidden = true;
    setText($('task-progress-message'), '-');
    setText($('task-result'), '-');
    $('output-rows').replaceChildren();
    this.files.sync([], f => f.path);
    setText($('files-status'), '');
    const known = findTask(id);
    if (known) this.render(known);
    this.load(gen);
    this.refreshFiles();
    for (const name of ['stdout', 'stderr']) {
      $(name).textContent = '';
      this.follow(gen, name);
    }
  },
  leave() { this.gen++; },
  async load(gen) {
    try {
      const t = await api(`/api/v1/tasks/${enc(this.id)}`);
      if (gen === this.gen) this.render(t);
    } catch (e) {
      if (gen === this.gen) showError(e.message);
    }
  },
  onChange(kinds) { if (kinds.has('sync')) this.load(this.gen); },
  onTask(t) {
    if (t.id !== this.id || (this.task && this.task.framework_id !== t.framework_id)) return;
    this.render({ ...this.task, ...t });
    this.refreshFiles();
  },
  render(t) {
    // An answer older than what an event already showed is not shown.
    if (this.task && t.updated_at_millis < this.task.updated_at_millis) return;
    this.task = t;
    setText($('task-state'), t.state);
    $('task-state').dataset.value = t.state;
    setText($('task-reason'), t.reason);
    setText($('task-message'), t.message || '-');
    setText($('task-name'), t.name || '-');
    setText($('task-agent'), t.agent_id ? `${agentName(t.agent_id)} (${t.agent_id})` : '-');
    setText($('task-framework'), `${frameworkName(t.framework_id)} (${t.framework_id})`);
    setText($('task-owner'), t.owner || '-');
    setText($('task-module'), t.module || '-');
    setText($('task-sandbox'), t.sandbox_path || '-');
    setText($('task-updated'), fmtTime(t.updated_at_millis));
    setText($('task-resources'), fmtRes(t.resources));
    const u = t.usage;
    setText($('usage-fuel'), u?.fuel_consumed?.toLocaleString());
    setText($('usage-cpu'), fmtDuration(u?.cpu_time_nanos));
    setText($('usage-memory'), u ? fmtBytes(u.peak_memory_bytes) : '-');
    setText($('usage-wall'), fmtDuration(u?.wall_time_nanos));
    setText($('usage-exit'), u?.exit_code);
    const bar = $('task-progress');
    bar.hidden = !t.progress;
    // Without a fraction (or a negative one) the bar is indeterminate.
    if (t.progress?.fraction >= 0) bar.value = Math.min(1, t.progress.fraction);
    else bar.removeAttribute('value');
    const p = t.progress;
    setText($('task-progress-message'), p?.message || (p?.fraction >= 0 ? `${Math.round(p.fraction * 100)}%` : '-'));
    setText($('task-result'), t.result == null ? '-'
      : typeof t.result === 'string' ? t.result : JSON.stringify(t.result, null, 2));
    $('output-rows').replaceChildren(...(t.outputs ?? []).map(o => el('tr', {},
      el('td', {}, o.path), el('td', { class: 'num' }, fmtBytes(o.size)), el('td', { class: 'id' }, o.digest))));
    $('outputs-empty').hidden = (t.outputs ?? []).length > 0;
  },
  refreshFiles: throttle(async () => {
    const { gen, id } = taskView;
    try {
      const r = await api(`/api/v1/tasks/${enc(id)}/files`);
      if (gen !== taskView.gen) return;
      taskView.files.sync(r.files, f => f.path);
      setText($('files-status'), '');
    } catch (e) {
      // The sandbox may not exist yet, or be gone with its agent: said here, not as an alert.
      if (gen === taskView.gen) setText($('files-status'), `Files: ${e.message}`);
    }
  }, 2000),
  /** Reads stdout or stderr into its <pre> as it grows, until the task ends and all is read. */
  async follow(gen, name) {
    const pre = $(name);
    const status = $(`${name}-status`);
    const url = `/api/v1/tasks/${enc(this.id)}/files/read?path=${name}&length=${LOG_CHUNK}&offset=`;
    let offset = 0;
    while (gen === this.gen) {
      let r;
      try {
        r = await api(url + offset);
      } catch (e) {
        if (gen !== this.gen) return;
        if (this.task && TERMINAL.has(this.task.state)) { setText(status, e.message); return; }
        setText(status, `${e.message} (trying again)`); // not started yet, most likely
        await sleep(2000);
        continue;
      }
      if (gen !== this.gen) return;
      if (r.data) appendLog(pre, r.data);
      const read = r.next_offset - offset;
      offset = r.next_offset;
      if (r.complete && offset >= r.size) {
        setText(status, `End of ${name} (${fmtBytes(r.size)}).`);
        return;
      }
      setText(status, 'Following…');
      if (read < LOG_CHUNK) await sleep(500); // caught up; a full chunk means more is there
    }
  },
};

function appendLog(pre, text) {
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  pre.append(text);
  if (pre.textContent.length > MAX_LOG_CHARS) {
    pre.textContent = `[earlier output left out here: download the file for all of it]\n${pre.textContent.slice(-MAX_LOG_CHARS / 2)}`;
  }
  if (atEnd) pre.scrollTop = pre.scrollHeight; // follow the end unless the reader scrolled up
}

const jobsView = {
  section: 'view-jobs',
  seq: 0, // the latest refresh: only it schedules the next one
  timer: 0,

  init() {
    this.rows = new KeyedRows($('job-rows'), $('jobs-empty'), j => this.createRow(j), (tr, j) => {
      const [, kind, state, done, running, failed, message, actions] = tr.cells;
      setText(kind, j.kind);
      setState(state, j.state);
      setText(done, `${j.succeeded ?? 0} / ${j.instances ?? 0}`);
      setText(running, j.running ?? 0);
      setText(failed, j.failed ?? 0);
      setText(message, j.message || '');
      // The instances input follows the job unless the user is editing it.
      const input = actions.querySelector('input');
      if (document.activeElement !== input && !input.dataset.edited) input.value = j.instances ?? 0;
    });
    const form = $('job-form');
    form.addEventListener('submit', e => {
      e.preventDefault();
      const spec = $('job-spec').value;
      if (!spec.trim()) {
        showError('Write a job spec first.');
        $('job-spec').focus();
        return;
      }
      act($('job-submit'), async () => {
        const r = await api('/api/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/toml' }, body: spec });
        notice(`Submitted: ${(r.jobs ?? []).join(', ')}.`);
        await this.refresh();
      });
    });
  },
  createRow(j) {
    const name = j.name;
    const input = el('input', { type: 'number', min: 0, step: 1, inputmode: 'numeric', class: 'scale-instances' });
    input.addEventListener('input', () => { input.dataset.edited = '1'; });
    const scale = el('button', { type: 'button', class: 'scale', 'aria-label': `Scale ${name}` }, 'Scale');
    const kill = el('button', { type: 'button', class: 'kill', 'aria-label': `Kill ${name}` }, 'Kill');
    scale.addEventListener('click', () => {
      const n = wholeNumber(input, 'The number of instances');
      if (!n) {
        if (n === '') showError('Give the number of instances to scale to.');
        return;
      }
      act(scale, async () => {
        await api(`/api/v1/jobs/${enc(name)}/scale?instances=${n}`, { method: 'POST' });
        delete input.dataset.edited;
        notice(`Job ${name} scaled to ${n}.`);
        await this.refresh();
      });
    });
    kill.addEventListener('click', () => act(kill, async () => {
      await api(`/api/v1/jobs/${enc(name)}/kill`, { method: 'POST' });
      notice(`Job ${name} killed.`);
      await this.refresh();
    }));
    return el('tr', { dataset: { job: name } },
      el('td', { class: 'id' }, name), el('td'), el('td', { class: 'state' }), el('td', { class: 'num' }),
      el('td', { class: 'num' }), el('td', { class: 'num' }), el('td'),
      el('td', { class: 'actions' },
        el('label', {}, el('span', { class: 'vh' }, `Instances of ${name}`), input), scale, kill));
  },
  /** Fetches the jobs; while the view is shown, again 2 s after each answer. */
  async refresh() {
    clearTimeout(this.timer);
    const seq = ++this.seq;
    try {
      const r = await api('/api/v1/jobs');
      if (seq === this.seq) this.rows.sync(r.jobs, j => j.name);
    } catch (e) {
      if (seq === this.seq) showError(e.message);
    }
    if (seq === this.seq) this.timer = setTimeout(() => this.refresh(), 2000);
  },
  enter() { this.refresh(); },
  leave() {
    clearTimeout(this.timer);
    this.seq++;
  },
};

// ---- Routing ----

// Modules have no events: fetched on entering the view, and again as tasks change.
const modulesView = {
  section: 'view-modules',
  init() {
    this.rows = new KeyedRows($('module-rows'), $('modules-empty'), () => el('tr', {},
      el('td', { class: 'id' }), el('td', { class: 'num' }), el('td', { class: 'num' }),
      el('td', { class: 'num' }), el('td'),
    ), (tr, m) => {
      const [digest, size, tasks, cached, stored] = tr.cells;
      setText(digest, m.digest);
      setText(size, fmtBytes(m.size));
      setText(tasks, m.active_tasks);
      setText(cached, m.cached_on_agents);
      setText(stored, fmtTime(m.stored_at_millis));
    });
  },
  refresh: throttle(async () => {
    try {
      const modules = (await api('/api/v1/modules')).modules;
      if (current === modulesView) modulesView.rows.sync(modules, m => m.digest);
    } catch (e) {
      showError(e.message);
    }
  }, 2000),
  enter() { this.refresh(); },
  onTask() { this.refresh(); },
};

const routes = {
  '': overview, agents: agentsView, frameworks: frameworksView, tasks: tasksView, jobs: jobsView,
  modules: modulesView,
};
const allViews = [...Object.values(routes), taskView];
let current = null;

/** Shows the view the hash names: #/, #/agents, #/frameworks, #/tasks, #/tasks/<id>, #/jobs. */
function route(moveFocus) {
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  let view = Object.hasOwn(routes, name) ? routes[name] : overview;
  let arg = '';
  if (name === 'tasks' && rest.join('/')) {
    view = taskView;
    try {
      arg = decodeURIComponent(rest.join('/'));
    } catch {
      arg = rest.join('/');
    }
  }
  current?.leave?.();
  current = view;
  clearError();
  notice('');
  if (signedOut) return;
  for (const v of allViews) $(v.section).hidden = v !== view;
  const navId = `nav-${view === taskView ? 'tasks' : view === overview ? 'overview' : name}`;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.id === navId) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  view.enter(arg);
  const h1 = $(view.section).querySelector('h1');
  document.title = `${h1.textContent} · Corral`;
  if (moveFocus) h1.focus();
}

for (const view of allViews) view.init?.();
$('error-dismiss').addEventListener('click', () => {
  clearError();
  if (current) $(current.section).querySelector('h1').focus();
});
window.addEventListener('hashchange', () => route(true));
route(false);
connect();
whoAmI();
