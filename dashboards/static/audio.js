// The audible cue: off until someone turns it on (browsers only allow sound after a
// click, and a central station should choose to make noise). Pulse patterns follow the
// idea of IEC 60601-1-8: high priority is a 10-pulse burst repeated every 10 s, medium
// a 3-pulse burst every 25 s, low 2 pulses once. An acknowledged or silenced alarm is
// quiet; it stays on screen.

const PATTERN = {
  high: { hz: 880, pulses: [0, 0.2, 0.4, 0.8, 1.0, 2.0, 2.2, 2.4, 2.8, 3.0], repeatMs: 10_000 },
  medium: { hz: 660, pulses: [0, 0.3, 0.6], repeatMs: 25_000 },
  low: { hz: 523, pulses: [0, 0.35], repeatMs: Infinity },
};
const MIN_GAP_MS = 3000;

export class AlarmAudio {
  constructor() {
    this.ctx = null;
    this.enabled = false;
    this.lastPlayed = new Map();   // alert id -> ms
    this.lastCueMs = 0;
    this.played = [];              // [{alertId, priority, at}] newest last, for the record (and tests)
  }

  /** Turn the cue on; must run inside a click handler (autoplay policy). */
  enable() {
    if (!this.ctx) this.ctx = new AudioContext();
    if (this.ctx.state === "suspended") this.ctx.resume();
    this.enabled = true;
  }

  disable() {
    this.enabled = false;
  }

  /** Called about once a second with the active alarms in urgency order. */
  tick(alarms, now) {
    if (!this.enabled || now - this.lastCueMs < MIN_GAP_MS) return null;
    for (const a of alarms) {
      if (a.ackBy || a.silencedUntilMs > now) continue;
      const p = PATTERN[a.priority] || PATTERN.low;
      const last = this.lastPlayed.get(a.id);
      if (last !== undefined && now - last < p.repeatMs) continue;
      this.#play(p);
      this.lastPlayed.set(a.id, now);
      this.lastCueMs = now;
      this.played.push({ alertId: a.id, priority: a.priority, at: now });
      if (this.played.length > 100) this.played.shift();
      return a;
    }
    return null;
  }

  #play(p) {
    const ctx = this.ctx;
    if (!ctx) return;
    const t0 = ctx.currentTime + 0.02;
    for (const offset of p.pulses) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = p.hz;
      gain.gain.setValueAtTime(0, t0 + offset);
      gain.gain.linearRampToValueAtTime(0.12, t0 + offset + 0.02);
      gain.gain.setValueAtTime(0.12, t0 + offset + 0.13);
      gain.gain.linearRampToValueAtTime(0, t0 + offset + 0.16);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + offset);
      osc.stop(t0 + offset + 0.17);
    }
  }
}
