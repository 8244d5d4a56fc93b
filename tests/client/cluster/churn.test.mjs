// Join-then-drop churn on the scale-out cluster, across two edges: sockets on edge 1
// that ask to join a conversation and are gone before the answer, watched from edge 2.
// (The same check on one `switchboard dev` is test/churn.test.mjs.)
//
// 30 conversations, each with its own customer (its token lists its conversation).
// A watcher agent on edge 2 joins all 30 and records `presence`. Then, all at once on
// edge 1, each conversation's customer connects over Socket.IO and an agent of its own
// over the native protocol (/ws); each sends join_conversation and drops without waiting
// for the answer (Socket.IO: half close the engine, half terminate its TCP connection;
// native: terminate). Settled means edge 1's /metrics shows no socket and no
// conversation subscription, and edge 2's shows the watcher's socket and its 30.
// Presence travels on core NATS, per conversation, in order per publisher: a marker
// agent on edge 1 then joins every conversation, so once the watcher saw the marker's
// presence in a conversation, every earlier presence from edge 1 there has arrived too.
// Finally the watcher leaves half of the conversations, then disconnects, and edge 2's
// gauge must follow what it holds down to 0.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { useCluster } from "../lib/cluster.mjs";
import { QUIET_WINDOW_MS, ack, connect, expectOk, join, once } from "../lib/sio.mjs";

const CONVERSATIONS = 30;
/** How long /metrics may take to show the expected counts. */
const SETTLE_MS = 10_000;
/** How long one churner may take to connect, or to see its own connection end. */
const DROP_MS = 5_000;
/** How long the marker's presence may take to reach the watcher on the other edge. */
const MARKER_MS = 10_000;

const ctx = useCluster({ edges: 2, workers: 1 });

/** Resolves as `promise` does; rejects after `ms` saying `what` did not happen. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Sum of a /metrics series over the label sets that contain `labels` (e.g. `kind="conversation"`). */
async function gauge(edge, name, labels = "") {
  const res = await fetch(`${edge.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200, `GET ${edge.name} /metrics`);
  let sum = 0;
  for (const line of (await res.text()).split("\n")) {
    const m = line.match(/^(\w+)(\{[^}]*\})?\s+(\S+)$/);
    if (m && m[1] === name && (m[2] ?? "").includes(labels)) sum += Number(m[3]);
  }
  return sum;
}

/** An edge's conversation subscriptions and sockets per transport. */
async function reading(edge) {
  return {
    subscriptions: await gauge(edge, "switchboard_subscriptions", 'kind="conversation"'),
    socketio: await gauge(edge, "switchboard_sockets", 'transport="socket.io"'),
    native: await gauge(edge, "switchboard_sockets", 'transport="native"'),
  };
}

const NOTHING = { subscriptions: 0, socketio: 0, native: 0 };
/** Edge 2 while only the watcher is there, holding `n` conversations. */
const watching = (n) => ({ subscriptions: n, socketio: 1, native: 0 });

/** Polls an edge's /metrics until it reads `want`, for at most SETTLE_MS; resolves with the last reading. */
async function settle(edge, want) {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const last = await reading(edge);
    const done = Object.keys(want).every((k) => last[k] === want[k]);
    if (done || Date.now() > deadline) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function createConversation(cluster, edge, customer, name) {
  const id = randomUUID();
  const res = await fetch(`${edge.url}/api/v1/conversations`, {
    method: "POST",
    headers: { authorization: `Bearer ${cluster.serviceToken()}`, "content-type": "application/json" },
    body: JSON.stringify({ id, channel: "web", customer: { id: customer, name } }),
    signal: AbortSignal.timeout(15_000),
  });
  assert.equal(res.status, 201, `POST /api/v1/conversations for ${customer}: ${await res.text()}`);
  return id;
}

/** Native sockets made here, terminated after the tests whatever happened. */
const nativeSockets = new Set();

/** The room's customer connects over Socket.IO, emits join_conversation and drops at once. */
async function dropSocketIo(edge, room, i) {
  const socket = await connect(edge.url, { token: room.customerToken, timeout: DROP_MS });
  const gone = new Promise((resolve) => socket.once("disconnect", resolve));
  // With an ack callback, as a real client does, but not waiting for it.
  socket.emit("join_conversation", { conversation_id: room.id }, () => {});
  if (i % 2 === 0) socket.io.engine.close();
  else socket.io.engine.transport.ws.terminate();
  await within(gone, DROP_MS, `${room.customer}'s Socket.IO socket seeing its own disconnect`);
  socket.close();
}

/** The room's native churner connects to /ws, sends join_conversation and terminates at once. */
async function dropNative(edge, room) {
  const ws = new WebSocket(`${edge.url.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(room.agentToken)}`);
  nativeSockets.add(ws);
  const closed = new Promise((resolve) => ws.once("close", resolve));
  const opened = new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  await within(opened, DROP_MS, `${room.agent}'s native socket opening on ${edge.name}`);
  ws.send(JSON.stringify({ type: "join_conversation", ref: 1, conversation_id: room.id }));
  ws.terminate();
  await within(closed, DROP_MS, `${room.agent}'s native socket closing`);
}

describe(`cluster churn: ${CONVERSATIONS} Socket.IO customers and ${CONVERSATIONS} native agents join and drop on edge 1, watched from edge 2`, () => {
  const rec = {};

  before(async () => {
    const { cluster } = ctx;
    const [edge1, edge2] = cluster.edges;
    const tag = randomUUID().slice(0, 8);
    const rooms = [];
    for (let i = 0; i < CONVERSATIONS; i++) {
      const customer = `churn-${tag}-${i}`;
      const agent = `churn-native-${tag}-${i}`;
      const id = await createConversation(cluster, edge1, customer, `Churn ${i}`);
      rooms.push({
        id,
        customer,
        agent,
        customerToken: cluster.token({ sub: customer, role: "customer", name: `Churn ${i}`, conversations: [id] }),
        agentToken: cluster.agentToken(agent),
      });
    }

    const watcher = await connect(edge2.url, { token: cluster.agentToken(`watcher-${tag}`) });
    const presence = new Map(rooms.map((r) => [r.id, []]));
    watcher.on("presence", (e) => presence.get(e?.conversation_id)?.push(e));
    for (const r of rooms) await join(watcher, r.id);
    rec.before = { edge1: await settle(edge1, NOTHING), edge2: await settle(edge2, watching(CONVERSATIONS)) };

    await Promise.all([...rooms.map((r, i) => dropSocketIo(edge1, r, i)), ...rooms.map((r) => dropNative(edge1, r))]);
    rec.afterChurn = { edge1: await settle(edge1, NOTHING), edge2: await settle(edge2, watching(CONVERSATIONS)) };

    // A marker's presence in each conversation comes after every earlier one from edge 1 there.
    const marker = await connect(edge1.url, { token: cluster.agentToken(`marker-${tag}`) });
    for (const r of rooms) {
      const seen = once(watcher, "presence", {
        filter: (e) => e?.conversation_id === r.id && e.user_id === `marker-${tag}` && e.online === true,
        timeout: MARKER_MS,
        what: `the marker's presence from edge 1 in ${r.id}, on the watcher on edge 2`,
      });
      await join(marker, r.id);
      await seen;
    }
    rec.presence = rooms.flatMap((r) => [
      { user: r.customer, role: "customer", events: presence.get(r.id).filter((e) => e.user_id === r.customer) },
      { user: r.agent, role: "agent", events: presence.get(r.id).filter((e) => e.user_id === r.agent) },
    ]);
    marker.close();
    rec.afterMarker = { edge1: await settle(edge1, NOTHING), edge2: await settle(edge2, watching(CONVERSATIONS)) };
    // Still so a moment later: no join still in flight adds a subscription back.
    await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
    rec.later = { edge1: await reading(edge1), edge2: await reading(edge2) };

    const half = CONVERSATIONS / 2;
    for (const r of rooms.slice(0, half)) {
      expectOk(await ack(watcher, "leave_conversation", { conversation_id: r.id }), `watcher leave_conversation ${r.id}`);
    }
    rec.afterLeave = await settle(edge2, watching(half));
    watcher.close();
    rec.afterAll = await settle(edge2, NOTHING);
  });

  after(() => {
    for (const ws of nativeSockets) ws.terminate();
    nativeSockets.clear();
  });

  it(`edge 1: switchboard_subscriptions{kind="conversation"} and switchboard_sockets return to 0 once its churners are gone`, () => {
    assert.deepEqual(rec.before.edge1, NOTHING, "edge 1 before the churn");
    assert.deepEqual(rec.afterChurn.edge1, NOTHING, `edge 1 after the churn, within ${SETTLE_MS} ms: churners left something behind`);
    assert.deepEqual(rec.afterMarker.edge1, NOTHING, `edge 1 after the marker went, within ${SETTLE_MS} ms`);
    assert.deepEqual(rec.later.edge1, NOTHING, `edge 1 ${QUIET_WINDOW_MS} ms later`);
  });

  it("edge 2: switchboard_subscriptions{kind=\"conversation\"} equals the conversations its watcher holds", () => {
    const half = CONVERSATIONS / 2;
    assert.deepEqual(rec.before.edge2, watching(CONVERSATIONS), "edge 2 before the churn: the watcher and its conversations");
    assert.deepEqual(rec.afterChurn.edge2, watching(CONVERSATIONS), `edge 2 after the churn on edge 1, within ${SETTLE_MS} ms`);
    assert.deepEqual(rec.afterMarker.edge2, watching(CONVERSATIONS), `edge 2 after the marker went, within ${SETTLE_MS} ms`);
    assert.deepEqual(rec.later.edge2, watching(CONVERSATIONS), `edge 2 ${QUIET_WINDOW_MS} ms later`);
    assert.deepEqual(rec.afterLeave, watching(half), `edge 2 after the watcher left ${half} conversations, within ${SETTLE_MS} ms`);
    assert.deepEqual(rec.afterAll, NOTHING, `edge 2 after the watcher disconnected, within ${SETTLE_MS} ms`);
  });

  it("every churned user was last seen offline on edge 2, if seen at all, and never online again after offline", (t) => {
    const wrong = [];
    for (const { user, role, events } of rec.presence) {
      for (const e of events) {
        assert.deepEqual(Object.keys(e).sort(), ["conversation_id", "online", "role", "user_id"], JSON.stringify(e));
        assert.equal(e.role, role, JSON.stringify(e));
        assert.equal(typeof e.online, "boolean", JSON.stringify(e));
      }
      const flags = events.map((e) => e.online);
      const lastOnline = flags.length > 0 && flags.at(-1) !== false;
      const backOnline = flags.some((f, i) => f === true && flags.slice(0, i).includes(false));
      if (lastOnline || backOnline) wrong.push({ user, presence: flags });
    }
    const seen = rec.presence.filter((p) => p.events.length > 0).length;
    t.diagnostic(`${seen} of ${rec.presence.length} churned users were seen in presence on edge 2`);
    assert.deepEqual(
      wrong,
      [],
      `${wrong.length} of ${rec.presence.length} churned users were last seen online, or came back online after going offline`,
    );
  });
});
