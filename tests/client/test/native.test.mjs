// The native WebSocket protocol (README, Native WebSocket), JSON frames, on the real `ws`
// client: the same operations and events as Socket.IO, side by side with it.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { join as joinPath } from "node:path";
import protobuf from "protobufjs";
import WebSocket from "ws";
import { REPO_ROOT } from "../lib/server.mjs";
import { useServer } from "../lib/setup.mjs";
import { connect, join, once } from "../lib/sio.mjs";

const ctx = useServer();
const open = new Set();

/** A native connection that records frames and awaits them by type. */
async function native(path, token, { header = false } = {}) {
  const base = ctx.server.url.replace("http", "ws");
  const url = header ? `${base}${path}` : `${base}${path}${path.includes("?") ? "&" : "?"}token=${token}`;
  const ws = new WebSocket(url, header ? { headers: { authorization: `Bearer ${token}` } } : {});
  open.add(ws);
  const frames = [];
  const waiters = [];
  ws.on("message", (data) => {
    const frame = JSON.parse(data.toString());
    const w = waiters.find((w) => w.match(frame));
    if (w) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(frame);
    } else frames.push(frame);
  });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let next = 0;
  const client = {
    ws,
    /** The first frame, received or coming, that `match` accepts. */
    take(match, what, timeout = 3000) {
      const at = frames.findIndex(match);
      if (at >= 0) return Promise.resolve(frames.splice(at, 1)[0]);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${what} frame within ${timeout} ms`)), timeout);
        waiters.push({ match, resolve: (f) => (clearTimeout(timer), resolve(f)) });
      });
    },
    event(type, filter = () => true) {
      return client.take((f) => f.type === type && filter(f.data), type);
    },
    /** Sends an operation with a fresh ref and resolves with its ack. */
    call(type, payload = {}) {
      const ref = `r${++next}`;
      ws.send(JSON.stringify({ type, ref, ...payload }));
      return client.take((f) => f.type === "ack" && f.ref === ref, `ack of ${type}`);
    },
  };
  return client;
}

function closeAll() {
  for (const ws of open) ws.close();
  open.clear();
}

describe("native WebSocket, JSON frames", () => {
  it("connects with ?token= or an Authorization header and says connected", async () => {
    const a = await native("/ws", ctx.server.agentToken("native-a"));
    assert.equal((await a.event("connected")).data.user_id, "native-a");
    const b = await native("/ws", ctx.server.agentToken("native-b"), { header: true });
    assert.equal((await b.event("connected")).data.user_id, "native-b");
    closeAll();
  });

  it("refuses a missing or bad token before the upgrade, with the reason", async () => {
    for (const [token, code] of [["", "token_required"], ["garbage", "invalid_token"]]) {
      const ws = new WebSocket(`${ctx.server.url.replace("http", "ws")}/ws?token=${token}`);
      const res = await new Promise((resolve) => ws.once("unexpected-response", (_, r) => resolve(r)));
      assert.equal(res.statusCode, 401);
      const body = await new Promise((resolve) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve(JSON.parse(text)));
      });
      assert.equal(body.error.code, code);
    }
  });

  it("joins, sends and receives with the same offsets a Socket.IO client sees", async () => {
    const conv = await ctx.server.createConversation();
    const n = await native("/ws", ctx.server.agentToken());
    const joined = await n.call("join_conversation", { conversation_id: conv.id });
    assert.equal(joined.ok, true, JSON.stringify(joined));
    assert.equal(joined.offset, 0);
    const sio = await connect(ctx.server.url, { token: ctx.server.agentToken() });
    await join(sio, conv.id);
    const sent = await n.call("send_message", { conversation_id: conv.id, text: "from native", client_msg_id: "n1" });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    assert.equal(sent.message.offset, 1);
    const viaSio = await once(sio, "message:new");
    assert.deepEqual(viaSio, sent.message);
    const fromSio = await sio.timeout(3000).emitWithAck("send_message", { conversation_id: conv.id, text: "from sio" });
    const seen = [await n.event("message:new"), await n.event("message:new")].map((f) => f.data);
    assert.deepEqual(seen.map((m) => m.offset), [1, 2]);
    assert.deepEqual(seen[1], fromSio.message);
    const retry = await n.call("send_message", { conversation_id: conv.id, text: "from native", client_msg_id: "n1" });
    assert.equal(retry.message.id, sent.message.id, "a retry returns the stored message");
    sio.close();
    closeAll();
  });

  it("recovers exactly the missed messages with since_offset after a reconnect", async () => {
    const conv = await ctx.server.createConversation();
    const first = await native("/ws", ctx.server.agentToken());
    await first.call("join_conversation", { conversation_id: conv.id });
    await ctx.server.postMessage(conv.id, "one");
    const seen = await first.event("message:new");
    first.ws.close();
    const missed = [await ctx.server.postMessage(conv.id, "two"), await ctx.server.postMessage(conv.id, "three")];
    const again = await native("/ws", ctx.server.agentToken());
    const ack = await again.call("join_conversation", { conversation_id: conv.id, since_offset: seen.data.offset });
    assert.deepEqual(ack.messages.map((m) => m.id), missed.map((m) => m.id));
    closeAll();
  });

  it("typing goes to the others; refusals and malformed frames get a clear error and the connection stays", async () => {
    const id = randomUUID();
    const customer = await native("/ws", ctx.server.customerToken(`cust-${id.slice(0, 8)}`, { conversations: [id] }));
    const agent = await native("/ws", ctx.server.agentToken());
    await customer.call("join_conversation", { conversation_id: id });
    await agent.call("join_conversation", { conversation_id: id });
    customer.ws.send(JSON.stringify({ type: "typing_start", conversation_id: id }));
    const typing = await agent.event("user_typing");
    assert.equal(typing.data.typing, true);
    const denied = await customer.call("join_conversation", { conversation_id: randomUUID() });
    assert.equal(denied.ok, false);
    assert.equal(denied.error.code, "forbidden");
    customer.ws.send("{not json");
    assert.equal((await customer.event("error")).data.code, "bad_request");
    const unknown = await customer.call("fly_to_the_moon");
    assert.equal(unknown.error.code, "bad_request");
    assert.equal((await customer.call("ping")).ok, true);
    closeAll();
  });

  it("the ticketing backend's widget path /api/ws/chat/{id} is already joined: a backend notification reaches it", async () => {
    const ticket = `TICKET-${randomUUID().slice(0, 8)}`;
    // The backend's first notification opens the ticket's conversation.
    const first = await ctx.server.http("POST", "/api/notify/message", {
      token: ctx.server.serviceToken(),
      json: { ticketId: ticket, messageId: "m-1", content: "Hola desde el panel", isClient: false },
    });
    assert.equal(first.status, 200, first.text);
    const widget = await native(`/api/ws/chat/${ticket}`, ctx.server.agentToken("widget-api"));
    await widget.event("joined_conversation", (d) => d.conversation_id === ticket);
    const second = await ctx.server.http("POST", "/api/notify/message", {
      token: ctx.server.serviceToken(),
      json: { ticketId: ticket, messageId: "m-2", content: "¿Sigues ahí?", isClient: false },
    });
    assert.equal(second.status, 200, second.text);
    const got = await widget.event("message:new");
    assert.equal(got.data.text, "¿Sigues ahí?");
    assert.equal(got.data.offset, 2);
    closeAll();
  });
});

describe("native WebSocket, protobuf frames (subprotocol switchboard.v1.proto)", () => {
  it("speaks the messages of proto/: the same operations, acks and events", async () => {
    const root = await protobuf.load(joinPath(REPO_ROOT, "proto", "native.proto"));
    const ClientFrame = root.lookupType("switchboard.v1.ClientFrame");
    const ServerFrame = root.lookupType("switchboard.v1.ServerFrame");
    const conv = await ctx.server.createConversation();
    const url = `${ctx.server.url.replace("http", "ws")}/ws?token=${ctx.server.agentToken("proto-agent")}`;
    const ws = new WebSocket(url, ["switchboard.v1.proto"]);
    open.add(ws);
    const frames = [];
    const waiters = [];
    ws.on("message", (data, isBinary) => {
      assert.equal(isBinary, true, "a protobuf connection gets binary frames only");
      const frame = ServerFrame.toObject(ServerFrame.decode(data), { longs: Number, defaults: false });
      const w = waiters.find((w) => w.kind in frame);
      if (w) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(frame[w.kind]);
      } else frames.push(frame);
    });
    const next = (kind) => {
      const at = frames.findIndex((f) => kind in f);
      if (at >= 0) return Promise.resolve(frames.splice(at, 1)[0][kind]);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${kind} frame`)), 3000);
        waiters.push({ kind, resolve: (f) => (clearTimeout(timer), resolve(f)) });
      });
    };
    const send = (frame) => ws.send(ClientFrame.encode(ClientFrame.create(frame)).finish());
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    assert.equal(ws.protocol, "switchboard.v1.proto");
    assert.equal((await next("connected")).userId, "proto-agent");
    send({ ref: "1", joinConversation: { conversationId: conv.id } });
    const joined = await next("ack");
    assert.equal(joined.ref, "1");
    assert.equal(joined.ok, true);
    send({ ref: "2", sendMessage: { conversationId: conv.id, text: "binary hello" } });
    const sent = await next("ack");
    assert.equal(sent.ok, true);
    assert.equal(sent.message.text, "binary hello");
    assert.equal(sent.message.offset, 1);
    const event = await next("messageNew");
    assert.equal(event.id, sent.message.id);
    send({ ref: "3", joinConversation: { conversationId: "no-such-conversation" } });
    const refused = await next("ack");
    assert.ok(!refused.ok, "refused (proto3 leaves a false ok out)");
    assert.equal(refused.error.code, "not_found");
    ws.send(Buffer.from([0xff, 0xff, 0x01]));
    assert.equal((await next("error")).code, "bad_request");
    send({ ref: "4", ping: {} });
    assert.equal((await next("ack")).ok, true, "the connection survived garbage");
    closeAll();
  });
});
