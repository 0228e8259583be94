// The patient view: current values, live ECG, trends of the last hours, the patient's
// alarms with the ECG around each (full disclosure from the waveform table), and notes.
//
// Opening it sends `view_patient`, which the gateway records (RecordAccessed) before
// it answers with the patient's recent events; those fill in trend points the feed
// did not bring (a page opened after them).

import { AlarmList, ago, setText } from "./alarms.js";
import { TREND_CHARTS, drawDisclosure, drawTrend } from "./charts.js";
import { Playhead, drawStrip, fetchWaveform, fitCanvas } from "./ecg.js";
import { compareAlarms, timeMs } from "./ward.js";

const DISCLOSURE_BEFORE_MS = 15_000;
const DISCLOSURE_SPAN_MS = 30_000;
const PRIORITY_COLOUR = { high: "#ff4d4d", medium: "#ff9f1a", low: "#5cc8ff" };

const $ = (id) => document.getElementById(id);

export class PatientView {
  /** `ctx`: as for AlarmList, plus state, buffers, token(), viewed(patientId). */
  constructor(ctx) {
    this.ctx = ctx;
    this.patientId = null;
    this.hours = 1;
    this.playhead = new Playhead();
    this.charts = TREND_CHARTS.map((spec) => {
      const c = document.createElement("canvas");
      c.setAttribute("aria-label", `${spec[0]} trend`);
      c.dataset.chart = spec[0];
      $("pv-charts").appendChild(c);
      return c;
    });
    this.alarmList = new AlarmList($("pv-alarm-list"), { ...ctx, openAlarm: (a) => this.disclose(a) },
      { showPatient: false });
    this.chartsDrawnAt = 0;
    this.fd = null;   // {alarm, startMs}
    for (const b of document.querySelectorAll(".range button")) {
      b.addEventListener("click", () => {
        this.hours = Number(b.dataset.hours);
        for (const o of document.querySelectorAll(".range button")) o.setAttribute("aria-pressed", String(o === b));
        this.chartsDrawnAt = 0;
      });
    }
    $("fd-earlier").addEventListener("click", () => this.fd && this.#loadDisclosure(this.fd.startMs - DISCLOSURE_SPAN_MS));
    $("fd-later").addEventListener("click", () => this.fd && this.#loadDisclosure(this.fd.startMs + DISCLOSURE_SPAN_MS));
    $("fd-close").addEventListener("click", () => { $("disclosure").hidden = true; this.fd = null; });
    $("note-form").addEventListener("submit", (e) => this.#addNote(e));
  }

  async open(patientId) {
    this.patientId = patientId;
    this.playhead = new Playhead();
    this.chartsDrawnAt = 0;
    $("disclosure").hidden = true;
    this.fd = null;
    $("note-form").hidden = !this.ctx.may("note");
    this.render(Date.now());
    const r = await this.ctx.command({ command: "view_patient", patient_id: patientId });
    if (this.patientId !== patientId) return;
    if (!r.ok) {
      this.ctx.toast(`Could not load ${patientId}: ${r.detail || r.error}`, "error");
      return;
    }
    const p = this.ctx.state.patient(patientId);
    if (!p.ward && typeof r.ward === "string") p.ward = r.ward;
    if (!p.bed && typeof r.bed === "string") p.bed = r.bed;
    const seenNotes = new Set(p.notes.map((n) => n.position));
    for (const ev of r.events || []) {
      const pl = ev.payload || {};
      const at = timeMs(ev.occurred_at);
      if (ev.event_type === "VitalsObserved") p.trend.add(at, pl);
      else if (ev.event_type === "News2Scored") p.trend.add(at, { news2: pl.score });
      else if (ev.event_type === "NoteAdded" && !seenNotes.has(ev.position)) {
        p.notes.push({ text: String(pl.text ?? ""), by: String(pl.by ?? ""), at, position: ev.position });
      }
    }
    p.notes.sort((a, b) => b.position - a.position);
    this.chartsDrawnAt = 0;
    this.render(Date.now());
  }

  close() {
    this.patientId = null;
  }

  /** Repaint text and lists (called when the patient changed, and once a second). */
  render(now) {
    const p = this.patientId && this.ctx.state.patients.get(this.patientId);
    if (!p) return;
    setText($("pv-title"), this.ctx.patientLabel(p.id));
    const n2 = $("pv-news2");
    n2.replaceChildren();
    if (p.news2) {
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `NEWS2 ${p.news2.score}`;
      const risk = document.createElement("span");
      risk.className = `risk risk-${p.news2.risk}`;
      risk.textContent = `${p.news2.risk} risk`;
      n2.append(score, " ", risk);
    }
    const v = p.vitals;
    const f = (k, d = 0) => (typeof v[k] === "number" ? v[k].toFixed(d) : "--");
    setText($("pv-vitals"), `HR ${f("hr")} · SpO₂ ${f("spo2")}%${v.oxygen ? " on O₂" : ""} · RR ${f("rr")} · ` +
      `BP ${f("sbp")}/${f("dbp")} · T ${f("temp", 1)} °C${v.acvpu ? ` · ${v.acvpu}` : ""}` +
      (Number.isFinite(p.vitalsAt) ? ` · ${ago(now - p.vitalsAt)}` : ""));
    const alarms = [...p.alarms].map((id) => this.ctx.state.alarms.get(id)).filter(Boolean)
      .sort((a, b) => (a.active === b.active ? compareAlarms(a, b) : a.active ? -1 : 1)).slice(0, 50);
    this.alarmList.render(alarms, now);
    $("pv-no-alarms").hidden = alarms.length > 0;
    const notes = $("pv-notes");
    if (notes.dataset.count !== String(p.notes.length)) {
      notes.dataset.count = String(p.notes.length);
      notes.replaceChildren(...p.notes.slice(0, 50).map((n) => {
        const li = document.createElement("li");
        const by = document.createElement("span");
        by.className = "by";
        by.textContent = `${n.by} · ${new Date(n.at).toLocaleString([], { hour12: false })}`;
        li.append(by, n.text);
        return li;
      }));
    }
  }

  /** Per animation frame: the live strip; the trend charts at most once a second. */
  frame(now) {
    const p = this.patientId && this.ctx.state.patients.get(this.patientId);
    if (!p) return;
    const strip = $("pv-strip");
    fitCanvas(strip);
    const buf = this.ctx.buffers.get(p.id);
    if (buf) drawStrip(strip, buf, this.playhead.rightEdge(buf, now), { mmPerMv: 10 });
    if (now - this.chartsDrawnAt < 1000) return;
    this.chartsDrawnAt = now;
    const to = now, from = now - this.hours * 3600_000;
    const marks = [...p.alarms].map((id) => this.ctx.state.alarms.get(id)).filter(Boolean)
      .map((a) => ({ ms: a.raisedMs, priority: a.priority }));
    this.charts.forEach((c, i) => {
      fitCanvas(c);
      drawTrend(c, p.trend, TREND_CHARTS[i], from, to, marks);
    });
  }

  /** Show the ECG around `alarm`: from 15 s before its onset, 30 s. */
  disclose(alarm) {
    this.fd = { alarm, startMs: alarm.onsetMs - DISCLOSURE_BEFORE_MS };
    $("disclosure").hidden = false;
    this.#loadDisclosure(this.fd.startMs);
    $("disclosure").scrollIntoView({ block: "nearest" });
  }

  async #loadDisclosure(startMs) {
    const fd = this.fd;
    if (!fd) return;
    fd.startMs = startMs;
    const a = fd.alarm;
    const endMs = startMs + DISCLOSURE_SPAN_MS;
    const status = $("fd-status");
    setText($("fd-meta"), `${a.message} · ${a.priority} priority · onset ${new Date(a.onsetMs).toLocaleTimeString([], { hour12: false })}`);
    status.dataset.state = "loading";
    setText(status, "Loading ECG…");
    const { status: code, body } = await fetchWaveform(this.ctx.token(), a.patientId, "II", startMs, endMs);
    if (this.fd !== fd || fd.startMs !== startMs) return;
    const canvas = $("fd-canvas");
    const marks = [
      { ms: a.onsetMs, label: "onset", colour: "#ffffff" },
      { ms: a.raisedMs, label: `${a.priority} alarm`, colour: PRIORITY_COLOUR[a.priority] || "#fff" },
    ];
    if (code !== 200 || !body) {
      drawDisclosure(canvas, startMs, endMs, startMs, null, [], marks);
      status.dataset.state = "error";
      setText(status, code === 404 || code === 0 ? "ECG is not available from this gateway." :
        `ECG refused: ${(body && body.detail) || `HTTP ${code}`}`);
      return;
    }
    const samples = body.samples_mv || [];
    const { drawn } = drawDisclosure(canvas, startMs, endMs, Date.parse(body.start), body.fs, samples, marks);
    const got = samples.filter((s) => s !== null).length;
    status.dataset.state = got ? "ok" : "empty";
    status.dataset.samples = String(got);
    status.dataset.columns = String(drawn);
    setText(status, got ? `${(got / body.fs).toFixed(1)} s of lead II at ${body.fs} Hz (${got} samples), ` +
      "25 mm/s, 10 mm/mV. Scroll sideways for the whole window." : "No ECG was stored for this time.");
    const scroller = canvas.parentElement;
    scroller.scrollLeft = Math.max(0, (a.onsetMs - startMs) / DISCLOSURE_SPAN_MS * canvas.clientWidth - scroller.clientWidth / 3);
  }

  async #addNote(e) {
    e.preventDefault();
    const box = $("note-text");
    const text = box.value.trim();
    if (!text || !this.patientId) return;
    const r = await this.ctx.command({ command: "note", patient_id: this.patientId, text });
    if (r.ok) {
      box.value = "";
      this.ctx.toast("Note added", "ok");
    } else {
      this.ctx.toast(`Note not added: ${r.detail || r.error}`, "error");
    }
  }
}
