// ECG on canvas at paper speed: 25 mm/s, in real CSS millimetres (1 mm = 96/25.4 px).
//
// Samples come from GET /api/waveform (dashboards/waveform_api.py): a live poller asks
// once a second for what is new for each visible patient, and `drawStrip` paints the
// last few seconds with the newest at the right edge. Each pixel column is drawn as the
// min-max range of the samples that fall in it, so a QRS narrower than a pixel still
// reaches its full height.

export const PX_PER_MM = 96 / 25.4;
export const PAPER_SPEED_MM_S = 25;
export const LIVE_POLL_MS = 1000;
const KEEP_MS = 30_000;
const MAX_CONCURRENT = 4;

/** Recent samples of one patient's lead, as time-stamped runs (gaps are NaN). */
export class EcgBuffer {
  constructor(keepMs = KEEP_MS) {
    this.keepMs = keepMs;
    this.runs = [];        // {startMs, fs, data: Float32Array}, in time order, not overlapping
    this.endMs = NaN;      // time just after the newest sample
  }

  /** Append samples (null = gap) that start at `startMs`; what we already hold is skipped. */
  add(startMs, fs, samples) {
    if (!(fs > 0) || !samples.length || !Number.isFinite(startMs)) return;
    const period = 1000 / fs;
    let skip = 0;
    if (Number.isFinite(this.endMs) && startMs < this.endMs - period / 2) {
      skip = Math.ceil((this.endMs - startMs) / period - 0.5);
      if (skip >= samples.length) return;
    }
    const data = new Float32Array(samples.length - skip);
    for (let i = skip; i < samples.length; i++) {
      const v = samples[i];
      data[i - skip] = typeof v === "number" ? v : NaN;
    }
    const run = { startMs: startMs + skip * period, fs, data };
    this.runs.push(run);
    this.endMs = run.startMs + data.length * period;
    const cutoff = this.endMs - this.keepMs;
    while (this.runs.length > 1) {
      const r = this.runs[0];
      if (r.startMs + r.data.length * (1000 / r.fs) >= cutoff) break;
      this.runs.shift();
    }
  }

  clear() {
    this.runs = [];
    this.endMs = NaN;
  }
}

/**
 * Where a live strip's right edge is: wall-clock time minus a delay that follows how
 * late the data arrives (its recent worst case plus a margin), changing speed by at
 * most 5 % so the trace keeps moving evenly instead of jumping at each poll.
 */
export class Playhead {
  constructor() {
    this.delay = NaN;
    this.peak = 0;
    this.lastNow = NaN;
  }

  rightEdge(buffer, now) {
    if (!Number.isFinite(buffer.endMs)) return now;
    const lag = now - buffer.endMs;
    const dt = Number.isFinite(this.lastNow) ? Math.max(0, now - this.lastNow) : 0;
    this.lastNow = now;
    this.peak = Math.max(lag, this.peak - dt * 0.05);
    const target = this.peak + 250;
    if (!Number.isFinite(this.delay) || Math.abs(target - this.delay) > 3000) {
      this.delay = target;
    } else {
      const step = Math.min(Math.abs(target - this.delay), dt * 0.05);
      this.delay += Math.sign(target - this.delay) * step;
    }
    return now - this.delay;
  }
}

// ECG paper, drawn once per canvas size and then copied under each frame's trace: a
// blit costs far less than painting 1 mm grid lines (or CSS gradients) 30 times a second.
const papers = new Map();

function paper(w, h, dpr) {
  const key = `${w}x${h}@${dpr}`;
  let c = papers.get(key);
  if (c) return c;
  c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = c.getContext("2d");
  ctx.fillStyle = "#050a07";
  ctx.fillRect(0, 0, w, h);
  const mm = PX_PER_MM * dpr;
  for (let i = 0; i * mm <= Math.max(w, h); i++) {
    ctx.strokeStyle = i % 5 === 0 ? "rgba(120,170,130,.30)" : "rgba(120,170,130,.11)";
    ctx.lineWidth = 1;
    const p = Math.round(i * mm) + 0.5;
    ctx.beginPath();
    if (p <= w) { ctx.moveTo(p, 0); ctx.lineTo(p, h); }
    if (p <= h) { ctx.moveTo(0, p); ctx.lineTo(w, p); }
    ctx.stroke();
  }
  if (papers.size > 16) papers.clear();
  papers.set(key, c);
  return c;
}

// Reused between calls: strips are drawn one after another, never at once.
let colMin = new Float32Array(0), colMax = new Float32Array(0), colFirst = new Float32Array(0),
  colLast = new Float32Array(0);

/**
 * Paint `buffer` on `canvas` (its backing store sized to its CSS box times dpr) so that
 * `rightMs` is at the right edge, on ECG paper (`clear`: false draws over what is there).
 * `mmPerMv`: gain (10 is standard, 5 half).
 * Returns the number of columns that had signal.
 */
export function drawStrip(canvas, buffer, rightMs, { mmPerMv = 10, color = "#4cff7a", baseline = 0.55,
  lineWidth = 1.25, clear = true, dpr = window.devicePixelRatio || 1 } = {}) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  if (clear) ctx.drawImage(paper(w, h, dpr), 0, 0);
  const pxPerMs = PAPER_SPEED_MM_S * PX_PER_MM * dpr / 1000;
  const leftMs = rightMs - w / pxPerMs;
  const pxPerMv = mmPerMv * PX_PER_MM * dpr;
  const y0 = h * baseline;
  if (colMin.length < w) {
    colMin = new Float32Array(w); colMax = new Float32Array(w);
    colFirst = new Float32Array(w); colLast = new Float32Array(w);
  }
  colMin.fill(NaN, 0, w);
  for (const run of buffer.runs) {
    const period = 1000 / run.fs;
    const runEnd = run.startMs + run.data.length * period;
    if (runEnd <= leftMs || run.startMs >= rightMs) continue;
    const i0 = Math.max(0, Math.floor((leftMs - run.startMs) / period));
    const i1 = Math.min(run.data.length, Math.ceil((rightMs - run.startMs) / period));
    for (let i = i0; i < i1; i++) {
      const v = run.data[i];
      if (v !== v) continue;   // NaN: a gap
      const col = Math.floor((run.startMs + i * period - leftMs) * pxPerMs);
      if (col < 0 || col >= w) continue;
      if (colMin[col] !== colMin[col]) {
        colMin[col] = colMax[col] = colFirst[col] = colLast[col] = v;
      } else {
        if (v < colMin[col]) colMin[col] = v;
        if (v > colMax[col]) colMax[col] = v;
        colLast[col] = v;
      }
    }
  }
  ctx.strokeStyle = color;
  ctx.lineWidth = lineWidth * dpr;
  ctx.lineJoin = "round";
  ctx.beginPath();
  let drawn = 0, prev = -2;
  for (let col = 0; col < w; col++) {
    if (colMin[col] !== colMin[col]) continue;
    const x = col + 0.5;
    if (col - prev > 3) ctx.moveTo(x, y0 - colFirst[col] * pxPerMv);   // gap: lift the pen
    else ctx.lineTo(x, y0 - colFirst[col] * pxPerMv);
    ctx.lineTo(x, y0 - colMax[col] * pxPerMv);
    ctx.lineTo(x, y0 - colMin[col] * pxPerMv);
    ctx.lineTo(x, y0 - colLast[col] * pxPerMv);
    prev = col;
    drawn++;
  }
  ctx.stroke();
  return drawn;
}

/** Size a canvas's backing store to its CSS box (times the device pixel ratio). True if changed. */
export function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width === w && canvas.height === h) return false;
  canvas.width = w;
  canvas.height = h;
  return true;
}

/** GET /api/waveform with the dashboard token. Resolves {status, body}; never rejects. */
export async function fetchWaveform(token, patientId, lead, fromMs, toMs) {
  const q = new URLSearchParams({
    patient: patientId, lead, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(),
  });
  try {
    const r = await fetch(`/api/waveform?${q}`, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch { body = null; }
    return { status: r.status, body };
  } catch (e) {
    return { status: 0, body: { error: "network", detail: String(e) } };
  }
}

/**
 * Once a second, fetch what is new for each wanted patient (at most MAX_CONCURRENT
 * requests at a time; a round that takes longer than a second delays the next one,
 * never overlaps it). `status` reports "ok", "unavailable" (no endpoint), "denied".
 */
export class LivePoller {
  constructor({ token, wanted, buffers, onStatus }) {
    this.token = token;        // () => string|null
    this.wanted = wanted;      // () => Iterable<patient id>
    this.buffers = buffers;    // Map<patient id, EcgBuffer>
    this.onStatus = onStatus;  // (patientId, status, detail) => void
    this.timer = null;
    this.running = false;
    this.unavailableUntil = 0;
  }

  start() {
    if (this.running) return;
    this.running = true;
    const loop = async () => {
      const began = Date.now();
      await this.round();
      if (this.running) this.timer = setTimeout(loop, Math.max(50, LIVE_POLL_MS - (Date.now() - began)));
    };
    loop();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }

  async round() {
    const token = this.token();
    if (!token || Date.now() < this.unavailableUntil) return;
    const ids = [...this.wanted()];
    let next = 0;
    const worker = async () => {
      while (next < ids.length && this.running) {
        const id = ids[next++];
        await this.#one(token, id);
      }
    };
    await Promise.all(Array.from({ length: Math.min(MAX_CONCURRENT, ids.length) }, worker));
  }

  async #one(token, id) {
    let buf = this.buffers.get(id);
    if (!buf) { buf = new EcgBuffer(); this.buffers.set(id, buf); }
    const now = Date.now();
    const from = Number.isFinite(buf.endMs) && buf.endMs > now - 10_000 ? buf.endMs : now - 6_000;
    const to = Math.min(from + 60_000, Math.max(now + 1_000, from + 1_000));
    const { status, body } = await fetchWaveform(token, id, "II", from, to);
    if (status === 200 && body) {
      if (body.fs && body.samples_mv && body.samples_mv.length) buf.add(Date.parse(body.start), body.fs, body.samples_mv);
      this.onStatus(id, "ok", "");
    } else if (status === 404 || status === 0) {
      this.unavailableUntil = Date.now() + 30_000;   // no endpoint (yet): ask again in 30 s
      this.onStatus(id, "unavailable", "not available");
    } else {
      this.onStatus(id, "denied", (body && body.detail) || `HTTP ${status}`);
    }
  }
}
