// The alarm list: one <li> per alarm, kept and updated in place (so a screen reader
// announces additions, not the whole list again), ordered unacknowledged first, then
// by priority, then newest. Buttons act through the gateway's commands; the list only
// changes when the resulting event comes back on the feed.

const PRIORITY_WORD = { high: "HIGH", medium: "MEDIUM", low: "LOW" };
export const SILENCE_S = 120;

export function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
}

function fmtValue(v) {
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(1)) : "";
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(action, text, cls = "") {
  const b = el("button", cls, text);
  b.type = "button";
  b.dataset.action = action;
  return b;
}

/**
 * Renders alarms into an <ol>. `ctx` gives: patientLabel(id), may(action),
 * command(fields) -> Promise<result>, toast(text, kind), openAlarm(alarm).
 */
export class AlarmList {
  constructor(ol, ctx, { showPatient = true } = {}) {
    this.ol = ol;
    this.ctx = ctx;
    this.showPatient = showPatient;
    this.items = new Map();   // alert id -> {li, parts}
    this.busy = new Set();    // alert ids with a command in flight
    ol.addEventListener("click", (e) => this.#click(e));
    ol.addEventListener("submit", (e) => this.#submit(e));
  }

  /** Show exactly `alarms` (already sorted); returns the ids that were added. */
  render(alarms, now) {
    const added = [];
    const keep = new Set();
    let prev = null;
    for (const a of alarms) {
      keep.add(a.id);
      let item = this.items.get(a.id);
      if (!item) {
        item = this.#create(a);
        this.items.set(a.id, item);
        added.push(a.id);
      }
      this.#update(item, a, now);
      const want = prev ? prev.nextSibling : this.ol.firstChild;
      if (want !== item.li) this.ol.insertBefore(item.li, want);
      prev = item.li;
    }
    for (const [id, item] of this.items) {
      if (!keep.has(id)) {
        item.li.remove();
        this.items.delete(id);
      }
    }
    return added;
  }

  #create(a) {
    const li = el("li", "alarm");
    li.dataset.testid = "alarm-item";
    li.dataset.alertId = a.id;
    li.dataset.patient = a.patientId;
    li.dataset.condition = a.condition;
    const prio = el("span", "prio");
    const who = el("strong", "", "");
    const age = el("span", "age");
    const row = el("div", "row");
    row.append(prio, who, age);
    const msg = el("p", "msg");
    const state = el("p", "state");
    const actions = el("div", "actions");
    const ack = button("acknowledge", "Acknowledge", "ack");
    const silence = button("silence", `Silence ${SILENCE_S / 60} min`);
    const escalate = button("escalate", "Escalate…");
    const ecg = button("ecg", "ECG");
    actions.append(ack, silence, escalate, ecg);
    li.append(row, msg, state, actions);
    return { li, prio, who, age, msg, state, ack, silence, escalate, ecg, key: "" };
  }

  #update(item, a, now) {
    const { li } = item;
    li.className = `alarm ${a.priority}${a.ackBy ? " acked" : ""}`;
    li.dataset.priority = a.priority;
    li.dataset.acknowledged = a.ackBy ? "true" : "false";
    item.prio.className = `prio p-${a.priority}`;
    setText(item.prio, PRIORITY_WORD[a.priority] || a.priority.toUpperCase());
    setText(item.who, this.showPatient ? this.ctx.patientLabel(a.patientId) : a.condition);
    setText(item.age, ago(now - a.raisedMs));
    setText(item.msg, a.message);
    const bits = [];
    if (!a.active) bits.push(`resolved (${a.resolvedReason || "ended"})`);
    bits.push(a.ackBy ? `acknowledged by ${a.ackBy}` : "unacknowledged");
    if (a.silencedUntilMs > now) bits.push(`silenced for ${Math.ceil((a.silencedUntilMs - now) / 1000)} s`);
    if (a.value !== null && a.value !== undefined) {
      bits.push(`value ${fmtValue(a.value)}${a.limit !== null && a.limit !== undefined ? ` (limit ${fmtValue(a.limit)})` : ""}`);
    }
    if (a.technical) bits.push("technical");
    setText(item.state, bits.join(" · "));
    const busy = this.busy.has(a.id);
    item.ack.hidden = Boolean(a.ackBy) || !a.active || !this.ctx.may("acknowledge");
    item.silence.hidden = !a.active || !this.ctx.may("silence");
    item.escalate.hidden = !a.active || !this.ctx.may("escalate");
    item.ack.disabled = item.silence.disabled = item.escalate.disabled = busy;
  }

  async #click(e) {
    const b = e.target.closest("button[data-action]");
    if (!b || !this.ol.contains(b)) return;
    const li = b.closest("li.alarm");
    const id = li.dataset.alertId;
    const alarm = this.ctx.alarm(id);
    if (!alarm) return;
    switch (b.dataset.action) {
      case "acknowledge":
        await this.#run(id, { command: "acknowledge", alert_id: id }, "Acknowledged");
        break;
      case "silence":
        await this.#run(id, { command: "silence", alert_id: id, duration_s: SILENCE_S }, `Silenced for ${SILENCE_S} s`);
        break;
      case "escalate":
        this.#escalateForm(li, id);
        break;
      case "ecg":
        this.ctx.openAlarm(alarm);
        break;
      default:
        break;
    }
  }

  #escalateForm(li, id) {
    let form = li.querySelector("form.escalate");
    if (form) {
      form.querySelector("input").focus();
      return;
    }
    form = el("form", "escalate");
    form.dataset.alertId = id;
    const input = el("input");
    input.name = "reason";
    input.required = true;
    input.maxLength = 500;
    input.placeholder = "reason, e.g. no response to fluids";
    input.setAttribute("aria-label", "escalation reason");
    const send = el("button", "", "Send");
    send.type = "submit";
    const cancel = button("cancel-escalate", "Cancel");
    cancel.addEventListener("click", () => form.remove());
    form.append(input, send, cancel);
    li.appendChild(form);
    input.focus();
  }

  async #submit(e) {
    const form = e.target.closest("form.escalate");
    if (!form) return;
    e.preventDefault();
    const reason = form.querySelector("input").value.trim();
    if (!reason) return;
    const ok = await this.#run(form.dataset.alertId, { command: "escalate", alert_id: form.dataset.alertId, reason },
      "Escalated");
    if (ok) form.remove();
  }

  async #run(id, fields, done) {
    this.busy.add(id);
    this.ctx.refresh();
    const r = await this.ctx.command(fields);
    this.busy.delete(id);
    this.ctx.refresh();
    if (r.ok) this.ctx.toast(done, "ok");
    else this.ctx.toast(`${fields.command} failed: ${r.detail || r.error}`, "error");
    return r.ok;
  }
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}
