// The inbox across a two-edge cluster on real NATS and PostgreSQL: an agent's
// availability as the other edge tells it, assignment changes reaching the
// other edge, and claims racing from both edges.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { useCluster } from "../lib/cluster.mjs";
import { ack, connect, eventually, expectAckError, expectNone, expectOk, join, once } from "../lib/sio.mjs";
import { createConversation } from "./common.mjs";

const ctx = useCluster({ edges: 2, workers: 1 });

/** Across edges an answer may take longer than on one process. */
const TIMEOUT_MS = 10_000;

const uid = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;
/** An agent as `cluster.agentToken(sub)` names it. */
const who = (sub) => ({ id: sub, name: `Test ${sub}` });

async function getJson(edge, path) {
  const res = await fetch(`${edge.url}${path}`, {
    headers: { authorization: `Bearer ${ctx.cluster.serviceToken()}` },
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const body = await res.json().catch(() => null);
  assert.equal(res.status, 200, `GET ${path} on ${edge.name}: ${JSON.stringify(body)}`);
  return body;
}

/** The agent as GET /api/v1/agents on `edge` lists it (undefined until seen). */
async function listedOn(edge, sub) {
  return (await getJson(edge, "/api/v1/agents")).agents.find((a) => a.id === sub);
}

/** Availability has no event: poll `edge` until it tells `availability` for `sub`, within a bounded time. */
function becomesOn(edge, sub, availability) {
  return eventually(() => listedOn(edge, sub), (a) => a?.availability === availability, {
    patience: TIMEOUT_MS,
    what: `${sub} ${availability} as ${edge.name} tells it`,
  });
}

function agentOn(edge, sub) {
  return connect(edge.url, { token: ctx.cluster.agentToken(sub) });
}

describe("availability across edges", () => {
  it("an agent on edge A is online, then away, then offline, as edge B tells it", async () => {
    const [a, b] = ctx.cluster.edges;
    const sub = uid("agent");
    const socket = await agentOn(a, sub);
    assert.deepEqual(await becomesOn(b, sub, "online"), { ...who(sub), availability: "online", open_assigned: 0 });
    const reply = expectOk(await ack(socket, "set_availability", { status: "away" }, { timeout: TIMEOUT_MS }), "set away");
    assert.equal(reply.agent.availability, "away");
    await becomesOn(b, sub, "away");
    socket.close();
    await becomesOn(b, sub, "offline");
  });

  it("an agent with a socket on each edge stays available while either is connected", async () => {
    const [a, b] = ctx.cluster.edges;
    const sub = uid("agent");
    const onA = await agentOn(a, sub);
    const onB = await agentOn(b, sub);
    await becomesOn(a, sub, "online");
    // The socket on A sits in a room with a watcher on B: the watcher's presence event
    // says edge A has handled that socket's disconnect.
    const id = await createConversation(ctx.cluster, a);
    await join(onA, id);
    const watcher = await agentOn(b, uid("agent"));
    await join(watcher, id);
    onA.close();
    await once(watcher, "presence", { filter: (p) => p.user_id === sub && p.online === false, timeout: TIMEOUT_MS });
    for (const edge of [a, b]) {
      assert.notEqual((await listedOn(edge, sub))?.availability, "offline", `${edge.name}: the socket on B is still connected`);
    }
    onB.close();
    await becomesOn(a, sub, "offline");
  });
});

describe("assignment across edges", () => {
  it("a claim on edge A reaches the customer joined on edge B, once", async () => {
    const [a, b] = ctx.cluster.edges;
    const id = await createConversation(ctx.cluster, a);
    const conv = await getJson(a, `/api/v1/conversations/${id}`);
    const customer = await connect(b.url, { token: ctx.cluster.token({ sub: conv.customer.id, role: "customer" }) });
    await join(customer, id);
    const sub = uid("agent");
    const agent = await agentOn(a, sub);
    const claimed = expectOk(await ack(agent, "assign_conversation", { conversation_id: id }, { timeout: TIMEOUT_MS }), "claim");
    assert.deepEqual(claimed.conversation.assignee, who(sub));
    const got = await once(customer, "conversation:updated", { filter: (e) => e?.conversation?.id === id, timeout: TIMEOUT_MS });
    assert.deepEqual(got.conversation.assignee, who(sub));
    await expectNone(customer, "conversation:updated", { filter: (e) => e?.conversation?.id === id, what: "a second copy" });
  });

  it("10 conversations, an agent on each edge claiming each at the same instant: exactly one wins each", async () => {
    const [a, b] = ctx.cluster.edges;
    const ids = await Promise.all(Array.from({ length: 10 }, (_, i) => createConversation(ctx.cluster, i % 2 ? a : b)));
    const [one, two] = [uid("agent"), uid("agent")];
    const [onA, onB] = [await agentOn(a, one), await agentOn(b, two)];
    const claimOn = (socket, id) => ack(socket, "assign_conversation", { conversation_id: id }, { timeout: TIMEOUT_MS });
    const replies = await Promise.all(ids.map((id) => Promise.all([claimOn(onA, id), claimOn(onB, id)])));
    const wins = { [one]: 0, [two]: 0 };
    for (const [i, [r1, r2]] of replies.entries()) {
      const winners = [[one, r1, r2], [two, r2, r1]].filter(([, won]) => won.ok === true);
      assert.equal(winners.length, 1, `conversation ${i}: exactly one claim wins, got ${JSON.stringify([r1, r2])}`);
      const [winner, won, lost] = winners[0];
      expectAckError(lost, "conflict", `the losing claim of conversation ${i}`);
      assert.deepEqual(won.conversation.assignee, who(winner));
      for (const edge of [a, b]) {
        const now = await getJson(edge, `/api/v1/conversations/${ids[i]}`);
        assert.deepEqual(now.assignee, who(winner), `conversation ${i} on ${edge.name} agrees with the winner`);
      }
      wins[winner]++;
    }
    for (const [sub, count] of Object.entries(wins)) {
      await eventually(() => listedOn(b, sub), (x) => x?.open_assigned === count, {
        patience: TIMEOUT_MS,
        what: `${sub}'s open_assigned (${count} won)`,
      });
    }
  });
});
