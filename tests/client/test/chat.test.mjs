// Chat events over Socket.IO: join/leave permissions, send_message, idempotency,
// validation, ping/pong and the agents' inbox events.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { useServer } from "../lib/setup.mjs";
import {
  ack,
  assertConversation,
  assertMessage,
  connect,
  expectAckError,
  expectNone,
  expectOk,
  join,
  once,
  send,
  track,
} from "../lib/sio.mjs";
import { io } from "socket.io-client";

const ctx = useServer();

function customer(sub, conversations = [], extra = {}) {
  return connect(ctx.server.url, { token: ctx.server.customerToken(sub, { conversations, ...extra }) });
}
function agent(sub) {
  return connect(ctx.server.url, { token: ctx.server.agentToken(sub) });
}

describe("join_conversation", () => {
  it("a customer joining a listed, unknown conversation creates it (web, customer = token)", async () => {
    const id = randomUUID();
    const c = await customer("cust-j1", [id], { name: "Ana Lima" });
    const reply = await join(c, id);
    assert.equal(reply.conversation_id, id);
    assert.equal(reply.offset, 0);
    assert.deepEqual(reply.messages, []);

    const res = await ctx.server.http("GET", `/api/v1/conversations/${id}`, { token: ctx.server.serviceToken() });
    assert.equal(res.status, 200, res.text);
    assertConversation(res.body, { id, channel: "web", status: "open" });
    assert.equal(res.body.customer.id, "cust-j1");
    assert.equal(res.body.customer.name, "Ana Lima");
  });

  it("emits joined_conversation {conversation_id, message}", async () => {
    const id = randomUUID();
    const c = await customer("cust-j2", [id]);
    await join(c, id);
    const ev = await once(c, "joined_conversation");
    assert.equal(ev.conversation_id, id);
    assert.equal(typeof ev.message, "string");
  });

  it("a customer may not join a conversation neither listed nor created for it: forbidden", async () => {
    const c = await customer("cust-j3", [randomUUID()]);
    const reply = await ack(c, "join_conversation", { conversation_id: randomUUID() });
    expectAckError(reply, "forbidden");
  });

  it("a customer may not join another customer's existing conversation: forbidden", async () => {
    const conv = await ctx.server.createConversation({ customer: { id: "someone-else", name: "Other" } });
    const c = await customer("cust-j4", []);
    expectAckError(await ack(c, "join_conversation", { conversation_id: conv.id }), "forbidden");
  });

  it("a customer may join a conversation created for it over HTTP, though not listed in its token", async () => {
    const conv = await ctx.server.createConversation({ customer: { id: "cust-j5", name: "Bea" } });
    const c = await customer("cust-j5", []);
    const reply = await join(c, conv.id);
    assert.equal(reply.conversation_id, conv.id);
  });

  it("an agent joining an unknown conversation gets not_found", async () => {
    const a = await agent("agent-j1");
    expectAckError(await ack(a, "join_conversation", { conversation_id: randomUUID() }), "not_found");
  });

  it("an agent may join any existing conversation and sees its offset and messages", async () => {
    const conv = await ctx.server.createConversation();
    const m1 = await ctx.server.postMessage(conv.id, "hello one");
    const m2 = await ctx.server.postMessage(conv.id, "hello two");
    const a = await agent("agent-j2");
    const reply = await join(a, conv.id);
    assert.equal(reply.offset, 2);
    assert.deepEqual(
      reply.messages.map((m) => [m.id, m.offset, m.text]),
      [
        [m1.id, 1, "hello one"],
        [m2.id, 2, "hello two"],
      ],
    );
    for (const m of reply.messages) assertMessage(m, { conversation_id: conv.id });
  });
});

describe("send_message", () => {
  it("stores the message and delivers message:new to every socket in the room, sender included", async () => {
    const id = randomUUID();
    const c = await customer("cust-s1", [id], { name: "Carla" });
    await join(c, id);
    const a = await agent("agent-s1");
    await join(a, id);

    const msg = await send(c, id, "Hola, necesito ayuda", "cmid-s1");
    assertMessage(msg, {
      conversation_id: id,
      offset: 1,
      text: "Hola, necesito ayuda",
      client_msg_id: "cmid-s1",
      source: "widget",
      sender: { id: "cust-s1", role: "customer", name: "Carla" },
    });
    assert.deepEqual(await once(c, "message:new", { what: "sender's copy" }), msg);
    assert.deepEqual(await once(a, "message:new", { what: "agent's copy" }), msg);

    const reply = await send(a, id, "Claro, ¿en qué puedo ayudar?");
    assertMessage(reply, {
      offset: 2,
      source: "agent",
      sender: { id: "agent-s1", role: "agent", name: "Agent agent-s1" },
    });
    assert.deepEqual(await once(c, "message:new"), reply);
    assert.deepEqual(await once(a, "message:new"), reply);

    const history = await ctx.server.history(id);
    assert.deepEqual(history, [msg, reply]);
  });

  it("a bot's message has source bot, a service's has source api", async () => {
    const conv = await ctx.server.createConversation();
    const a = await agent("agent-s2");
    await join(a, conv.id);
    const bot = await connect(ctx.server.url, { token: ctx.server.botToken("bot-s2") });
    const fromBot = await send(bot, conv.id, "I am a bot");
    assertMessage(fromBot, { source: "bot", sender: { id: "bot-s2", role: "bot" } });
    assert.equal((await once(a, "message:new")).id, fromBot.id);

    const svc = await connect(ctx.server.url, { token: ctx.server.serviceToken("svc-s2") });
    const fromSvc = await send(svc, conv.id, "I am a service");
    assertMessage(fromSvc, { source: "api", offset: 2, sender: { id: "svc-s2", role: "service" } });
    assert.equal((await once(a, "message:new")).id, fromSvc.id);
  });

  it("a retry with the same client_msg_id returns the same message, no second message:new, history unchanged", async () => {
    const id = randomUUID();
    const c = await customer("cust-s3", [id]);
    await join(c, id);
    const a = await agent("agent-s3");
    await join(a, id);

    const first = await send(c, id, "only once", "retry-1");
    await once(a, "message:new");
    await once(c, "message:new");
    const again = await send(c, id, "only once", "retry-1");
    assert.equal(again.id, first.id);
    assert.equal(again.offset, first.offset);
    assert.deepEqual(again, first);
    await expectNone(a, "message:new", { what: "the retry must not be broadcast" });
    const history = await ctx.server.history(id);
    assert.equal(history.length, 1);
    assert.equal(history[0].id, first.id);

    // A different client_msg_id is a new message with the next offset.
    const other = await send(c, id, "only once", "retry-2");
    assert.notEqual(other.id, first.id);
    assert.equal(other.offset, 2);
  });

  it("rejects empty and missing text with bad_request", async () => {
    const id = randomUUID();
    const c = await customer("cust-s4", [id]);
    await join(c, id);
    expectAckError(await ack(c, "send_message", { conversation_id: id, text: "" }), "bad_request");
    expectAckError(await ack(c, "send_message", { conversation_id: id }), "bad_request");
    assert.deepEqual(await ctx.server.history(id), []);
  });

  it("rejects text longer than 4096 characters (default) with too_large; 4096 is fine", async () => {
    const id = randomUUID();
    const c = await customer("cust-s5", [id]);
    await join(c, id);
    expectAckError(await ack(c, "send_message", { conversation_id: id, text: "x".repeat(4097) }), "too_large");
    assert.deepEqual(await ctx.server.history(id), []);
    const ok = await send(c, id, "y".repeat(4096));
    assert.equal(ok.text.length, 4096);
    assert.equal(ok.offset, 1);
  });

  it("a customer may not send to a conversation it may not join: forbidden, nothing stored", async () => {
    const conv = await ctx.server.createConversation({ customer: { id: "someone-else-2", name: "Other" } });
    const c = await customer("cust-s6", []);
    expectAckError(await ack(c, "send_message", { conversation_id: conv.id, text: "intrusion" }), "forbidden");
    assert.deepEqual(await ctx.server.history(conv.id), []);
  });

  it("an agent may send to any existing conversation without joining it", async () => {
    const conv = await ctx.server.createConversation();
    const a = await agent("agent-s7");
    const msg = await send(a, conv.id, "proactive hello");
    assertMessage(msg, { conversation_id: conv.id, offset: 1, source: "agent" });
    assert.deepEqual((await ctx.server.history(conv.id)).map((m) => m.id), [msg.id]);
  });

  it("an agent sending to an unknown conversation is refused and creates nothing", async () => {
    const a = await agent("agent-s8");
    const id = randomUUID();
    const reply = await ack(a, "send_message", { conversation_id: id, text: "into the void" });
    assert.equal(reply.ok, false, JSON.stringify(reply));
    assert.equal(typeof reply.error?.code, "string");
    const res = await ctx.server.http("GET", `/api/v1/conversations/${id}`, { token: ctx.server.serviceToken() });
    assert.equal(res.status, 404);
  });

  it("a message published over HTTP reaches joined sockets as message:new", async () => {
    const id = randomUUID();
    const c = await customer("cust-s9", [id]);
    await join(c, id);
    const posted = await ctx.server.postMessage(id, "from the API");
    const got = await once(c, "message:new");
    assert.deepEqual(got, posted);
    assertMessage(got, { source: "api", offset: 1 });
  });
});

describe("leave_conversation", () => {
  it("emits left_conversation, acks ok:true, and stops message:new for that conversation", async () => {
    const id = randomUUID();
    const c = await customer("cust-l1", [id]);
    await join(c, id);
    const watcher = await agent("agent-l1");
    await join(watcher, id);

    const reply = await ack(c, "leave_conversation", { conversation_id: id });
    expectOk(reply, "leave_conversation");
    const ev = await once(c, "left_conversation");
    assert.equal(ev.conversation_id, id);

    const posted = await ctx.server.postMessage(id, "after leave");
    // The watcher still in the room proves the message went out...
    assert.equal((await once(watcher, "message:new")).id, posted.id);
    // ...and the socket that left must not get it.
    await expectNone(c, "message:new", { what: "after leave_conversation" });
  });
});

describe("events sent as soon as the socket connects", () => {
  it("emits buffered by the client before the connection is up are handled, never dropped", async () => {
    // socket.io-client buffers emits made before `connect` and flushes them right after it,
    // which is what the agent panel does (connect, then joinConversation at once).
    const conv = await ctx.server.createConversation();
    const token = ctx.server.agentToken("agent-early");
    for (let i = 0; i < 20; i++) {
      const s = track(io(ctx.server.url, { forceNew: true, reconnection: false, transports: ["websocket"], auth: { token } }));
      const joined = ack(s, "join_conversation", { conversation_id: conv.id });
      s.emit("ping", {});
      expectOk(await joined, `early join #${i + 1}`);
      await once(s, "pong", { what: `early ping #${i + 1}` });
      s.close();
    }
  });
});

describe("ping", () => {
  it("answers pong for a ping with an object, a string, or no payload", async () => {
    const s = await agent("agent-p1");
    s.emit("ping", { t: Date.now() });
    await once(s, "pong", { what: "object payload" });
    s.emit("ping", "hello");
    await once(s, "pong", { what: "string payload" });
    s.emit("ping");
    await once(s, "pong", { what: "no payload" });
  });
});

describe("agents' inbox events", () => {
  it("agents get conversation:new when a conversation is created over HTTP, without joining anything", async () => {
    const a = await agent("agent-i1");
    const id = randomUUID();
    await ctx.server.createConversation({ id, customer: { id: "cust-i1", name: "Inés" } });
    const ev = await once(a, "conversation:new", { filter: (e) => e?.conversation?.id === id });
    assertConversation(ev.conversation, { id, channel: "web", status: "open" });
    assert.equal(ev.conversation.customer.id, "cust-i1");
  });

  it("agents get conversation:new when a customer's join creates the conversation", async () => {
    const a = await agent("agent-i2");
    const id = randomUUID();
    const c = await customer("cust-i2", [id]);
    await join(c, id);
    const ev = await once(a, "conversation:new", { filter: (e) => e?.conversation?.id === id });
    assertConversation(ev.conversation, { id, channel: "web" });
    assert.equal(ev.conversation.customer.id, "cust-i2");
  });

  it("agents get conversation:updated with last_message when a message is added", async () => {
    const a = await agent("agent-i3");
    const id = randomUUID();
    const c = await customer("cust-i3", [id]);
    await join(c, id);
    const msg = await send(c, id, "is anyone there?");
    const ev = await once(a, "conversation:updated", { filter: (e) => e?.conversation?.id === id });
    assertConversation(ev.conversation, { id });
    assert.ok(ev.conversation.last_message, `conversation:updated without last_message: ${JSON.stringify(ev)}`);
    assert.equal(ev.conversation.last_message.id, msg.id);
    assert.equal(ev.conversation.last_message.text, "is anyone there?");
  });

  it("customers do not get other customers' conversation:new", async () => {
    const c = await customer("cust-i4", []);
    const id = randomUUID();
    await ctx.server.createConversation({ id, customer: { id: "cust-i4-other", name: "Other" } });
    await expectNone(c, "conversation:new", { filter: (e) => e?.conversation?.id === id });
  });
});
