// Slow readers (README, Behaviour, "Slow clients"): a client that stops reading is
// disconnected once its outbound queue (SWITCHBOARD_OUTBOUND_BUFFER packets) is full,
// never sent a gap, counted once and logged once; it recovers everything by offset, and
// nobody else notices. One test per transport: Socket.IO over websocket, Socket.IO over
// long-polling, and the native JSON protocol over /ws.
//
// Each test: a conversation with a few messages; the stalled client joins (offset j);
// it stops reading; messages of ~4000 characters are posted over HTTP, 8 in flight,
// until well past the point where the server gives up on it (at most FLOOD); it reads
// again. Then: it saw exactly j+1..k and was disconnected once; the metric and the log
// line moved by exactly one; a fresh connection recovers exactly k+1..N; a bystander in
// another conversation got every one of its messages, in order.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import WebSocket from "ws";
import { RawPollingClient, RawWebSocketClient, SIO, eventOf } from "../lib/raw.mjs";
import { useServer } from "../lib/setup.mjs";
import { ack, connect, expectOk, many } from "../lib/sio.mjs";

const OUTBOUND_BUFFER = 64;
/**
 * At most this many flood messages: enough to fill the kernel's socket buffers on both
 * ends of a loopback connection (~4.5 MB, about 1050 of these messages) and then the
 * server's per-socket queue, with room to spare.
 */
const FLOOD = 2000;
/**
 * Once the server reports the stalled socket disconnected (the metric), this many more
 * are posted and the flood stops: what follows a disconnect must not be counted, logged
 * or delivered again, and recovery must include it. Stopping early keeps the file fast.
 */
const AFTER_DISCONNECT = 200;
/** The metric is read every this many flood messages. */
const CHECK_EVERY = 50;
const TEXT_LEN = 4000;
const IN_FLIGHT = 8;
/** Messages already in the conversation when the stalled client joins (so its join offset is not 0). */
const BEFORE_JOIN = 3;
/** One bystander message per this many flood messages, posted in the same stream. */
const BYSTANDER_EVERY = 25;
/** A safety net per test; every wait inside is bounded more tightly. */
const TEST_TIMEOUT_MS = 45_000;
const SLOW_LOG_LINE = "disconnecting a socket that stopped reading";
const METRIC = "switchboard_slow_consumers_disconnected_total";

const ctx = useServer({ SWITCHBOARD_OUTBOUND_BUFFER: String(OUTBOUND_BUFFER) });

// ---- helpers -----------------------------------------------------------------

const range = (from, to) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/** Sum of the samples of `name` whose labels include all of `labels` (0 when absent). */
async function metric(name, labels = {}) {
  const res = await ctx.server.http("GET", "/metrics");
  assert.equal(res.status, 200, `GET /metrics answered ${res.status}`);
  let total = 0;
  for (const line of res.text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[3]);
  }
  return total;
}

/** How many times the server has logged `line` so far. */
function logCount(line) {
  return ctx.server.logs().split(line).length - 1;
}

/** A conversation for `customerId`, with `n` messages in it already. */
async function conversationWith(customerId, n) {
  const conv = await ctx.server.createConversation({ customer: { id: customerId, name: `Customer ${customerId}` } });
  for (let i = 1; i <= n; i++) await ctx.server.postMessage(conv.id, `before ${i}`);
  return conv;
}

/**
 * Posts up to FLOOD messages of TEXT_LEN characters to `conversationId`, IN_FLIGHT at a
 * time, and one to `bystanderId` every BYSTANDER_EVERY of them; stops AFTER_DISCONNECT
 * messages after `disconnected()` first answers true. Resolves, once every POST has
 * answered 201, with how many flood and bystander messages were posted.
 */
async function flood(conversationId, bystanderId, disconnected) {
  const token = ctx.server.serviceToken();
  const post = async (id, text) => {
    const res = await ctx.server.http("POST", `/api/v1/conversations/${encodeURIComponent(id)}/messages`, {
      token,
      json: { text },
    });
    assert.equal(res.status, 201, `POST message answered ${res.status}: ${res.text.slice(0, 200)}`);
  };
  let issued = 0;
  let stopAt = FLOOD;
  let bystander = 0;
  let checking = false;
  const worker = async () => {
    while (issued < stopAt) {
      const i = issued++;
      await post(conversationId, `flood ${i} `.padEnd(TEXT_LEN, "x"));
      if (i % BYSTANDER_EVERY === 0) {
        bystander++;
        await post(bystanderId, `bystander ${bystander}`);
      }
      if (i % CHECK_EVERY === 0 && stopAt === FLOOD && !checking) {
        checking = true;
        if (await disconnected()) stopAt = Math.min(FLOOD, issued + AFTER_DISCONNECT);
        checking = false;
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return { posted: issued, bystander };
}

/** Offsets of a list of messages, asserting they all belong to `conversationId`. */
function offsetsIn(messages, conversationId, what) {
  for (const m of messages) {
    assert.equal(m.conversation_id, conversationId, `${what}: a message:new of another conversation: ${m.conversation_id}`);
  }
  return messages.map((m) => m.offset);
}

/**
 * A native /ws connection with JSON frames: records frames, awaits them by a predicate,
 * sends operations with a ref. `pause()` stops it reading at the TCP level: `ws` would
 * otherwise read everything into memory, and the server would never see a full queue.
 */
async function openNative(token) {
  const ws = new WebSocket(`${ctx.server.url.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(token)}`);
  const client = {
    ws,
    frames: [],
    waiters: [],
    closeInfo: null,
    nextRef: 0,
    take(match, what, timeout = 5000) {
      const at = client.frames.findIndex((f) => !f.taken && match(f));
      if (at >= 0) {
        client.frames[at].taken = true;
        return Promise.resolve(client.frames[at]);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          client.waiters.splice(client.waiters.indexOf(waiter), 1);
          reject(new Error(`native: no ${what} within ${timeout} ms`));
        }, timeout);
        const waiter = { match, resolve: (f) => (clearTimeout(timer), resolve(f)) };
        client.waiters.push(waiter);
      });
    },
    call(type, payload, timeout = 5000) {
      const ref = ++client.nextRef;
      ws.send(JSON.stringify({ type, ref, ...payload }));
      return client.take((f) => f.type === "ack" && f.ref === ref, `ack of ${type}`, timeout);
    },
    /** Resolves with `{code, reason}` when the connection closes; bounded. */
    closed(timeout, what) {
      if (client.closeInfo) return Promise.resolve(client.closeInfo);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`native: ${what}: not closed within ${timeout} ms`)), timeout);
        ws.once("close", () => {
          clearTimeout(timer);
          resolve(client.closeInfo);
        });
      });
    },
    /** Stop reading from the TCP socket: the kernel buffers fill, then the server's queue. */
    pause: () => ws._socket.pause(),
    resume: () => ws._socket.resume(),
    close: () => ws.terminate(),
  };
  ws.on("message", (data) => {
    const frame = JSON.parse(data.toString());
    client.frames.push(frame);
    const w = client.waiters.find((w) => w.match(frame));
    if (w) {
      frame.taken = true;
      client.waiters.splice(client.waiters.indexOf(w), 1);
      w.resolve(frame);
    }
  });
  ws.on("close", (code, reason) => {
    client.closeInfo = { code, reason: reason.toString() };
  });
  ws.on("error", () => {});
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("unexpected-response", (_, res) => reject(new Error(`native upgrade refused: HTTP ${res.statusCode}`)));
    ws.once("error", reject);
  });
  return client;
}

/** Join a native connection to `conversationId` and return the ack; on failure close it and fail. */
async function joinedOrClosed(n, conversationId, what) {
  try {
    const joined = await n.call("join_conversation", { conversation_id: conversationId });
    assert.equal(joined.ok, true, `${what}: ${JSON.stringify(joined)}`);
    return joined;
  } catch (err) {
    n.close();
    throw err;
  }
}

/**
 * A bystander in its own conversation that reads normally, on the transport under test.
 * `received(n)` awaits its first `n` message:new and returns them.
 */
async function openBystander(kind) {
  const sub = `bystander-${randomUUID().slice(0, 8)}`;
  const conv = await ctx.server.createConversation({ customer: { id: sub, name: "Bystander" } });
  const token = ctx.server.customerToken(sub);
  if (kind === "native") {
    const n = await openNative(token);
    await joinedOrClosed(n, conv.id, "bystander join");
    return {
      id: conv.id,
      async received(count) {
        const out = [];
        for (let i = 0; i < count; i++) {
          out.push((await n.take((f) => f.type === "message:new", `bystander message:new ${i + 1} of ${count}`)).data);
        }
        return out;
      },
      extra: () => n.frames.filter((f) => f.type === "message:new" && !f.taken).map((f) => f.data),
      close: () => n.close(),
    };
  }
  const s = await connect(ctx.server.url, { token });
  expectOk(await ack(s, "join_conversation", { conversation_id: conv.id }), "bystander join");
  return {
    id: conv.id,
    received: (count) => many(s, "message:new", count, { what: "bystander", timeout: 10_000 }),
    extra: () => (s.log.take("message:new", () => true).found ? ["an extra message:new"] : []),
    close: () => s.close(),
  };
}

/**
 * Recovery on a fresh connection: join with since_offset `k`, again from the last offset
 * while `has_more`; returns every offset recovered. `joinFrom(since)` answers the join ack.
 */
async function recover(joinFrom, k, conversationId) {
  const offsets = [];
  let since = k;
  for (let round = 0; round < 10; round++) {
    const reply = await joinFrom(since);
    assert.equal(reply.ok, true, `recovery join from ${since}: ${JSON.stringify(reply).slice(0, 300)}`);
    assert.ok(Array.isArray(reply.messages), "recovery ack carries messages");
    offsets.push(...offsetsIn(reply.messages, conversationId, `recovery from ${since}`));
    if (!reply.has_more) return offsets;
    assert.ok(reply.messages.length > 0, "has_more with an empty page");
    since = reply.messages.at(-1).offset;
  }
  assert.fail("recovery still has_more after 10 joins");
}

/**
 * The scenario, for one transport. `stall(token, id)` opens the stalled client, joins it
 * and returns `{joinOffset, pause, resume, end(timeout), received(), assertDisconnectedOnce,
 * close}`; `fresh(token, id)` opens a recovery connection: `{joinFrom(since), close}`.
 */
async function slowReader({ label, bystanderKind, stall, fresh }) {
  const sub = `stalled-${randomUUID().slice(0, 8)}`;
  const conv = await conversationWith(sub, BEFORE_JOIN);
  const bystander = await openBystander(bystanderKind);
  const metricBefore = await metric(METRIC, { transport: label });
  const logBefore = logCount(SLOW_LOG_LINE);

  const stalled = await stall(ctx.server.customerToken(sub), conv.id);
  let recovery;
  try {
    assert.equal(stalled.joinOffset, BEFORE_JOIN, "the join ack's offset is the conversation's latest");
    stalled.pause();
    const disconnected = async () => (await metric(METRIC, { transport: label })) > metricBefore;
    const { posted, bystander: bystanderPosted } = await flood(conv.id, bystander.id, disconnected);
    const N = BEFORE_JOIN + posted;
    const latest = await ctx.server.history(conv.id, "limit=1");
    assert.equal(latest.at(-1)?.offset, N, "every flood message was stored");
    stalled.resume();

    // (1) it is disconnected, once, after a contiguous run of what it had been sent.
    await stalled.end(10_000);
    stalled.assertDisconnectedOnce();

    // (2) exactly joinOffset+1 .. k: no gap, no duplicate.
    const got = offsetsIn(stalled.received(), conv.id, "stalled client");
    const k = got.length ? got.at(-1) : stalled.joinOffset;
    assert.deepEqual(got, range(stalled.joinOffset + 1, k), "the stalled client's offsets are contiguous from its join");
    assert.ok(k < N, `the stalled client read all ${N} messages: it was never disconnected`);

    // (6) the bystander got every one of its messages, in order, once.
    const seen = await bystander.received(bystanderPosted);
    assert.deepEqual(offsetsIn(seen, bystander.id, "bystander"), range(1, bystanderPosted), "bystander offsets");
    assert.deepEqual(bystander.extra(), [], "the bystander got no extra message:new");

    // (5) a fresh connection recovers exactly k+1 .. N.
    recovery = await fresh(ctx.server.customerToken(sub), conv.id);
    const recovered = await recover(recovery.joinFrom, k, conv.id);
    assert.deepEqual(recovered, range(k + 1, N), `recovery from ${k} is exactly ${k + 1}..${N}`);

    // (3) counted once, for this transport.
    const metricAfter = await metric(METRIC, { transport: label });
    assert.equal(
      metricAfter - metricBefore,
      1,
      `${METRIC}{transport="${label}"} went from ${metricBefore} to ${metricAfter}; ` +
        "expected exactly one more for one stalled socket",
    );

    // (4) logged once.
    const logged = logCount(SLOW_LOG_LINE) - logBefore;
    assert.equal(logged, 1, `"${SLOW_LOG_LINE}" was logged ${logged} times for one stalled socket`);
  } finally {
    stalled.close();
    recovery?.close();
    bystander.close();
  }
}

/** Socket.IO recovery on socket.io-client (websocket: a 1000-message ack is ~4 MB). */
async function freshSocketIo(token, conversationId) {
  const s = await connect(ctx.server.url, { token });
  return {
    joinFrom: (since) =>
      ack(s, "join_conversation", { conversation_id: conversationId, since_offset: since }, { timeout: 20_000 }),
    close: () => s.close(),
  };
}

/** The stalled-client interface over a raw Socket.IO client (websocket or polling). */
async function stallSocketIo(client, token, conversationId) {
  let joined;
  try {
    await client.connect({ token });
    joined = await client.emitWithAck("join_conversation", { conversation_id: conversationId });
    assert.equal(joined?.ok, true, `stalled join: ${JSON.stringify(joined)}`);
  } catch (err) {
    await client.close();
    throw err;
  }
  return {
    joinOffset: joined.offset,
    pause: () => client.pause(),
    resume: () => client.resume(),
    end: (timeout) => client.ended({ timeout, what: "the disconnect after resuming" }),
    received: () => client.events("message:new"),
    assertDisconnectedOnce() {
      const disconnects = client.packets.filter((p) => p.type === SIO.DISCONNECT);
      assert.ok(disconnects.length <= 1, `${disconnects.length} DISCONNECT packets`);
      const after = disconnects.length ? client.packets.slice(disconnects[0].seq + 1).map(eventOf).filter(Boolean) : [];
      assert.deepEqual(after.map((e) => e.event), [], "no event after the DISCONNECT packet");
    },
    close: () => client.close(),
  };
}

describe("a client that stops reading is disconnected once and recovers by offset", () => {
  it("Socket.IO over websocket (raw Engine.IO client, TCP socket paused)", { timeout: TEST_TIMEOUT_MS }, async () => {
    await slowReader({
      label: "socket.io",
      bystanderKind: "socket.io",
      // socket.io-client always drains its transport; a raw client whose TCP socket is
      // paused is what a stalled browser tab looks like to the server.
      stall: async (token, id) => stallSocketIo(await RawWebSocketClient.open(ctx.server.url), token, id),
      fresh: freshSocketIo,
    });
  });

  it("Socket.IO over long-polling (raw polling client that stops polling)", { timeout: TEST_TIMEOUT_MS }, async () => {
    await slowReader({
      label: "socket.io",
      bystanderKind: "socket.io",
      // socket.io-client keeps a GET open at all times; a raw client that stops polling
      // leaves the server nowhere to put packets but the session's queue. When it polls
      // again it gets what was queued before the disconnect, then the disconnect.
      stall: async (token, id) => stallSocketIo(await RawPollingClient.open(ctx.server.url), token, id),
      fresh: freshSocketIo,
    });
  });

  it("native JSON over /ws (TCP socket paused): closed with 1013", { timeout: TEST_TIMEOUT_MS }, async () => {
    await slowReader({
      label: "native",
      bystanderKind: "native",
      stall: async (token, id) => {
        const n = await openNative(token);
        const joined = await joinedOrClosed(n, id, "stalled join");
        return {
          joinOffset: joined.offset,
          pause: n.pause,
          resume: n.resume,
          end: (timeout) => n.closed(timeout, "the close after resuming"),
          received: () => n.frames.filter((f) => f.type === "message:new").map((f) => f.data),
          assertDisconnectedOnce() {
            const { code, reason } = n.closeInfo;
            assert.equal(code, 1013, `close code ${code} (${reason}), expected 1013 (try again later)`);
          },
          close: n.close,
        };
      },
      fresh: async (token, id) => {
        const n = await openNative(token);
        return {
          joinFrom: (since) => n.call("join_conversation", { conversation_id: id, since_offset: since }, 20_000),
          close: n.close,
        };
      },
    });
  });
});
