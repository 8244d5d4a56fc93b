// Identity: JWT refusals on the socket and on HTTP, and the `connected` greeting.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { nowSecs, signJwt } from "../lib/server.mjs";
import { useServer } from "../lib/setup.mjs";
import { connect, connectError, once, ack } from "../lib/sio.mjs";

const ctx = useServer();

describe("socket.io connect refusals", () => {
  it("refuses a connection without a token: connect_error 'token required'", async () => {
    const err = await connectError(ctx.server.url);
    assert.equal(err.message, "token required");
  });

  it("refuses an empty auth.token as 'token required'", async () => {
    const err = await connectError(ctx.server.url, { auth: { token: "" } });
    assert.equal(err.message, "token required");
  });

  it("refuses a garbage token: 'invalid token'", async () => {
    const err = await connectError(ctx.server.url, { token: "not-a-jwt" });
    assert.equal(err.message, "invalid token");
  });

  it("refuses a token signed with another secret: 'invalid token'", async () => {
    const token = signJwt({ sub: "u1", role: "agent", name: "Eve", exp: nowSecs() + 600 }, "some-other-secret");
    const err = await connectError(ctx.server.url, { token });
    assert.equal(err.message, "invalid token");
  });

  it("refuses a token whose payload was tampered with: 'invalid token'", async () => {
    const good = ctx.server.customerToken("cust-tamper");
    const [h, , s] = good.split(".");
    const forged = Buffer.from(
      JSON.stringify({ sub: "cust-tamper", role: "agent", name: "Mallory", exp: nowSecs() + 600 }),
    ).toString("base64url");
    const err = await connectError(ctx.server.url, { token: `${h}.${forged}.${s}` });
    assert.equal(err.message, "invalid token");
  });

  it("refuses an unsigned alg:none token: 'invalid token'", async () => {
    const h = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
    const p = Buffer.from(JSON.stringify({ sub: "x", role: "agent", name: "X", exp: nowSecs() + 600 })).toString(
      "base64url",
    );
    const err = await connectError(ctx.server.url, { token: `${h}.${p}.` });
    assert.equal(err.message, "invalid token");
  });

  it("refuses an expired token: 'token expired'", async () => {
    const token = ctx.server.agentToken("agent-old", { exp: nowSecs() - 120 });
    const err = await connectError(ctx.server.url, { token });
    assert.equal(err.message, "token expired");
  });

  it("refuses an expired token given in the query: 'token expired'", async () => {
    const token = ctx.server.agentToken("agent-old-q", { exp: nowSecs() - 120 });
    const err = await connectError(ctx.server.url, { query: { token } });
    assert.equal(err.message, "token expired");
  });
});

describe("socket.io connect accepted", () => {
  it("accepts auth.token and greets with `connected` {message, user_id = sub}", async () => {
    const s = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-auth-1") });
    const hello = await once(s, "connected");
    assert.equal(hello.user_id, "agent-auth-1");
    assert.equal(typeof hello.message, "string");
    assert.ok(hello.message.length > 0, "connected.message must not be empty");
  });

  it("accepts the token in the query string (query.token)", async () => {
    const s = await connect(ctx.server.url, { query: { token: ctx.server.customerToken("cust-query-1") } });
    const hello = await once(s, "connected");
    assert.equal(hello.user_id, "cust-query-1");
  });

  it("accepts every role (customer, agent, bot, service)", async () => {
    for (const role of ["customer", "agent", "bot", "service"]) {
      const sub = `${role}-roles-1`;
      const s = await connect(ctx.server.url, { token: ctx.server.token({ sub, role, name: role }) });
      const hello = await once(s, "connected", { what: role });
      assert.equal(hello.user_id, sub, role);
      s.close();
    }
  });

  it("a refused client does not disturb a connected one", async () => {
    const ok = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-auth-2") });
    await connectError(ctx.server.url, { token: "garbage" });
    ok.emit("ping", {});
    await once(ok, "pong");
    assert.equal(ok.connected, true);
  });

  it("token without exp claim is refused or accepted consistently (never crashes the server)", async () => {
    // `exp` is a required claim of our tokens; whichever way the server decides, it must
    // answer with a connect outcome and keep serving others.
    const token = ctx.server.token({ sub: "no-exp", role: "agent", name: "NoExp", exp: null });
    let outcome;
    try {
      const s = await connect(ctx.server.url, { token });
      outcome = "connected";
      s.close();
    } catch (err) {
      outcome = err.message;
    }
    assert.ok(
      ["connected", "connect_error: invalid token", "connect_error: token expired"].includes(outcome),
      `unexpected outcome ${outcome}`,
    );
    const res = await ctx.server.http("GET", "/healthz");
    assert.equal(res.status, 200);
  });
});

describe("HTTP authentication", () => {
  const path = "/api/v1/conversations";

  function assertError(res, status, code) {
    assert.equal(res.status, status, `expected HTTP ${status}, got ${res.status}: ${res.text}`);
    assert.ok(res.body?.error, `expected {error:{code,message}}, got ${res.text}`);
    assert.equal(res.body.error.code, code);
    assert.equal(typeof res.body.error.message, "string");
    assert.ok(res.body.error.message.length > 0);
  }

  it("no token: 401 token_required", async () => {
    assertError(await ctx.server.http("GET", path), 401, "token_required");
  });

  it("garbage bearer token: 401 invalid_token", async () => {
    assertError(await ctx.server.http("GET", path, { token: "garbage.garbage.garbage" }), 401, "invalid_token");
  });

  it("wrong-secret token: 401 invalid_token", async () => {
    const token = signJwt({ sub: "s", role: "service", name: "S", exp: nowSecs() + 600 }, "wrong");
    assertError(await ctx.server.http("GET", path, { token }), 401, "invalid_token");
  });

  it("expired token: 401 token_expired", async () => {
    const token = ctx.server.serviceToken("svc-old", { exp: nowSecs() - 60 });
    assertError(await ctx.server.http("GET", path, { token }), 401, "token_expired");
  });

  it("valid bearer token: 200", async () => {
    const res = await ctx.server.http("GET", path, { token: ctx.server.serviceToken() });
    assert.equal(res.status, 200, res.text);
    assert.ok(Array.isArray(res.body.conversations));
  });

  it("valid ?token= in the URL: 200", async () => {
    const token = ctx.server.agentToken("agent-http-q");
    const res = await ctx.server.http("GET", `${path}?token=${encodeURIComponent(token)}`);
    assert.equal(res.status, 200, res.text);
    assert.ok(Array.isArray(res.body.conversations));
  });

  it("a refused HTTP call publishes nothing", async () => {
    const conv = await ctx.server.createConversation();
    const res = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, {
      token: "garbage",
      json: { text: "should not be stored" },
    });
    assertError(res, 401, "invalid_token");
    assert.deepEqual(await ctx.server.history(conv.id), []);
  });

  it("a customer token listing a conversation may join it (created on first join)", async () => {
    const id = `auth-conv-${nowSecs()}`;
    const s = await connect(ctx.server.url, { token: ctx.server.customerToken("cust-auth-3", { conversations: [id] }) });
    const reply = await ack(s, "join_conversation", { conversation_id: id });
    assert.equal(reply.ok, true, JSON.stringify(reply));
  });
});
