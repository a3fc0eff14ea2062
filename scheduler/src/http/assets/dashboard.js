// jobfleet dashboard: polls the JSON API (same origin, session cookie) and redraws.
// Everything from the API is shown with textContent: job kinds, reasons and payload
// results are user data.
"use strict";

const OVERVIEW_EVERY_MS = 2000;
const SLOW_EVERY_MS = 5000;
const HISTORY_MS = 5 * 60 * 1000;
const COLORS = ["#3554d1", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d35400", "#2c3e50"];

const history = new Map(); // queue -> [[t, depth], ...]
let previous = null; // last overview, for rates
let deadFilter = {};
let messageUntil = 0; // an action's message stays this long before "updated …" replaces it

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function cell(value, className) {
  return el("td", { className: className || "" }, value === null || value === undefined ? "–" : value);
}

function time(ms) {
  return ms ? new Date(ms).toLocaleString() : "–";
}

function age(ms) {
  const s = Math.floor(ms / 1000);
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 3600000) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function jobLink(id) {
  const a = el("a", { className: "job", title: "show this job" }, id);
  a.dataset.job = id;
  a.addEventListener("click", () => showJob(id));
  return a;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (response.status === 401) {
    window.location.assign("/");
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
}

function setStatus(text, bad, hold) {
  if (hold) messageUntil = Date.now() + 8000;
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = bad ? "error" : "";
}

function replaceRows(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
}

// ---- overview: totals, queues, workers, chart -------------------------------------

function renderOverview(o) {
  const dead = o.queues.reduce((sum, q) => sum + q.dead, 0);
  document.getElementById("total-workers").textContent = o.workers.length;
  document.getElementById("total-running").textContent = o.running;
  document.getElementById("total-dead").textContent = dead;
  // Rates are differences between two polls; a worker that left takes its counts along,
  // so a drop counts as nothing done.
  const before = previous && o.now_ms > previous.now_ms ? previous : null;
  const seconds = before ? (o.now_ms - before.now_ms) / 1000 : 0;
  const perSecond = (now, then) => (Math.max(0, now - then) / seconds).toFixed(1);
  if (before) {
    const done = Math.max(0, o.completed - before.completed);
    const failed = Math.max(0, o.failed - before.failed);
    document.getElementById("total-throughput").textContent = `${(done / seconds).toFixed(1)}/s`;
    const rate = done + failed > 0 ? (100 * failed) / (done + failed) : 0;
    document.getElementById("total-failure-rate").textContent = `${rate.toFixed(1)}%`;
  }
  previous = o;
  const earlier = new Map((before ? before.queues : []).map((q) => [q.queue, q]));

  replaceRows("queues", o.queues.map((q) => {
    const row = el("tr", {},
      cell(q.queue, "name"),
      cell(q.ready, "num ready"),
      cell(q.unacked, "num unacked"),
      cell(q.delayed, "num delayed"),
      cell(q.dead, "num dead"),
      cell(q.oldest_waiting_ms === null ? null : age(q.oldest_waiting_ms), "num oldest"),
      cell(before ? perSecond(q.completed, (earlier.get(q.queue) || q).completed) : null, "num done-rate"),
      cell(before ? perSecond(q.failed, (earlier.get(q.queue) || q).failed) : null, "num failed-rate"));
    row.dataset.queue = q.queue;
    return row;
  }));

  replaceRows("workers", o.workers.map((w) => {
    const jobs = el("td", { className: "jobs" });
    for (const id of w.running_jobs || []) jobs.append(jobLink(id), " ");
    const row = el("tr", {},
      cell(w.id),
      cell(w.queues.join(", ")),
      cell(`${w.running} / ${w.concurrency}`, "num"),
      cell(w.completed, "num"),
      cell(w.failed, "num"),
      cell(time(w.started_at_ms)),
      jobs);
    row.dataset.worker = w.id;
    return row;
  }));

  for (const q of o.queues) {
    const depth = (q.ready || 0) + (q.unacked || 0) + q.delayed;
    if (!history.has(q.queue)) history.set(q.queue, []);
    history.get(q.queue).push([o.now_ms, depth]);
  }
  for (const points of history.values()) {
    while (points.length && points[0][0] < o.now_ms - HISTORY_MS) points.shift();
  }
  drawChart(o.now_ms);
}

function drawChart(now) {
  const canvas = document.getElementById("depth-chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 48, bottom = 20;
  ctx.clearRect(0, 0, w, h);
  let top = 1;
  for (const points of history.values()) for (const [, d] of points) top = Math.max(top, d);
  // A round top for the axis whose quarters are whole numbers: 4, 8, 20, 40, 80, 200, …
  let max = 4;
  for (let k = 1; max < top; k *= 10) max = [4, 8, 20].map((c) => c * k).find((m) => m >= top) || 40 * k;
  ctx.strokeStyle = "#e4e7ec";
  ctx.fillStyle = "#667085";
  ctx.font = "11px system-ui, sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = 8 + ((h - bottom - 8) * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(String(Math.round(max * (1 - i / 4))), 4, y + 4);
  }
  ctx.fillText("-5 min", left, h - 4);
  ctx.fillText("now", w - 24, h - 4);
  const legend = document.getElementById("depth-legend");
  legend.replaceChildren();
  let i = 0;
  for (const [queue, points] of history) {
    const color = COLORS[i++ % COLORS.length];
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach(([t, d], k) => {
      const x = left + ((w - left) * (t - (now - HISTORY_MS))) / HISTORY_MS;
      const y = 8 + (h - bottom - 8) * (1 - d / max);
      if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const swatch = el("span");
    swatch.style.background = color;
    const last = points.length ? points[points.length - 1][1] : 0;
    legend.append(el("li", {}, swatch, `${queue}: ${last}`));
  }
  ctx.lineWidth = 1;
}

// ---- dead letters ----------------------------------------------------------------

async function refreshDead() {
  const query = new URLSearchParams(Object.assign({ limit: "100" }, deadFilter));
  const letters = await api(`/api/dead?${query}`);
  replaceRows("dead", letters.map((l) => {
    const replay = el("button", { className: "replay", type: "button" }, "Replay");
    replay.addEventListener("click", () => act(`/api/dead/replay`, { ids: [l.id] }, `replayed ${l.id}`));
    const purge = el("button", { className: "purge", type: "button" }, "Purge");
    purge.addEventListener("click", () => {
      if (window.confirm(`Remove the dead letter of ${l.id} for good?`)) {
        act(`/api/dead/purge`, { ids: [l.id] }, `purged ${l.id}`);
      }
    });
    const row = el("tr", {},
      el("td", {}, jobLink(l.id)),
      cell(l.queue),
      cell(l.kind),
      cell(l.reason),
      cell(time(l.died_at_ms)),
      el("td", {}, replay, " ", purge));
    row.dataset.id = l.id;
    return row;
  }));
}

// ---- schedules -------------------------------------------------------------------

async function refreshSchedules() {
  const schedules = await api("/api/schedules");
  replaceRows("schedules", schedules.map((s) => {
    const buttons = el("td");
    const toggle = s.status === "paused" ? "resume" : "pause";
    for (const action of [toggle, "trigger"]) {
      const b = el("button", { className: action, type: "button" }, action[0].toUpperCase() + action.slice(1));
      b.addEventListener("click", () =>
        act(`/api/schedules/${encodeURIComponent(s.name)}/${action}`, {}, `${action}: ${s.name}`));
      buttons.append(b, " ");
    }
    const row = el("tr", {},
      cell(s.name),
      cell(s.spec.cron),
      cell(s.spec.timezone),
      cell(`${s.spec.queue} / ${s.spec.kind}`),
      cell(s.status),
      cell(time(s.next_fire_ms)),
      buttons);
    row.dataset.schedule = s.name;
    return row;
  }));
}

// ---- one job ---------------------------------------------------------------------

async function showJob(id) {
  document.getElementById("job-id").value = id;
  const detail = document.getElementById("job-detail");
  try {
    const job = await api(`/api/jobs/${encodeURIComponent(id)}`);
    const r = job.record || {};
    const list = el("dl");
    const add = (name, value, className) => {
      if (value === null || value === undefined || value === "") return;
      list.append(el("dt", {}, name), el("dd", { className: className || "" }, value));
    };
    add("Id", job.id);
    add("State", r.state, "state");
    add("Queue / kind", r.queue ? `${r.queue} / ${r.kind}` : null);
    add("Attempt", r.attempt ? `${r.attempt} of ${r.max_attempts}` : null);
    add("Enqueued", r.enqueued_at_ms ? time(r.enqueued_at_ms) : null);
    add("Started", r.started_at_ms ? time(r.started_at_ms) : null);
    add("Finished", r.finished_at_ms ? time(r.finished_at_ms) : null);
    add("Progress", r.progress !== null && r.progress !== undefined ? `${Math.round(r.progress * 100)}%` : null);
    add("Progress note", r.progress_note);
    add("Worker", r.worker);
    add("Note", r.note);
    add("Last error", r.last_error ? `attempt ${r.last_error.attempt}: ${r.last_error.kind}: ${r.last_error.message}` : null, "error-text");
    if (job.dead_letter) {
      add("Dead", job.dead_letter.reason, "error-text");
      const errors = job.dead_letter.errors.map((e) => `attempt ${e.attempt} (${time(e.at_ms)}): ${e.kind}: ${e.message}`);
      add("Error history", errors.join("\n"), "error-text");
    }
    add("Result", r.result !== null && r.result !== undefined ? JSON.stringify(r.result, null, 2) : null);
    const cancel = el("button", { id: "job-cancel", type: "button" }, "Cancel");
    cancel.addEventListener("click", () => act(`/api/jobs/${encodeURIComponent(id)}/cancel`, {}, `cancel ${id}`));
    detail.replaceChildren(list, cancel);
    detail.dataset.job = id;
  } catch (e) {
    detail.replaceChildren(el("p", { className: "error-text" }, e.message));
  }
}

// ---- actions and polling ---------------------------------------------------------

async function act(path, body, what) {
  try {
    const result = await post(path, body);
    const notReplayed = (result.not_replayable || []).length + (result.not_found || []).length;
    setStatus(notReplayed ? `${what}: not done (${JSON.stringify(result)})` : `${what}: done`, notReplayed > 0, true);
  } catch (e) {
    setStatus(`${what}: ${e.message}`, true, true);
  }
  await Promise.allSettled([refreshOverview(), refreshDead(), refreshSchedules()]);
  const shown = document.getElementById("job-detail").dataset.job;
  if (shown) showJob(shown);
}

async function refreshOverview() {
  try {
    renderOverview(await api("/api/overview"));
    if (Date.now() > messageUntil) setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    setStatus(`cannot reach the API: ${e.message}`, true);
  }
}

function every(ms, f) {
  f();
  setInterval(f, ms);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("job-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = document.getElementById("job-id").value.trim();
    if (id) showJob(id);
  });
  document.getElementById("dead-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    deadFilter = {};
    for (const name of ["queue", "kind", "error"]) {
      const value = document.getElementById(`dead-${name}`).value.trim();
      if (value) deadFilter[name] = value;
    }
    refreshDead().catch((e) => setStatus(e.message, true));
  });
  every(OVERVIEW_EVERY_MS, refreshOverview);
  every(SLOW_EVERY_MS, () => refreshDead().catch((e) => setStatus(e.message, true)));
  every(SLOW_EVERY_MS, () => refreshSchedules().catch((e) => setStatus(e.message, true)));
});
