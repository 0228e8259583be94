// The patient view's pictures: trend charts of the last hours, and the full-disclosure
// ECG around an alarm, drawn on its own millimetre grid so a screenshot or a print
// keeps the scale (25 mm/s, 10 mm/mV).

import { PAPER_SPEED_MM_S, PX_PER_MM, EcgBuffer, drawStrip } from "./ecg.js";
import { TREND_BUCKET_MS } from "./ward.js";

/** One chart per parameter: [label, unit, columns, fixed range, decimals]. */
export const TREND_CHARTS = [
  ["HR", "bpm", ["hr"], [40, 160], 0],
  ["SpO₂", "%", ["spo2"], [80, 100], 0],
  ["RR", "/min", ["rr"], [5, 35], 0],
  ["BP", "mmHg", ["sbp", "dbp"], [40, 200], 0],
  ["Temp", "°C", ["temp"], [34, 41], 1],
  ["NEWS2", "", ["news2"], [0, 12], 0],
];
const LINE = ["#4cc9f0", "#f7b267"];
const PRIORITY_COLOUR = { high: "#ff4d4d", medium: "#ff9f1a", low: "#5cc8ff" };

function timeLabel(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
}

/**
 * Draw one trend chart of `trend` over [fromMs, toMs]. `marks`: alarms as
 * {ms, priority, label}, drawn as vertical lines with their priority in words.
 */
export function drawTrend(canvas, trend, spec, fromMs, toMs, marks = []) {
  const [label, unit, cols, range, decimals] = spec;
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  const dpr = w / Math.max(1, canvas.clientWidth || w);
  ctx.clearRect(0, 0, w, h);
  const padL = 44 * dpr, padR = 8 * dpr, padT = 16 * dpr, padB = 14 * dpr;
  let [lo, hi] = range;
  let last = null;
  for (const c of cols) {
    const col = trend.cols[c];
    for (let i = 0; i < trend.t.length; i++) {
      const v = col[i];
      if (v === null || v === undefined || trend.t[i] < fromMs) continue;
      if (v < lo) lo = Math.floor(v - 1);
      if (v > hi) hi = Math.ceil(v + 1);
    }
    for (let i = trend.t.length - 1; i >= 0; i--) {
      if (col[i] !== null && col[i] !== undefined) { if (last === null) last = []; last.push(col[i]); break; }
    }
  }
  const x = (t) => padL + (t - fromMs) / (toMs - fromMs) * (w - padL - padR);
  const y = (v) => padT + (hi - v) / (hi - lo) * (h - padT - padB);

  ctx.font = `${11 * dpr}px system-ui, sans-serif`;
  ctx.fillStyle = "#a9b6c3";
  ctx.strokeStyle = "rgba(169,182,195,.18)";
  ctx.lineWidth = 1;
  ctx.textBaseline = "middle";
  for (const v of [lo, (lo + hi) / 2, hi]) {
    ctx.beginPath(); ctx.moveTo(padL, y(v)); ctx.lineTo(w - padR, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(decimals), 4 * dpr, y(v));
  }
  ctx.textBaseline = "alphabetic";
  const hours = (toMs - fromMs) / 3600_000;
  const step = hours > 4 ? 3600_000 : hours > 1 ? 1800_000 : 900_000;
  for (let t = Math.ceil(fromMs / step) * step; t <= toMs; t += step) {
    ctx.beginPath(); ctx.moveTo(x(t), padT); ctx.lineTo(x(t), h - padB); ctx.stroke();
    ctx.fillText(timeLabel(t), x(t) - 14 * dpr, h - 2 * dpr);
  }
  for (const m of marks) {
    if (m.ms < fromMs || m.ms > toMs) continue;
    ctx.strokeStyle = PRIORITY_COLOUR[m.priority] || "#fff";
    ctx.setLineDash([4 * dpr, 3 * dpr]);
    ctx.beginPath(); ctx.moveTo(x(m.ms), padT); ctx.lineTo(x(m.ms), h - padB); ctx.stroke();
    ctx.setLineDash([]);
  }
  cols.forEach((c, k) => {
    const col = trend.cols[c];
    ctx.strokeStyle = LINE[k % LINE.length];
    ctx.lineWidth = 1.5 * dpr;
    ctx.beginPath();
    let prevT = -Infinity;
    for (let i = 0; i < trend.t.length; i++) {
      const t = trend.t[i], v = col[i];
      if (t < fromMs - TREND_BUCKET_MS || v === null || v === undefined) continue;
      // More than a minute without a reading: a gap in the line, not an invented slope.
      if (t - prevT > 6 * TREND_BUCKET_MS) ctx.moveTo(x(t), y(v)); else ctx.lineTo(x(t), y(v));
      prevT = t;
    }
    ctx.stroke();
  });
  ctx.fillStyle = "#e8eef4";
  ctx.font = `bold ${12 * dpr}px system-ui, sans-serif`;
  const now = last === null ? "--" : last.map((v) => v.toFixed(decimals)).join("/");
  ctx.fillText(`${label} ${now} ${unit}`, padL, 12 * dpr);
}

/** Pixels (CSS) per second at paper speed. */
export const PX_PER_S = PAPER_SPEED_MM_S * PX_PER_MM;

/**
 * Full disclosure of the window [startMs, endMs) on ECG paper; the canvas is sized here
 * to the window at 25 mm/s. `samples` (mV, null = gap) start at `samplesMs`, at `fs` Hz.
 * `marks`: [{ms, label, colour}] (alarm onset, alarm raised).
 * Returns {cssW: canvas width in CSS px, drawn: pixel columns with signal}.
 */
export function drawDisclosure(canvas, startMs, endMs, samplesMs, fs, samples, marks) {
  const dpr = window.devicePixelRatio || 1;
  const cssW = Math.round((endMs - startMs) / 1000 * PX_PER_S);
  const cssH = canvas.clientHeight || 190;
  canvas.style.width = `${cssW}px`;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, mm = PX_PER_MM * dpr;
  ctx.fillStyle = "#050a07";
  ctx.fillRect(0, 0, w, h);
  for (let i = 0; i * mm <= Math.max(w, h); i++) {
    ctx.strokeStyle = i % 5 === 0 ? "rgba(120,170,130,.32)" : "rgba(120,170,130,.12)";
    ctx.lineWidth = 1;
    const p = Math.round(i * mm) + 0.5;
    if (p <= w) { ctx.beginPath(); ctx.moveTo(p, 0); ctx.lineTo(p, h); ctx.stroke(); }
    if (p <= h) { ctx.beginPath(); ctx.moveTo(0, p); ctx.lineTo(w, p); ctx.stroke(); }
  }
  ctx.fillStyle = "#a9b6c3";
  ctx.font = `${11 * dpr}px system-ui, sans-serif`;
  for (let t = Math.ceil(startMs / 1000) * 1000; t < endMs; t += 1000) {
    const x = (t - startMs) / 1000 * PX_PER_S * dpr;
    ctx.fillText(new Date(t).toLocaleTimeString([], { hour12: false }), x + 2 * dpr, h - 4 * dpr);
  }
  let labelRight = -Infinity, row = 0;
  for (const m of marks) {
    const x = (m.ms - startMs) / 1000 * PX_PER_S * dpr;
    if (x < 0 || x > w) continue;
    ctx.strokeStyle = m.colour;
    ctx.lineWidth = 2 * dpr;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h - 16 * dpr); ctx.stroke();
    ctx.fillStyle = m.colour;
    row = x < labelRight ? row + 1 : 0;   // marks close together: labels on separate lines
    ctx.fillText(m.label, x + 3 * dpr, (12 + 13 * row) * dpr);
    labelRight = Math.max(labelRight, x + ctx.measureText(m.label).width + 8 * dpr);
  }
  const buf = new EcgBuffer(Infinity);
  if (fs && samples.length) buf.add(samplesMs, fs, samples);
  const drawn = drawStrip(canvas, buf, endMs, { mmPerMv: 10, clear: false, baseline: 0.5, dpr });
  return { cssW, drawn };
}
