// What the page knows about the ward, built only from the events the gateway sends.
// Pure data: no DOM here. `WardState.apply` folds one event in and says what changed,
// so the page repaints only that.

export const PRIORITY_RANK = { high: 0, medium: 1, low: 2 };
export const VITALS = ["hr", "spo2", "rr", "sbp", "dbp", "temp"];
export const TREND_BUCKET_MS = 10_000;   // one trend point per 10 s: 8 h is 2,880 points a patient
export const TREND_KEEP_MS = 8 * 3600_000;

/** Milliseconds since the epoch of an ISO string or of Unix seconds; NaN if neither. */
export function timeMs(value) {
  if (typeof value === "number") return value * 1000;
  if (typeof value === "string") return Date.parse(value);
  return NaN;
}

export function patientOf(ev) {
  const [kind, ...rest] = ev.stream_id.split("-");
  if (kind === "patient") return rest.join("-");
  const pid = ev.payload && ev.payload.patient_id;
  return typeof pid === "string" && pid ? pid : null;
}

/** Column store of vitals and NEWS2, one point per bucket, oldest first. */
export class Trend {
  constructor() {
    this.t = [];
    this.cols = { hr: [], spo2: [], rr: [], sbp: [], dbp: [], temp: [], news2: [] };
  }

  get length() { return this.t.length; }

  /** Record `values` (some of the columns) measured at `tMs`. Out-of-order points are merged in. */
  add(tMs, values) {
    if (!Number.isFinite(tMs)) return;
    const bucket = Math.floor(tMs / TREND_BUCKET_MS) * TREND_BUCKET_MS;
    const n = this.t.length;
    let i;
    if (n === 0 || this.t[n - 1] < bucket) {
      i = this.#insert(n, bucket);
    } else if (this.t[n - 1] === bucket) {
      i = n - 1;
    } else {
      let lo = 0, hi = n;   // first index with t >= bucket
      while (lo < hi) { const mid = (lo + hi) >> 1; if (this.t[mid] < bucket) lo = mid + 1; else hi = mid; }
      i = this.t[lo] === bucket ? lo : this.#insert(lo, bucket);
    }
    for (const [k, v] of Object.entries(values)) {
      if (k in this.cols && typeof v === "number" && Number.isFinite(v)) this.cols[k][i] = v;
    }
    const cutoff = this.t[this.t.length - 1] - TREND_KEEP_MS;
    let drop = 0;
    while (drop < this.t.length && this.t[drop] < cutoff) drop++;
    if (drop) {
      this.t.splice(0, drop);
      for (const c of Object.values(this.cols)) c.splice(0, drop);
    }
  }

  #insert(i, bucket) {
    this.t.splice(i, 0, bucket);
    for (const c of Object.values(this.cols)) c.splice(i, 0, null);
    return i;
  }
}

function newPatient(id) {
  return {
    id, ward: null, bed: null,
    vitals: {}, vitalsAt: NaN, news2: null, ecg: null, limits: null,
    alarms: new Set(), notes: [], trend: new Trend(),
  };
}

export class WardState {
  constructor() {
    this.patients = new Map();   // patient_id -> patient
    this.alarms = new Map();     // alert_id -> alarm
    this.position = 0;
  }

  patient(id) {
    let p = this.patients.get(id);
    if (!p) {
      p = newPatient(id);
      this.patients.set(id, p);
    }
    return p;
  }

  /**
   * Fold one event in (in position order; older positions are ignored).
   * @returns {{patient: string|null, alarm: object|null, raised: boolean}} what changed
   */
  apply(ev) {
    const changed = { patient: null, alarm: null, raised: false };
    if (typeof ev.position !== "number" || ev.position <= this.position) return changed;
    this.position = ev.position;
    const pid = patientOf(ev);
    if (pid === null || ev.stream_id.startsWith("access-")) return changed;
    const pl = ev.payload || {};
    const at = timeMs(ev.occurred_at);
    switch (ev.event_type) {
      case "PatientAdmitted": {
        const p = this.patient(pid);
        if (typeof pl.ward === "string") p.ward = pl.ward;
        p.bed = typeof pl.bed === "string" ? pl.bed : null;
        changed.patient = pid;
        break;
      }
      case "VitalsObserved": {
        const p = this.patient(pid);
        if (!(at < p.vitalsAt)) {   // a late reading updates the trend, not the current values
          const v = {};
          for (const k of VITALS) if (typeof pl[k] === "number") v[k] = pl[k];
          if (typeof pl.oxygen === "boolean") v.oxygen = pl.oxygen;
          if (typeof pl.acvpu === "string") v.acvpu = pl.acvpu;
          p.vitals = v;
          p.vitalsAt = at;
        }
        p.trend.add(at, pl);
        changed.patient = pid;
        break;
      }
      case "News2Scored": {
        const p = this.patient(pid);
        p.news2 = { score: pl.score, risk: pl.risk, components: pl.components || {}, at };
        p.trend.add(at, { news2: pl.score });
        changed.patient = pid;
        break;
      }
      case "EcgAnalyzed": {
        const p = this.patient(pid);
        p.ecg = { ...pl, at };
        changed.patient = pid;
        break;
      }
      case "AlarmLimitsChanged":
        this.patient(pid).limits = pl.limits || null;
        changed.patient = pid;
        break;
      case "NoteAdded": {
        const p = this.patient(pid);
        p.notes.unshift({ text: String(pl.text ?? ""), by: String(pl.by ?? ""), at, position: ev.position });
        changed.patient = pid;
        break;
      }
      case "AlertRaised":
      case "AlertEscalated":
      case "AlertResolved":
      case "AlertAcknowledged":
      case "AlertSilenced":
        changed.alarm = this.#alarmEvent(ev, pid, pl, at);
        changed.raised = ev.event_type === "AlertRaised" || (ev.event_type === "AlertEscalated" && !pl.manual);
        changed.patient = pid;
        break;
      default:
        break;
    }
    return changed;
  }

  #alarmEvent(ev, pid, pl, at) {
    const id = pl.alert_id;
    if (typeof id !== "string" || !id) return null;
    let a = this.alarms.get(id);
    if (!a) {
      if (ev.event_type !== "AlertRaised") return null;   // about an alarm raised before what we hold
      a = {
        id, patientId: pid, condition: String(pl.condition ?? ""), priority: String(pl.priority ?? "low"),
        message: String(pl.message ?? pl.condition ?? "alarm"), value: pl.value ?? null, limit: pl.limit ?? null,
        technical: Boolean(pl.technical), onsetMs: timeMs(pl.onset ?? pl.at), raisedMs: timeMs(pl.at),
        raisedPosition: ev.position, recordedMs: timeMs(ev.recorded_at),
        active: true, ackBy: null, silencedUntilMs: 0, resolvedMs: NaN, resolvedReason: null, history: [],
      };
      if (!Number.isFinite(a.raisedMs)) a.raisedMs = at;
      if (!Number.isFinite(a.onsetMs)) a.onsetMs = a.raisedMs;
      this.alarms.set(id, a);
      this.patient(pid).alarms.add(id);
    }
    const by = typeof pl.by === "string" ? pl.by : null;
    switch (ev.event_type) {
      case "AlertEscalated":
        if (typeof pl.priority === "string") a.priority = pl.priority;
        break;
      case "AlertResolved":
        a.active = false;
        a.resolvedMs = at;
        a.resolvedReason = String(pl.reason ?? "");
        break;
      case "AlertAcknowledged":
        a.ackBy = by || "unknown";
        break;
      case "AlertSilenced":
        a.silencedUntilMs = timeMs(pl.until);
        break;
      default:
        break;
    }
    a.history.push({ type: ev.event_type, at, by, position: ev.position, reason: pl.reason ?? null,
      priority: pl.priority ?? null });
    return a;
  }

  /** Active alarms: unacknowledged first, then by priority, then newest first. */
  activeAlarms(patientId = null) {
    const out = [];
    for (const a of this.alarms.values()) {
      if (a.active && (patientId === null || a.patientId === patientId)) out.push(a);
    }
    return out.sort(compareAlarms);
  }

  /**
   * The patient's highest-priority active alarm (acknowledged or not: an acknowledged
   * high alarm still outranks a new medium one on the tile), and how many of the
   * patient's active alarms are unacknowledged.
   */
  topAlarm(patientId) {
    const p = this.patients.get(patientId);
    let top = null, unacknowledged = 0;
    if (!p) return { top, unacknowledged };
    for (const id of p.alarms) {
      const a = this.alarms.get(id);
      if (!a || !a.active) continue;
      if (!a.ackBy) unacknowledged++;
      const rank = (x) => PRIORITY_RANK[x.priority] ?? 3;
      if (top === null || rank(a) < rank(top) || (rank(a) === rank(top) && compareAlarms(a, top) < 0)) top = a;
    }
    return { top, unacknowledged };
  }
}

export function compareAlarms(a, b) {
  return (a.ackBy ? 1 : 0) - (b.ackBy ? 1 : 0)
    || (PRIORITY_RANK[a.priority] ?? 3) - (PRIORITY_RANK[b.priority] ?? 3)
    || b.raisedMs - a.raisedMs;
}
