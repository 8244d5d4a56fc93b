// Join-then-drop churn on `switchboard dev`: sockets that emit join_conversation
// and are gone before the answer. A watcher agent joined to every conversation
// beforehand records presence; /metrics tells whether anything was left behind.
//
// Per transport, on a server of its own (so one transport's leftovers cannot fail
// the other's counts): 40 conversations, each with its own customer; the watcher
// joins all 40; the 40 customers connect, emit join_conversation and drop at once
// (Socket.IO: half close the engine, half terminate its TCP connection; native /ws:
// terminate). Settled means /metrics shows only the watcher's socket and its 40
// conversation subscriptions; then a marker agent joins every conversation, so each
// conversation's earlier presence has reached the watcher once the marker's has.
// Finally the watcher leaves (Socket.IO: leave_conversation, then disconnect;
// native: disconnect) and the subscriptions must go to 0.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { startServer } from "../lib/server.mjs";
import { QUIET_WINDOW_MS, ack, closeAll, connect, expectOk, join, once } from "../lib/sio.mjs";

const CHURNED = 40;
const SETTLE_MS = 10_000;

/** Sum of a /metrics series over the label sets that contain `labels` (e.g. `kind="conversation"`). */
async function gauge(server, name, labels = "") {
  const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200, "GET /metrics");
  let sum = 0;
  for (const line of (await res.text()).split("\n")) {
    const m = line.match(/^(\w+)(\{[^}]*\})?\s+(\S+)$/);
    if (m && m[1] === name && (m[2] ?? "").includes(labels)) sum += Number(m[3]);
  }
  return sum;
}

async function reading(server) {
  return {
    subscriptions: await gauge(server, "switchboard_subscriptions", 'kind="conversation"'),
    sockets: await gauge(server, "switchboard_sockets"),
  };
}

/** Polls /metrics until it reads `want` ({subscriptions, sockets}); resolves with the last reading (bounded). */
async function settle(server, want) {
  const deadline = Date.now() + SETTLE_MS;
  let last;
  for (;;) {
    last = await reading(server);
    if ((last.subscriptions === want.subscriptions && last.sockets === want.sockets) || Date.now() > deadline) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * One churn scenario on its own server. `drop(server, room)` connects the room's customer,
 * has it join and drops it at once; `leave(watcher, rooms)` is how the watcher goes at the end.
 */
function scenario(name, { drop, leave }) {
  describe(name, () => {
    let server;
    const rec = {};

    before(async () => {
      server = await startServer();
      const tag = randomUUID().slice(0, 8);
      const rooms = [];
      for (let i = 0; i < CHURNED; i++) {
        const customer = `churn-${tag}-${i}`;
        const conv = await server.createConversation({ customer: { id: customer, name: `Churn ${i}` } });
        rooms.push({ id: conv.id, customer, token: server.customerToken(customer, { conversations: [conv.id] }) });
      }
      const watcher = await connect(server.url, { token: server.agentToken(`watcher-${tag}`) });
      for (const r of rooms) await join(watcher, r.id);
      const presence = new Map(rooms.map((r) => [r.id, []]));
      watcher.on("presence", (e) => presence.get(e?.conversation_id)?.push(e));
      rec.watcherAlone = await settle(server, { subscriptions: CHURNED, sockets: 1 });

      await Promise.all(rooms.map((r, i) => drop(server, r, i)));
      rec.afterChurn = await settle(server, { subscriptions: CHURNED, sockets: 1 });

      // A marker's presence in each conversation comes after every earlier one there.
      const marker = await connect(server.url, { token: server.agentToken(`marker-${tag}`) });
      for (const r of rooms) {
        const seen = once(watcher, "presence", {
          filter: (e) => e?.conversation_id === r.id && e.user_id === `marker-${tag}` && e.online === true,
          timeout: 5000,
          what: `the marker's presence in ${r.id}`,
        });
        await join(marker, r.id);
        await seen;
      }
      marker.close();
      rec.presence = rooms.map((r) => ({ user: r.customer, events: presence.get(r.id).filter((e) => e.user_id === r.customer) }));

      rec.afterLeave = await leave(server, watcher, rooms);
      rec.afterAll = await settle(server, { subscriptions: 0, sockets: 0 });
      // Still nothing a moment later: no join still in flight adds one back.
      await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
      rec.later = await reading(server);
    });

    after(async () => {
      closeAll();
      await server?.stop();
    });

    it(`switchboard_subscriptions{kind="conversation"} returns to the watcher's ${CHURNED}, then to 0 when it leaves`, () => {
      assert.deepEqual(rec.watcherAlone, { subscriptions: CHURNED, sockets: 1 }, "before the churn, the watcher alone");
      assert.deepEqual(rec.afterChurn, { subscriptions: CHURNED, sockets: 1 }, `after the churn, within ${SETTLE_MS} ms`);
      if (rec.afterLeave) {
        assert.deepEqual(
          rec.afterLeave,
          { subscriptions: 0, sockets: 1 },
          `after the watcher left every conversation, within ${SETTLE_MS} ms: churned sockets left subscriptions behind`,
        );
      }
      assert.deepEqual(rec.afterAll, { subscriptions: 0, sockets: 0 }, `after the watcher went too, within ${SETTLE_MS} ms`);
      assert.deepEqual(rec.later, { subscriptions: 0, sockets: 0 }, `${QUIET_WINDOW_MS} ms later`);
    });

    it("every churned customer was last seen offline, if seen at all, and never online again after offline", () => {
      const wrong = [];
      for (const { user, events } of rec.presence) {
        for (const e of events) {
          assert.deepEqual(Object.keys(e).sort(), ["conversation_id", "online", "role", "user_id"], JSON.stringify(e));
          assert.equal(e.role, "customer", JSON.stringify(e));
        }
        const flags = events.map((e) => e.online);
        const lastOnline = flags.length > 0 && flags.at(-1) !== false;
        const backOnline = flags.some((f, i) => f === true && flags.slice(0, i).includes(false));
        if (lastOnline || backOnline) wrong.push({ user, presence: flags });
      }
      assert.deepEqual(
        wrong,
        [],
        `${wrong.length} of ${rec.presence.length} churned customers were last seen online, or came back online after going offline`,
      );
    });
  });
}

scenario(`Socket.IO: ${CHURNED} customers emit join_conversation and drop at once`, {
  async drop(server, r, i) {
    const socket = await connect(server.url, { token: r.token });
    const gone = new Promise((resolve) => socket.once("disconnect", resolve));
    // With an ack callback, as a real client does, but not waiting for it.
    socket.emit("join_conversation", { conversation_id: r.id }, () => {});
    if (i % 2 === 0) socket.io.engine.close();
    else socket.io.engine.transport.ws.terminate();
    await gone;
    socket.close();
  },
  async leave(server, watcher, rooms) {
    for (const r of rooms) expectOk(await ack(watcher, "leave_conversation", { conversation_id: r.id }), "leave_conversation");
    const left = await settle(server, { subscriptions: 0, sockets: 1 });
    watcher.close();
    return left;
  },
});

scenario(`native /ws: ${CHURNED} customers send join_conversation and terminate at once`, {
  async drop(server, r) {
    const ws = new WebSocket(`${server.url.replace("http", "ws")}/ws?token=${r.token}`);
    const closed = new Promise((resolve) => ws.once("close", resolve));
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    ws.send(JSON.stringify({ type: "join_conversation", ref: 1, conversation_id: r.id }));
    ws.terminate();
    await closed;
  },
  async leave(server, watcher) {
    // The watcher disconnects without leaving.
    watcher.close();
    return null;
  },
});
