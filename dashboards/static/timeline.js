// The auditor's timeline: every event the feed delivered, newest first, filtered by
// patient, kind and person, with who did what, and an export of what is shown.
//
// An all-ward role (auditor, admin) receives every event, so the positions it sees
// must run 1, 2, 3, ... without a hole: the log's own numbering doubles as a check
// that nothing was withheld or lost on the way. Ward roles see a filtered feed, where
// holes are expected, so no such check is shown to them.

const VITAL_TYPES = new Set(["VitalsObserved", "News2Scored", "EcgAnalyzed", "EcgSignalGap"]);
const KINDS = {
  all: () => true,
  clinical: (ev) => !VITAL_TYPES.has(ev.event_type),
  alarms: (ev) => ev.event_type.startsWith("Alert") || ev.event_type === "AlarmLimitsChanged",
  access: (ev) => ev.event_type === "RecordAccessed",
  vitals: (ev) => VITAL_TYPES.has(ev.event_type),
};

export function actorOf(ev) {
  const m = ev.metadata || {}, p = ev.payload || {};
  if (typeof m.actor === "string") return m.actor;
  if (typeof p.by === "string") return p.by;
  if (typeof m.device_id === "string") return m.device_id;
  return "system";
}

function num(v, d = 0) {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(d) : "–";
}

/** " · V 3 · S 1" for the ectopic beats of a summary's classes (none: ""). */
export function ectopy(classes) {
  if (!classes) return "";
  return ["V", "S", "F"].filter((c) => classes[c] > 0).map((c) => ` · ${c} ${classes[c]}`).join("");
}

/** One line saying what the event is about. */
export function describe(ev) {
  const p = ev.payload || {};
  switch (ev.event_type) {
    case "VitalsObserved":
      return `HR ${num(p.hr)} SpO₂ ${num(p.spo2)} RR ${num(p.rr)} BP ${num(p.sbp)}/${num(p.dbp)} T ${num(p.temp, 1)}`;
    case "News2Scored":
      return `NEWS2 ${p.score} (${p.risk})`;
    case "EcgAnalyzed":
      return `ECG HR ${num(p.heart_rate)} · ${p.usable_beats}/${p.beats} usable beats · SDNN ${num(p.sdnn_ms)} ms`
        + ectopy(p.beat_classes);
    case "AlertRaised":
      return `${String(p.priority).toUpperCase()} ${p.message ?? p.condition} [${p.alert_id}]`;
    case "AlertEscalated":
      return p.manual ? `escalated by ${p.by}: ${p.reason} [${p.alert_id}]`
        : `escalated to ${p.priority} (level ${p.level}) [${p.alert_id}]`;
    case "AlertResolved":
      return `resolved: ${p.reason} [${p.alert_id}]`;
    case "AlertAcknowledged":
      return `acknowledged by ${p.by} [${p.alert_id}]`;
    case "AlertSilenced":
      return `silenced by ${p.by} until ${p.until} [${p.alert_id}]`;
    case "RecordAccessed":
      return `${p.by} (${p.role}) read ${p.what}${p.patient_id ? ` of ${p.patient_id}` : ""}`;
    case "NoteAdded":
      return `note by ${p.by}: ${String(p.text ?? "").slice(0, 200)}`;
    case "PatientAdmitted":
      return `admitted to ${p.ward}${p.bed ? `, bed ${p.bed}` : ""}`;
    case "AlarmLimitsChanged":
      return `alarm limits changed by ${p.by}: ${JSON.stringify(p.changes ?? p.limits ?? {})}`;
    default:
      return JSON.stringify(p).slice(0, 200);
  }
}

export class TimelineLog {
  constructor(cap = 20_000) {
    this.cap = cap;
    this.events = [];
    this.received = 0;
    this.firstPosition = 0;
    this.lastPosition = 0;
    this.gaps = [];            // [[from, to]] missing position ranges (checked for all-ward roles)
    this.checkGaps = false;
  }

  reset(checkGaps) {
    this.events = [];
    this.received = 0;
    this.firstPosition = this.lastPosition = 0;
    this.gaps = [];
    this.checkGaps = checkGaps;
  }

  add(ev) {
    this.received++;
    if (this.checkGaps && ev.position > this.lastPosition + 1) {
      // A feed from position 0 starts at 1; a resumed one at the last position + 1.
      this.gaps.push([this.lastPosition + 1, ev.position - 1]);
    }
    if (!this.firstPosition) this.firstPosition = ev.position;
    this.lastPosition = Math.max(this.lastPosition, ev.position);
    this.events.push(ev);
    if (this.events.length > this.cap * 1.1) this.events.splice(0, this.events.length - this.cap);
  }

  /** Matching events, newest first, at most `limit`. */
  select({ kind = "clinical", patient = "", actor = "" }, limit = Infinity) {
    const keep = KINDS[kind] || KINDS.clinical;
    const out = [];
    for (let i = this.events.length - 1; i >= 0 && out.length < limit; i--) {
      const ev = this.events[i];
      if (!keep(ev)) continue;
      if (patient) {
        const pid = (ev.payload && ev.payload.patient_id) || ev.stream_id.replace(/^patient-/, "");
        if (!String(pid).includes(patient)) continue;
      }
      if (actor && !actorOf(ev).includes(actor)) continue;
      out.push(ev);
    }
    return out;
  }

  summary() {
    const held = this.events.length;
    const base = `${this.received} events received, ${held} held` +
      (held ? ` (positions ${this.events[0].position}–${this.lastPosition})` : "");
    if (!this.checkGaps) return { text: base, ok: null };
    if (!this.gaps.length) return { text: `${base}; positions continuous: nothing missing`, ok: true };
    const shown = this.gaps.slice(0, 5).map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`)).join(", ");
    return { text: `${base}; MISSING positions ${shown}${this.gaps.length > 5 ? ", …" : ""}`, ok: false };
  }
}

/** Fill `tbody` with rows for `events` (text only: payloads are never parsed as HTML). */
export function renderRows(tbody, events) {
  const rows = document.createDocumentFragment();
  for (const ev of events) {
    const tr = document.createElement("tr");
    if (ev.event_type.startsWith("Alert")) tr.className = "alarm-row";
    else if (ev.event_type === "RecordAccessed") tr.className = "access-row";
    tr.dataset.position = String(ev.position);
    tr.dataset.type = ev.event_type;
    const cells = [
      String(ev.position), clock(ev.recorded_at), clock(ev.occurred_at), ev.stream_id, ev.event_type,
      actorOf(ev), describe(ev),
    ];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 6) td.className = "what";
      tr.appendChild(td);
    });
    rows.appendChild(tr);
  }
  tbody.replaceChildren(rows);
}

function clock(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "";
  const d = new Date(t);
  return `${d.toLocaleDateString([], { month: "2-digit", day: "2-digit" })} ` +
    `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/** Download `events` as JSON lines (oldest first). */
export function exportJsonLines(events, name) {
  const text = events.slice().reverse().map((e) => JSON.stringify(e)).join("\n") + "\n";
  const url = URL.createObjectURL(new Blob([text], { type: "application/x-ndjson" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
