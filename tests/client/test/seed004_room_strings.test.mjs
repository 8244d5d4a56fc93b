// The room-string widget (a customer-service chat widget): it emits `join` with a room string
// "chat:<id>" (no ack) and listens to `new-message` {message, from}. Only its URL changes
// (it carries the customer's token). `join` has no ack, so tests use what the room's
// other member (an agent) sees — presence online:true/false — to know the join or leave
// took effect before publishing.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { io } from "socket.io-client";
import { useServer } from "../lib/setup.mjs";
import { assertMessage, connect, expectNone, join, once, send, track, whenConnected } from "../lib/sio.mjs";

const ctx = useServer();

async function widget(sub, conversations = []) {
  const token = ctx.server.customerToken(sub, { conversations });
  const socket = track(io(`${ctx.server.url}/?token=${encodeURIComponent(token)}`));
  await whenConnected(socket);
  return { socket, token };
}

/** A conversation for `sub`, an agent joined to it, and the widget joined by room string. */
async function setup(prefix = "chat") {
  const sub = `visitor-${randomUUID().slice(0, 8)}`;
  const conv = await ctx.server.createConversation({ customer: { id: sub, name: "Visitante" } });
  const agent = await connect(ctx.server.url, { token: ctx.server.agentToken(`agent-${sub}`) });
  await join(agent, conv.id);
  const w = await widget(sub);
  w.socket.emit("join", `${prefix}:${conv.id}`);
  const p = await once(agent, "presence", {
    filter: (e) => e?.user_id === sub && e.online === true,
    what: "the widget's join, seen by the agent",
  });
  assert.equal(p.conversation_id, conv.id);
  return { sub, conv, agent, w };
}

describe("the room-string widget: join/leave with room strings", () => {
  it("a widget in chat:<id> receives new-message {message, from:'agent'} when the agent answers", async () => {
    const { conv, agent, w } = await setup("chat");
    const msg = await send(agent, conv.id, "Olá! Sou o atendente.");
    const data = await once(w.socket, "new-message");
    assert.equal(data.from, "agent");
    assert.ok(data.message, "new-message has a message");
    assert.deepEqual(data.message, msg);
    assertMessage(data.message, { conversation_id: conv.id, text: "Olá! Sou o atendente." });
  });

  it("'conversation:<id>' works the same", async () => {
    const { conv, agent, w } = await setup("conversation");
    const msg = await send(agent, conv.id, "via conversation: prefix");
    const data = await once(w.socket, "new-message");
    assert.equal(data.from, "agent");
    assert.equal(data.message.id, msg.id);
  });

  it("from is 'customer' for the customer's messages, 'bot' for a bot's, 'agent' for a service's", async () => {
    const { sub, conv, w } = await setup();
    const sender = await connect(ctx.server.url, { token: ctx.server.customerToken(sub) });
    const fromCustomer = await send(sender, conv.id, "sou eu");
    let data = await once(w.socket, "new-message");
    assert.equal(data.from, "customer");
    assert.equal(data.message.id, fromCustomer.id);

    const bot = await connect(ctx.server.url, { token: ctx.server.botToken("bot-004") });
    const fromBot = await send(bot, conv.id, "resposta automática");
    data = await once(w.socket, "new-message");
    assert.equal(data.from, "bot");
    assert.equal(data.message.id, fromBot.id);

    const fromService = await ctx.server.postMessage(conv.id, "via API");
    data = await once(w.socket, "new-message");
    assert.equal(data.from, "agent");
    assert.equal(data.message.id, fromService.id);
  });

  it("leave with the same string stops new-message", async () => {
    const { sub, conv, agent, w } = await setup();
    w.socket.emit("leave", `chat:${conv.id}`);
    await once(agent, "presence", { filter: (e) => e?.user_id === sub && e.online === false, what: "widget left" });
    const msg = await send(agent, conv.id, "are you still there?");
    assert.equal((await once(agent, "message:new")).id, msg.id);
    await expectNone(w.socket, "new-message", { what: "after leave" });
  });

  it("a denied join gets an `error` event {message, code:'forbidden'} and no messages", async () => {
    const other = await ctx.server.createConversation({ customer: { id: "somebody-else", name: "Other" } });
    const w = await widget(`visitor-${randomUUID().slice(0, 8)}`);
    w.socket.emit("join", `chat:${other.id}`);
    const err = await once(w.socket, "error");
    assert.equal(err.code, "forbidden");
    assert.equal(typeof err.message, "string");
    await ctx.server.postMessage(other.id, "private");
    await expectNone(w.socket, "new-message", { what: "denied room" });
    assert.ok(w.socket.connected, "a refusal does not disconnect");
  });

  it("joining a listed, unknown chat:<id> creates the conversation (agents get conversation:new)", async () => {
    const id = randomUUID();
    const sub = `visitor-${id.slice(0, 8)}`;
    const inbox = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-inbox-004") });
    const w = await widget(sub, [id]);
    // The ack (which the seed's widget does not ask for) says the socket is in the
    // room: `conversation:new` goes out as the join creates it, before that.
    const joined = w.socket.timeout(3000).emitWithAck("join", `chat:${id}`);
    const ev = await once(inbox, "conversation:new", { filter: (e) => e?.conversation?.id === id });
    assert.equal((await joined).ok, true);
    assert.equal(ev.conversation.customer.id, sub);
    assert.equal(ev.conversation.channel, "web");
    const msg = await send(inbox, id, "bem-vindo");
    const data = await once(w.socket, "new-message");
    assert.equal(data.message.id, msg.id);
  });

  it("the widget's history fetch /api/chat/sessions/{id}/messages answers the conversation's messages", async () => {
    const { conv, agent, w } = await setup();
    const m1 = await send(agent, conv.id, "first");
    const m2 = await send(agent, conv.id, "second");
    const res = await ctx.server.http("GET", `/api/chat/sessions/${conv.id}/messages?token=${encodeURIComponent(w.token)}`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(
      res.body.messages.map((m) => m.id),
      [m1.id, m2.id],
    );
  });
});
