// WhatsApp Cloud API webhooks in, agent messages out through the Graph API (a
// local stand-in here), against `switchboard dev`.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { startGraph } from "../lib/graph.mjs";
import { useServer } from "../lib/setup.mjs";
import { connect, expectNone, join, once, send } from "../lib/sio.mjs";
import { VERIFY_TOKEN, conversationId, deliver, fixture, randomWaId, waEnv } from "../lib/whatsapp.mjs";

const graph = await startGraph();
after(() => graph.stop());
const ctx = useServer(waEnv(graph.base));

async function api(path, opts = {}) {
  const res = await fetch(`${ctx.server.url}${path}`, {
    ...opts,
    headers: { authorization: `Bearer ${ctx.server.serviceToken()}`, "content-type": "application/json" },
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function history(id) {
  const { status, body } = await api(`/api/v1/conversations/${encodeURIComponent(id)}/messages`);
  return status === 200 ? body.messages : [];
}

/** An agent socket that saw the conversation appear and joined it. */
async function inboundConversation(waId, name = "Sheena Nelson") {
  const agent = await connect(ctx.server.url, { token: ctx.server.agentToken() });
  const res = await deliver(ctx.server.url, fixture("text", { waId, name }));
  assert.equal(res.status, 200);
  const created = await once(agent, "conversation:new", { filter: (c) => c.conversation?.id === conversationId(waId) || c.id === conversationId(waId) });
  const ack = await join(agent, conversationId(waId));
  return { agent, created, ack };
}

describe("whatsapp webhook verification", () => {
  it("answers the challenge for the right token, 401 otherwise", async () => {
    const good = await fetch(`${ctx.server.url}/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=${VERIFY_TOKEN}`);
    assert.equal(good.status, 200);
    assert.equal(await good.text(), "1158201444");
    const bad = await fetch(`${ctx.server.url}/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope`);
    assert.equal(bad.status, 401);
    assert.ok((await bad.json()).error.code);
  });
});

describe("whatsapp inbound", () => {
  it("refuses missing and bad signatures and stores nothing", async () => {
    const waId = randomWaId();
    const body = fixture("text", { waId });
    for (const signature of [null, "sha256=00", `sha256=${"ab".repeat(32)}`]) {
      const res = await deliver(ctx.server.url, body, { signature });
      assert.equal(res.status, 401);
      assert.equal((await res.json()).error.code, "invalid_signature");
    }
    // Re-serialised JSON does not match a signature over the original bytes.
    const raw = JSON.stringify(body);
    const res = await deliver(ctx.server.url, JSON.stringify(body, null, 1), { signature: (await import("../lib/whatsapp.mjs")).sign(raw) });
    assert.equal(res.status, 401);
    // A later good delivery shows the earlier ones left nothing behind.
    const { ack } = await inboundConversation(waId);
    assert.equal(ack.messages.length, 1);
  });

  it("a text becomes a conversation and a whatsapp message an agent sees", async () => {
    const waId = randomWaId();
    const { agent, created, ack } = await inboundConversation(waId, "Kerry Fisher");
    const conv = created.conversation ?? created;
    assert.equal(conv.channel, "whatsapp");
    assert.equal(conv.customer.phone, waId);
    assert.equal(conv.customer.name, "Kerry Fisher");
    assert.equal(ack.messages[0].source, "whatsapp");
    assert.equal(ack.messages[0].text, "Does it come in another color?");
    assert.equal(ack.messages[0].sender.role, "customer");
    await deliver(ctx.server.url, fixture("text", { waId }));
    const next = await once(agent, "message:new");
    assert.equal(next.offset, 2);
  });

  it("stores each message type with its content", async () => {
    const waId = randomWaId();
    const { agent } = await inboundConversation(waId);
    const expect = {
      image: (m) => assert.deepEqual([m.content.type, m.content.media_id, m.content.mime_type, m.text], ["image", "1003383421387256", "image/jpeg", "Black jacket"]),
      interactive_button_reply: (m) => assert.deepEqual([m.content.type, m.content.reply_id, m.text], ["interactive", "cancel-order", "Cancel order"]),
      interactive_list_reply: (m) => assert.deepEqual([m.content.reply_id, m.content.title], ["priority_express", "Priority Mail Express"]),
      location: (m) => assert.deepEqual([m.content.type, m.content.latitude, m.content.longitude, m.content.name], ["location", 37.483307, -122.148981, "Philz Coffee"]),
      contacts: (m) => assert.deepEqual([m.content.type, m.content.contacts[0].name.formatted_name], ["contacts", "Barbara J. Johnson"]),
    };
    for (const [name, check] of Object.entries(expect)) {
      assert.equal((await deliver(ctx.server.url, fixture(name, { waId }))).status, 200);
      const m = await once(agent, "message:new", { what: name });
      try {
        check(m);
      } catch (e) {
        throw new Error(`${name}: ${JSON.stringify(m)}: ${e.message}`);
      }
    }
    const stored = await history(conversationId(waId));
    assert.equal(stored.length, 6);
    expect.location(stored[4]);
  });

  it("a webhook delivered twice stores one message", async () => {
    const waId = randomWaId();
    const { agent } = await inboundConversation(waId);
    const body = fixture("text", { waId });
    await deliver(ctx.server.url, body);
    await once(agent, "message:new");
    // Identical bytes (deduplicated on the bus) and re-serialised (deduplicated by the store).
    await deliver(ctx.server.url, body);
    await deliver(ctx.server.url, JSON.stringify(body, null, 2));
    await expectNone(agent, "message:new");
    assert.equal((await history(conversationId(waId))).length, 2);
  });
});

describe("whatsapp outbound", () => {
  it("an agent's message goes out once with Meta's body, then sent", async () => {
    const waId = randomWaId();
    const { agent } = await inboundConversation(waId);
    const reply = await sendMessage(agent, conversationId(waId), "We have it in blue", "k-out-1");
    const id = reply.message.id;
    const requests = await graph.waitFor((r) => r.some((q) => q.body?.to === waId), { what: "the send" });
    const sent = requests.filter((q) => q.body?.to === waId);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].path, "/v21.0/106540352242922/messages");
    assert.equal(sent[0].auth, "Bearer test-access-token");
    assert.deepEqual(sent[0].body, { messaging_product: "whatsapp", recipient_type: "individual", to: waId, type: "text", text: { body: "We have it in blue", preview_url: false } });
    const status = await once(agent, "message:status", { filter: (s) => s.message_id === id });
    assert.equal(status.status, "sent");
    await expectNone(agent, "message:status", { filter: (s) => s.message_id === id });
    assert.equal(graph.requests.filter((q) => q.body?.to === waId).length, 1);
  });

  it("statuses out of order leave read as read, with one event", async () => {
    const waId = randomWaId();
    const { agent } = await inboundConversation(waId);
    const reply = await sendMessage(agent, conversationId(waId), "status test", "k-st");
    const id = reply.message.id;
    await once(agent, "message:status", { filter: (s) => s.message_id === id && s.status === "sent" });
    const wamid = await wamidFor(waId);
    await deliver(ctx.server.url, fixture("status_read", { waId, wamid }));
    const read = await once(agent, "message:status", { filter: (s) => s.message_id === id });
    assert.equal(read.status, "read");
    await deliver(ctx.server.url, fixture("status_delivered", { waId, wamid }));
    await expectNone(agent, "message:status", { filter: (s) => s.message_id === id });
  });

  it("429 then 500 then success: sent after retries", async () => {
    const waId = randomWaId();
    const { agent } = await inboundConversation(waId);
    graph.script(waId, [{ status: 429, code: 130429, retryAfter: 0, message: "Rate limit hit" }, { status: 500 }]);
    const reply = await sendMessage(agent, conversationId(waId), "retry me", "k-retry");
    const status = await once(agent, "message:status", { filter: (s) => s.message_id === reply.message.id, timeout: 10_000 });
    assert.equal(status.status, "sent");
    assert.equal(graph.requests.filter((q) => q.body?.to === waId).length, 3);
  });

  it("a final 131047 fails the message with Graph's code, without retrying", async () => {
    const waId = randomWaId();
    const { agent } = await inboundConversation(waId);
    graph.script(waId, [{ status: 400, code: 131047, message: "Re-engagement message" }]);
    const reply = await sendMessage(agent, conversationId(waId), "too late", "k-fail");
    const status = await once(agent, "message:status", { filter: (s) => s.message_id === reply.message.id, timeout: 10_000 });
    assert.equal(status.status, "failed");
    assert.equal(status.error.code, 131047);
    assert.equal(graph.requests.filter((q) => q.body?.to === waId).length, 1);
  });
});

async function sendMessage(socket, id, text, key) {
  return { message: await send(socket, id, text, key) };
}

/** The wamid the stand-in gave the (last) send to `waId`. */
async function wamidFor(waId) {
  const entry = graph.requests.filter((q) => q.body?.to === waId).at(-1);
  return entry.wamid;
}
