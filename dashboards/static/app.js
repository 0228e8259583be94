// Vigil dashboard: the ward overview, alarm list, patient view and timeline.
//
// Data flow: Feed (WebSocket) -> WardState.apply / TimelineLog.add, which only mark what
// changed; one requestAnimationFrame loop paints the changes, the ECG strips of the
// tiles on screen, and once a second the ages, the header and the audible cue. Nothing
// touches the DOM per event, so a catch-up of thousands of events costs one repaint,
// and 64 tiles updating every second cost one small repaint each.
//
// No build step and no dependencies: ES modules served from /static/.

import { AlarmAudio } from "./audio.js";
import { AlarmList, ago, setText } from "./alarms.js";
import { EcgBuffer, LivePoller, Playhead, drawStrip, fitCanvas } from "./ecg.js";
import { Feed } from "./feed.js";
import { PatientView } from "./patient.js";
import { TimelineLog, ectopy, exportJsonLines, renderRows } from "./timeline.js";
import { WardState } from "./ward.js";

const STALE_MS = 15_000;          // no vitals for 15 s: the tile says so (a monitor may be off)
const TILE_FRAME_MS = 33;         // tile strips at most ~30 frames a second
const METRIC_CAP = 20_000;
const TOKEN_KEY = "vigil.token";
const MAY = {
  nurse: ["view_patient", "acknowledge", "silence", "escalate", "note"],
  physician: ["view_patient", "acknowledge", "silence", "escalate", "note", "set_limits"],
  auditor: ["view_patient"],
  admin: ["view_patient", "acknowledge", "silence", "escalate", "note", "set_limits"],
};

const $ = (id) => document.getElementById(id);

// ---- state ------------------------------------------------------------------------
const state = new WardState();
const timeline = new TimelineLog();
const buffers = new Map();        // patient id -> EcgBuffer
const tiles = new Map();          // patient id -> tile record
const audio = new AlarmAudio();
let hello = null;
let token = null;
let tokenSource = null;           // "fragment" | "session" | "demo" | "login"
let demoRetried = false;
let view = "ward";
const dirty = { tiles: new Set(), alarms: true, header: true, timeline: true, patient: false };
const metrics = { vitalsDisplayMs: [], alarmDisplay: [], frameMs: [], frameWorkMs: [], longFrames: [], live: false };
// Long animation frames (Chromium): how much of a slow frame was our script and how much
// style, layout and paint, to tell the page's own cost from a busy machine's.
if (typeof PerformanceObserver !== "undefined" &&
    (PerformanceObserver.supportedEntryTypes || []).includes("long-animation-frame")) {
  new PerformanceObserver((list) => {
    if (!metrics.live) return;
    for (const e of list.getEntries()) {
      const render = e.renderStart ? e.startTime + e.duration - e.renderStart : 0;
      push(metrics.longFrames, { duration: e.duration, blocking: e.blockingDuration, render,
        script: e.scripts.reduce((sum, x) => sum + x.duration, 0) });
    }
  }).observe({ type: "long-animation-frame", buffered: false });
}

function push(list, v) {
  list.push(v);
  if (list.length > METRIC_CAP) list.splice(0, list.length - METRIC_CAP);
}

// ---- toasts -------------------------------------------------------------------------
let toastTimer = null;
function toast(text, kind = "ok") {
  const t = $("toast");
  t.textContent = text;
  t.dataset.kind = kind;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, kind === "error" ? 8000 : 3000);
}

// ---- token ----------------------------------------------------------------------------
function tokenFromFragment() {
  const m = location.hash.match(/[#&]token=([^&]+)/);
  if (!m) return null;
  // Out of the address bar and history at once: the fragment is never sent to a server,
  // but it would stay visible on screen and in the browser's history.
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(m[1]);
}

async function demoToken() {
  try {
    const r = await fetch("/demo-token", { cache: "no-store" });
    if (!r.ok) return null;
    const body = await r.json();
    return typeof body.token === "string" ? body.token : null;
  } catch {
    return null;
  }
}

async function obtainToken() {
  if (token) return token;
  const fromFragment = tokenFromFragment();
  if (fromFragment) {
    token = fromFragment;
    tokenSource = "fragment";
  } else if (sessionStorage.getItem(TOKEN_KEY)) {
    token = sessionStorage.getItem(TOKEN_KEY);
    tokenSource = "session";
  } else {
    token = await demoToken();
    tokenSource = token ? "demo" : null;
  }
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  return token;
}

function showLogin(reason) {
  $("login").hidden = false;
  setText($("login-reason"), reason === "no token" ? "This gateway needs a token to show patient data." :
    `The gateway refused the token: ${reason}.`);
  $("token-input").focus();
}

$("token-go").addEventListener("click", () => {
  const t = $("token-input").value.trim();
  if (!t) return;
  token = t;
  tokenSource = "login";
  sessionStorage.setItem(TOKEN_KEY, t);
  $("login").hidden = true;
  $("token-input").value = "";
  // Possibly another person, who may see other wards: start again from the beginning.
  resetData();
  feed.position = 0;
  hello = null;
  feed.start();
});

// ---- feed -----------------------------------------------------------------------------
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const feed = new Feed({
  url: wsUrl,
  token: obtainToken,
  onHello(msg) {
    // The first connection, or another user after a sign-in (which restarts from 0):
    // the timeline checks continuity only for a feed that is complete from position 1.
    if (!hello || hello.user !== msg.user) timeline.reset(Boolean(msg.all_wards) && feed.position === 0);
    hello = msg;
    const wards = msg.all_wards ? "all wards" : (msg.wards || []).join(", ") || "no wards";
    setText($("who"), `${msg.user} (${msg.role}) · ${wards}`);
    $("login").hidden = true;
    dirty.header = dirty.alarms = true;
  },
  onEvent(ev, live) {
    timeline.add(ev);
    dirty.timeline = true;
    const changed = state.apply(ev);
    if (changed.patient) {
      if (!tiles.has(changed.patient)) createTile(changed.patient);
      dirty.tiles.add(changed.patient);
      if (changed.patient === patientView.patientId) dirty.patient = true;
    }
    if (changed.alarm) {
      dirty.alarms = dirty.header = true;
      if (live && changed.raised) audioTick(Date.now(), true);
    }
  },
  onCaughtUp() {
    metrics.live = true;
    dirty.header = dirty.alarms = true;
    for (const id of tiles.keys()) dirty.tiles.add(id);
  },
  onStatus(s, text) {
    $("conn").dataset.state = s;
    setText($("conn-text"), text);
    if (s !== "live") metrics.live = false;
  },
  async onAuthFailed(reason) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    if (tokenSource === "demo" && !demoRetried) {
      demoRetried = true;   // a demo token expired: the gateway hands out another once
      feed.start();
      return;
    }
    showLogin(reason);
  },
  onReset: resetData,
});

function resetData() {
  state.patients.clear();
  state.alarms.clear();
  state.position = 0;
  timeline.reset(Boolean(hello && hello.all_wards));
  for (const t of tiles.values()) t.el.remove();
  tiles.clear();
  buffers.clear();
  dirty.alarms = dirty.header = dirty.timeline = true;
}

function may(action) {
  return Boolean(hello && (MAY[hello.role] || []).includes(action));
}

function patientLabel(id) {
  const p = state.patients.get(id);
  if (!p) return id;
  return [p.bed ? `Bed ${p.bed}` : null, id, p.ward].filter(Boolean).join(" · ");
}

const ctx = {
  state, buffers, may, toast, patientLabel,
  token: () => token,
  alarm: (id) => state.alarms.get(id),
  command: (fields) => feed.command(fields),
  refresh: () => { dirty.alarms = true; dirty.patient = true; },
  openAlarm: (a) => { openPatient(a.patientId).then(() => patientView.disclose(a)); },
};

// ---- tiles ----------------------------------------------------------------------------
const grid = $("grid");
const visible = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const t = tiles.get(e.target.dataset.patient);
    if (t) t.visible = e.isIntersecting;
  }
});
new ResizeObserver(() => { for (const t of tiles.values()) t.sized = false; }).observe(grid);

function sortKey(id) {
  const p = state.patients.get(id);
  const bed = p && p.bed ? p.bed.padStart(6, "0") : "~";
  return `${(p && p.ward) || "~"}|${bed}|${id}`;
}

function createTile(id) {
  const el = $("tile-tpl").content.firstElementChild.cloneNode(true);
  el.dataset.patient = id;
  el.dataset.testid = `tile-${id}`;
  const f = {};
  for (const n of el.querySelectorAll("[data-field]")) f[n.dataset.field] = n;
  const t = {
    id, el, f, name: el.querySelector(".name"), badge: el.querySelector(".alarm-badge"),
    score: el.querySelector(".news2 .score"), risk: el.querySelector(".news2 .risk"),
    rows: Object.fromEntries([...el.querySelectorAll("[data-v]")].map((n) => [n.dataset.v, n])),
    canvas: el.querySelector("canvas.strip"), playhead: new Playhead(), visible: false, sized: false,
    ecgStatus: "ok", shownAt: NaN,
  };
  tiles.set(id, t);
  el.addEventListener("click", () => openPatient(id));
  el.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openPatient(id); } });
  const key = sortKey(id);
  const after = [...grid.children].find((c) => sortKey(c.dataset.patient) > key) || null;
  grid.insertBefore(el, after);
  visible.observe(el);
  $("empty").hidden = true;
  return t;
}

function fmt(v, d = 0) {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(d) : "--";
}

// The NEWS2 component (detectors/news2.py `components`) behind each tile row: a row whose
// parameter scores points is marked (▲ for 1-2, ▲▲ for 3) as well as coloured.
const COMPONENT = { hr: "hr", spo2: "spo2", rr: "rr", temp: "temp", bp: "sbp" };

function paintTile(t, now) {
  const p = state.patients.get(t.id);
  if (!p) return;
  const v = p.vitals;
  setText(t.name, p.bed ? `Bed ${p.bed} · ${t.id}` : t.id);
  t.el.title = patientLabel(t.id);
  setText(t.f.hr, fmt(v.hr));
  setText(t.f.spo2, fmt(v.spo2));
  setText(t.f.o2, v.oxygen ? "on O₂" : "");
  setText(t.f.rr, fmt(v.rr));
  setText(t.f.temp, fmt(v.temp, 1));
  setText(t.f.bp, `${fmt(v.sbp)}/${fmt(v.dbp)}`);
  if (p.news2) {
    setText(t.score, `NEWS2 ${p.news2.score}`);
    setText(t.risk, `${p.news2.risk} risk`);
    t.risk.className = `risk risk-${p.news2.risk}`;
    t.el.dataset.news2Risk = p.news2.risk;
    const comp = p.news2.components || {};
    for (const [row, name] of Object.entries(COMPONENT)) {
      const points = comp[name];
      if (typeof points === "number" && points > 0) t.rows[row].dataset.points = String(Math.min(points, 3));
      else delete t.rows[row].dataset.points;
    }
  }
  if (p.ecg && typeof p.ecg.heart_rate === "number") {
    setText(t.f.ecg, `ECG HR ${fmt(p.ecg.heart_rate)}${ectopy(p.ecg.beat_classes)}`);
  }
  const { top, unacknowledged } = state.topAlarm(t.id);
  if (top) {
    t.el.dataset.alarm = top.priority;
    t.badge.hidden = false;
    // "HIGH ALARM · ACK · 1 NEW": the acknowledged high alarm still leads, and a newer
    // unacknowledged one (of lower priority) is not hidden behind it.
    t.badge.className = `alarm-badge p-${top.priority}${top.ackBy && !unacknowledged ? " acked" : ""}`;
    setText(t.badge, `${top.priority.toUpperCase()} ALARM${top.ackBy ? " · ACK" : ""}` +
      (top.ackBy && unacknowledged ? ` · ${unacknowledged} NEW` : ""));
  } else {
    delete t.el.dataset.alarm;
    t.badge.hidden = true;
  }
  if (metrics.live && Number.isFinite(p.vitalsAt) && p.vitalsAt !== t.shownAt) {
    push(metrics.vitalsDisplayMs, now - p.vitalsAt);   // device time -> on screen (this frame)
  }
  t.shownAt = p.vitalsAt;
  paintAge(t, now);
}

function paintAge(t, now) {
  const p = state.patients.get(t.id);
  if (!p || !Number.isFinite(p.vitalsAt)) return;
  const age = now - p.vitalsAt;
  setText(t.f.age, `vitals ${ago(age)}`);
  if (age > STALE_MS) t.el.dataset.stale = "true";
  else delete t.el.dataset.stale;
}

function drawTileStrip(t, now) {
  if (!t.sized) { fitCanvas(t.canvas); t.sized = true; }
  const buf = buffers.get(t.id);
  const c = t.canvas.getContext("2d");
  if (t.ecgStatus !== "ok" || !buf || !buf.runs.length) {
    c.clearRect(0, 0, t.canvas.width, t.canvas.height);
    c.fillStyle = "#a9b6c3";
    c.font = `${12 * (window.devicePixelRatio || 1)}px system-ui, sans-serif`;
    c.fillText(t.ecgStatus === "ok" ? "ECG: waiting for signal" : `ECG: ${t.ecgDetail}`, 6, t.canvas.height / 2);
    return;
  }
  drawStrip(t.canvas, buf, t.playhead.rightEdge(buf, now), { mmPerMv: 5, baseline: 0.6 });
}

// ---- alarms ---------------------------------------------------------------------------
const alarmList = new AlarmList($("alarms"), ctx);

function paintAlarms(now) {
  const active = state.activeAlarms();
  const added = alarmList.render(active, now);
  if (metrics.live) {
    for (const id of added) {
      const a = state.alarms.get(id);
      push(metrics.alarmDisplay, { alertId: id, deviceMs: now - a.raisedMs, commitMs: now - a.recordedMs });
    }
  }
  $("no-alarms").hidden = active.length > 0;
  setText($("alarm-count"), active.length ? `(${active.length})` : "");
  const resolved = [...state.alarms.values()].filter((a) => !a.active)
    .sort((a, b) => b.resolvedMs - a.resolvedMs).slice(0, 20);
  const box = $("resolved");
  if (box.dataset.key !== resolved.map((a) => a.id).join(",")) {
    box.dataset.key = resolved.map((a) => a.id).join(",");
    box.replaceChildren(...resolved.map((a) => {
      const li = document.createElement("li");
      li.textContent = `${new Date(a.resolvedMs).toLocaleTimeString([], { hour12: false })} ${patientLabel(a.patientId)}: ` +
        `${a.message} (${a.priority}) — ${a.resolvedReason}${a.ackBy ? `, acknowledged by ${a.ackBy}` : ""}`;
      return li;
    }));
  }
}

function paintHeader() {
  const open = state.activeAlarms().filter((a) => !a.ackBy);
  const s = $("alarm-summary");
  if (!open.length) {
    s.hidden = true;
    return;
  }
  const n = { high: 0, medium: 0, low: 0 };
  for (const a of open) n[a.priority] = (n[a.priority] || 0) + 1;
  s.hidden = false;
  s.dataset.priority = open[0].priority;
  setText(s, `${["high", "medium", "low"].filter((k) => n[k]).map((k) => `${n[k]} ${k.toUpperCase()}`).join(" · ")} unacknowledged`);
}

$("alarm-summary").addEventListener("click", () => showView("ward"));

// ---- sound ----------------------------------------------------------------------------
$("sound").addEventListener("click", () => {
  const b = $("sound");
  if (audio.enabled) audio.disable(); else audio.enable();
  b.setAttribute("aria-pressed", String(audio.enabled));
  b.textContent = audio.enabled ? "Sound: on" : "Sound: off";
  if (audio.enabled) audioTick(Date.now(), true);
});

function audioTick(now, force = false) {
  if (!force && !metrics.live) return;
  audio.tick(state.activeAlarms(), now);
}

// ---- views ----------------------------------------------------------------------------
const patientView = new PatientView(ctx);

function showView(name) {
  view = name;
  for (const panel of document.querySelectorAll("[data-view-panel]")) panel.hidden = panel.dataset.viewPanel !== name;
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-pressed", String(tab.dataset.view === name));
  if (name !== "patient") patientView.close();
  if (name === "ward") for (const t of tiles.values()) { t.sized = false; dirty.tiles.add(t.id); }
  dirty.timeline = dirty.alarms = true;
}

async function openPatient(id) {
  showView("patient");
  window.scrollTo(0, 0);
  await patientView.open(id);
}

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
$("pv-back").addEventListener("click", () => showView("ward"));
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && view === "patient") showView("ward"); });

// ---- timeline -------------------------------------------------------------------------
let timelineLimit = 300;
function filters() {
  return { kind: $("tl-kind").value, patient: $("tl-patient").value.trim(), actor: $("tl-actor").value.trim() };
}
function paintTimeline() {
  const rows = timeline.select(filters(), timelineLimit + 1);
  renderRows($("tl-rows"), rows.slice(0, timelineLimit));
  $("tl-more").hidden = rows.length <= timelineLimit;
  const s = timeline.summary();
  const p = $("tl-summary");
  p.textContent = s.text;
  p.className = s.ok === false ? "tl-summary bad" : "tl-summary";
  p.dataset.ok = String(s.ok);
}
for (const id of ["tl-kind", "tl-patient", "tl-actor"]) {
  $(id).addEventListener("input", () => { timelineLimit = 300; dirty.timeline = true; });
}
$("tl-more").addEventListener("click", () => { timelineLimit += 300; dirty.timeline = true; });
$("tl-export").addEventListener("click", () => {
  exportJsonLines(timeline.select(filters()), `vigil-timeline-${new Date().toISOString().replace(/[:.]/g, "-")}.jsonl`);
});
$("tl-filters").addEventListener("submit", (e) => e.preventDefault());

// ---- live ECG polling -----------------------------------------------------------------
const poller = new LivePoller({
  token: () => token,
  buffers,
  wanted: function* wanted() {
    if (view === "ward") for (const t of tiles.values()) if (t.visible) yield t.id;
    if (view === "patient" && patientView.patientId) yield patientView.patientId;
  },
  onStatus(id, status, detail) {
    const t = tiles.get(id);
    if (t) { t.ecgStatus = status; t.ecgDetail = detail; }
  },
});

// ---- the frame loop -------------------------------------------------------------------
let lastFrame = NaN, lastTiles = 0, lastSecond = 0, lastTimeline = 0;
function frame() {
  const now = Date.now();
  const perf = performance.now();
  if (metrics.live && Number.isFinite(lastFrame)) push(metrics.frameMs, perf - lastFrame);
  lastFrame = perf;
  const second = now - lastSecond >= 1000;
  if (second) {
    lastSecond = now;
    for (const t of tiles.values()) if (t.visible) paintAge(t, now);
    dirty.alarms = dirty.header = true;
    if (view === "patient") dirty.patient = true;
    audioTick(now);
  }
  if (view === "ward") {
    for (const id of dirty.tiles) { const t = tiles.get(id); if (t) paintTile(t, now); }
    dirty.tiles.clear();
    if (perf - lastTiles >= TILE_FRAME_MS) {
      lastTiles = perf;
      for (const t of tiles.values()) if (t.visible) drawTileStrip(t, now);
    }
  }
  if (dirty.alarms && view === "ward") { paintAlarms(now); dirty.alarms = false; }
  if (dirty.header) { paintHeader(); dirty.header = false; }
  setText($("pos"), String(feed.position));
  if (view === "patient") {
    if (dirty.patient) { patientView.render(now); dirty.patient = false; }
    patientView.frame(now);
  }
  if (view === "timeline" && dirty.timeline && perf - lastTimeline >= 1000) {
    lastTimeline = perf;
    paintTimeline();
    dirty.timeline = false;
  }
  if (metrics.live) push(metrics.frameWorkMs, performance.now() - perf);
  requestAnimationFrame(frame);
}

// Hooks for the end-to-end tests and bench/alerts.py (read-only use).
window.vigil = { state, timeline, metrics, audio, feed, buffers, openPatient, showView };

feed.start();
poller.start();
requestAnimationFrame(frame);
