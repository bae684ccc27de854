// The swarm dashboard: plain JavaScript, no library, no build step.
// Reads poll the JSON API; the live feed reads GET /api/v1/events (Server-Sent
// Events) with fetch, so it can send the token and resume with Last-Event-ID.
"use strict";

const TOKEN_KEY = "swarm-dashboard-token";
const HISTORY = 300; // seconds of throughput kept for the chart
const MIN_SPAN = 60; // the chart shows at least this many seconds
const FEED_MAX = 250; // events kept in the live feed
const PRIORITIES = ["critical", "high", "normal", "low"];

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
function fmtMs(ms) {
  if (typeof ms !== "number" || !isFinite(ms)) return "–";
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}
const timeOf = (micros) => new Date(micros / 1000).toLocaleTimeString("en-GB", { hour12: false });
const shortId = (id) => (typeof id === "string" && id.startsWith("task-") ? "task-…" + id.slice(-6) : String(id));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- token -------------------------------------------------------------------

const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || "",
  set: (t) => { sessionStorage.setItem(TOKEN_KEY, t); showTokenState(); },
  clear: () => { sessionStorage.removeItem(TOKEN_KEY); showTokenState(); },
};

function showTokenState() {
  const b = $("token-btn");
  b.textContent = token.get() ? "Token set ✓" : "Set token";
  b.title = token.get() ? "click to forget the token of this tab" : "";
}

let tokenWaiters = [];
function askToken() {
  const dialog = $("token-dialog");
  if (!dialog.open) {
    $("token-input").value = "";
    dialog.showModal();
    $("token-input").focus();
  }
  return new Promise((resolve) => tokenWaiters.push(resolve));
}
function answerToken(value) {
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((w) => w(value));
}

// --- HTTP --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body, retried) {
  const headers = { Accept: "application/json" };
  const t = token.get();
  if (t) headers.Authorization = "Bearer " + t;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  const text = await res.text();
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (res.status === 401 && !retried) {
    // No token yet, or a wrong one: ask once, then try again.
    token.clear();
    const entered = await askToken();
    if (entered) return api(method, path, body, true);
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText);
  return data;
}

async function act(method, path, body, done) {
  if (!token.get()) {
    const entered = await askToken();
    if (!entered) return null;
  }
  try {
    const result = await api(method, path, body);
    if (done) toast(done);
    return result;
  } catch (e) {
    toast(e.message, true);
    return null;
  }
}

let toastTimer = 0;
function toast(message, bad) {
  const t = $("toast");
  t.textContent = message;
  t.className = "toast show" + (bad ? " bad" : "");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = "toast" + (bad ? " bad" : ""); }, bad ? 6000 : 2500);
}

// --- overview: counters, queues, agents, chart ---------------------------------

const samples = []; // {t, completed, dead} per poll
let paused = false;

function renderOverview(o) {
  for (const key of ["pending", "queued", "running", "completed", "failed", "dead_letters", "dead_lettered", "cancelled"]) {
    const node = $("count-" + key);
    if (node) node.textContent = fmt(o.tasks[key]);
  }
  $("rate").textContent = (o.throughput_per_sec || 0).toFixed(o.throughput_per_sec < 10 ? 1 : 0);
  paused = !!o.paused;
  const state = $("run-state");
  state.textContent = paused ? "paused" : "running";
  state.className = "pill " + (paused ? "pill-wait" : "pill-ok");
  $("pause-btn").textContent = paused ? "Resume" : "Pause";

  const depth = PRIORITIES.map((p) => (o.queues && o.queues[p]) || 0);
  const max = Math.max(1, ...depth);
  const qbody = $("queues").tBodies[0];
  qbody.replaceChildren(...PRIORITIES.map((p, i) => {
    const wait = (o.queue_wait_ms && o.queue_wait_ms[p]) || {};
    const fill = el("span");
    fill.style.width = ((depth[i] / max) * 100).toFixed(1) + "%";
    return el("tr", { class: "p-" + p },
      el("td", { class: "prio", text: p }),
      el("td", { class: "num", text: fmt(depth[i]) }),
      el("td", {}, el("div", { class: "bar" }, fill)),
      el("td", { class: "num", text: fmtMs(wait.p50_ms) }),
      el("td", { class: "num", text: fmtMs(wait.p99_ms) }));
  }));

  const agents = o.agents || [];
  $("agent-count").textContent = "(" + agents.length + ")";
  const abody = $("agents").tBodies[0];
  abody.replaceChildren(...agents.map((a) => el("tr", {},
    el("td", { class: "mono", text: "agent-" + a.id }),
    el("td", {}, el("span", { class: "badge s-" + a.state, text: a.state })),
    el("td", {}, el("span", { class: "badge h-" + a.health, text: a.health })),
    el("td", { class: "mono" }, a.current_task ? taskLink(a.current_task) : el("span", { class: "muted", text: "—" })),
    el("td", { class: "num", text: fmt(a.completed) }),
    el("td", { class: "num", text: fmt(a.failed) }))));

  const now = Date.now();
  samples.push({ t: now, completed: o.tasks.completed, dead: o.tasks.dead_lettered });
  while (samples.length && samples[0].t < now - HISTORY * 1000 - 2000) samples.shift();
  drawChart(now);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// Completions (and dead letters) per second from the counters' deltas, over HISTORY seconds.
function drawChart(now) {
  const chart = $("chart");
  // Drawn in pixels, so the labels keep their shape at any width.
  const W = Math.max(200, chart.clientWidth || 800), H = Math.max(100, chart.clientHeight || 200);
  const top = 14, bottom = 6;
  chart.setAttribute("viewBox", "0 0 " + W + " " + H);
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dt = (b.t - a.t) / 1000;
    if (dt <= 0) continue;
    rates.push({ t: b.t, c: Math.max(0, b.completed - a.completed) / dt, d: Math.max(0, b.dead - a.dead) / dt });
  }
  // The window grows with the history, from one minute to HISTORY.
  const first = samples.length ? samples[0].t : now;
  const span = Math.min(HISTORY, Math.max(MIN_SPAN, Math.ceil((now - first) / 60000) * 60));
  drawAxis(span);
  const peak = Math.max(1, ...rates.map((r) => r.c), ...rates.map((r) => r.d));
  const scale = niceCeil(peak);
  const x = (t) => W - ((now - t) / (span * 1000)) * W;
  const y = (v) => H - bottom - (v / scale) * (H - top - bottom);
  const nodes = [];
  for (let i = 0; i <= 4; i++) {
    const v = (scale * i) / 4;
    nodes.push(svg("line", { x1: 0, x2: W, y1: y(v), y2: y(v), class: "grid-line" }));
    if (i > 0) {
      const label = svg("text", { x: 6, y: y(v) + 12, class: "grid-label" });
      label.textContent = v >= 10 ? Math.round(v).toLocaleString("en-US") : v.toFixed(1);
      nodes.push(label);
    }
  }
  if (rates.length > 1) {
    const pts = rates.map((r) => x(r.t).toFixed(1) + "," + y(r.c).toFixed(1));
    nodes.push(svg("polygon", { class: "area", points: x(rates[0].t).toFixed(1) + "," + y(0) + " " + pts.join(" ") + " " + x(rates[rates.length - 1].t).toFixed(1) + "," + y(0) }));
    nodes.push(svg("polyline", { class: "line", points: pts.join(" ") }));
    if (rates.some((r) => r.d > 0)) {
      nodes.push(svg("polyline", { class: "line-dead", points: rates.map((r) => x(r.t).toFixed(1) + "," + y(r.d).toFixed(1)).join(" ") }));
    }
  }
  chart.replaceChildren(...nodes);
}

let axisSpan = 0;
function drawAxis(span) {
  if (span === axisSpan) return;
  axisSpan = span;
  $("chart-span").textContent = span <= 60 ? "last minute" : "last " + span / 60 + " minutes";
  const ticks = [];
  for (let i = 5; i >= 0; i--) {
    const s = (span * i) / 5;
    ticks.push(el("span", { text: i === 0 ? "now" : s >= 60 && s % 60 === 0 ? "−" + s / 60 + " min" : "−" + Math.round(s) + " s" }));
  }
  $("chart-axis").replaceChildren(...ticks);
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

async function pollOverview() {
  for (;;) {
    try {
      renderOverview(await api("GET", "/api/v1/overview"));
    } catch (e) {
      setConn("error: " + e.message, "pill-bad");
    }
    await sleep(1000);
  }
}

// --- dead letters --------------------------------------------------------------

function taskLink(id) {
  return el("a", { class: "link mono", href: "#" + id, title: id, text: shortId(id), onclick: (ev) => { ev.preventDefault(); lookup(id); } });
}

async function refreshDead() {
  let page;
  try { page = await api("GET", "/api/v1/dead-letters?limit=100"); } catch (_) { return; }
  const tasks = page.tasks || [];
  $("dead-empty").hidden = tasks.length > 0;
  $("dead").hidden = tasks.length === 0;
  $("dead-note").textContent = tasks.length ? tasks.length + (page.next ? "+" : "") + " waiting for an operator" : "";
  // Rows are kept by id, so a button under the pointer is not replaced by a refresh.
  const body = $("dead").tBodies[0];
  const rows = new Map([...body.rows].map((r) => [r.dataset.id, r]));
  body.replaceChildren(...tasks.map((t) => {
    const sig = t.attempts + "|" + t.max_attempts + "|" + t.errors.join("\n");
    let row = rows.get(t.id);
    if (!row || row.dataset.sig !== sig) row = deadRow(t, sig);
    for (const b of row.querySelectorAll("button")) b.disabled = pendingActions.has(t.id);
    return row;
  }));
}

const pendingActions = new Set();

function deadRow(t, sig) {
  return el("tr", { "data-id": t.id, "data-sig": sig },
    el("td", {}, taskLink(t.id)),
    el("td", { text: t.kind }),
    el("td", { class: "prio p-" + t.priority, text: t.priority }),
    el("td", { class: "num", text: t.attempts + " / " + t.max_attempts }),
    el("td", { class: "err", text: t.errors.length ? t.errors[t.errors.length - 1] : "" }),
    el("td", { class: "actions" },
      el("button", { class: "btn btn-small btn-go retry", type: "button", onclick: () => deadAction(t.id, "retry") }, "Retry"),
      el("button", { class: "btn btn-small btn-danger discard", type: "button", onclick: () => deadAction(t.id, "discard") }, "Discard")));
}

async function deadAction(id, what) {
  if (pendingActions.has(id)) return;
  pendingActions.add(id);
  await refreshDead();
  const done = what === "retry" ? "retried " + shortId(id) : "discarded " + shortId(id);
  try {
    await act("POST", "/api/v1/dead-letters/" + encodeURIComponent(id) + "/" + what, undefined, done);
  } finally {
    pendingActions.delete(id);
  }
  await refreshDead();
  if ($("lookup-input").value.trim() === id) lookup(id);
}

async function pollDead() {
  for (;;) {
    await refreshDead();
    await sleep(2000);
  }
}

// --- task lookup -----------------------------------------------------------------

function eventClass(name) {
  if (name === "task:completed") return "completed";
  if (name === "task:failed") return "failed";
  if (name === "task:dead_lettered" || name === "task:discarded") return "dead";
  if (name === "task:created" || name === "task:dead_letter_retried") return "created";
  if (name === "task:assigned") return "assigned";
  return "other";
}

async function lookup(id) {
  id = (id || "").trim();
  $("lookup-input").value = id;
  const out = $("lookup-result");
  if (!id) { out.replaceChildren(); return; }
  let body;
  try {
    body = await api("GET", "/api/v1/tasks/" + encodeURIComponent(id));
  } catch (e) {
    out.replaceChildren(el("p", { class: "empty", id: "lookup-status", text: e.message }));
    return;
  }
  const t = body.task;
  const created = body.events.length ? body.events[0].timestamp : t.created_at;
  const facts = el("dl", { class: "facts" },
    el("dt", { text: "status" }), el("dd", {}, el("span", { class: "badge s-" + t.status, id: "lookup-status", text: t.status })),
    el("dt", { text: "kind" }), el("dd", { text: t.kind }),
    el("dt", { text: "priority" }), el("dd", { class: "prio p-" + t.priority, text: t.priority }),
    el("dt", { text: "attempts" }), el("dd", { text: t.attempts + " of " + t.max_attempts }),
    el("dt", { text: "agent" }), el("dd", { text: t.agent === null ? "—" : "agent-" + t.agent }),
    el("dt", { text: "created" }), el("dd", { text: timeOf(t.created_at) + " (log seq " + t.created_seq + ")" }),
    t.errors.length ? el("dt", { text: "errors" }) : null,
    t.errors.length ? el("dd", { class: "err" }, ...t.errors.slice(-3).map((e) => el("div", { text: e }))) : null);
  const actions = [];
  if (["pending", "queued", "running", "failed"].includes(t.status)) {
    actions.push(el("button", { class: "btn btn-small btn-danger", type: "button", onclick: async () => {
      await act("POST", "/api/v1/tasks/" + encodeURIComponent(t.id) + "/cancel", undefined, "cancelled " + shortId(t.id));
      lookup(t.id);
    } }, "Cancel task"));
  }
  const timeline = el("ol", { class: "timeline" }, ...body.events.map((e) => el("li", { class: "ev-" + eventClass(e.event) },
    el("span", { class: "mono", text: e.event }),
    el("span", { class: "t", text: "+" + fmtMs((e.timestamp - created) / 1000) + " · seq " + e.seq }),
    el("div", { class: "muted small", text: describe(e) }))));
  out.replaceChildren(facts, ...actions, el("h2", { class: "small muted", text: "events" }), timeline);
}

// --- live event feed ---------------------------------------------------------------

let feedPaused = false;
let feedHeld = 0;
const seenKinds = new Set();

function describe(e) {
  const d = e.data || {};
  const parts = [];
  const id = d.task_id || (d.task && d.task.id);
  if (id) parts.push(shortId(id));
  if (d.task && d.task.kind) parts.push(d.task.kind);
  if (d.priority) parts.push(d.priority);
  if (d.agent_id !== undefined && d.agent_id !== null) parts.push("agent-" + d.agent_id);
  if (d.attempt) parts.push("attempt " + d.attempt);
  if (d.attempts) parts.push(d.attempts + " attempts");
  if (d.queue_wait !== undefined) parts.push("waited " + fmtMs(d.queue_wait / 1000));
  if (d.duration !== undefined) parts.push("took " + fmtMs(d.duration / 1000));
  if (d.error) parts.push(d.error);
  if (d.errors && d.errors.length) parts.push(d.errors[d.errors.length - 1]);
  if (d.task_ids) parts.push(d.task_ids.length + " tasks");
  if (d.from !== undefined && d.to !== undefined) parts.push("agent-" + d.from + " → agent-" + d.to);
  return parts.join(" · ");
}

function addKind(name) {
  if (seenKinds.has(name)) return;
  seenKinds.add(name);
  const select = $("feed-filter");
  const options = [...seenKinds].sort().map((k) => el("option", { value: k, text: k }));
  const current = select.value;
  select.replaceChildren(el("option", { value: "", text: "all events" }), ...options);
  select.value = current;
}

function onEvent(e) {
  addKind(e.event);
  if (e.event === "task:completed" || e.event === "task:dead_lettered" || e.event === "task:dead_letter_retried") scheduleDeadRefresh();
  if (feedPaused) {
    feedHeld++;
    $("feed-note").textContent = feedHeld + " new events held while paused";
    return;
  }
  const filter = $("feed-filter").value;
  if (filter && e.event !== filter) return;
  const feed = $("feed");
  feed.prepend(el("li", {},
    el("span", { class: "seq", text: "#" + e.seq }),
    el("span", { class: "time", text: timeOf(e.timestamp) }),
    el("span", { class: "name n-" + eventClass(e.event), text: e.event }),
    el("span", { class: "detail", title: describe(e), text: describe(e) })));
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

let deadTimer = 0;
function scheduleDeadRefresh() {
  if (deadTimer) return;
  deadTimer = setTimeout(() => { deadTimer = 0; refreshDead(); }, 300);
}

function setConn(text, cls) {
  const c = $("conn");
  c.textContent = text;
  c.className = "pill " + (cls || "pill-ok");
}

// Reads the SSE stream; on a drop, reconnects with Last-Event-ID, so the feed
// goes on from the log where it stopped.
async function streamEvents() {
  let last = null;
  let delay = 500;
  for (;;) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (last !== null) headers["Last-Event-ID"] = String(last);
      const t = token.get();
      if (t) headers.Authorization = "Bearer " + t;
      const res = await fetch("/api/v1/events", { headers, cache: "no-store" });
      if (res.status === 401) {
        setConn("token needed", "pill-wait");
        await askToken();
        continue;
      }
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      setConn("live");
      delay = 500;
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id = null, type = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) id = line.slice(3).trim();
            else if (line.startsWith("event:")) type = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
          }
          if (!data) continue;
          if (id !== null) last = Number(id);
          const payload = JSON.parse(data);
          if (type === "message") onEvent(payload);
          else if (type === "gap") toast("events " + payload.requested + "–" + (payload.earliest - 1) + " are no longer in the log", true);
          else if (type === "error") toast("event stream: " + payload.error, true);
        }
      }
      setConn("reconnecting", "pill-wait");
    } catch (e) {
      setConn("reconnecting", "pill-wait");
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 10000);
  }
}

// --- wiring ----------------------------------------------------------------------

function start() {
  showTokenState();
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token-input").value.trim();
    if (value) token.set(value);
    $("token-dialog").close();
    answerToken(value || null);
  });
  $("token-cancel").addEventListener("click", () => { $("token-dialog").close(); answerToken(null); });
  $("token-dialog").addEventListener("cancel", () => answerToken(null));
  $("token-btn").addEventListener("click", () => {
    if (token.get()) { token.clear(); toast("token forgotten for this tab"); } else askToken();
  });
  $("pause-btn").addEventListener("click", async () => {
    const r = await act("POST", paused ? "/api/v1/resume" : "/api/v1/pause", undefined, paused ? "resumed" : "paused: running tasks finish, no new one starts");
    if (r) { paused = r.paused; $("pause-btn").textContent = paused ? "Resume" : "Pause"; }
  });
  $("scale-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const n = Number($("scale-input").value);
    if (!Number.isInteger(n) || n < 0) { toast("the agent count is a whole number", true); return; }
    const r = await act("POST", "/api/v1/agents", { count: n });
    if (r) toast(r.agents + " agents active");
  });
  $("lookup-form").addEventListener("submit", (ev) => { ev.preventDefault(); lookup($("lookup-input").value); });
  $("feed-pause").addEventListener("click", () => {
    feedPaused = !feedPaused;
    $("feed-pause").textContent = feedPaused ? "Resume" : "Pause";
    if (!feedPaused) { feedHeld = 0; $("feed-note").textContent = ""; }
  });
  $("feed-filter").addEventListener("change", () => { $("feed").replaceChildren(); });
  if (location.hash.startsWith("#task-")) lookup(location.hash.slice(1));
  pollOverview();
  pollDead();
  streamEvents();
}

document.addEventListener("DOMContentLoaded", start);
