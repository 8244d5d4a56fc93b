// The HTTP service API: conversations, messages, history, the ticketing backend's
// notify, errors, operational endpoints and CORS.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { useServer } from "../lib/setup.mjs";
import { assertConversation, assertMessage, connect, expectNone, join, once } from "../lib/sio.mjs";

const ALLOWED = "http://allowed.example";
const ctx = useServer({ SWITCHBOARD_CORS_ORIGINS: ALLOWED });

const svc = () => ctx.server.serviceToken();

function assertError(res, status, code) {
  assert.equal(res.status, status, `expected HTTP ${status}, got ${res.status}: ${res.text}`);
  assert.ok(res.body?.error, `expected a JSON body {error:{code,message}}, got ${res.text}`);
  assert.equal(res.body.error.code, code, `error code, body ${res.text}`);
  assert.equal(typeof res.body.error.message, "string");
  assert.ok(res.body.error.message.length > 0, "error.message must not be empty");
}

describe("conversations", () => {
  it("POST creates (201) and the same id again answers 200 with the same conversation", async () => {
    const id = randomUUID();
    const body = { id, channel: "whatsapp", customer: { id: "cust-h1", name: "Hugo", phone: "5511999990001" } };
    const res = await ctx.server.http("POST", "/api/v1/conversations", { token: svc(), json: body });
    assert.equal(res.status, 201, res.text);
    assertConversation(res.body, { id, channel: "whatsapp", status: "open" });
    assert.deepEqual(res.body.customer, body.customer);
    assert.ok(!res.body.last_message, "a new conversation has no last_message");

    const again = await ctx.server.http("POST", "/api/v1/conversations", { token: svc(), json: body });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.id, id);
    assert.equal(again.body.created_at, res.body.created_at);

    const got = await ctx.server.http("GET", `/api/v1/conversations/${id}`, { token: svc() });
    assert.equal(got.status, 200, got.text);
    assertConversation(got.body, { id, channel: "whatsapp" });
    assert.deepEqual(got.body.customer, body.customer);
  });

  it("POST without an id generates one", async () => {
    const res = await ctx.server.http("POST", "/api/v1/conversations", {
      token: svc(),
      json: { channel: "web", customer: { id: "cust-h2", name: "Helena" } },
    });
    assert.equal(res.status, 201, res.text);
    assertConversation(res.body, { channel: "web" });
    assert.ok(res.body.id.length > 0);
    const got = await ctx.server.http("GET", `/api/v1/conversations/${encodeURIComponent(res.body.id)}`, {
      token: svc(),
    });
    assert.equal(got.status, 200);
  });

  it("POST with a bad channel or no customer is 400 bad_request", async () => {
    assertError(
      await ctx.server.http("POST", "/api/v1/conversations", {
        token: svc(),
        json: { channel: "carrier-pigeon", customer: { id: "x", name: "X" } },
      }),
      400,
      "bad_request",
    );
    assertError(
      await ctx.server.http("POST", "/api/v1/conversations", { token: svc(), json: { channel: "web" } }),
      400,
      "bad_request",
    );
  });

  it("GET an unknown conversation is 404 not_found", async () => {
    assertError(await ctx.server.http("GET", `/api/v1/conversations/${randomUUID()}`, { token: svc() }), 404, "not_found");
  });

  it("the inbox lists most recently active first, each with its last message; filters work", async () => {
    const phone = `55119${String(Date.now()).slice(-8)}`;
    const c1 = await ctx.server.createConversation({ customer: { id: "cust-in1", name: "One" } });
    const c2 = await ctx.server.createConversation({ customer: { id: "cust-in2", name: "Two" } });
    const c3 = await ctx.server.createConversation({
      channel: "whatsapp",
      customer: { id: "cust-in3", name: "Three", phone },
    });
    await ctx.server.postMessage(c1.id, "first in c1");
    await ctx.server.postMessage(c2.id, "first in c2");
    await ctx.server.postMessage(c3.id, "first in c3");
    const last = await ctx.server.postMessage(c1.id, "second in c1");

    const res = await ctx.server.http("GET", "/api/v1/conversations?limit=100", { token: svc() });
    assert.equal(res.status, 200, res.text);
    const ours = res.body.conversations.filter((c) => [c1.id, c2.id, c3.id].includes(c.id));
    assert.deepEqual(
      ours.map((c) => c.id),
      [c1.id, c3.id, c2.id],
      "most recently active first",
    );
    for (const c of ours) assertConversation(c);
    assert.equal(ours[0].last_message.id, last.id);
    assert.equal(ours[0].last_message.text, "second in c1");
    assert.equal(ours[1].last_message.text, "first in c3");
    assert.equal(ours[2].last_message.text, "first in c2");

    const wa = await ctx.server.http("GET", "/api/v1/conversations?channel=whatsapp&limit=100", { token: svc() });
    assert.equal(wa.status, 200);
    assert.ok(wa.body.conversations.length >= 1);
    assert.ok(wa.body.conversations.every((c) => c.channel === "whatsapp"));
    assert.ok(wa.body.conversations.some((c) => c.id === c3.id));

    const byPhone = await ctx.server.http("GET", `/api/v1/conversations?phone=${phone}`, { token: svc() });
    assert.equal(byPhone.status, 200);
    assert.deepEqual(
      byPhone.body.conversations.map((c) => c.id),
      [c3.id],
    );

    const open = await ctx.server.http("GET", "/api/v1/conversations?status=open&limit=100", { token: svc() });
    assert.ok(open.body.conversations.every((c) => c.status === "open"));
    assert.ok(open.body.conversations.some((c) => c.id === c1.id));
    const closed = await ctx.server.http("GET", "/api/v1/conversations?status=closed&limit=100", { token: svc() });
    assert.ok(!closed.body.conversations.some((c) => [c1.id, c2.id, c3.id].includes(c.id)));

    const limited = await ctx.server.http("GET", "/api/v1/conversations?limit=2", { token: svc() });
    assert.equal(limited.body.conversations.length, 2);
    assert.equal(limited.body.conversations[0].id, c1.id, "limit keeps the most recent");
  });

  it("agents may read the inbox; a customer listing it is 403 forbidden", async () => {
    const ok = await ctx.server.http("GET", "/api/v1/conversations", { token: ctx.server.agentToken("agent-h1") });
    assert.equal(ok.status, 200, ok.text);
    assertError(
      await ctx.server.http("GET", "/api/v1/conversations", { token: ctx.server.customerToken("cust-h3") }),
      403,
      "forbidden",
    );
  });
});

describe("messages", () => {
  it("POST {text} answers 201 with the stored Message (source api for a service)", async () => {
    const conv = await ctx.server.createConversation();
    const res = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, {
      token: ctx.server.serviceToken("svc-h1"),
      json: { text: "hello from the API", client_msg_id: "api-1" },
    });
    assert.equal(res.status, 201, res.text);
    assertMessage(res.body, {
      conversation_id: conv.id,
      offset: 1,
      text: "hello from the API",
      client_msg_id: "api-1",
      source: "api",
      sender: { id: "svc-h1", role: "service" },
    });
  });

  it("POST by an agent has source agent; by a bot source bot", async () => {
    const conv = await ctx.server.createConversation();
    const a = await ctx.server.postMessage(conv.id, "agent via http", { token: ctx.server.agentToken("agent-h2") });
    assertMessage(a, { source: "agent", sender: { id: "agent-h2", role: "agent" } });
    const b = await ctx.server.postMessage(conv.id, "bot via http", { token: ctx.server.botToken("bot-h2") });
    assertMessage(b, { source: "bot", sender: { id: "bot-h2", role: "bot" }, offset: 2 });
  });

  it("POST with the same client_msg_id twice stores once", async () => {
    const conv = await ctx.server.createConversation();
    const first = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, {
      token: svc(),
      json: { text: "idempotent", client_msg_id: "api-dup" },
    });
    assert.equal(first.status, 201, first.text);
    const second = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, {
      token: svc(),
      json: { text: "idempotent", client_msg_id: "api-dup" },
    });
    assert.ok([200, 201].includes(second.status), second.text);
    assert.equal(second.body.id, first.body.id);
    assert.equal(second.body.offset, first.body.offset);
    assert.equal((await ctx.server.history(conv.id)).length, 1);
  });

  it("POST to an unknown conversation is 404 not_found; empty text is 400 bad_request; too long is too_large", async () => {
    assertError(
      await ctx.server.http("POST", `/api/v1/conversations/${randomUUID()}/messages`, {
        token: svc(),
        json: { text: "nobody home" },
      }),
      404,
      "not_found",
    );
    const conv = await ctx.server.createConversation();
    assertError(
      await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, { token: svc(), json: { text: "" } }),
      400,
      "bad_request",
    );
    const tooLong = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, {
      token: svc(),
      json: { text: "x".repeat(4097) },
    });
    // The status is not pinned (400 or 413); the code is.
    assertError(tooLong, tooLong.status === 413 ? 413 : 400, "too_large");
    assert.deepEqual(await ctx.server.history(conv.id), []);
  });

  it("malformed JSON is 400 bad_request", async () => {
    const conv = await ctx.server.createConversation();
    const res = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, {
      token: svc(),
      body: '{"text": "unterminated',
      headers: { "content-type": "application/json" },
    });
    assertError(res, 400, "bad_request");
    const res2 = await ctx.server.http("POST", "/api/v1/conversations", {
      token: svc(),
      body: "[1,2,",
      headers: { "content-type": "application/json" },
    });
    assertError(res2, 400, "bad_request");
  });

  it("history: GET messages ascending, since_offset and limit; the room-string widget's path answers the same", async () => {
    const conv = await ctx.server.createConversation();
    const posted = [];
    for (let i = 1; i <= 5; i++) posted.push(await ctx.server.postMessage(conv.id, `h${i}`));

    const all = await ctx.server.http("GET", `/api/v1/conversations/${conv.id}/messages`, { token: svc() });
    assert.equal(all.status, 200, all.text);
    assert.deepEqual(all.body.messages, posted);

    const since = await ctx.server.http("GET", `/api/v1/conversations/${conv.id}/messages?since_offset=2`, {
      token: svc(),
    });
    assert.deepEqual(
      since.body.messages.map((m) => m.offset),
      [3, 4, 5],
    );

    const page = await ctx.server.http("GET", `/api/v1/conversations/${conv.id}/messages?since_offset=0&limit=2`, {
      token: svc(),
    });
    assert.deepEqual(
      page.body.messages.map((m) => m.offset),
      [1, 2],
    );

    const seed4 = await ctx.server.http("GET", `/api/chat/sessions/${conv.id}/messages`, { token: svc() });
    assert.equal(seed4.status, 200, seed4.text);
    assert.deepEqual(seed4.body.messages, posted);

    assertError(
      await ctx.server.http("GET", `/api/v1/conversations/${randomUUID()}/messages`, { token: svc() }),
      404,
      "not_found",
    );
  });

  it("a customer may read the history of its own conversation but not of another's", async () => {
    const conv = await ctx.server.createConversation({ customer: { id: "cust-h4", name: "Own" } });
    await ctx.server.postMessage(conv.id, "mine");
    const mine = await ctx.server.http("GET", `/api/v1/conversations/${conv.id}/messages`, {
      token: ctx.server.customerToken("cust-h4"),
    });
    assert.equal(mine.status, 200, mine.text);
    assert.equal(mine.body.messages.length, 1);
    const theirs = await ctx.server.http("GET", `/api/v1/conversations/${conv.id}/messages`, {
      token: ctx.server.customerToken("cust-h5"),
    });
    assertError(theirs, 403, "forbidden");
  });

  it("POST /api/v1/messages/{id}/status answers {message_id, conversation_id, status, timestamp}", async () => {
    const conv = await ctx.server.createConversation();
    const msg = await ctx.server.postMessage(conv.id, "status me");
    const res = await ctx.server.http("POST", `/api/v1/messages/${msg.id}/status`, {
      token: svc(),
      json: { status: "delivered" },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.message_id, msg.id);
    assert.equal(res.body.conversation_id, conv.id);
    assert.equal(res.body.status, "delivered");
    assert.ok(!Number.isNaN(Date.parse(res.body.timestamp)));
  });
});

describe("notify (the ticketing backend)", () => {
  it("POST /api/notify/message creates the conversation and a message; same messageId stores once", async () => {
    const ticketId = `TICKET-${randomUUID().slice(0, 8)}`;
    const a = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-n1") });
    const body = { ticketId, messageId: "msg-test-1", content: "Mensaje de prueba", isClient: true };
    const res = await ctx.server.http("POST", "/api/notify/message", { token: svc(), json: body });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.success, true);
    assertMessage(res.body.message, { conversation_id: ticketId, text: "Mensaje de prueba", offset: 1 });
    assert.equal(res.body.message.sender.role, "customer");

    const conv = await ctx.server.http("GET", `/api/v1/conversations/${ticketId}`, { token: svc() });
    assert.equal(conv.status, 200, conv.text);
    const created = await once(a, "conversation:new", { filter: (e) => e?.conversation?.id === ticketId });
    assert.equal(created.conversation.id, ticketId);

    await join(a, ticketId);
    const again = await ctx.server.http("POST", "/api/notify/message", { token: svc(), json: body });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.message.id, res.body.message.id);
    await expectNone(a, "message:new", { what: "a duplicate notify must not be broadcast" });
    assert.equal((await ctx.server.history(ticketId)).length, 1);

    const fromAgent = await ctx.server.http("POST", "/api/notify/message", {
      token: svc(),
      json: { ticketId, messageId: "msg-test-2", content: "Respuesta del soporte", isClient: false },
    });
    assert.equal(fromAgent.status, 200, fromAgent.text);
    assert.equal(fromAgent.body.message.sender.role, "agent");
    assert.equal(fromAgent.body.message.offset, 2);
    const live = await once(a, "message:new");
    assert.equal(live.id, fromAgent.body.message.id);
  });

  it("POST /api/notify/message without ticketId is 400 bad_request", async () => {
    assertError(
      await ctx.server.http("POST", "/api/notify/message", {
        token: svc(),
        json: { messageId: "m", content: "c", isClient: true },
      }),
      400,
      "bad_request",
    );
  });
});

describe("operations", () => {
  it("GET /healthz and /readyz answer 200", async () => {
    assert.equal((await ctx.server.http("GET", "/healthz")).status, 200);
    assert.equal((await ctx.server.http("GET", "/readyz")).status, 200);
  });

  it("GET /metrics is Prometheus text with switchboard_ metrics", async () => {
    // Generate a little traffic first so counters exist.
    const conv = await ctx.server.createConversation();
    await ctx.server.postMessage(conv.id, "metric me");
    const res = await ctx.server.http("GET", "/metrics");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/plain/);
    assert.match(res.text, /^switchboard_[a-z0-9_]+(\{[^}]*\})? [0-9.eE+-]+$/m);
  });

  it("GET /openapi.json documents the API", async () => {
    const res = await ctx.server.http("GET", "/openapi.json");
    assert.equal(res.status, 200);
    assert.equal(typeof res.body.openapi, "string");
    assert.match(res.body.openapi, /^3\./);
    assert.ok(res.body.paths && typeof res.body.paths === "object");
    assert.ok("/api/v1/conversations" in res.body.paths, Object.keys(res.body.paths).join(", "));
    assert.ok(
      Object.keys(res.body.paths).some((p) => p.startsWith("/api/v1/conversations/{")),
      "the per-conversation paths are documented",
    );
  });

  it("an unknown route is 404", async () => {
    const res = await ctx.server.http("GET", "/api/v1/nope", { token: svc() });
    assert.equal(res.status, 404);
  });
});

describe("CORS", () => {
  it("an allowed origin gets access-control-allow-origin; another origin gets none", async () => {
    const allowed = await ctx.server.http("GET", "/healthz", { headers: { origin: ALLOWED } });
    assert.equal(allowed.headers.get("access-control-allow-origin"), ALLOWED);
    const other = await ctx.server.http("GET", "/healthz", { headers: { origin: "http://evil.example" } });
    assert.equal(other.headers.get("access-control-allow-origin"), null);
  });

  it("a preflight from the allowed origin for an authorised JSON POST is allowed", async () => {
    const res = await ctx.server.http("OPTIONS", "/api/v1/conversations", {
      headers: {
        origin: ALLOWED,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
      },
    });
    assert.ok(res.status >= 200 && res.status < 300, `preflight status ${res.status}`);
    assert.equal(res.headers.get("access-control-allow-origin"), ALLOWED);
    assert.match((res.headers.get("access-control-allow-methods") ?? "").toUpperCase(), /POST|\*/);
    const allowHeaders = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
    assert.ok(
      allowHeaders === "*" || (allowHeaders.includes("authorization") && allowHeaders.includes("content-type")),
      `allow-headers: ${allowHeaders}`,
    );
  });

  it("an API response to the allowed origin carries the header too", async () => {
    const res = await ctx.server.http("GET", "/api/v1/conversations?limit=1", {
      token: svc(),
      headers: { origin: ALLOWED },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("access-control-allow-origin"), ALLOWED);
  });
});
