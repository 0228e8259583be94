// The gateway's WebSocket protocol (see dashboards/gateway.py): authenticate, catch up,
// follow live events, send commands, and reconnect from the last position seen.
//
//   client -> {"type": "auth", "token": T, "last_position": N}
//   server -> hello, event..., caught_up, event... ; resync then close when we fell behind
//   client -> {"type": "command", "request_id": R, "command": ..., ...}
//   server -> {"type": "command_result", "request_id": R, "ok": ..., ...}
//
// Close code 4401 means the token was refused (bad, expired): the feed stops and asks
// for another token instead of retrying the same one forever.

export const AUTH_FAILED = 4401;
const COMMAND_TIMEOUT_MS = 15000;
const BACKOFF_MS = [250, 1000, 2000, 5000];

export class Feed {
  /**
   * @param {object} o
   * @param {string} o.url          ws://host:port/ws
   * @param {() => Promise<string|null>} o.token   the token to authenticate with (null: none)
   * @param {(ev: object, live: boolean) => void} o.onEvent
   * @param {(hello: object) => void} o.onHello
   * @param {(position: number) => void} o.onCaughtUp
   * @param {(state: string, detail: string) => void} o.onStatus
   * @param {(reason: string) => void} o.onAuthFailed
   * @param {() => void} [o.onReset]   the log restarted below our position: drop what we hold
   */
  constructor(o) {
    this.o = o;
    this.position = 0;          // larger of the last event's position and the last caught_up position
    this.live = false;          // true after caught_up on the current connection
    this.ws = null;
    this.hello = null;
    this.pending = new Map();   // request_id -> {resolve, timer}
    this.seq = 0;
    this.failures = 0;
    this.stopped = false;
    this.retryTimer = null;
  }

  async start() {
    this.stopped = false;
    const token = await this.o.token();
    if (token === null) {
      this.o.onAuthFailed("no token");
      return;
    }
    this.o.onStatus("connecting", "connecting…");
    const ws = new WebSocket(this.o.url);
    this.ws = ws;
    this.live = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "auth", token, last_position: this.position }));
    };
    ws.onmessage = (m) => this.#receive(m.data);
    ws.onclose = (e) => this.#closed(ws, e);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, "bye");
  }

  /** Send a command; resolves with the command_result (never rejects). */
  command(fields) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.hello) {
      return Promise.resolve({ ok: false, error: "disconnected", detail: "not connected to the gateway; try again" });
    }
    const request_id = `r${++this.seq}`;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(request_id);
        resolve({ ok: false, error: "timeout", detail: "no answer from the gateway; check before retrying" });
      }, COMMAND_TIMEOUT_MS);
      this.pending.set(request_id, { resolve, timer });
      ws.send(JSON.stringify({ type: "command", request_id, ...fields }));
    });
  }

  #receive(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    switch (msg.type) {
      case "event":
        if (typeof msg.position === "number" && msg.position > this.position) this.position = msg.position;
        this.o.onEvent(msg, this.live);
        break;
      case "hello":
        this.hello = msg;
        this.failures = 0;
        this.o.onHello(msg);
        this.o.onStatus("catching-up", "catching up…");
        break;
      case "caught_up":
        if (typeof msg.position === "number" && msg.position > this.position) this.position = msg.position;
        this.live = true;
        this.o.onCaughtUp(this.position);
        this.o.onStatus("live", "live");
        break;
      case "resync":
        this.o.onStatus("reconnecting", "resynchronising…");
        this.failures = 0; // expected: reconnect at once from this.position
        break;
      case "command_result": {
        const p = this.pending.get(msg.request_id);
        if (p) {
          clearTimeout(p.timer);
          this.pending.delete(msg.request_id);
          p.resolve(msg);
        }
        break;
      }
      default:
        break;
    }
  }

  #closed(ws, e) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.hello = null;
    this.live = false;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.resolve({ ok: false, error: "disconnected", detail: "connection lost before the answer; check before retrying" });
    }
    this.pending.clear();
    if (this.stopped) return;
    if (e.code === AUTH_FAILED) {
      this.o.onStatus("signed-out", `signed out: ${e.reason || "token refused"}`);
      this.o.onAuthFailed(e.reason || "token refused");
      return;
    }
    if (e.code === 1008 && /beyond the log/.test(e.reason)) {
      // The log is shorter than what we saw (a reset database): what we hold is not in it.
      this.position = 0;
      if (this.o.onReset) this.o.onReset();
    }
    const wait = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    this.o.onStatus("reconnecting", `reconnecting… (${e.reason || "connection closed"})`);
    this.retryTimer = setTimeout(() => this.start(), wait);
  }
}
