// The agent panel (PyTake's admin chat): its own SocketClient — auth token,
// websocket with polling fallback, auto-reconnect (5 attempts, 1 s) — joins a
// conversation, listens to message:new / message:status / user_typing and dedupes
// by message.id; messages are created with the body of the panel's curl example,
// `{message_type:"text", content:{text}}`.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { io } from "socket.io-client";
import { useServer } from "../lib/setup.mjs";
import { assertMessage, connect, expectNone, join, once, send, track, whenConnected } from "../lib/sio.mjs";

const ctx = useServer();

/** The panel's SocketClient (its frontend/src/lib/socket.ts), pointed at Switchboard. */
class SocketClient {
  constructor(url) {
    this.url = url;
    this.socket = null;
  }
  connect(token) {
    this.socket = track(
      io(this.url, {
        auth: { token },
        transports: ["websocket", "polling"],
        reconnection: true,
        reconnectionAttempts: 5,
        reconnectionDelay: 1000,
      }),
    );
    return this.socket;
  }
  disconnect() {
    this.socket?.disconnect();
  }
  joinConversation(id) {
    this.socket.emit("join_conversation", { conversation_id: id });
  }
  leaveConversation(id) {
    this.socket.emit("leave_conversation", { conversation_id: id });
  }
  onNewMessage(cb) {
    this.socket.on("message:new", cb);
  }
  onMessageStatus(cb) {
    this.socket.on("message:status", cb);
  }
  onTyping(cb) {
    this.socket.on("user_typing", cb);
  }
  startTyping(id) {
    this.socket.emit("typing_start", { conversation_id: id });
  }
  stopTyping(id) {
    this.socket.emit("typing_stop", { conversation_id: id });
  }
  isConnected() {
    return this.socket?.connected ?? false;
  }
}

/** The admin conversation page: keeps a message list deduplicated by id. */
class ConversationPage {
  constructor(client, conversationId) {
    this.client = client;
    this.conversationId = conversationId;
    this.messages = [];
    this.statuses = new Map();
    this.typing = [];
    client.onNewMessage((m) => this.add(m));
    client.onMessageStatus((s) => this.statuses.set(s.message_id, s.status));
    client.onTyping((t) => this.typing.push(t));
  }
  add(m) {
    if (m?.conversation_id !== this.conversationId) return;
    if (!this.messages.some((x) => x.id === m.id)) this.messages.push(m);
  }
  lastOffset() {
    return this.messages.reduce((acc, m) => Math.max(acc, m.offset), 0);
  }
}

/** The panel's curl example: POST /api/v1/conversations/{id}/messages with message_type/content. */
function curlMessage(conversationId, token, text) {
  return ctx.server.http("POST", `/api/v1/conversations/${conversationId}/messages`, {
    token,
    json: { message_type: "text", content: { text, preview_url: false } },
  });
}

async function openPanel(conversationId, agentSub = `agent-${randomUUID().slice(0, 8)}`) {
  const token = ctx.server.agentToken(agentSub);
  const client = new SocketClient(ctx.server.url);
  const socket = client.connect(token);
  await whenConnected(socket);
  const page = new ConversationPage(client, conversationId);
  client.joinConversation(conversationId);
  const joined = await once(socket, "joined_conversation", { filter: (e) => e?.conversation_id === conversationId });
  assert.equal(joined.conversation_id, conversationId);
  return { client, socket, page, token, agentSub };
}

describe("the agent panel", () => {
  it("a message created with the panel's curl body answers 201 and appears on the panel instantly", async () => {
    const conv = await ctx.server.createConversation();
    const { socket, page, token, agentSub } = await openPanel(conv.id);
    const res = await curlMessage(conv.id, token, "Teste WebSocket - mensagem via API");
    assert.equal(res.status, 201, res.text);
    assertMessage(res.body, {
      conversation_id: conv.id,
      offset: 1,
      text: "Teste WebSocket - mensagem via API",
      source: "agent",
      sender: { id: agentSub, role: "agent" },
    });
    const live = await once(socket, "message:new");
    assert.deepEqual(live, res.body);
    assert.deepEqual(
      page.messages.map((m) => m.id),
      [res.body.id],
    );

    // The page also polls history (every 30 s in the panel's code); merging it keeps one copy.
    for (const m of await ctx.server.history(conv.id)) page.add(m);
    assert.equal(page.messages.length, 1, "dedupe by message.id");
  });

  it("the curl body with a service token is source api; a body without text is 400 bad_request", async () => {
    const conv = await ctx.server.createConversation();
    const { socket } = await openPanel(conv.id);
    const res = await curlMessage(conv.id, ctx.server.serviceToken(), "from a service");
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.source, "api");
    assert.equal((await once(socket, "message:new")).id, res.body.id);
    const bad = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, {
      token: ctx.server.serviceToken(),
      json: { message_type: "text", content: { preview_url: false } },
    });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.body?.error?.code, "bad_request");
  });

  it("two tabs on the same conversation both show a message sent from one of them (Opção B)", async () => {
    const conv = await ctx.server.createConversation();
    const tab1 = await openPanel(conv.id, "agent-tabs");
    const tab2 = await openPanel(conv.id, "agent-tabs");
    const viaApi = await curlMessage(conv.id, tab1.token, "sent from tab 1");
    assert.equal(viaApi.status, 201, viaApi.text);
    const viaSocket = await send(tab2.socket, conv.id, "sent from tab 2");
    for (const tab of [tab1, tab2]) {
      const got = await Promise.all([once(tab.socket, "message:new"), once(tab.socket, "message:new")]);
      assert.deepEqual(
        got.map((m) => m.id),
        [viaApi.body.id, viaSocket.id],
      );
      assert.deepEqual(
        tab.page.messages.map((m) => m.text),
        ["sent from tab 1", "sent from tab 2"],
      );
    }
  });

  it("the panel gets message:status updates and the customer's typing", async () => {
    const conv = await ctx.server.createConversation({ customer: { id: "cust-p3", name: "Paula" } });
    const { socket, page } = await openPanel(conv.id);
    const customer = await connect(ctx.server.url, { token: ctx.server.customerToken("cust-p3") });
    await join(customer, conv.id);
    const msg = await send(customer, conv.id, "oi");
    await once(socket, "message:new");

    const res = await ctx.server.http("POST", `/api/v1/messages/${msg.id}/status`, {
      token: ctx.server.serviceToken(),
      json: { status: "delivered" },
    });
    assert.equal(res.status, 200, res.text);
    const st = await once(socket, "message:status");
    assert.equal(st.message_id, msg.id);
    assert.equal(st.status, "delivered");
    assert.ok(!Number.isNaN(Date.parse(st.timestamp)));
    assert.equal(page.statuses.get(msg.id), "delivered");

    customer.emit("typing_start", { conversation_id: conv.id });
    const t = await once(socket, "user_typing");
    assert.deepEqual(t, { conversation_id: conv.id, user_id: "cust-p3", typing: true });
    assert.equal(page.typing.length, 1);
  });

  it("leaving (cleanup on unmount) stops updates for that conversation", async () => {
    const conv = await ctx.server.createConversation();
    const { client, socket } = await openPanel(conv.id);
    client.leaveConversation(conv.id);
    await once(socket, "left_conversation");
    await ctx.server.postMessage(conv.id, "after unmount");
    await expectNone(socket, "message:new", { what: "after leave_conversation" });
  });

  it("auto-reconnects after a server restart; rejoining with since_offset recovers what was missed", async () => {
    const conv = await ctx.server.createConversation();
    const { client, socket, page } = await openPanel(conv.id);
    // A robust page rejoins on every (re)connect, asking for what it missed.
    let rejoin;
    socket.on("connect", () => {
      rejoin = socket
        .timeout(3000)
        .emitWithAck("join_conversation", { conversation_id: conv.id, since_offset: page.lastOffset() });
      rejoin.then((reply) => reply?.messages?.forEach((m) => page.add(m))).catch(() => {});
    });
    const m1 = await ctx.server.postMessage(conv.id, "before restart");
    await once(socket, "message:new");
    assert.equal(page.lastOffset(), 1);

    // Registered after the rejoin handler above, so `rejoin` is set when this resolves.
    const reconnected = new Promise((resolve) => socket.once("connect", resolve));
    await ctx.server.restart();
    const missed = await ctx.server.postMessage(conv.id, "while the panel was away");
    await Promise.race([
      reconnected,
      new Promise((_, reject) => setTimeout(() => reject(new Error("panel did not reconnect within 8 s")), 8000)),
    ]);
    assert.ok(client.isConnected());
    const reply = await rejoin;
    assert.equal(reply.ok, true, JSON.stringify(reply));
    const live = await ctx.server.postMessage(conv.id, "after reconnect");
    await once(socket, "message:new", { filter: (m) => m.id === live.id });
    assert.deepEqual(
      page.messages.map((m) => m.id),
      [m1.id, missed.id, live.id],
    );
    assert.deepEqual(
      page.messages.map((m) => m.offset),
      [1, 2, 3],
    );
  });
});
