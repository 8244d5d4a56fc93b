// Widget visitor sessions (contract §12): `POST /api/v1/widget/sessions` from a
// public site's pages, its origins, keys and rate, the visitor token it answers,
// conversations made at the first message, returning visitors and renewal,
// signed-in users on several devices, and what a visitor token may not do,
// against `switchboard dev` over HTTP, Socket.IO and the native WebSocket.

import assert from "node:assert/strict";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { nowSecs, startServer } from "../lib/server.mjs";
import { useServer } from "../lib/setup.mjs";
import {
  ack,
  assertConversation,
  assertMessage,
  assertRfc3339,
  closeAll,
  connect,
  connectError,
  eventually,
  expectAckError,
  expectNone,
  expectOk,
  join,
  once,
  send,
} from "../lib/sio.mjs";

const SESSIONS = "/api/v1/widget/sessions";
const SITE = "http://a.example";
const TWO_SITES = ["https://one.example", "http://two.example:8443"];
const ELSEWHERE = "http://evil.example";
const IDENTITY_SECRET = randomBytes(16).toString("hex");
const TTL_S = 120;

const SITES = `site-a=${SITE},site-two=${TWO_SITES[0]},site-two=${TWO_SITES[1]}`;
// Every request to the sessions endpoint counts against the client's rate; from
// 127.0.0.1 with no trusted proxy the whole file is one client, so a high rate
// keeps the servers that do not test the rate out of its way.
const ctx = useServer({
  SWITCHBOARD_WIDGET_SITES: SITES,
  SWITCHBOARD_WIDGET_IDENTITY_SECRET: IDENTITY_SECRET,
  SWITCHBOARD_WIDGET_TOKEN_TTL_S: String(TTL_S),
  SWITCHBOARD_WIDGET_SESSION_RATE: "1000",
});

const uid = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;
const about = (...ids) => (e) => ids.includes(e?.conversation?.id);
const hashOf = (userId, secret = IDENTITY_SECRET) => createHmac("sha256", secret).update(userId).digest("hex");

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const VISITOR_ID = /^[A-Za-z0-9_-]{43}$/;

/**
 * POST to the sessions endpoint with node:http, so the request carries exactly the
 * headers given (no Origin unless `origin` is set). `body` is JSON-encoded unless it
 * is a string. Resolves to `{status, headers, body, text}`.
 */
function postSession(server, body, { origin, xff, headers = {} } = {}) {
  const data = typeof body === "string" ? body : JSON.stringify(body);
  const h = { "content-type": "application/json", "content-length": Buffer.byteLength(data), ...headers };
  if (origin !== undefined) h.origin = origin;
  if (xff !== undefined) h["x-forwarded-for"] = xff;
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}${SESSIONS}`, { method: "POST", headers: h, agent: false, timeout: 10_000 }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        let parsed = null;
        try {
          parsed = text.length ? JSON.parse(text) : null;
        } catch {
          parsed = null;
        }
        resolve({ status: res.statusCode, headers: res.headers, body: parsed, text });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`POST ${SESSIONS} timed out`)));
    req.on("error", reject);
    req.end(data);
  });
}

/** The claims of a JWT (its base64url middle part), and its header. */
function decode(token) {
  assert.equal(typeof token, "string", `token must be a string: ${JSON.stringify(token)}`);
  const parts = token.split(".");
  assert.equal(parts.length, 3, `a JWT has three parts: ${token}`);
  const [header, claims] = parts.slice(0, 2).map((p) => JSON.parse(Buffer.from(p, "base64url").toString()));
  return { header, claims };
}

/** Assert a refusal: HTTP `status` with `{error:{code, message}}`. */
function refused(res, status, code, what = "") {
  const label = `${what ? `${what}: ` : ""}expected HTTP ${status} ${code}`;
  assert.equal(res.status, status, `${label}, got ${res.status}: ${res.text}`);
  assert.ok(res.body?.error && typeof res.body.error === "object", `${label}, body is not {error}: ${res.text}`);
  assert.equal(res.body.error.code, code, `${label}, got ${res.text}`);
  assert.equal(typeof res.body.error.message, "string", `${label}: error.message must be a string`);
  assert.ok(res.body.error.message.length > 0, `${label}: error.message must not be empty`);
  return res.body.error;
}

/** Assert a 201 session answer and return it with its token's claims. */
function accepted(res, what = "session") {
  assert.equal(res.status, 201, `${what}: expected 201, got ${res.status}: ${res.text}`);
  const s = res.body;
  assert.ok(s && typeof s === "object", `${what}: body ${res.text}`);
  assert.deepEqual(Object.keys(s).sort(), ["conversation_id", "expires_at", "token", "visitor_id"], `${what}: fields of ${res.text}`);
  assert.match(s.conversation_id, UUID_V7, `${what}: conversation_id must be a UUIDv7`);
  assert.match(s.visitor_id, VISITOR_ID, `${what}: visitor_id must be 43 base64url chars`);
  assertRfc3339(s.expires_at, `${what}: expires_at`);
  return { ...s, claims: decode(s.token).claims };
}

/** A session that must succeed (site `site-a` from its origin unless told otherwise). */
async function open(server, body = {}, { origin = SITE, xff, what } = {}) {
  return accepted(await postSession(server, { site_key: "site-a", ...body }, { origin, xff }), what);
}

function agent(server = ctx.server, sub = uid("agent")) {
  return connect(server.url, { token: server.agentToken(sub) });
}

function svcGet(server, path) {
  return server.http("GET", path, { token: server.serviceToken() });
}

/** The conversation as a service reads it; must exist. */
async function stored(server, id) {
  const res = await svcGet(server, `/api/v1/conversations/${id}`);
  assert.equal(res.status, 200, `GET conversation ${id}: ${res.status} ${res.text}`);
  return assertConversation(res.body);
}

/** The conversation does not exist: GET is 404 not_found and the inbox does not list it. */
async function assertAbsent(server, id, what) {
  refused(await svcGet(server, `/api/v1/conversations/${id}`), 404, "not_found", `${what}: GET with a service token`);
  const list = await svcGet(server, "/api/v1/conversations?limit=1000");
  assert.equal(list.status, 200, list.text);
  assert.ok(
    !list.body.conversations.some((c) => c.id === id),
    `${what}: the service's inbox must not list ${id}`,
  );
}

/** Try to connect with `token`: "connected" or the refusal's message. */
async function connectOutcome(server, token) {
  try {
    const s = await connect(server.url, { token });
    s.close();
    return "connected";
  } catch (err) {
    return err.message;
  }
}

// ---- origins and CORS ----------------------------------------------------------

describe("widget sessions: origins", () => {
  it("a site key's own origin gets 201 {token, conversation_id, visitor_id, expires_at}", async () => {
    const s = await open(ctx.server);
    assert.equal(typeof s.token, "string");
    assert.ok(s.token.length > 0);
  });

  it("a key listed for two origins works from both", async () => {
    const seen = [];
    for (const origin of TWO_SITES) {
      seen.push(accepted(await postSession(ctx.server, { site_key: "site-two" }, { origin }), `site-two from ${origin}`));
    }
    assert.notEqual(seen[0].visitor_id, seen[1].visitor_id, "two fresh visitors");
  });

  it("another origin is 403 origin_not_allowed, also one allowed for a different key", async () => {
    refused(await postSession(ctx.server, { site_key: "site-a" }, { origin: ELSEWHERE }), 403, "origin_not_allowed", "foreign origin");
    refused(
      await postSession(ctx.server, { site_key: "site-a" }, { origin: TWO_SITES[0] }),
      403,
      "origin_not_allowed",
      "site-two's origin with site-a's key",
    );
    refused(
      await postSession(ctx.server, { site_key: "site-a" }, { origin: `${SITE}.evil.example` }),
      403,
      "origin_not_allowed",
      "an origin that only starts like the site's",
    );
  });

  it("no Origin header is 403 origin_not_allowed", async () => {
    refused(await postSession(ctx.server, { site_key: "site-a" }), 403, "origin_not_allowed", "no Origin");
  });

  it("the session's answer carries Access-Control-Allow-Origin for the site's origin", async () => {
    const res = await postSession(ctx.server, { site_key: "site-two" }, { origin: TWO_SITES[1] });
    accepted(res);
    assert.equal(res.headers["access-control-allow-origin"], TWO_SITES[1]);
  });

  it("CORS: a preflight from a site origin for the sessions endpoint is allowed, echoing the origin", async () => {
    for (const origin of [SITE, ...TWO_SITES]) {
      const res = await ctx.server.http("OPTIONS", SESSIONS, {
        headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
      });
      assert.ok(res.status >= 200 && res.status < 300, `preflight from ${origin}: status ${res.status} ${res.text}`);
      assert.equal(res.headers.get("access-control-allow-origin"), origin, `preflight from ${origin}`);
      assert.match((res.headers.get("access-control-allow-methods") ?? "").toUpperCase(), /POST|\*/, `allow-methods for ${origin}`);
      const allowHeaders = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
      assert.ok(allowHeaders === "*" || allowHeaders.includes("content-type"), `allow-headers for ${origin}: ${allowHeaders}`);
    }
  });

  it("CORS: the widget reads GET /api/v1/conversations/{id} from the site's origin; a non-site origin gets no Access-Control-Allow-Origin", async () => {
    const s = await open(ctx.server, { name: "Corinna" });
    const v = await connect(ctx.server.url, { token: s.token });
    await send(v, s.conversation_id, "hello from the site");
    const path = `/api/v1/conversations/${s.conversation_id}`;
    const fromSite = await ctx.server.http("GET", path, { token: s.token, headers: { origin: SITE } });
    assert.equal(fromSite.status, 200, fromSite.text);
    assert.equal(fromSite.body.id, s.conversation_id);
    assert.equal(fromSite.headers.get("access-control-allow-origin"), SITE);
    const preflight = await ctx.server.http("OPTIONS", path, {
      headers: { origin: SITE, "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
    });
    assert.ok(preflight.status >= 200 && preflight.status < 300, `preflight of the GET: ${preflight.status}`);
    assert.equal(preflight.headers.get("access-control-allow-origin"), SITE, "preflight of the widget's GET");

    const foreign = await ctx.server.http("GET", path, { token: s.token, headers: { origin: ELSEWHERE } });
    assert.equal(foreign.headers.get("access-control-allow-origin"), null, "GET from a non-site origin");
    const foreignPreflight = await ctx.server.http("OPTIONS", path, {
      headers: { origin: ELSEWHERE, "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
    });
    assert.equal(foreignPreflight.headers.get("access-control-allow-origin"), null, "preflight from a non-site origin");
  });

  it("CORS: the sessions endpoint answers every origin, so a page that may not use a key can read why", async () => {
    const preflight = await ctx.server.http("OPTIONS", SESSIONS, {
      headers: { origin: ELSEWHERE, "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
    });
    assert.equal(preflight.headers.get("access-control-allow-origin"), ELSEWHERE, "preflight from a non-site origin");
    const res = await postSession(ctx.server, { site_key: "site-a" }, { origin: ELSEWHERE });
    refused(res, 403, "origin_not_allowed");
    assert.equal(res.headers["access-control-allow-origin"], ELSEWHERE, "the refusal is readable by the page");
    assert.match(res.headers["access-control-expose-headers"] ?? "", /retry-after/i, "Retry-After is readable cross-origin");
  });
});

// ---- keys and bodies -----------------------------------------------------------

describe("widget sessions: keys and bodies", () => {
  it("an unknown site key is 401 invalid_site_key (from any origin: the key is judged first)", async () => {
    refused(await postSession(ctx.server, { site_key: "no-such-key" }, { origin: SITE }), 401, "invalid_site_key");
    refused(await postSession(ctx.server, { site_key: "no-such-key" }, { origin: ELSEWHERE }), 401, "invalid_site_key");
  });

  it("a missing site_key is 400 bad_request; a site_key that is not a string too", async () => {
    refused(await postSession(ctx.server, { name: "Nokey" }, { origin: SITE }), 400, "bad_request", "no site_key");
    refused(await postSession(ctx.server, { site_key: 7 }, { origin: SITE }), 400, "bad_request", "site_key a number");
  });

  it("a body that is not JSON is 400 bad_request", async () => {
    refused(await postSession(ctx.server, '{"site_key": "site-a",', { origin: SITE }), 400, "bad_request", "truncated JSON");
    refused(await postSession(ctx.server, "site_key=site-a", { origin: SITE }), 400, "bad_request", "a form body");
  });
});

// ---- the token -----------------------------------------------------------------

describe("widget sessions: the visitor token", () => {
  it("is a customer token for visitor:<visitor_id>, allowed only its conversation, named from the form, expiring after the TTL", async () => {
    const before = nowSecs();
    const s = await open(ctx.server, { name: "Lena Gómez", email: "lena@example.com" });
    const after = nowSecs();
    const { header, claims } = decode(s.token);
    assert.equal(header.alg, "HS256");
    assert.equal(claims.role, "customer");
    assert.equal(claims.sub, `visitor:${s.visitor_id}`);
    assert.deepEqual(claims.conversations, [s.conversation_id]);
    assert.equal(claims.name, "Lena Gómez");
    assert.equal(claims.email, "lena@example.com");
    assert.equal(claims.site, "site-a");
    assert.ok(Number.isInteger(claims.exp), `exp must be whole seconds: ${claims.exp}`);
    assert.ok(
      claims.exp >= before + TTL_S - 1 && claims.exp <= after + TTL_S + 1,
      `exp ${claims.exp} must be now + ${TTL_S} s (now was ${before}..${after})`,
    );
    assert.ok(
      Math.abs(Date.parse(s.expires_at) / 1000 - claims.exp) < 1,
      `expires_at ${s.expires_at} must be the token's exp ${new Date(claims.exp * 1000).toISOString()}`,
    );
  });

  it("with no name the token says Visitor and has no email", async () => {
    const { claims } = await open(ctx.server);
    assert.equal(claims.name, "Visitor");
    assert.ok(!("email" in claims), `no email claim: ${JSON.stringify(claims)}`);
  });

  it("connects over socket.io-client as visitor:<visitor_id>", async () => {
    const s = await open(ctx.server, { name: "Sockie" });
    const v = await connect(ctx.server.url, { token: s.token });
    const hello = await once(v, "connected");
    assert.equal(hello.user_id, `visitor:${s.visitor_id}`);
  });
});

// ---- the conversation starts at the first message ------------------------------

describe("widget sessions: the conversation is made at the first message", () => {
  it("nothing exists after the session, the connect or the join; agents get conversation:new at the first message", async () => {
    const watcher = await agent();
    const s = await open(ctx.server, { name: "Ines", email: "ines@example.com" });
    const id = s.conversation_id;
    await assertAbsent(ctx.server, id, "after the session");
    refused(
      await ctx.server.http("GET", `/api/v1/conversations/${id}`, { token: s.token }),
      404,
      "not_found",
      "the visitor's own GET before its first message",
    );

    const v = await connect(ctx.server.url, { token: s.token });
    await once(v, "connected");
    const joined = await join(v, id);
    assert.equal(joined.offset, 0, `join ack: ${JSON.stringify(joined)}`);
    assert.deepEqual(joined.messages, [], `join ack: ${JSON.stringify(joined)}`);
    await assertAbsent(ctx.server, id, "after the visitor's connect and join");

    // A conversation started after all that reaches the watcher: one for the
    // visitor's, had it been announced, would have come first.
    const ref = await ctx.server.createConversation({ customer: { id: uid("cust"), name: "Reference" } });
    await once(watcher, "conversation:new", { filter: about(ref.id), what: "reference" });
    assert.deepEqual(watcher.log.all("conversation:new", about(id)), [], "no conversation:new before the first message");

    const first = await send(v, id, "Hola, I have a question");
    assertMessage(first, { conversation_id: id, offset: 1, sender: { id: `visitor:${s.visitor_id}`, role: "customer", name: "Ines" } });
    const news = await once(watcher, "conversation:new", { filter: about(id), what: "the visitor's first message" });
    const conv = assertConversation(news.conversation, { id, channel: "web", status: "open" });
    assert.equal(conv.customer.id, `visitor:${s.visitor_id}`);
    assert.equal(conv.customer.name, "Ines");
    assert.equal(conv.customer.email, "ines@example.com");
    assert.equal(watcher.log.all("conversation:new", about(id)).length, 1, "exactly one conversation:new");

    const now = await stored(ctx.server, id);
    assert.equal(now.channel, "web");
    assert.equal(now.status, "open");
    assert.equal(now.customer.id, `visitor:${s.visitor_id}`);
    assert.equal(now.customer.email, "ines@example.com");
    const list = await svcGet(ctx.server, "/api/v1/conversations?limit=1000");
    assert.ok(list.body.conversations.some((c) => c.id === id), "the inbox lists it after the first message");
    const own = await ctx.server.http("GET", `/api/v1/conversations/${id}`, { token: s.token });
    assert.equal(own.status, 200, `the visitor's own GET after its first message: ${own.text}`);
    assert.deepEqual((await ctx.server.history(id)).map((m) => m.id), [first.id]);
  });

  it("a first message over HTTP makes the conversation too", async () => {
    const watcher = await agent();
    const s = await open(ctx.server, { name: "Hugo" });
    await assertAbsent(ctx.server, s.conversation_id, "after the session");
    const res = await ctx.server.http("POST", `/api/v1/conversations/${s.conversation_id}/messages`, {
      token: s.token,
      json: { text: "over HTTP" },
    });
    assert.equal(res.status, 201, res.text);
    const news = await once(watcher, "conversation:new", { filter: about(s.conversation_id) });
    assertConversation(news.conversation, { channel: "web", status: "open" });
    assert.equal(news.conversation.customer.id, `visitor:${s.visitor_id}`);
    assert.equal((await stored(ctx.server, s.conversation_id)).customer.name, "Hugo");
  });

  it("a native WebSocket joins the conversation before it exists: offset 0, no messages", async () => {
    const s = await open(ctx.server);
    const ws = new WebSocket(`${ctx.server.url.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(s.token)}`);
    try {
      const ackFrame = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no ack of join_conversation on /ws within 3000 ms")), 3000);
        ws.on("message", (data) => {
          const f = JSON.parse(data.toString());
          if (f.type === "ack" && f.ref === "j1") {
            clearTimeout(timer);
            resolve(f);
          }
        });
      });
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      ws.send(JSON.stringify({ type: "join_conversation", ref: "j1", conversation_id: s.conversation_id }));
      const joined = await ackFrame;
      assert.equal(joined.ok, true, JSON.stringify(joined));
      assert.equal(joined.offset, 0);
      assert.deepEqual(joined.messages, []);
      await assertAbsent(ctx.server, s.conversation_id, "after a native join");
    } finally {
      ws.terminate();
    }
  });
});

// ---- returning visitors --------------------------------------------------------

describe("widget sessions: returning visitors", () => {
  it("the same visitor_id after the first message gets the same conversation and a fresh token; the old token still works", async () => {
    const s1 = await open(ctx.server, { name: "Rita" });
    const v1 = await connect(ctx.server.url, { token: s1.token });
    const first = await send(v1, s1.conversation_id, "first visit");
    v1.close();

    const s2 = await open(ctx.server, { name: "Rita", visitor_id: s1.visitor_id });
    assert.equal(s2.visitor_id, s1.visitor_id, "a visitor_id the server made is kept");
    assert.equal(s2.conversation_id, s1.conversation_id, "the open conversation comes back");
    assert.notEqual(s2.token, s1.token, "a fresh token");
    assert.equal(s2.claims.sub, `visitor:${s1.visitor_id}`);
    assert.deepEqual(s2.claims.conversations, [s1.conversation_id]);

    const v2 = await connect(ctx.server.url, { token: s2.token });
    const joined = await join(v2, s2.conversation_id);
    assert.deepEqual(joined.messages.map((m) => m.id), [first.id], "the new token reads the history");
    const again = await send(v2, s2.conversation_id, "second visit");
    assert.equal(again.offset, 2);

    const old = await connect(ctx.server.url, { token: s1.token });
    const oldJoin = await join(old, s1.conversation_id);
    assert.deepEqual(oldJoin.messages.map((m) => m.id), [first.id, again.id], "the old token keeps working until it expires");
    const read = await ctx.server.http("GET", `/api/v1/conversations/${s1.conversation_id}/messages`, { token: s1.token });
    assert.equal(read.status, 200, `the old token over HTTP: ${read.text}`);
  });

  it("a returning visitor with no message yet gets a new, still-empty conversation id", async () => {
    const s1 = await open(ctx.server);
    const s2 = await open(ctx.server, { visitor_id: s1.visitor_id });
    assert.equal(s2.visitor_id, s1.visitor_id);
    assert.notEqual(s2.conversation_id, s1.conversation_id);
    await assertAbsent(ctx.server, s1.conversation_id, "the first id");
    await assertAbsent(ctx.server, s2.conversation_id, "the second id");
  });

  it("after an agent closes the conversation (close_conversation over a socket), the next session starts a new one", async () => {
    const s1 = await open(ctx.server, { name: "Clara" });
    const v = await connect(ctx.server.url, { token: s1.token });
    await send(v, s1.conversation_id, "please help");
    const a = await agent();
    const closed = expectOk(await ack(a, "close_conversation", { conversation_id: s1.conversation_id }), "close");
    assert.equal(closed.conversation.status, "closed");

    const s2 = await open(ctx.server, { name: "Clara", visitor_id: s1.visitor_id });
    assert.equal(s2.visitor_id, s1.visitor_id);
    assert.notEqual(s2.conversation_id, s1.conversation_id, "a closed conversation is not handed out again");
    assert.deepEqual(s2.claims.conversations, [s2.conversation_id]);
    await assertAbsent(ctx.server, s2.conversation_id, "the new id before its first message");
    assert.equal((await stored(ctx.server, s1.conversation_id)).status, "closed");

    const v2 = await connect(ctx.server.url, { token: s2.token });
    await send(v2, s2.conversation_id, "another question");
    const now = await stored(ctx.server, s2.conversation_id);
    assert.equal(now.status, "open");
    assert.equal(now.customer.id, `visitor:${s1.visitor_id}`);
  });

  it("after a close over HTTP (POST .../close with a service token), the next session starts a new one", async () => {
    const s1 = await open(ctx.server);
    const v = await connect(ctx.server.url, { token: s1.token });
    await send(v, s1.conversation_id, "hi");
    const res = await ctx.server.http("POST", `/api/v1/conversations/${s1.conversation_id}/close`, {
      token: ctx.server.serviceToken(),
      json: {},
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.status, "closed");
    const s2 = await open(ctx.server, { visitor_id: s1.visitor_id });
    assert.equal(s2.visitor_id, s1.visitor_id);
    assert.notEqual(s2.conversation_id, s1.conversation_id);
  });

  it("an unknown or malformed visitor_id starts a new visitor", async () => {
    const real = await open(ctx.server, { name: "Real" });
    const v = await connect(ctx.server.url, { token: real.token });
    await send(v, real.conversation_id, "mine");

    const madeUp = randomBytes(32).toString("base64url");
    assert.equal(madeUp.length, 43);
    const i = 10;
    const tampered = real.visitor_id.slice(0, i) + (real.visitor_id[i] === "A" ? "B" : "A") + real.visitor_id.slice(i + 1);
    for (const [what, visitor_id] of [
      ["abc", "abc"],
      ["a made-up 43-char id", madeUp],
      ["a real id with one character changed", tampered],
      ["an empty string", ""],
    ]) {
      const s = await open(ctx.server, { visitor_id }, { what });
      assert.notEqual(s.visitor_id, visitor_id, `${what}: a new visitor_id comes back`);
      assert.notEqual(s.visitor_id, real.visitor_id, `${what}: not the real visitor`);
      assert.notEqual(s.conversation_id, real.conversation_id, `${what}: not the real visitor's conversation`);
      assert.equal(s.claims.sub, `visitor:${s.visitor_id}`, what);
    }
  });
});

// ---- signed-in users -----------------------------------------------------------

describe("widget sessions: signed-in users", () => {
  it("user_id with its hash is user:<id>, the same conversation on two devices, each seeing the other's messages", async () => {
    const userId = uid("user");
    const user_hash = hashOf(userId);
    const phone = await open(ctx.server, { user_id: userId, user_hash, name: "Uma" });
    assert.equal(phone.claims.sub, `user:${userId}`);
    assert.equal(phone.claims.role, "customer");
    assert.deepEqual(phone.claims.conversations, [phone.conversation_id]);
    const onPhone = await connect(ctx.server.url, { token: phone.token });
    assert.equal((await once(onPhone, "connected")).user_id, `user:${userId}`);
    await join(onPhone, phone.conversation_id);
    const fromPhone = await send(onPhone, phone.conversation_id, "from my phone");
    assert.equal((await stored(ctx.server, phone.conversation_id)).customer.id, `user:${userId}`);

    // The laptop was an anonymous visitor before signing in.
    const anonymous = await open(ctx.server);
    const laptop = await open(ctx.server, { user_id: userId, user_hash, name: "Uma", visitor_id: anonymous.visitor_id });
    assert.equal(laptop.claims.sub, `user:${userId}`);
    assert.equal(laptop.conversation_id, phone.conversation_id, "the user's conversation on another device");
    const tablet = await open(ctx.server, { user_id: userId, user_hash });
    assert.equal(tablet.conversation_id, phone.conversation_id, "and on a third with no visitor_id");

    const onLaptop = await connect(ctx.server.url, { token: laptop.token });
    const joined = await join(onLaptop, laptop.conversation_id);
    assert.deepEqual(joined.messages.map((m) => m.id), [fromPhone.id]);
    const fromLaptop = await send(onLaptop, laptop.conversation_id, "from my laptop");
    assert.equal((await once(onPhone, "message:new", { filter: (m) => m.id === fromLaptop.id })).text, "from my laptop");
    const reply = await send(onPhone, phone.conversation_id, "phone again");
    assert.equal((await once(onLaptop, "message:new", { filter: (m) => m.id === reply.id })).text, "phone again");
  });

  it("a closed conversation of a user is not handed out again", async () => {
    const userId = uid("user");
    const first = await open(ctx.server, { user_id: userId, user_hash: hashOf(userId) });
    const s = await connect(ctx.server.url, { token: first.token });
    await send(s, first.conversation_id, "question");
    const res = await ctx.server.http("POST", `/api/v1/conversations/${first.conversation_id}/close`, {
      token: ctx.server.agentToken(uid("agent")),
      json: {},
    });
    assert.equal(res.status, 200, res.text);
    const next = await open(ctx.server, { user_id: userId, user_hash: hashOf(userId) });
    assert.notEqual(next.conversation_id, first.conversation_id);
  });

  it("a wrong or missing user_hash is 401 invalid_user_hash; user_hash without user_id is 400", async () => {
    const userId = uid("user");
    refused(
      await postSession(ctx.server, { site_key: "site-a", user_id: userId, user_hash: hashOf(userId, "another-secret") }, { origin: SITE }),
      401,
      "invalid_user_hash",
      "hash with another secret",
    );
    refused(
      await postSession(ctx.server, { site_key: "site-a", user_id: userId, user_hash: hashOf(`${userId}x`) }, { origin: SITE }),
      401,
      "invalid_user_hash",
      "another user's hash",
    );
    refused(await postSession(ctx.server, { site_key: "site-a", user_id: userId }, { origin: SITE }), 401, "invalid_user_hash", "no hash");
    refused(
      await postSession(ctx.server, { site_key: "site-a", user_hash: hashOf(userId) }, { origin: SITE }),
      400,
      "bad_request",
      "user_hash without user_id",
    );
  });
});

// ---- isolation -----------------------------------------------------------------

describe("widget sessions: a visitor reaches only its own conversation", () => {
  it("visitor A cannot join, send into, read or create conversations beyond its own", async () => {
    const a = await open(ctx.server, { name: "Alice" });
    const b = await open(ctx.server, { name: "Bob" });
    const onA = await connect(ctx.server.url, { token: a.token });
    expectAckError(await ack(onA, "join_conversation", { conversation_id: b.conversation_id }), "forbidden", "join B's before it exists");

    const onB = await connect(ctx.server.url, { token: b.token });
    const fromB = await send(onB, b.conversation_id, "Bob's secret");
    expectAckError(await ack(onA, "join_conversation", { conversation_id: b.conversation_id }), "forbidden", "join B's");
    expectAckError(
      await ack(onA, "send_message", { conversation_id: b.conversation_id, text: "Alice was here" }),
      "forbidden",
      "send into B's",
    );
    refused(
      await ctx.server.http("POST", `/api/v1/conversations/${b.conversation_id}/messages`, { token: a.token, json: { text: "Alice via HTTP" } }),
      403,
      "forbidden",
      "POST into B's",
    );
    assert.deepEqual((await ctx.server.history(b.conversation_id)).map((m) => m.id), [fromB.id], "nothing of A's stored in B's");

    refused(await ctx.server.http("GET", `/api/v1/conversations/${b.conversation_id}`, { token: a.token }), 403, "forbidden", "GET B's");
    refused(
      await ctx.server.http("GET", `/api/v1/conversations/${b.conversation_id}/messages`, { token: a.token }),
      403,
      "forbidden",
      "GET B's messages",
    );
    refused(
      await ctx.server.http("POST", "/api/v1/conversations", {
        token: a.token,
        json: { channel: "web", customer: { id: `visitor:${a.visitor_id}`, name: "Alice" } },
      }),
      403,
      "forbidden",
      "POST /api/v1/conversations",
    );
    refused(
      await ctx.server.http("POST", "/api/v1/conversations", {
        token: a.token,
        json: { id: a.conversation_id, channel: "web", customer: { id: `visitor:${a.visitor_id}`, name: "Alice" } },
      }),
      403,
      "forbidden",
      "POST /api/v1/conversations with its own id",
    );
  });

  it("B's messages, the agent's replies included, never reach A's socket", async () => {
    const a = await open(ctx.server, { name: "Alice" });
    const b = await open(ctx.server, { name: "Bob" });
    const onA = await connect(ctx.server.url, { token: a.token });
    await join(onA, a.conversation_id);
    await send(onA, a.conversation_id, "Alice's question");
    const onB = await connect(ctx.server.url, { token: b.token });
    await join(onB, b.conversation_id);
    const staff = await agent();

    const fromB = await send(onB, b.conversation_id, "Bob's question");
    const staffJoin = await join(staff, b.conversation_id);
    assert.deepEqual(staffJoin.messages.map((m) => m.id), [fromB.id], "the agent sees B's question");
    const toB = await send(staff, b.conversation_id, "Bob, here is your answer");
    const fromB2 = await send(onB, b.conversation_id, "thanks");
    await once(onB, "message:new", { filter: (m) => m.id === toB.id, what: "B gets the agent's reply" });
    await once(staff, "message:new", { filter: (m) => m.id === fromB2.id, what: "the agent gets B's thanks" });

    // A reply to A, sent after all of B's, arrives: B's would have come first.
    await join(staff, a.conversation_id);
    const toA = await send(staff, a.conversation_id, "Alice, here is yours");
    await once(onA, "message:new", { filter: (m) => m.id === toA.id, what: "A gets its own reply" });
    await expectNone(onA, "message:new", { filter: (m) => m?.conversation_id === b.conversation_id, what: "B's messages on A's socket" });
    const leaked = onA.log.entries.filter((e) => JSON.stringify(e.args).includes(b.conversation_id));
    assert.deepEqual(leaked.map((e) => e.event), [], "no event of any kind about B's conversation on A's socket");
  });
});

// ---- bad input -----------------------------------------------------------------

describe("widget sessions: bad input is refused and loses nothing", () => {
  it("name over 100 chars, email without @ or over 254 chars, wrong types: 400 bad_request; the limits themselves are fine", async () => {
    const bad = [
      ["a 101-char name", { name: "x".repeat(101) }],
      ["email not-an-email", { email: "not-an-email" }],
      ["a 255-char email", { email: `${"e".repeat(243)}@example.com` }],
      ["a numeric name", { name: 42 }],
      ["a visitor_id that is an object", { visitor_id: { id: "x" } }],
    ];
    assert.equal(bad[2][1].email.length, 255);
    for (const [what, body] of bad) {
      refused(await postSession(ctx.server, { site_key: "site-a", ...body }, { origin: SITE }), 400, "bad_request", what);
    }
    const hundred = await open(ctx.server, { name: "n".repeat(100) }, { what: "a 100-char name" });
    assert.equal(hundred.claims.name.length, 100);
    const accented = await open(ctx.server, { name: "ü".repeat(100) }, { what: "100 two-byte chars" });
    assert.equal(accented.claims.name, "ü".repeat(100));
    const email = `${"e".repeat(242)}@example.com`;
    assert.equal(email.length, 254);
    assert.equal((await open(ctx.server, { email }, { what: "a 254-char email" })).claims.email, email);
  });

  it("after every kind of refusal the server answers /healthz and opens sessions", async () => {
    const refusals = [
      postSession(ctx.server, "{", { origin: SITE }),
      postSession(ctx.server, { site_key: "nope" }, { origin: SITE }),
      postSession(ctx.server, { site_key: "site-a" }, { origin: ELSEWHERE }),
      postSession(ctx.server, { site_key: "site-a", name: "y".repeat(5000) }, { origin: SITE }),
      postSession(ctx.server, { site_key: "site-a", user_id: "u", user_hash: "00" }, { origin: SITE }),
      postSession(ctx.server, "\u0000\u0001binary", { origin: SITE }),
    ];
    const statuses = (await Promise.all(refusals)).map((r) => r.status);
    assert.deepEqual(statuses, [400, 401, 403, 400, 401, 400]);
    const health = await ctx.server.http("GET", "/healthz");
    assert.equal(health.status, 200);
    const s = await open(ctx.server, { name: "After" });
    const v = await connect(ctx.server.url, { token: s.token });
    await send(v, s.conversation_id, "still here");
    assert.equal((await stored(ctx.server, s.conversation_id)).customer.name, "After");
  });
});

// ---- a short token life, a `*` key, no identity secret -------------------------

describe("widget sessions on a server with 2 s tokens, a `*` key and no identity secret", () => {
  let short;
  before(async () => {
    short = await startServer({
      env: {
        SWITCHBOARD_WIDGET_SITES: `site-a=${SITE},site-any=*`,
        SWITCHBOARD_WIDGET_TOKEN_TTL_S: "2",
        SWITCHBOARD_WIDGET_SESSION_RATE: "1000",
      },
    });
  });
  after(async () => {
    closeAll();
    await short?.stop();
  });

  it("a `*` key allows any origin, and a request with none", async () => {
    for (const origin of [ELSEWHERE, SITE, "https://whatever.example:9999", undefined]) {
      accepted(await postSession(short, { site_key: "site-any" }, { origin }), `site-any from ${origin ?? "no origin"}`);
    }
    refused(await postSession(short, { site_key: "site-a" }, { origin: ELSEWHERE }), 403, "origin_not_allowed", "site-a beside it is still strict");
  });

  it("an expired token is refused; a session with the same visitor_id renews it for the same conversation", async () => {
    const s1 = await open(short, { name: "Renata" });
    const left = s1.claims.exp - nowSecs();
    assert.ok(left >= 1 && left <= 3, `exp ${s1.claims.exp} must be about 2 s ahead, is ${left} s`);
    const kept = await connect(short.url, { token: s1.token });
    await join(kept, s1.conversation_id);
    const first = await send(kept, s1.conversation_id, "before expiry");

    await eventually(
      () => connectOutcome(short, s1.token),
      (outcome) => outcome === "connect_error: token expired",
      { patience: 10_000, what: "the first token's refusal" },
    );
    refused(
      await short.http("GET", `/api/v1/conversations/${s1.conversation_id}`, { token: s1.token }),
      401,
      "token_expired",
      "the expired token over HTTP",
    );

    const s2 = await open(short, { name: "Renata", visitor_id: s1.visitor_id });
    assert.equal(s2.conversation_id, s1.conversation_id, "renewal keeps the conversation");
    assert.equal(s2.visitor_id, s1.visitor_id);
    const renewed = await connect(short.url, { token: s2.token });
    const joined = await join(renewed, s2.conversation_id);
    assert.deepEqual(joined.messages.map((m) => m.id), [first.id]);
    const second = await send(renewed, s2.conversation_id, "after renewal");
    // The socket opened with the old token is not closed by its expiry.
    await once(kept, "message:new", { filter: (m) => m.id === second.id, what: "the socket opened before expiry" });
    assert.equal(kept.connected, true);
  });

  it("with no identity secret configured, any user_id is 401 invalid_user_hash", async () => {
    const userId = uid("user");
    refused(
      await postSession(short, { site_key: "site-a", user_id: userId, user_hash: hashOf(userId) }, { origin: SITE }),
      401,
      "invalid_user_hash",
      "user_id with a hash, no secret",
    );
    refused(await postSession(short, { site_key: "site-a", user_id: userId }, { origin: SITE }), 401, "invalid_user_hash", "user_id, no hash, no secret");
    accepted(await postSession(short, { site_key: "site-a" }, { origin: SITE }), "an anonymous visitor still gets in");
  });
});

// ---- the rate ------------------------------------------------------------------

describe("widget sessions: the rate behind a trusted proxy (3 a minute)", () => {
  let proxied;
  before(async () => {
    proxied = await startServer({
      env: {
        SWITCHBOARD_WIDGET_SITES: `site-a=${SITE}`,
        SWITCHBOARD_WIDGET_SESSION_RATE: "3",
        SWITCHBOARD_TRUSTED_PROXIES: "127.0.0.1",
      },
    });
  });
  after(async () => {
    closeAll();
    await proxied?.stop();
  });

  /** Each test here uses client addresses of its own, so none shares a bucket. */
  const attempt = (xff, key = "site-a") => postSession(proxied, { site_key: key }, { origin: SITE, xff });

  function limited(res, what) {
    refused(res, 429, "rate_limited", what);
    const retry = res.headers["retry-after"];
    assert.match(String(retry), /^[1-9][0-9]*$/, `${what}: Retry-After must be a positive whole number of seconds, got ${retry}`);
    assert.ok(Number(retry) <= 60, `${what}: Retry-After ${retry} is more than a minute at 3 a minute`);
  }

  it("the 4th request of a burst from one client is 429 with Retry-After; refused ones count; other clients are not held up", async () => {
    refused(await attempt("203.0.113.7", "no-such-key"), 401, "invalid_site_key", "1st: an unknown key");
    accepted(await attempt("203.0.113.7"), "2nd");
    accepted(await attempt("203.0.113.7"), "3rd");
    limited(await attempt("203.0.113.7"), "4th");
    limited(await attempt("203.0.113.7", "no-such-key"), "5th, an unknown key: the rate is judged first");
    accepted(await attempt("203.0.113.8"), "another client address");
    limited(await attempt("198.51.100.1, 203.0.113.7"), "a chain whose right-most address is the limited client");
    accepted(await attempt("203.0.113.7, 198.51.100.2"), "a chain whose right-most address is a fresh client");
  });

  it("trusted addresses at the right of the chain are skipped", async () => {
    for (const n of [1, 2, 3]) accepted(await attempt("203.0.113.30, 127.0.0.1"), `request ${n} through two proxies`);
    limited(await attempt("203.0.113.30"), "the same client through one proxy");
  });

  it("IPv6 clients are counted per /64", async () => {
    for (const n of [1, 2, 3]) accepted(await attempt(`2001:db8:1:2::${n}`), `request ${n} from 2001:db8:1:2::/64`);
    limited(await attempt("2001:db8:1:2:ffff:ffff:ffff:ffff"), "another address of the same /64");
    accepted(await attempt("2001:db8:1:3::1"), "the next /64");
  });
});

describe("widget sessions: the rate with no trusted proxy (3 a minute)", () => {
  let direct;
  before(async () => {
    direct = await startServer({
      env: { SWITCHBOARD_WIDGET_SITES: `site-a=${SITE}`, SWITCHBOARD_WIDGET_SESSION_RATE: "3" },
    });
  });
  after(async () => {
    closeAll();
    await direct?.stop();
  });

  it("a new X-Forwarded-For on each request does not escape the limit", async () => {
    for (const n of [1, 2, 3]) {
      accepted(await postSession(direct, { site_key: "site-a" }, { origin: SITE, xff: `203.0.113.${40 + n}` }), `request ${n}`);
    }
    const fourth = await postSession(direct, { site_key: "site-a" }, { origin: SITE, xff: "203.0.113.44" });
    refused(fourth, 429, "rate_limited", "4th, with yet another X-Forwarded-For");
    assert.match(String(fourth.headers["retry-after"]), /^[1-9][0-9]*$/, "Retry-After");
    const health = await direct.http("GET", "/healthz");
    assert.equal(health.status, 200, "the limit holds sessions, not the server");
  });
});

describe("widget sessions: what `switchboard dev` gives its own origin", () => {
  let server;
  before(async () => {
    server = await startServer({ env: { SWITCHBOARD_WIDGET_SESSION_RATE: "1000" } });
  });
  after(async () => {
    await server?.stop();
  });

  it("with no site configured it prints site key demo and the demo URL, and the key works from its own origin only", async () => {
    const demoUrl = `${server.url}/demo/?site_key=demo`;
    await eventually(() => server.logs(), (logs) => logs.includes(demoUrl), { what: `the demo URL ${demoUrl} in dev's output` });
    assert.match(server.logs(), /Widget site key for this origin: demo\n/);
    const port = new URL(server.url).port;
    for (const origin of [server.url, `http://localhost:${port}`]) {
      await open(server, { site_key: "demo" }, { origin, what: `site key demo from ${origin}` });
    }
    refused(await postSession(server, { site_key: "demo" }, { origin: ELSEWHERE }), 403, "origin_not_allowed");
    const page = await fetch(demoUrl);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /<script src="\/widget\.js" data-site-key="demo" data-prechat="name,email"/);
    assert.doesNotMatch(html, /<script src="\/widget\.js"[^>]*data-token=/, "the site-key demo's widget carries no token");
    assert.doesNotMatch(html, /id="no-token"(?! hidden)/, "the missing-token notice stays hidden");
  });

  it("prints the agent inbox's URL, signed in as the demo agent, ready to open", async () => {
    const prefix = `${server.url}/demo/agent?token=`;
    const logs = await eventually(() => server.logs(), (l) => l.includes(prefix), { what: "the agent inbox URL in dev's output" });
    const inbox = logs.slice(logs.indexOf(prefix)).split(/\s/)[0];
    const page = await fetch(inbox);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type"), /text\/html/);
    const token = new URL(inbox).searchParams.get("token");
    const me = await server.http("GET", "/api/v1/conversations", { token });
    assert.equal(me.status, 200, "the printed token is an agent's: it may list the inbox");
  });
});
