// Socket.IO client helpers: connect, await events with a failing timeout, acks.
//
// Every socket made here (or passed to `track`) records each event it receives in
// `socket.log`, so an event that arrives before the test starts waiting for it is
// not lost: `once(socket, "message:new")` returns the oldest such event not yet
// taken by an earlier `once`, or waits for the next one.

import assert from "node:assert/strict";
import { io } from "socket.io-client";

export const DEFAULT_TIMEOUT_MS = 3000;
/** How long a test waits to assert that something does NOT arrive. */
export const QUIET_WINDOW_MS = 300;

const openSockets = new Set();

class EventLog {
  constructor(socket) {
    this.entries = [];
    this.waiters = [];
    socket.onAny((event, ...args) => this.push(event, args));
  }

  push(event, args) {
    const entry = { event, args, taken: false, at: Date.now() };
    this.entries.push(entry);
    for (const w of [...this.waiters]) {
      if (!entry.taken && w.event === event && w.filter(args[0], ...args.slice(1))) {
        entry.taken = true;
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(args[0]);
      }
    }
  }

  take(event, filter) {
    const entry = this.entries.find((e) => !e.taken && e.event === event && filter(e.args[0], ...e.args.slice(1)));
    if (!entry) return { found: false };
    entry.taken = true;
    return { found: true, value: entry.args[0] };
  }

  /** Payloads (first argument) of every received `event`, taken or not, in arrival order. */
  all(event, filter = () => true) {
    return this.entries.filter((e) => e.event === event && filter(e.args[0])).map((e) => e.args[0]);
  }

  /** Names of all events received so far, for failure messages. */
  names() {
    return this.entries.map((e) => e.event);
  }
}

/** Start recording a socket's events (done automatically by `connect`). */
export function track(socket) {
  if (!socket.log) socket.log = new EventLog(socket);
  openSockets.add(socket);
  return socket;
}

/**
 * Await the next `event` on `socket` (optionally the next one whose payload satisfies `filter`).
 * Rejects, failing the test, when nothing arrives within `timeout` ms.
 */
export function once(socket, event, { timeout = DEFAULT_TIMEOUT_MS, filter = () => true, what } = {}) {
  track(socket);
  const log = socket.log;
  const hit = log.take(event, filter);
  if (hit.found) return Promise.resolve(hit.value);
  return new Promise((resolve, reject) => {
    const waiter = {
      event,
      filter,
      resolve: (v) => {
        clearTimeout(timer);
        resolve(v);
      },
    };
    const timer = setTimeout(() => {
      log.waiters.splice(log.waiters.indexOf(waiter), 1);
      const seen = log.names();
      reject(
        new Error(
          `timed out after ${timeout} ms waiting for "${event}"${what ? ` (${what})` : ""} on socket ${socket.id ?? "(not connected)"}; ` +
            `events received so far: ${seen.length ? seen.join(", ") : "none"}`,
        ),
      );
    }, timeout);
    log.waiters.push(waiter);
  });
}

/** Await `n` occurrences of `event` (each taken), in arrival order. */
export async function many(socket, event, n, opts = {}) {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(await once(socket, event, { ...opts, what: `${i + 1} of ${n}${opts.what ? `, ${opts.what}` : ""}` }));
  }
  return out;
}

/**
 * Assert that no (untaken) `event` matching `filter` arrives on `socket`.
 * This is the one place the suite waits on the clock: absence can only be observed by
 * waiting a short, bounded window (QUIET_WINDOW_MS) after the thing that must not cause it.
 */
export async function expectNone(socket, event, { ms = QUIET_WINDOW_MS, filter = () => true, what } = {}) {
  track(socket);
  await new Promise((r) => setTimeout(r, ms));
  const hit = socket.log.take(event, filter);
  assert.ok(
    !hit.found,
    `expected no "${event}"${what ? ` (${what})` : ""} within ${ms} ms, but got ${JSON.stringify(hit.value)}`,
  );
}

/** How often `eventually` reads again. */
export const POLL_MS = 25;

/**
 * Poll `read()` until `test(value)` holds and return that value; fails after `patience` ms
 * with the last value read. Only for state that no event announces (e.g. an agent's
 * availability as another edge sees it); anything with an event is awaited with `once`.
 */
export async function eventually(read, test, { patience = 5000, what = "a condition" } = {}) {
  const deadline = Date.now() + patience;
  for (;;) {
    const value = await read();
    if (test(value)) return value;
    assert.ok(Date.now() < deadline, `${what}: still ${JSON.stringify(value)?.slice(0, 500)} after ${patience} ms`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Helper defaults; `transports: "default"` leaves socket.io-client's own default (polling, then upgrade). */
function socketOptions(opts) {
  const options = { forceNew: true, reconnection: false, transports: ["websocket"], ...opts };
  if (options.transports === "default") delete options.transports;
  return options;
}

/**
 * Connect a socket and resolve once connected; reject with the server's `connect_error` message.
 * Options are passed to socket.io-client; `token` becomes `auth: {token}`.
 * Defaults: websocket transport, no reconnection, a new Manager per socket.
 */
export function connect(url, { token, timeout = 5000, ...opts } = {}) {
  const options = socketOptions(opts);
  if (token !== undefined) options.auth = { ...(options.auth ?? {}), token };
  const socket = track(io(url, options));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      socket.close();
      reject(new Error(`socket did not connect to ${url} within ${timeout} ms`));
    }, timeout);
    const onConnect = () => {
      cleanup();
      resolve(socket);
    };
    const onError = (err) => {
      cleanup();
      socket.close();
      reject(new Error(`connect_error: ${err.message}`));
    };
    function cleanup() {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
    }
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

/** Await the `connect` of a socket made with plain `io()` (e.g. exactly as a user's existing client code does); rejects on connect_error. */
export function whenConnected(socket, { timeout = 5000 } = {}) {
  track(socket);
  if (socket.connected) return Promise.resolve(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`socket did not connect within ${timeout} ms`));
    }, timeout);
    const onConnect = () => {
      cleanup();
      resolve(socket);
    };
    const onError = (err) => {
      cleanup();
      reject(new Error(`connect_error: ${err.message}`));
    };
    function cleanup() {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
    }
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

/** Try to connect and resolve with the `connect_error` (fails if the socket connects). */
export function connectError(url, { token, timeout = 5000, ...opts } = {}) {
  const options = socketOptions(opts);
  if (token !== undefined) options.auth = { ...(options.auth ?? {}), token };
  const socket = track(io(url, options));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`expected connect_error within ${timeout} ms, got neither connect nor error`));
    }, timeout);
    socket.on("connect", () => {
      clearTimeout(timer);
      socket.close();
      reject(new Error("expected the connection to be refused, but it connected"));
    });
    socket.on("connect_error", (err) => {
      clearTimeout(timer);
      socket.close();
      resolve(err);
    });
  });
}

/** Emit with an ack and resolve with the ack payload; fails after `timeout` ms with no ack. */
export async function ack(socket, event, payload, { timeout = DEFAULT_TIMEOUT_MS } = {}) {
  try {
    return await socket.timeout(timeout).emitWithAck(event, payload);
  } catch (err) {
    throw new Error(`no ack for "${event}" ${JSON.stringify(payload)?.slice(0, 200)} within ${timeout} ms (${err.message})`);
  }
}

/** Assert an ack is `{ok:true, ...}` and return it. */
export function expectOk(reply, what = "ack") {
  assert.ok(reply && typeof reply === "object", `${what}: ack is not an object: ${JSON.stringify(reply)}`);
  assert.equal(reply.ok, true, `${what}: expected ok:true, got ${JSON.stringify(reply)}`);
  return reply;
}

/** Assert an ack is `{ok:false, error:{code, message}}` with the given code. */
export function expectAckError(reply, code, what = "ack") {
  assert.ok(reply && typeof reply === "object", `${what}: ack is not an object: ${JSON.stringify(reply)}`);
  assert.equal(reply.ok, false, `${what}: expected ok:false, got ${JSON.stringify(reply)}`);
  assert.ok(reply.error && typeof reply.error === "object", `${what}: missing error object: ${JSON.stringify(reply)}`);
  assert.equal(reply.error.code, code, `${what}: expected error code ${code}, got ${JSON.stringify(reply.error)}`);
  assert.equal(typeof reply.error.message, "string", `${what}: error.message must be a string`);
  assert.ok(reply.error.message.length > 0, `${what}: error.message must not be empty`);
  return reply.error;
}

/** join_conversation with ack, asserting ok. */
export async function join(socket, conversationId, sinceOffset) {
  const payload = { conversation_id: conversationId };
  if (sinceOffset !== undefined) payload.since_offset = sinceOffset;
  return expectOk(await ack(socket, "join_conversation", payload), `join_conversation ${conversationId}`);
}

/** send_message with ack, asserting ok; returns the stored message. */
export async function send(socket, conversationId, text, clientMsgId) {
  const payload = { conversation_id: conversationId, text };
  if (clientMsgId !== undefined) payload.client_msg_id = clientMsgId;
  const reply = expectOk(await ack(socket, "send_message", payload), `send_message ${JSON.stringify(text)}`);
  assert.ok(reply.message && typeof reply.message === "object", `send_message ack has no message: ${JSON.stringify(reply)}`);
  return reply.message;
}

/** Resolve when the socket is disconnected (or immediately if it already is). */
export function disconnected(socket, { timeout = DEFAULT_TIMEOUT_MS } = {}) {
  if (!socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket did not disconnect within ${timeout} ms`)), timeout);
    socket.once("disconnect", (reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

/** Close and forget every socket created in this test file. */
export function closeAll() {
  for (const s of openSockets) s.close();
  openSockets.clear();
}

// ---- assertions on shapes ---------------------------------------------------

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export function assertRfc3339(value, what = "timestamp") {
  assert.equal(typeof value, "string", `${what} must be a string, got ${JSON.stringify(value)}`);
  assert.match(value, RFC3339, `${what} must be RFC 3339, got ${value}`);
  assert.ok(!Number.isNaN(Date.parse(value)), `${what} must parse as a date: ${value}`);
}

/** Assert the Message shape clients see; `expect` pins fields. */
export function assertMessage(msg, expect = {}) {
  assert.ok(msg && typeof msg === "object", `message must be an object: ${JSON.stringify(msg)}`);
  assert.match(String(msg.id), UUID_V7, `message.id must be a UUIDv7: ${msg.id}`);
  assert.equal(typeof msg.conversation_id, "string", "message.conversation_id must be a string");
  assert.ok(Number.isInteger(msg.offset) && msg.offset >= 1, `message.offset must be an integer >= 1: ${msg.offset}`);
  assert.ok(msg.sender && typeof msg.sender === "object", "message.sender must be an object");
  for (const k of ["id", "role", "name"]) {
    assert.equal(typeof msg.sender[k], "string", `message.sender.${k} must be a string: ${JSON.stringify(msg.sender)}`);
  }
  assert.equal(typeof msg.text, "string", "message.text must be a string");
  assert.ok(["widget", "agent", "whatsapp", "bot", "api"].includes(msg.source), `bad message.source ${msg.source}`);
  assertRfc3339(msg.created_at, "message.created_at");
  for (const [k, v] of Object.entries(expect)) {
    if (k === "sender") {
      for (const [sk, sv] of Object.entries(v)) assert.equal(msg.sender[sk], sv, `message.sender.${sk}`);
    } else {
      assert.deepEqual(msg[k], v, `message.${k}`);
    }
  }
  return msg;
}

/** Assert the Conversation shape clients see. */
export function assertConversation(conv, expect = {}) {
  assert.ok(conv && typeof conv === "object", `conversation must be an object: ${JSON.stringify(conv)}`);
  assert.equal(typeof conv.id, "string", "conversation.id");
  assert.ok(["web", "whatsapp"].includes(conv.channel), `conversation.channel: ${conv.channel}`);
  assert.ok(["open", "pending", "closed"].includes(conv.status), `conversation.status: ${conv.status}`);
  assert.ok(conv.customer && typeof conv.customer === "object", "conversation.customer");
  assert.equal(typeof conv.customer.id, "string", "conversation.customer.id");
  assert.equal(typeof conv.customer.name, "string", "conversation.customer.name");
  // Absent when unassigned (never null), else who holds it.
  if ("assignee" in conv) {
    assert.ok(conv.assignee && typeof conv.assignee === "object", `conversation.assignee: ${JSON.stringify(conv.assignee)}`);
    assert.equal(typeof conv.assignee.id, "string", "conversation.assignee.id");
    assert.equal(typeof conv.assignee.name, "string", "conversation.assignee.name");
  }
  assertRfc3339(conv.created_at, "conversation.created_at");
  assertRfc3339(conv.updated_at, "conversation.updated_at");
  for (const [k, v] of Object.entries(expect)) assert.deepEqual(conv[k], v, `conversation.${k}`);
  return conv;
}
