// Bad input and limits: malformed payloads (with and without acks), raw protocol garbage,
// joins per socket, publish rate, text length and payload size — each refusal explicit,
// the connection and the other clients unaffected.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { useServer } from "../lib/setup.mjs";
import {
  ack,
  connect,
  expectAckError,
  expectOk,
  join,
  once,
  send,
} from "../lib/sio.mjs";

const MAX_TEXT_LEN = 200;
const MAX_JOINS = 3;
const PUBLISH_RATE = 5;
const MAX_PAYLOAD = 4096;
const ctx = useServer({
  SWITCHBOARD_MAX_TEXT_LEN: String(MAX_TEXT_LEN),
  SWITCHBOARD_MAX_JOINS: String(MAX_JOINS),
  SWITCHBOARD_PUBLISH_RATE: String(PUBLISH_RATE),
  SWITCHBOARD_MAX_PAYLOAD: String(MAX_PAYLOAD),
});

const agent = (sub = `agent-${randomUUID().slice(0, 8)}`) =>
  connect(ctx.server.url, { token: ctx.server.agentToken(sub) });

/** The socket still answers ping with pong. */
async function stillAlive(socket, what) {
  assert.ok(socket.connected, `${what}: socket was disconnected`);
  socket.emit("ping", {});
  await once(socket, "pong", { what });
}

/** Another client can still join, send and receive. */
async function othersUnaffected() {
  const conv = await ctx.server.createConversation();
  const a = await agent();
  const b = await agent();
  await join(a, conv.id);
  await join(b, conv.id);
  const m = await send(a, conv.id, "still fine");
  assert.equal((await once(b, "message:new", { what: "bystander" })).id, m.id);
  a.close();
  b.close();
}

describe("malformed payloads with an ack: bad_request", () => {
  const cases = [
    ["join_conversation", "a string"],
    ["join_conversation", 42],
    ["join_conversation", null],
    ["join_conversation", [1, 2, 3]],
    ["join_conversation", {}],
    ["join_conversation", { conversation_id: 12345 }],
    ["join_conversation", { conversation_id: "CONV", since_offset: "three" }],
    ["leave_conversation", "nope"],
    ["send_message", "hello"],
    ["send_message", { text: "no conversation" }],
    ["send_message", { conversation_id: "CONV", text: 123 }],
    ["send_message", { conversation_id: "CONV", text: { nested: true } }],
    ["send_message", { conversation_id: "CONV", text: ["a"] }],
    ["send_message", { conversation_id: "CONV", text: "ok", client_msg_id: { not: "a string" } }],
    ["mark_read", { conversation_id: "CONV" }],
    ["mark_read", 7],
  ];

  it("each gets {ok:false, error:{code:'bad_request', message}} and the socket stays up", async () => {
    const conv = await ctx.server.createConversation();
    const s = await agent();
    for (const [event, raw] of cases) {
      const payload =
        raw && typeof raw === "object" && !Array.isArray(raw)
          ? Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, v === "CONV" ? conv.id : v]))
          : raw;
      const reply = await ack(s, event, payload);
      expectAckError(reply, "bad_request", `${event} ${JSON.stringify(payload)}`);
    }
    await stillAlive(s, "after malformed payloads");
    assert.deepEqual(await ctx.server.history(conv.id), [], "nothing stored from malformed sends");
    await othersUnaffected();
  });

  it("unknown extra fields are fine", async () => {
    const conv = await ctx.server.createConversation();
    const s = await agent();
    expectOk(await ack(s, "join_conversation", { conversation_id: conv.id, color: "blue", extra: { a: 1 } }));
    const reply = expectOk(
      await ack(s, "send_message", { conversation_id: conv.id, text: "extra fields", priority: "high", meta: [1] }),
    );
    assert.equal(reply.message.text, "extra fields");
  });
});

describe("malformed payloads without an ack: `error` event", () => {
  it("emits error {message, code:'bad_request'} and keeps the connection", async () => {
    const s = await agent();
    s.emit("send_message", "garbage");
    let err = await once(s, "error", { what: "send_message garbage" });
    assert.equal(err.code, "bad_request");
    assert.equal(typeof err.message, "string");
    assert.ok(err.message.length > 0);

    s.emit("join_conversation", 3.14);
    err = await once(s, "error", { what: "join_conversation number" });
    assert.equal(err.code, "bad_request");

    s.emit("typing_start", "not an object");
    err = await once(s, "error", { what: "typing_start string" });
    assert.equal(err.code, "bad_request");

    await stillAlive(s, "after ack-less malformed payloads");
    await othersUnaffected();
  });

  it("an unknown event and an event with binary data leave the connection healthy", async () => {
    const s = await agent();
    s.emit("no_such_event", { a: 1 });
    s.emit("send_message", Buffer.from([1, 2, 3]));
    await stillAlive(s, "after unknown and binary events");
  });
});

describe("raw protocol garbage", () => {
  it("a long-polling session sending broken Socket.IO packets does not hurt the server", async () => {
    const base = `${ctx.server.url}/socket.io/?EIO=4&transport=polling`;
    const hs = await fetch(base);
    assert.equal(hs.status, 200);
    const open = await hs.text();
    assert.ok(open.startsWith("0{"), `engine.io open packet expected, got ${open.slice(0, 80)}`);
    const { sid } = JSON.parse(open.slice(1));
    const url = `${base}&sid=${encodeURIComponent(sid)}`;
    const token = ctx.server.agentToken("agent-raw");
    const connectRes = await fetch(url, { method: "POST", body: `40${JSON.stringify({ token })}` });
    assert.equal(connectRes.status, 200);
    // Broken packets: bad JSON in an event, an unknown packet type, binary-count nonsense.
    for (const body of ['42["send_message",{"conversation_id":', "4zzz", "451-[oops", "\u0000\u0001garbage"]) {
      const res = await fetch(url, { method: "POST", body });
      assert.ok(res.status < 500, `server answered ${res.status} to a broken packet`);
    }
    const health = await ctx.server.http("GET", "/healthz");
    assert.equal(health.status, 200);
    await othersUnaffected();
  });

  it("a handshake with an unsupported Engine.IO version or transport is refused with 400", async () => {
    const res = await fetch(`${ctx.server.url}/socket.io/?EIO=2&transport=polling`);
    assert.equal(res.status, 400);
    const res2 = await fetch(`${ctx.server.url}/socket.io/?EIO=4&transport=carrier-pigeon`);
    assert.equal(res2.status, 400);
  });
});

describe("limits", () => {
  it(`more than MAX_JOINS (${MAX_JOINS}) distinct joins on one socket: too_many_joins`, async () => {
    const convs = [];
    for (let i = 0; i <= MAX_JOINS; i++) convs.push(await ctx.server.createConversation());
    const s = await agent();
    for (let i = 0; i < MAX_JOINS; i++) await join(s, convs[i].id);
    expectAckError(await ack(s, "join_conversation", { conversation_id: convs[MAX_JOINS].id }), "too_many_joins");
    // Joining one it already has is not a new distinct join.
    await join(s, convs[0].id);
    // The refused join really was refused: no messages from it.
    await ctx.server.postMessage(convs[MAX_JOINS].id, "not for you");
    const inRoom = await ctx.server.postMessage(convs[0].id, "for you");
    const got = await once(s, "message:new");
    assert.equal(got.id, inRoom.id, "the first message:new must come from a joined room");
    // A fresh socket has its own budget.
    const other = await agent();
    await join(other, convs[MAX_JOINS].id);
  });

  it(`send_message beyond PUBLISH_RATE (${PUBLISH_RATE}/s, burst ${PUBLISH_RATE}) is rate_limited and not stored`, async () => {
    const conv = await ctx.server.createConversation();
    const s = await agent();
    const N = PUBLISH_RATE * 3;
    const replies = await Promise.all(
      Array.from({ length: N }, (_, i) => ack(s, "send_message", { conversation_id: conv.id, text: `burst ${i}` })),
    );
    const ok = replies.filter((r) => r?.ok === true);
    const limited = replies.filter((r) => r?.ok === false);
    for (const r of limited) expectAckError(r, "rate_limited");
    assert.ok(ok.length >= PUBLISH_RATE, `the burst of ${PUBLISH_RATE} must pass, only ${ok.length} did`);
    // Allow for refill during the burst, but most of the 3x burst must be refused.
    assert.ok(ok.length <= PUBLISH_RATE + 2, `${ok.length} of ${N} passed a rate of ${PUBLISH_RATE}/s`);
    assert.equal(ok.length + limited.length, N);
    const history = await ctx.server.history(conv.id);
    assert.deepEqual(
      history.map((m) => m.id).sort(),
      ok.map((r) => r.message.id).sort(),
      "only the accepted messages are stored",
    );
    // The limit is per connection: another socket may publish right away.
    const other = await agent();
    await send(other, conv.id, "another connection");
    await stillAlive(s, "after being rate limited");
  });

  it(`text longer than MAX_TEXT_LEN (${MAX_TEXT_LEN}) is too_large; exactly the limit passes`, async () => {
    const conv = await ctx.server.createConversation();
    const s = await agent();
    expectAckError(
      await ack(s, "send_message", { conversation_id: conv.id, text: "x".repeat(MAX_TEXT_LEN + 1) }),
      "too_large",
    );
    // Characters, not bytes: 200 two-byte characters are within the limit.
    const m = await send(s, conv.id, "é".repeat(MAX_TEXT_LEN));
    assert.equal(m.text.length, MAX_TEXT_LEN);
    assert.equal((await ctx.server.history(conv.id)).length, 1);
  });

  it(`a payload over MAX_PAYLOAD (${MAX_PAYLOAD} bytes) is refused, stores nothing, and hurts no one else`, async () => {
    const conv = await ctx.server.createConversation();
    const s = await agent();
    await join(s, conv.id);
    const bystander = await agent();
    await join(bystander, conv.id);
    const disconnectedP = new Promise((resolve) => s.once("disconnect", () => resolve({ disconnected: true })));
    const ackP = s
      .timeout(3000)
      .emitWithAck("send_message", { conversation_id: conv.id, text: "z".repeat(MAX_PAYLOAD * 2) })
      .then((reply) => ({ reply }))
      .catch((err) => ({ error: err.message }));
    const outcome = await Promise.race([disconnectedP, ackP]);
    // Either the oversized frame closes that connection (what Socket.IO servers do) or
    // the server answers with an explicit too_large refusal; never a stored message.
    if (!outcome.disconnected) {
      assert.ok(outcome.reply, `no ack and no disconnect for an oversized payload (${outcome.error})`);
      expectAckError(outcome.reply, "too_large", "oversized payload");
    }
    assert.deepEqual(await ctx.server.history(conv.id), []);
    const m = await send(bystander, conv.id, "bystander unaffected");
    assert.equal((await once(bystander, "message:new")).id, m.id);
    assert.equal((await ctx.server.http("GET", "/healthz")).status, 200);
  });
});
