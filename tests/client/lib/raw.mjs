// Raw Engine.IO v4 / Socket.IO v5 clients, for what socket.io-client cannot do:
//
// - send packets no well-behaved client would (`42garbage`, binary junk), and
// - stop reading: socket.io-client always drains its transport, so it cannot
//   play a client whose TCP receive window is closed (websocket) or that simply
//   stops polling (long-polling). With these, a test pauses the TCP socket (or the
//   poll loop) and the server sees exactly what a stalled browser tab looks like.
//
//   const c = await RawWebSocketClient.open(server.url);
//   await c.connect({ token });                      // 40{...} -> 40{"sid":...}
//   const reply = await c.emitWithAck("join_conversation", { conversation_id });
//   c.pause(); ...; c.resume();
//   await c.ended({ timeout: 10_000 });              // `41` or the transport closed
//   c.packets                                        // every Socket.IO packet received, in order
//
// Both clients answer the server's Engine.IO pings (`2`) with pongs (`3`) whenever
// they read, and expose the same interface: `packets`, `next`, `connect`, `emit`,
// `emitWithAck`, `pause`, `resume`, `ended`, `close`.

import WebSocket from "ws";

const DEFAULT_TIMEOUT_MS = 5000;
/** Engine.IO v4 separates packets in a polling payload with the record separator. */
export const RECORD_SEPARATOR = "\x1e";

/** Socket.IO packet types (protocol v5). */
export const SIO = { CONNECT: 0, DISCONNECT: 1, EVENT: 2, ACK: 3, CONNECT_ERROR: 4, BINARY_EVENT: 5, BINARY_ACK: 6 };

/**
 * Decode the Socket.IO packet inside an Engine.IO message (`4...`, without the `4`):
 * `<type>[<attachments>-][<nsp>,][<ack id>][<json>]`. Returns `{type, nsp, id, data}`;
 * `data` is undefined when there is no JSON and `{raw}` when it does not parse.
 */
export function decodeSocketIo(text) {
  let i = 0;
  const type = Number(text[i++]);
  if (type === SIO.BINARY_EVENT || type === SIO.BINARY_ACK) {
    while (i < text.length && text[i] !== "-") i++;
    i++;
  }
  let nsp = "/";
  if (text[i] === "/") {
    const comma = text.indexOf(",", i);
    nsp = comma < 0 ? text.slice(i) : text.slice(i, comma);
    i = comma < 0 ? text.length : comma + 1;
  }
  let id;
  let digits = "";
  while (i < text.length && text[i] >= "0" && text[i] <= "9") digits += text[i++];
  if (digits) id = Number(digits);
  let data;
  if (i < text.length) {
    try {
      data = JSON.parse(text.slice(i));
    } catch {
      data = { raw: text.slice(i) };
    }
  }
  return { type, nsp, id, data };
}

/** A Socket.IO EVENT packet as an Engine.IO message: `42[<id>]["name",data]`. */
export function encodeEvent(name, data, id) {
  return `42${id ?? ""}${JSON.stringify(data === undefined ? [name] : [name, data])}`;
}

/** `{event, args}` of an EVENT packet, or null. */
export function eventOf(packet) {
  if (packet.type !== SIO.EVENT || !Array.isArray(packet.data)) return null;
  const [event, ...args] = packet.data;
  return { event, args };
}

/** What both raw clients share: the packet log, waiters, acks, the end of the session. */
class RawClient {
  constructor(what) {
    this.what = what;
    /** Every Socket.IO packet received, in order (decoded). */
    this.packets = [];
    /** Engine.IO packets that are not messages (open, close, noop...), as raw strings. */
    this.enginePackets = [];
    this.waiters = [];
    /** `seq` of the packets `next` has handed out, so each is awaited once. */
    this.taken = new Set();
    this.nextAckId = 0;
    this.sid = null;
    this.isEnded = false;
    /** Why the session ended: `{by: "disconnect"|"transport", ...}`. */
    this.endedWith = null;
    this.endWaiters = [];
  }

  /** Handle one Engine.IO packet (a string). */
  receiveEngine(text) {
    const kind = text[0];
    if (kind === "2") {
      this.sendEngine(`3${text.slice(1)}`);
    } else if (kind === "4") {
      const packet = decodeSocketIo(text.slice(1));
      packet.seq = this.packets.length;
      this.packets.push(packet);
      for (const w of [...this.waiters]) {
        if (w.match(packet)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(packet);
          break;
        }
      }
      if (packet.type === SIO.DISCONNECT) this.end({ by: "disconnect" });
    } else {
      this.enginePackets.push(text);
      if (kind === "1") this.end({ by: "transport", reason: "engine.io close packet" });
    }
  }

  /** Marks the session over (the first cause wins) and wakes `ended()` waiters. */
  end(how) {
    if (this.isEnded) return;
    this.isEnded = true;
    this.endedWith = how;
    for (const resolve of this.endWaiters) resolve(how);
    this.endWaiters = [];
    // Nothing more will arrive: fail pending waits now rather than at their timeout.
    for (const w of this.waiters) {
      w.reject(new Error(`${this.what}: session ended (${JSON.stringify(how)}) while waiting for ${w.what}`));
    }
    this.waiters = [];
  }

  /** Resolve when the server disconnects the namespace (`41`) or the transport closes; bounded. */
  ended({ timeout = DEFAULT_TIMEOUT_MS, what = "the end of the session" } = {}) {
    if (this.isEnded) return Promise.resolve(this.endedWith);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const seen = `${this.packets.length} packets received`;
        reject(new Error(`${this.what}: timed out after ${timeout} ms waiting for ${what}; ${seen}`));
      }, timeout);
      this.endWaiters.push((how) => {
        clearTimeout(timer);
        resolve(how);
      });
    });
  }

  /** The first packet, already received (and not yet taken) or coming, that `match` accepts. */
  next(match, { timeout = DEFAULT_TIMEOUT_MS, what = "a packet" } = {}) {
    const taken = this.taken;
    const found = this.packets.find((p) => !taken.has(p.seq) && match(p));
    if (found) {
      taken.add(found.seq);
      return Promise.resolve(found);
    }
    if (this.isEnded) return Promise.reject(new Error(`${this.what}: session already ended, no ${what}`));
    return new Promise((resolve, reject) => {
      const waiter = {
        what,
        match: (p) => !taken.has(p.seq) && match(p),
        resolve: (p) => {
          clearTimeout(timer);
          taken.add(p.seq);
          resolve(p);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`${this.what}: timed out after ${timeout} ms waiting for ${what}`));
      }, timeout);
      this.waiters.push(waiter);
    });
  }

  /** Connect to namespace `/` with `auth`; resolves with the CONNECT payload, rejects with a CONNECT_ERROR. */
  async connect(auth, { timeout = DEFAULT_TIMEOUT_MS } = {}) {
    this.sendEngine(`40${auth === undefined ? "" : JSON.stringify(auth)}`);
    const p = await this.next((p) => p.type === SIO.CONNECT || p.type === SIO.CONNECT_ERROR, {
      timeout,
      what: "CONNECT or CONNECT_ERROR",
    });
    if (p.type === SIO.CONNECT_ERROR) throw new Error(`connect_error: ${p.data?.message ?? JSON.stringify(p.data)}`);
    return p.data;
  }

  emit(event, data) {
    this.sendEngine(encodeEvent(event, data));
  }

  /** Emit with an ack id and resolve with the ack's first argument. */
  async emitWithAck(event, data, { timeout = DEFAULT_TIMEOUT_MS } = {}) {
    const id = this.nextAckId++;
    this.sendEngine(encodeEvent(event, data, id));
    const p = await this.next((p) => p.type === SIO.ACK && p.id === id, { timeout, what: `the ack of ${event} (id ${id})` });
    return Array.isArray(p.data) ? p.data[0] : p.data;
  }

  /** Payloads of every received `event`, in order. */
  events(event) {
    return this.packets.map(eventOf).filter((e) => e && e.event === event).map((e) => e.args[0]);
  }
}

/** Socket.IO over a raw `ws` WebSocket (`/socket.io/?EIO=4&transport=websocket`). */
export class RawWebSocketClient extends RawClient {
  static async open(baseUrl, { query = {}, timeout = DEFAULT_TIMEOUT_MS } = {}) {
    const params = new URLSearchParams({ EIO: "4", transport: "websocket", ...query });
    const ws = new WebSocket(`${baseUrl.replace(/^http/, "ws")}/socket.io/?${params}`);
    const client = new RawWebSocketClient(ws);
    await client.opened(timeout);
    return client;
  }

  constructor(ws) {
    super("raw websocket client");
    this.ws = ws;
    this.closeInfo = null;
    this.openPacket = null;
    ws.on("message", (data, isBinary) => {
      if (isBinary) this.enginePackets.push(data);
      else this.receiveEngine(data.toString());
    });
    ws.on("error", (err) => {
      this.error = err;
    });
    ws.on("close", (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.end({ by: "transport", ...this.closeInfo });
    });
  }

  /** Await the Engine.IO open packet `0{sid, pingInterval, ...}`. */
  opened(timeout) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no Engine.IO open packet within ${timeout} ms`)), timeout);
      const onMessage = (data, isBinary) => {
        const text = isBinary ? "" : data.toString();
        if (!text.startsWith("0")) return;
        clearTimeout(timer);
        this.ws.off("message", onMessage);
        this.openPacket = JSON.parse(text.slice(1));
        this.sid = this.openPacket.sid;
        resolve(this.openPacket);
      };
      this.ws.on("message", onMessage);
      this.ws.once("close", () => reject(new Error("closed before the Engine.IO open packet")));
      this.ws.once("error", (err) => reject(err));
    });
  }

  sendEngine(text) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  /** Send anything, as the WebSocket frame it is (a string is a text frame, a Buffer binary). */
  sendRaw(data) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data);
  }

  /**
   * Stop reading from the TCP socket. `ws` would otherwise read (and buffer in memory)
   * everything the server sends; paused, the kernel's receive buffer fills, the window
   * closes, and the server's writes back up into its own per-socket queue.
   */
  pause() {
    this.ws._socket.pause();
  }

  resume() {
    this.ws._socket.resume();
  }

  close() {
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) this.ws.terminate();
  }
}

/**
 * Socket.IO over raw HTTP long-polling: a GET loop for what the server sends and a
 * POST per packet the client sends (`/socket.io/?EIO=4&transport=polling&sid=...`,
 * packets separated by \x1e). `pause()` stops polling after the GET in flight returns;
 * the server then has nowhere to put packets but the session's queue.
 */
export class RawPollingClient extends RawClient {
  static async open(baseUrl, { query = {}, timeout = DEFAULT_TIMEOUT_MS } = {}) {
    const params = new URLSearchParams({ EIO: "4", transport: "polling", ...query });
    const base = `${baseUrl}/socket.io/?${params}`;
    const res = await fetch(base, { signal: AbortSignal.timeout(timeout) });
    const text = await res.text();
    if (res.status !== 200 || !text.startsWith("0")) {
      throw new Error(`polling handshake answered ${res.status}: ${text.slice(0, 200)}`);
    }
    const client = new RawPollingClient(base, JSON.parse(text.slice(1)));
    client.startPolling();
    return client;
  }

  constructor(base, openPacket) {
    super("raw polling client");
    this.openPacket = openPacket;
    this.sid = openPacket.sid;
    this.url = `${base}&sid=${encodeURIComponent(this.sid)}`;
    this.polling = false;
    this.loop = null;
    this.abort = new AbortController();
    /** Outgoing packets, POSTed one request at a time, in order. */
    this.outgoing = Promise.resolve();
    /** HTTP status of the GET that ended the session, if one did. */
    this.lastStatus = null;
  }

  startPolling() {
    this.polling = true;
    // One GET at a time: a second concurrent poll makes the server close the session.
    if (!this.loop && !this.isEnded) this.loop = this.pollLoop().finally(() => (this.loop = null));
  }

  async pollLoop() {
    while (this.polling && !this.isEnded) {
      let res;
      let text;
      try {
        res = await fetch(this.url, { signal: this.abort.signal });
        text = await res.text();
      } catch (err) {
        if (!this.abort.signal.aborted) this.end({ by: "transport", reason: `GET failed: ${err.cause?.code ?? err.message}` });
        return;
      }
      if (res.status !== 200) {
        this.lastStatus = res.status;
        this.end({ by: "transport", status: res.status, reason: text.slice(0, 200) });
        return;
      }
      for (const packet of text.split(RECORD_SEPARATOR)) if (packet.length) this.receiveEngine(packet);
    }
  }

  /**
   * Stop polling: the GET in flight (if any) is still answered and read, no new one
   * is sent. The server's packets then pile up in the session's queue.
   */
  pause() {
    this.polling = false;
  }

  resume() {
    this.startPolling();
  }

  sendEngine(text) {
    this.outgoing = this.outgoing.then(async () => {
      if (this.isEnded) return;
      try {
        const res = await fetch(this.url, { method: "POST", body: text, signal: this.abort.signal });
        await res.text();
      } catch {
        // The session's end is noticed by the GET loop.
      }
    });
  }

  async close() {
    this.polling = false;
    if (!this.isEnded) {
      // An Engine.IO close packet ends the session on the server at once.
      await fetch(this.url, { method: "POST", body: "1" }).then((r) => r.text()).catch(() => {});
    }
    this.abort.abort();
    this.end({ by: "client" });
  }
}
