// Typing indicators (with a 300 ms TTL), presence, read receipts and status updates.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { useServer } from "../lib/setup.mjs";
import { ack, assertRfc3339, connect, expectNone, expectOk, join, once, send } from "../lib/sio.mjs";

const TTL_MS = 300;
const ctx = useServer({ SWITCHBOARD_TYPING_TTL_MS: String(TTL_MS) });

async function room() {
  const id = randomUUID();
  const custSub = `cust-${id.slice(0, 8)}`;
  const agentSub = `agent-${id.slice(0, 8)}`;
  const c = await connect(ctx.server.url, { token: ctx.server.customerToken(custSub, { conversations: [id] }) });
  await join(c, id);
  const a = await connect(ctx.server.url, { token: ctx.server.agentToken(agentSub) });
  await join(a, id);
  return { id, c, a, custSub, agentSub };
}

const forConv = (id) => (e) => e?.conversation_id === id;

describe("typing", () => {
  it("typing_start / typing_stop reach the others in the room, not the sender", async () => {
    const { id, c, a, custSub } = await room();
    c.emit("typing_start", { conversation_id: id });
    assert.deepEqual(await once(a, "user_typing", { filter: forConv(id) }), {
      conversation_id: id,
      user_id: custSub,
      typing: true,
    });
    c.emit("typing_stop", { conversation_id: id });
    assert.deepEqual(await once(a, "user_typing", { filter: forConv(id) }), {
      conversation_id: id,
      user_id: custSub,
      typing: false,
    });
    await expectNone(c, "user_typing", { what: "the sender must not see its own typing" });
  });

  it("agents' typing reaches the customer", async () => {
    const { id, c, a, agentSub } = await room();
    a.emit("typing_start", { conversation_id: id });
    const ev = await once(c, "user_typing", { filter: forConv(id) });
    assert.equal(ev.user_id, agentSub);
    assert.equal(ev.typing, true);
  });

  it(`a typing_start without stop expires by itself after TYPING_TTL_MS (${TTL_MS} ms)`, async () => {
    const { id, c, a, custSub } = await room();
    const started = Date.now();
    c.emit("typing_start", { conversation_id: id });
    const on = await once(a, "user_typing", { filter: forConv(id) });
    assert.equal(on.typing, true);
    const off = await once(a, "user_typing", { filter: forConv(id), timeout: TTL_MS + 3000, what: "expiry" });
    const elapsed = Date.now() - started;
    assert.deepEqual(off, { conversation_id: id, user_id: custSub, typing: false });
    assert.ok(elapsed >= TTL_MS - 50, `typing expired too early: after ${elapsed} ms, TTL is ${TTL_MS} ms`);
  });

  it("sockets outside the room do not see typing", async () => {
    const { id, c, a } = await room();
    const outsider = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-outsider") });
    c.emit("typing_start", { conversation_id: id });
    await once(a, "user_typing", { filter: forConv(id) });
    await expectNone(outsider, "user_typing", { what: "outsider" });
  });
});

describe("presence", () => {
  it("others get presence online:true on join and online:false on leave", async () => {
    const conv = await ctx.server.createConversation({ customer: { id: "cust-pr1", name: "Pia" } });
    const id = conv.id;
    const a = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-pr1") });
    await join(a, id);
    const c = await connect(ctx.server.url, { token: ctx.server.customerToken("cust-pr1") });
    await join(c, id);
    const online = await once(a, "presence", { filter: (e) => e?.conversation_id === id && e.online === true });
    assert.deepEqual(online, { conversation_id: id, user_id: "cust-pr1", role: "customer", online: true });

    expectOk(await ack(c, "leave_conversation", { conversation_id: id }));
    const offline = await once(a, "presence", { filter: (e) => e?.conversation_id === id && e.online === false });
    assert.deepEqual(offline, { conversation_id: id, user_id: "cust-pr1", role: "customer", online: false });
  });

  it("an agent joining is announced to the customer with role agent", async () => {
    const id = randomUUID();
    const c = await connect(ctx.server.url, { token: ctx.server.customerToken("cust-pr2", { conversations: [id] }) });
    await join(c, id);
    const a = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-pr2") });
    await join(a, id);
    const ev = await once(c, "presence", { filter: (e) => e?.user_id === "agent-pr2" });
    assert.deepEqual(ev, { conversation_id: id, user_id: "agent-pr2", role: "agent", online: true });
  });

  it("others get presence online:false when a joined socket disconnects", async () => {
    const { id, c, a, custSub } = await room();
    c.close();
    const ev = await once(a, "presence", { filter: (e) => e?.user_id === custSub && e.online === false });
    assert.deepEqual(ev, { conversation_id: id, user_id: custSub, role: "customer", online: false });
  });
});

describe("read receipts and status", () => {
  it("mark_read acks ok:true and the room, sender included, gets message:status read", async () => {
    const { id, c, a } = await room();
    const msg = await send(c, id, "please read me");
    const reply = await ack(a, "mark_read", { conversation_id: id, message_id: msg.id });
    expectOk(reply, "mark_read");
    for (const [who, s] of [
      ["sender", c],
      ["reader", a],
    ]) {
      const st = await once(s, "message:status", { filter: (e) => e?.message_id === msg.id, what: who });
      assert.equal(st.message_id, msg.id);
      assert.equal(st.conversation_id, id);
      assert.equal(st.status, "read");
      assertRfc3339(st.timestamp, "message:status.timestamp");
    }
  });

  it("POST /api/v1/messages/{id}/status moves forward only: delivered, read, then delivered stays read", async () => {
    const { id, c, a } = await room();
    const msg = await send(a, id, "status test");
    const token = ctx.server.serviceToken();
    const isMsg = { filter: (e) => e?.message_id === msg.id };

    let res = await ctx.server.http("POST", `/api/v1/messages/${msg.id}/status`, { token, json: { status: "delivered" } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.message_id, msg.id);
    assert.equal(res.body.conversation_id, id);
    assert.equal(res.body.status, "delivered");
    assertRfc3339(res.body.timestamp);
    assert.equal((await once(c, "message:status", isMsg)).status, "delivered");
    assert.equal((await once(a, "message:status", isMsg)).status, "delivered");

    res = await ctx.server.http("POST", `/api/v1/messages/${msg.id}/status`, { token, json: { status: "read" } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.status, "read");
    assert.equal((await once(c, "message:status", isMsg)).status, "read");
    assert.equal((await once(a, "message:status", isMsg)).status, "read");

    res = await ctx.server.http("POST", `/api/v1/messages/${msg.id}/status`, { token, json: { status: "delivered" } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.status, "read", "a status must never move backwards");
    await expectNone(c, "message:status", { ...isMsg, what: "no event for a backward status" });
    await expectNone(a, "message:status", { ...isMsg, what: "no event for a backward status", ms: 0 });
  });

  it("status for an unknown message is 404 not_found; an unknown status value is 400 bad_request", async () => {
    const token = ctx.server.serviceToken();
    let res = await ctx.server.http("POST", `/api/v1/messages/${randomUUID()}/status`, {
      token,
      json: { status: "read" },
    });
    assert.equal(res.status, 404, res.text);
    assert.equal(res.body?.error?.code, "not_found");

    const { id, c } = await room();
    const msg = await send(c, id, "x");
    res = await ctx.server.http("POST", `/api/v1/messages/${msg.id}/status`, { token, json: { status: "exploded" } });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body?.error?.code, "bad_request");
  });
});
