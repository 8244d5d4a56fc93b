// Hostile input, on every transport: forged and broken tokens, one
// customer reaching for another's conversation, ids built to collide on the bus,
// oversized and malformed frames and bodies, slowloris connections, bursts over the
// rate limits, and the demo pages' CSP.
//
// Every check asserts an explicit refusal (the exact code or message), a healthy
// process (GET /healthz 200), and, after each group, an unrelated "canary"
// conversation that still sends and receives gap-free (`assertCanary`).

import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { connect as tcpConnect } from "node:net";
import { join as joinPath } from "node:path";
import { after, before, describe, it } from "node:test";
import protobuf from "protobufjs";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { RawWebSocketClient } from "../lib/raw.mjs";
import { REPO_ROOT, nowSecs, startServer } from "../lib/server.mjs";
import { useServer } from "../lib/setup.mjs";
import {
  QUIET_WINDOW_MS,
  ack,
  connect,
  connectError,
  expectAckError,
  expectNone,
  join,
  once,
  send,
} from "../lib/sio.mjs";

const MAX_PAYLOAD = 65536;
const MAX_TEXT_LEN = 4096; // the default
const PUBLISH_RATE = 5;
const TYPING_RATE = 5;
const WA_APP_SECRET = "hostile-wa-app-secret";
const HEADER_TIMEOUT_MS = 1000;
/** Every wait on the server is bounded by this unless a test says otherwise. */
const WAIT_MS = 5000;

/** The file's main server (set up by `useServer` inside the top-level suite below). */
let ctx;

// ---- health and the canary ----------------------------------------------------

async function assertHealthy(server = ctx.server, what = "after the hostile input") {
  const res = await server.http("GET", "/healthz");
  assert.equal(res.status, 200, `GET /healthz ${what}: ${res.status} ${res.text}`);
}

/**
 * A socket.io-client socket that lives as long as its group or file, queueing every
 * `message:new`. Not made through lib/sio.mjs, which closes its sockets after every test.
 */
async function openLongLived(server, token, name) {
  const socket = io(server.url, { auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true });
  const side = { name, socket, inbox: [], waiters: [] };
  socket.on("message:new", (m) => {
    const w = side.waiters.shift();
    if (w) w(m);
    else side.inbox.push(m);
  });
  /** The next message:new, queued or coming; fails after WAIT_MS. */
  side.next = (what) => {
    if (side.inbox.length) return Promise.resolve(side.inbox.shift());
    return new Promise((resolve, reject) => {
      const waiter = (m) => (clearTimeout(timer), resolve(m));
      const timer = setTimeout(() => {
        side.waiters.splice(side.waiters.indexOf(waiter), 1);
        reject(new Error(`${name}: no message:new within ${WAIT_MS} ms (${what})`));
      }, WAIT_MS);
      side.waiters.push(waiter);
    });
  };
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not connect within ${WAIT_MS} ms`)), WAIT_MS);
      socket.once("connect", () => (clearTimeout(timer), resolve()));
      socket.once("connect_error", (err) => (clearTimeout(timer), reject(new Error(`${name}: ${err.message}`))));
    });
  } catch (err) {
    socket.close();
    throw err;
  }
  return side;
}

/** A customer socket and an agent socket in one new conversation, made once per server. */
class Canary {
  static async create(server) {
    const canary = new Canary(`canary-${randomUUID()}`);
    const sub = `canary-customer-${randomUUID().slice(0, 8)}`;
    const customerToken = server.customerToken(sub, { conversations: [canary.id] });
    try {
      canary.customer = await openLongLived(server, customerToken, "canary customer");
      canary.agent = await openLongLived(server, server.agentToken(), "canary agent");
      // The customer's join creates the conversation; then the agent joins it.
      for (const side of [canary.customer, canary.agent]) {
        const reply = await side.socket.timeout(WAIT_MS).emitWithAck("join_conversation", { conversation_id: canary.id });
        assert.equal(reply?.ok, true, `${side.name} join: ${JSON.stringify(reply)}`);
        assert.equal(reply.offset, 0, "the canary conversation is new");
      }
    } catch (err) {
      canary.close();
      throw err;
    }
    return canary;
  }

  constructor(id) {
    this.id = id;
    this.offset = 0;
  }

  /** Each side sends one message; both sides get both, with offsets exactly previous+1. */
  async check(what) {
    for (const sender of [this.customer, this.agent]) {
      assert.ok(sender.socket.connected, `${sender.name} was disconnected (${what})`);
      const expected = this.offset + 1;
      const reply = await sender.socket
        .timeout(WAIT_MS)
        .emitWithAck("send_message", { conversation_id: this.id, text: `canary ${expected} (${what})` });
      assert.equal(reply?.ok, true, `${sender.name} send (${what}): ${JSON.stringify(reply)}`);
      assert.equal(reply.message.offset, expected, `${sender.name} send (${what}): stored offset`);
      for (const side of [this.customer, this.agent]) {
        const got = await side.next(what);
        assert.equal(got.conversation_id, this.id, `${side.name} (${what}): a message:new of another conversation`);
        assert.equal(got.offset, expected, `${side.name} (${what}): offset ${got.offset} after ${this.offset}`);
        assert.equal(got.id, reply.message.id, `${side.name} (${what}): not the message just sent`);
      }
      this.offset = expected;
    }
    for (const side of [this.customer, this.agent]) {
      assert.deepEqual(side.inbox.map((m) => m.offset), [], `${side.name} (${what}): unexpected extra message:new`);
    }
  }

  close() {
    this.customer?.socket.close();
    this.agent?.socket.close();
  }
}

/** The main server's canary, made once before the first group. */
let canary;

/** The canary conversation still works, gap-free, and the process is healthy. */
async function assertCanary(what) {
  await assertHealthy(ctx.server, what);
  await canary.check(what);
}

// ---- small clients ------------------------------------------------------------

const wsUrl = (server, path) => `${server.url.replace(/^http/, "ws")}${path}`;

/**
 * A native /ws connection with JSON frames (or raw binary ones with `protocols`):
 * records frames, awaits them by predicate, sends operations with a ref.
 */
async function openNative(server, token, { protocols } = {}) {
  const ws = new WebSocket(wsUrl(server, `/ws?token=${encodeURIComponent(token)}`), protocols);
  const client = {
    ws,
    frames: [],
    waiters: [],
    closeInfo: null,
    nextRef: 0,
    take(match, what, timeout = WAIT_MS) {
      const at = client.frames.findIndex(match);
      if (at >= 0) return Promise.resolve(client.frames.splice(at, 1)[0]);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          client.waiters.splice(client.waiters.indexOf(waiter), 1);
          reject(new Error(`native: no ${what} within ${timeout} ms; close: ${JSON.stringify(client.closeInfo)}`));
        }, timeout);
        const waiter = { match, resolve: (f) => (clearTimeout(timer), resolve(f)) };
        client.waiters.push(waiter);
      });
    },
    event(type, what = type) {
      return client.take((f) => f.type === type, what);
    },
    call(type, payload = {}) {
      const ref = ++client.nextRef;
      ws.send(JSON.stringify({ type, ref, ...payload }));
      return client.take((f) => f.type === "ack" && f.ref === ref, `ack of ${type}`);
    },
    closed(timeout = WAIT_MS, what = "close") {
      if (client.closeInfo) return Promise.resolve(client.closeInfo);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`native: not closed within ${timeout} ms (${what})`)), timeout);
        ws.once("close", () => (clearTimeout(timer), resolve(client.closeInfo)));
      });
    },
    close: () => ws.terminate(),
  };
  ws.on("message", (data, isBinary) => {
    const frame = isBinary ? { binary: data } : JSON.parse(data.toString());
    const w = client.waiters.find((w) => w.match(frame));
    if (w) {
      client.waiters.splice(client.waiters.indexOf(w), 1);
      w.resolve(frame);
    } else client.frames.push(frame);
  });
  ws.on("close", (code, reason) => {
    client.closeInfo = { code, reason: reason.toString() };
  });
  ws.on("error", () => {});
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("unexpected-response", (_, res) => reject(new Error(`native upgrade refused: HTTP ${res.statusCode}`)));
    ws.once("error", reject);
  });
  return client;
}

/**
 * A native upgrade that must be refused before the upgrade: resolves with
 * `{status, body}` of the HTTP answer, or `{upgraded: true}` when it was accepted.
 */
function nativeRefusal(server, token) {
  const ws = new WebSocket(wsUrl(server, `/ws?token=${encodeURIComponent(token)}`));
  ws.on("error", () => {});
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`native /ws: neither refused nor upgraded within ${WAIT_MS} ms`));
    }, WAIT_MS);
    ws.once("open", () => {
      clearTimeout(timer);
      ws.terminate();
      resolve({ upgraded: true });
    });
    ws.once("unexpected-response", (_, res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => {
        clearTimeout(timer);
        ws.terminate();
        let body = null;
        try {
          body = JSON.parse(text);
        } catch {
          body = { unparsed: text };
        }
        resolve({ status: res.statusCode, body });
      });
    });
  });
}

/** Assert an HTTP answer is `status` with `{error:{code, message}}`. */
function assertHttpError(res, status, code, what) {
  assert.equal(res.status, status, `${what}: expected HTTP ${status}, got ${res.status}: ${res.text.slice(0, 300)}`);
  assert.ok(
    res.body?.error,
    `${what}: expected a JSON body {error:{code,message}}, got ${JSON.stringify(res.text.slice(0, 300))}`,
  );
  assert.equal(res.body.error.code, code, `${what}: error code`);
  assert.equal(typeof res.body.error.message, "string", `${what}: error.message must be a string`);
  assert.ok(res.body.error.message.length > 0, `${what}: error.message must not be empty`);
}

/** An id as a readable literal: outside printable ASCII as \uXXXX (U+2028 would break a line). */
const show = (id) =>
  `"${[...(id.length > 40 ? `${id.slice(0, 12)}...(${id.length} chars)` : id)]
    .map((c) => (c >= " " && c <= "~" && c !== '"' ? c : `\\u${c.codePointAt(0).toString(16).padStart(4, "0")}`))
    .join("")}"`;

// One top-level suite, so the server and the canary exist before every group and
// outlive them all.
describe("hostile input", () => {
  ctx = useServer({
    SWITCHBOARD_MAX_PAYLOAD: String(MAX_PAYLOAD),
    SWITCHBOARD_PUBLISH_RATE: String(PUBLISH_RATE),
    SWITCHBOARD_TYPING_RATE: String(TYPING_RATE),
    SWITCHBOARD_WA_APP_SECRET: WA_APP_SECRET,
  });
  before(async () => {
    canary = await Canary.create(ctx.server);
  });
  after(() => canary?.close());

  // ---- 1. JWT tricks ---------------------------------------------------------------

  describe("1. JWT tricks are refused the same way on Socket.IO, native /ws and HTTP", () => {
    const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const hmac = (alg, key) => (input) => createHmac(alg, key).update(input).digest("base64url");
    const forge = (header, claims, sign) => {
      const unsigned = `${b64(header)}.${b64(claims)}`;
      return `${unsigned}.${sign(unsigned)}`;
    };

    const REQUIRED = { message: "token required", code: "token_required" };
    const INVALID = { message: "invalid token", code: "invalid_token" };
    const EXPIRED = { message: "token expired", code: "token_expired" };
    const NOT_YET = { message: "token not yet valid", code: "token_not_yet_valid" };

    /** [name, token, expected refusal]; staff role so that an accepted token would pass every transport. */
    function cases() {
      const secret = ctx.server.secret;
      const claims = { sub: "jwt-eve", role: "agent", name: "Eve", exp: nowSecs() + 600 };
      const hs256 = (c) => forge({ alg: "HS256", typ: "JWT" }, c, hmac("sha256", secret));
      const without = (key) => Object.fromEntries(Object.entries(claims).filter(([k]) => k !== key));
      return [
        ["alg none, empty signature", forge({ alg: "none", typ: "JWT" }, claims, () => ""), INVALID],
        ["alg HS512 signed with the secret", forge({ alg: "HS512", typ: "JWT" }, claims, hmac("sha512", secret)), INVALID],
        [
          "alg RS256 signed with the HS256 secret",
          forge({ alg: "RS256", typ: "JWT" }, claims, hmac("sha256", secret)),
          INVALID,
        ],
        ["bad signature", forge({ alg: "HS256", typ: "JWT" }, claims, hmac("sha256", `${secret}-not`)), INVALID],
        ["expired exp", hs256({ ...claims, exp: nowSecs() - 120 }), EXPIRED],
        ["nbf in the future", hs256({ ...claims, nbf: nowSecs() + 3600 }), NOT_YET],
        ["missing sub", hs256(without("sub")), INVALID],
        ["missing exp", hs256(without("exp")), INVALID],
        ["unknown role admin", hs256({ ...claims, role: "admin" }), INVALID],
        ["garbage", "garbage", INVALID],
        ["empty", "", REQUIRED],
      ];
    }

    it("Socket.IO: connect_error with the exact message", async () => {
      const got = {};
      const want = {};
      for (const [name, token, expected] of cases()) {
        want[name] = expected.message;
        try {
          got[name] = (await connectError(ctx.server.url, { token })).message;
        } catch (err) {
          got[name] = `not refused: ${err.message}`;
        }
      }
      assert.deepEqual(got, want);
      await assertHealthy();
    });

    it("native /ws?token=: HTTP 401 before the upgrade, JSON {error:{code,message}}", async () => {
      const got = {};
      const want = {};
      for (const [name, token, expected] of cases()) {
        want[name] = { status: 401, ...expected };
        const res = await nativeRefusal(ctx.server, token);
        got[name] = res.upgraded
          ? "upgraded"
          : { status: res.status, message: res.body?.error?.message, code: res.body?.error?.code };
      }
      assert.deepEqual(got, want);
      await assertHealthy();
    });

    it("HTTP GET /api/v1/conversations: 401 JSON {error:{code,message}}", async () => {
      const got = {};
      const want = {};
      for (const [name, token, expected] of cases()) {
        want[name] = { status: 401, ...expected };
        // The empty token is sent as an empty ?token=, the others as a bearer token.
        const res =
          token === ""
            ? await ctx.server.http("GET", "/api/v1/conversations?token=")
            : await ctx.server.http("GET", "/api/v1/conversations", { token });
        got[name] = { status: res.status, message: res.body?.error?.message, code: res.body?.error?.code };
      }
      assert.deepEqual(got, want);
      await assertHealthy();
    });

    it("the canary is unaffected", async () => {
      await assertCanary("after JWT tricks");
    });
  });

  // ---- 2. authorization across customers ----------------------------------------

  describe("2. one customer cannot reach another customer's conversation, even when its token lists it", () => {
    const C = `shared-${randomUUID()}`;
    const subX = `cust-x-${randomUUID().slice(0, 8)}`;
    const subY = `cust-y-${randomUUID().slice(0, 8)}`;
    // Made in `before` and kept for the group, so they are not closed between its tests.
    let x;
    let y;
    let firstFromX;
    const tokenX = () => ctx.server.customerToken(subX, { conversations: [C] });
    const tokenY = () => ctx.server.customerToken(subY, { conversations: [C] });

    before(async () => {
      x = await openLongLived(ctx.server, tokenX(), "customer X");
      y = await openLongLived(ctx.server, tokenY(), "customer Y");
      const joined = await x.socket.timeout(WAIT_MS).emitWithAck("join_conversation", { conversation_id: C });
      assert.equal(joined?.ok, true, `X's join creates C: ${JSON.stringify(joined)}`);
      const sent = await x.socket.timeout(WAIT_MS).emitWithAck("send_message", { conversation_id: C, text: "X's secret" });
      assert.equal(sent?.ok, true, `X sends: ${JSON.stringify(sent)}`);
      firstFromX = sent.message;
      assert.equal((await x.next("X's first message")).id, firstFromX.id, "X receives its own message");
    });
    after(() => {
      x?.socket.close();
      y?.socket.close();
    });

    it("Socket.IO join_conversation by Y: forbidden", async () => {
      const reply = await y.socket.timeout(WAIT_MS).emitWithAck("join_conversation", { conversation_id: C });
      expectAckError(reply, "forbidden", "Y joins X's conversation");
      assert.equal(reply.messages, undefined, "a refused join carries no history");
      await assertHealthy();
    });

    it("Socket.IO send_message by Y into C: forbidden, nothing stored", async () => {
      const reply = await y.socket.timeout(WAIT_MS).emitWithAck("send_message", { conversation_id: C, text: "Y was here" });
      expectAckError(reply, "forbidden", "Y sends into X's conversation");
      const history = await ctx.server.history(C);
      assert.deepEqual(history.filter((m) => m.sender.id === subY), [], "nothing from Y is stored in C");
      await assertHealthy();
    });

    it("HTTP GET /api/v1/conversations/C/messages with Y's token: 403 forbidden", async () => {
      const res = await ctx.server.http("GET", `/api/v1/conversations/${encodeURIComponent(C)}/messages`, { token: tokenY() });
      assertHttpError(res, 403, "forbidden", "Y reads X's history");
      // The same request with X's token is allowed (the refusal is about who, not what).
      const own = await ctx.server.http("GET", `/api/v1/conversations/${encodeURIComponent(C)}/messages`, { token: tokenX() });
      assert.equal(own.status, 200, `X reads its own history: ${own.text}`);
      assert.ok(own.body.messages.some((m) => m.id === firstFromX.id));
      await assertHealthy();
    });

    it("native join_conversation by Y: ack ok:false forbidden", async () => {
      const n = await openNative(ctx.server, tokenY());
      try {
        const reply = await n.call("join_conversation", { conversation_id: C });
        assert.equal(reply.ref, 1);
        assert.equal(reply.ok, false, `native join by Y: ${JSON.stringify(reply)}`);
        assert.equal(reply.error?.code, "forbidden", `native join by Y: ${JSON.stringify(reply)}`);
        assert.ok(reply.error.message?.length > 0, "error.message must not be empty");
      } finally {
        n.close();
      }
      await assertHealthy();
    });

    it("X still sends and receives; Y never receives X's messages", async () => {
      const reply = await x.socket.timeout(WAIT_MS).emitWithAck("send_message", { conversation_id: C, text: "X again" });
      assert.equal(reply?.ok, true, `X sends again: ${JSON.stringify(reply)}`);
      const got = await x.next("X's second message");
      assert.equal(got.id, reply.message.id, `X's next message:new must be its own, got ${JSON.stringify(got).slice(0, 200)}`);
      assert.equal(got.offset, firstFromX.offset + 1, "X sees its conversation gap-free");
      // Y's socket has been connected all along; absence is only observable over a window.
      await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
      assert.deepEqual(y.inbox.map((m) => m.conversation_id), [], "Y received messages of X's conversation");
      await assertHealthy();
    });

    it("a customer listed on a conversation a service created for another customer id is refused", async () => {
      const id = `svc-made-${randomUUID()}`;
      await ctx.server.createConversation({ id, customer: { id: `owner-${randomUUID().slice(0, 8)}`, name: "Owner" } });
      const intruder = await connect(ctx.server.url, {
        token: ctx.server.customerToken(`intruder-${randomUUID().slice(0, 8)}`, { conversations: [id] }),
      });
      expectAckError(await ack(intruder, "join_conversation", { conversation_id: id }), "forbidden", "listed intruder joins");
      expectAckError(
        await ack(intruder, "send_message", { conversation_id: id, text: "intruding" }),
        "forbidden",
        "listed intruder sends",
      );
      assert.deepEqual(await ctx.server.history(id), [], "nothing stored by the intruder");
      await assertHealthy();
    });

    it("the canary is unaffected", async () => {
      await assertCanary("after cross-customer attempts");
    });
  });

  // ---- 3. hostile conversation ids ----------------------------------------------

  describe("3. hostile conversation ids", () => {
    // Each pair used to map to one bus subject (white space, '.', '*', '>' and '%' are
    // percent-encoded in subjects): the two conversations must stay apart.
    const PAIRS = [
      ["x\u2028", "x 28"],
      ["x\u00a0", "x%A0"],
      ["a.b", "a%2Eb"],
      ["*", "%2A"],
      [">", "%3E"],
      ["%", "%25"],
      ["x\u3000", "x%3000"],
    ];
    const PER_ROOM = 3;

    for (const [first, second] of PAIRS) {
      it(`${show(first)} and ${show(second)} each get exactly their own messages`, async () => {
        // A per-test suffix keeps ids fresh without changing what makes them hostile (the prefix).
        const suffix = `-${randomUUID().slice(0, 8)}`;
        const a = `${first}${suffix}`;
        const b = `${second}${suffix}`;
        for (const id of [a, b]) {
          const created = await ctx.server.createConversation({ id, customer: { id: `cust${suffix}`, name: "Hostile Ids" } });
          assert.equal(created.id, id, "the conversation keeps its id exactly");
        }
        const agent = await connect(ctx.server.url, { token: ctx.server.agentToken() });
        for (const id of [a, b]) assert.deepEqual((await join(agent, id)).messages, [], `${show(id)} starts empty`);
        const posted = { [a]: [], [b]: [] };
        for (let i = 0; i < PER_ROOM; i++) {
          for (const id of [a, b]) posted[id].push((await ctx.server.postMessage(id, `${show(id)} #${i + 1}`)).id);
        }
        const received = [];
        for (let i = 0; i < 2 * PER_ROOM; i++) {
          received.push(await once(agent, "message:new", { what: `${i + 1} of ${2 * PER_ROOM}` }));
        }
        for (const id of [a, b]) {
          const mine = received.filter((m) => m.conversation_id === id);
          assert.deepEqual(mine.map((m) => m.id), posted[id], `${show(id)} got exactly its messages, once, in order`);
          assert.deepEqual(mine.map((m) => m.offset), [1, 2, 3], `${show(id)} offsets`);
          const stored = await ctx.server.history(id);
          assert.deepEqual(stored.map((m) => m.id), posted[id], `${show(id)} history holds only its own messages`);
        }
        assert.deepEqual(
          received.filter((m) => m.conversation_id !== a && m.conversation_id !== b).map((m) => m.conversation_id),
          [],
          "no message:new of another conversation",
        );
        // Nothing more arrives (a collision would deliver each message a second time).
        await expectNone(agent, "message:new", { what: "a second delivery" });
        agent.close();
        await assertHealthy();
      });
    }

    it("ids with emoji, RTL text and exactly 128 characters are accepted", async () => {
      const suffix = randomUUID().slice(0, 8);
      const ids = [`chat-😀🎉-${suffix}`, `שיחה-محادثة-${suffix}`, `${suffix}-`.padEnd(128, "z")];
      assert.equal([...ids[2]].length, 128);
      const agent = await connect(ctx.server.url, { token: ctx.server.agentToken() });
      for (const id of ids) {
        await ctx.server.createConversation({ id, customer: { id: `cust-${suffix}`, name: "Unicode" } });
        const res = await ctx.server.http("GET", `/api/v1/conversations/${encodeURIComponent(id)}`, {
          token: ctx.server.serviceToken(),
        });
        assert.equal(res.status, 200, `GET ${show(id)}: ${res.text}`);
        assert.equal(res.body.id, id);
        await join(agent, id);
        const posted = await ctx.server.postMessage(id, "unicode ok");
        const got = await once(agent, "message:new", { what: show(id) });
        assert.equal(got.id, posted.id);
        assert.equal(got.conversation_id, id);
      }
      await assertHealthy();
    });

    it("129 characters and control characters are bad_request over Socket.IO and HTTP 400", async () => {
      const bad = ["q".repeat(129), "ctl\u0000nul", "ctl\u001fus", "ctl\u007fdel", "ctl\nnewline"];
      const agent = await connect(ctx.server.url, { token: ctx.server.agentToken() });
      for (const id of bad) {
        const what = show(id);
        expectAckError(await ack(agent, "join_conversation", { conversation_id: id }), "bad_request", `join ${what}`);
        expectAckError(await ack(agent, "send_message", { conversation_id: id, text: "hi" }), "bad_request", `send ${what}`);
        const create = await ctx.server.http("POST", "/api/v1/conversations", {
          token: ctx.server.serviceToken(),
          json: { id, channel: "web", customer: { id: "cust-bad-ids", name: "Bad Ids" } },
        });
        assertHttpError(create, 400, "bad_request", `POST /api/v1/conversations ${what}`);
        const read = await ctx.server.http("GET", `/api/v1/conversations/${encodeURIComponent(id)}/messages`, {
          token: ctx.server.serviceToken(),
        });
        assertHttpError(read, 400, "bad_request", `GET messages of ${what}`);
      }
      assert.ok(agent.connected, "refusals leave the socket connected");
      await assertHealthy();
    });

    it("the canary is unaffected", async () => {
      await assertCanary("after hostile ids");
    });
  });

  // ---- 4. oversized and malformed input -------------------------------------------

  describe("4. oversized and malformed input", () => {
    describe("Socket.IO", () => {
      it(`a packet over SWITCHBOARD_MAX_PAYLOAD (${MAX_PAYLOAD}) closes that connection only, storing nothing`, async () => {
        const conv = await ctx.server.createConversation();
        const s = await connect(ctx.server.url, { token: ctx.server.agentToken() });
        await join(s, conv.id);
        const outcome = await new Promise((resolve) => {
          const timer = setTimeout(() => resolve({ timedOut: true }), WAIT_MS);
          s.once("disconnect", (reason) => (clearTimeout(timer), resolve({ disconnected: reason })));
          s.emit("send_message", { conversation_id: conv.id, text: "z".repeat(MAX_PAYLOAD + 1024) }, (reply) => {
            clearTimeout(timer);
            resolve({ reply });
          });
        });
        assert.ok(
          outcome.disconnected,
          `expected the oversized packet to close the connection, got ${JSON.stringify(outcome).slice(0, 200)}`,
        );
        assert.deepEqual(await ctx.server.history(conv.id), [], "nothing stored");
        await assertHealthy();
        await canary.check("after an oversized Socket.IO packet");
      });

      it(`text over SWITCHBOARD_MAX_TEXT_LEN (${MAX_TEXT_LEN}) is too_large`, async () => {
        const conv = await ctx.server.createConversation();
        const s = await connect(ctx.server.url, { token: ctx.server.agentToken() });
        await join(s, conv.id);
        expectAckError(
          await ack(s, "send_message", { conversation_id: conv.id, text: "y".repeat(MAX_TEXT_LEN + 1) }),
          "too_large",
          "text one over the limit",
        );
        assert.deepEqual(await ctx.server.history(conv.id), []);
        assert.ok(s.connected);
        await assertHealthy();
      });

      it("non-object payloads and wrong types are bad_request", async () => {
        const conv = await ctx.server.createConversation();
        const s = await connect(ctx.server.url, { token: ctx.server.agentToken() });
        const cases = [
          ["join_conversation", "just a string"],
          ["join_conversation", 42],
          ["join_conversation", null],
          ["join_conversation", [conv.id]],
          ["join_conversation", { conversation_id: { $ne: null } }],
          ["join_conversation", { conversation_id: conv.id, since_offset: -1 }],
          ["send_message", true],
          ["send_message", { conversation_id: conv.id, text: 12 }],
          ["send_message", { conversation_id: [conv.id], text: "array id" }],
          ["typing_start", "nope"],
          ["mark_read", { conversation_id: conv.id, message_id: "not-a-uuid" }],
        ];
        for (const [event, payload] of cases) {
          expectAckError(await ack(s, event, payload), "bad_request", `${event} ${JSON.stringify(payload)}`);
        }
        assert.deepEqual(await ctx.server.history(conv.id), []);
        assert.ok(s.connected, "the socket survives malformed payloads");
        await assertHealthy();
      });

      it("raw malformed packets (42garbage, 42[], 4{, binary junk) do not crash the process", async () => {
        const junk = ["42garbage", "42[]", "4{", Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x34, 0x32])];
        for (const packet of junk) {
          // socket.io-client only sends well-formed packets: a raw Engine.IO client sends these.
          const raw = await RawWebSocketClient.open(ctx.server.url);
          try {
            await raw.connect({ token: ctx.server.agentToken() });
            raw.sendRaw(packet);
            // The server may drop that connection or ignore the packet, but must do one of
            // them: a ping answered, or the session ended.
            const probe = await raw
              .emitWithAck("ping", {}, { timeout: WAIT_MS })
              .then((reply) => ({ reply }))
              .catch((err) => ({ error: err.message }));
            assert.ok(
              probe.reply?.ok === true || raw.isEnded,
              `after ${JSON.stringify(String(packet))}: neither answered nor closed (${probe.error})`,
            );
          } finally {
            raw.close();
          }
          await assertHealthy(ctx.server, `after raw packet ${JSON.stringify(String(packet))}`);
        }
      });
    });

    describe("native /ws", () => {
      it(`a text frame over the max payload is closed with 1009 and a reason`, async () => {
        const n = await openNative(ctx.server, ctx.server.agentToken());
        try {
          await n.event("connected");
          n.ws.send(JSON.stringify({ type: "send_message", conversation_id: "x", text: "w".repeat(MAX_PAYLOAD + 1024) }));
          const closed = await n.closed(WAIT_MS, "after an oversized frame");
          assert.equal(
            closed.code,
            1009,
            `close code ${closed.code} (${JSON.stringify(closed.reason)}), expected 1009 (message too big)`,
          );
          assert.ok(closed.reason.length > 0, "the close frame says why");
        } finally {
          n.close();
        }
        await assertHealthy();
      });

      it("invalid JSON and an unknown type get an error event; the connection stays usable", async () => {
        const n = await openNative(ctx.server, ctx.server.agentToken());
        try {
          await n.event("connected");
          n.ws.send("{this is not json");
          let err = await n.event("error", "error after invalid JSON");
          assert.equal(err.data?.code, "bad_request", JSON.stringify(err));
          assert.ok(err.data.message?.length > 0, "error.message must not be empty");
          n.ws.send(JSON.stringify({ type: "launch_missiles", conversation_id: "x" }));
          err = await n.event("error", "error after an unknown type");
          assert.equal(err.data?.code, "bad_request", JSON.stringify(err));
          const pong = await n.call("ping");
          assert.equal(pong.ok, true, `ping after garbage: ${JSON.stringify(pong)}`);
          assert.equal(n.closeInfo, null, "still open");
        } finally {
          n.close();
        }
        await assertHealthy();
      });

      it("switchboard.v1.proto: a garbage binary frame gets an error and the connection stays", async () => {
        const root = await protobuf.load(joinPath(REPO_ROOT, "proto", "native.proto"));
        const ClientFrame = root.lookupType("switchboard.v1.ClientFrame");
        const ServerFrame = root.lookupType("switchboard.v1.ServerFrame");
        const n = await openNative(ctx.server, ctx.server.agentToken(), { protocols: ["switchboard.v1.proto"] });
        try {
          assert.equal(n.ws.protocol, "switchboard.v1.proto");
          const decode = (f) => {
            try {
              return f.binary ? ServerFrame.toObject(ServerFrame.decode(f.binary)) : {};
            } catch {
              return {};
            }
          };
          const decoded = (kind) => (f) => kind in decode(f);
          await n.take(decoded("connected"), "connected");
          n.ws.send(Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x12, 0x99]));
          const err = await n.take(decoded("error"), "error frame after garbage");
          assert.equal(decode(err).error.code, "bad_request");
          n.ws.send(ClientFrame.encode(ClientFrame.create({ ref: "p1", ping: {} })).finish());
          const pong = await n.take(decoded("ack"), "ack of ping after garbage");
          const ackFrame = decode(pong).ack;
          assert.equal(ackFrame.ref, "p1");
          assert.equal(ackFrame.ok, true, "the connection survived garbage");
        } finally {
          n.close();
        }
        await assertHealthy();
      });
    });

    describe("HTTP", () => {
      it(`a JSON body over the max payload is 413 too_large`, async () => {
        const res = await ctx.server.http("POST", "/api/v1/conversations", {
          token: ctx.server.serviceToken(),
          json: {
            id: `big-${randomUUID()}`,
            channel: "web",
            customer: { id: "c", name: "C" },
            padding: "p".repeat(MAX_PAYLOAD + 1024),
          },
        });
        assertHttpError(res, 413, "too_large", "oversized JSON body");
        await assertHealthy();
      });

      it("invalid JSON is 400 bad_request", async () => {
        const res = await ctx.server.http("POST", "/api/v1/conversations", {
          token: ctx.server.serviceToken(),
          body: '{"id": "broken", "channel": ',
          headers: { "content-type": "application/json" },
        });
        assertHttpError(res, 400, "bad_request", "invalid JSON");
        await assertHealthy();
      });

      it("an unknown route is 404 JSON not_found", async () => {
        for (const path of ["/api/v1/no-such-thing", "/definitely/not/here"]) {
          const res = await ctx.server.http("GET", path, { token: ctx.server.serviceToken() });
          assertHttpError(res, 404, "not_found", `GET ${path}`);
        }
        await assertHealthy();
      });

      it("a wrong method on a known route is 405 JSON method_not_allowed", async () => {
        for (const [method, path] of [["DELETE", "/api/v1/conversations"], ["PUT", "/healthz"]]) {
          assertHttpError(
            await ctx.server.http(method, path, { token: ctx.server.serviceToken() }),
            405,
            "method_not_allowed",
            `${method} ${path}`,
          );
        }
        await assertHealthy();
      });
    });

    describe("WhatsApp webhook", () => {
      const sign = (body) => `sha256=${createHmac("sha256", WA_APP_SECRET).update(body).digest("hex")}`;

      it("a 5 MB body with a valid signature is 413 JSON too_large", async () => {
        // Valid JSON of Meta's shape, padded past the webhook's 4 MB limit.
        const body = JSON.stringify({ object: "whatsapp_business_account", entry: [], padding: "m".repeat(5 * 1024 * 1024) });
        const res = await ctx.server.http("POST", "/webhooks/whatsapp", {
          body,
          headers: { "content-type": "application/json", "x-hub-signature-256": sign(body) },
        });
        assertHttpError(res, 413, "too_large", "5 MB webhook");
        // The rest of the body was never read: the connection is not reused for the next request.
        assert.equal(res.headers.get("connection"), "close");
        await assertHealthy();
      });

      it("a bad signature is 401", async () => {
        const body = JSON.stringify({ object: "whatsapp_business_account", entry: [] });
        const res = await ctx.server.http("POST", "/webhooks/whatsapp", {
          body,
          headers: { "content-type": "application/json", "x-hub-signature-256": sign(`${body} `) },
        });
        assertHttpError(res, 401, "invalid_signature", "badly signed webhook");
        await assertHealthy();
      });
    });

    it("the canary is unaffected", async () => {
      await assertCanary("after oversized and malformed input");
    });
  });

  // ---- 5. slowloris ----------------------------------------------------------------

  describe(`5. slowloris (SWITCHBOARD_HEADER_TIMEOUT_MS=${HEADER_TIMEOUT_MS})`, () => {
    const CLOSE_WITHIN_MS = 10_000;
    let server;
    let slowCanary;
    before(async () => {
      server = await startServer({ env: { SWITCHBOARD_HEADER_TIMEOUT_MS: String(HEADER_TIMEOUT_MS) } });
      slowCanary = await Canary.create(server);
    });
    after(async () => {
      slowCanary?.close();
      await server?.stop();
    });

    /** A raw TCP connection to the server, recording what it receives and when it ends. */
    function rawTcp() {
      const socket = tcpConnect(server.port, "127.0.0.1");
      const conn = { socket, received: "" };
      socket.setEncoding("latin1");
      socket.on("data", (d) => (conn.received += d));
      socket.on("error", () => {});
      const closed = new Promise((resolve) => {
        socket.once("end", () => resolve("end"));
        socket.once("close", () => resolve("close"));
      });
      /** Resolves with how it ended, or `null` if the server kept it open `ms` ms. */
      conn.closedWithin = (ms) => {
        let timer;
        const open = new Promise((resolve) => (timer = setTimeout(() => resolve(null), ms)));
        return Promise.race([closed, open]).finally(() => clearTimeout(timer));
      };
      conn.ready = new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      });
      return conn;
    }

    it("a connection dribbling its headers and one sending nothing are both closed by the server", async () => {
      const dribbler = rawTcp();
      const idle = rawTcp();
      await Promise.all([dribbler.ready, idle.ready]);
      dribbler.socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
      // One byte every 200 ms: never a complete header block, always "active".
      const drip = setInterval(() => {
        if (!dribbler.socket.destroyed) dribbler.socket.write("a");
      }, 200);
      try {
        // Both are awaited together, so the file waits at most CLOSE_WITHIN_MS once.
        const [dribbled, silent] = await Promise.all([
          dribbler.closedWithin(CLOSE_WITHIN_MS),
          idle.closedWithin(CLOSE_WITHIN_MS),
        ]);
        assert.ok(dribbled, `a connection sending a header byte every 200 ms was still open after ${CLOSE_WITHIN_MS} ms`);
        assert.ok(silent, `a connection that sent nothing was still open after ${CLOSE_WITHIN_MS} ms`);
        assert.ok(
          !dribbler.received.startsWith("HTTP/1.1 200"),
          `the dribbled request was served: ${dribbler.received.slice(0, 80)}`,
        );
      } finally {
        clearInterval(drip);
        dribbler.socket.destroy();
        idle.socket.destroy();
      }
      await assertHealthy(server, "after slowloris connections");
    });

    it("a normal request on a fresh connection still works; the process and a canary are fine", async () => {
      const conn = rawTcp();
      await conn.ready;
      conn.socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      const how = await conn.closedWithin(WAIT_MS);
      conn.socket.destroy();
      assert.ok(how, "the server did not answer and close a Connection: close request");
      assert.match(conn.received, /^HTTP\/1\.1 200 /, `GET /healthz answered ${conn.received.slice(0, 80)}`);
      await assertHealthy(server, "after slowloris");
      await slowCanary.check("after slowloris");
      await assertCanary("the main server, after slowloris on another");
    });
  });

  // ---- 6. rate limits -------------------------------------------------------------

  describe(`6. rate limits (SWITCHBOARD_PUBLISH_RATE=${PUBLISH_RATE}, SWITCHBOARD_TYPING_RATE=${TYPING_RATE})`, () => {
    const BURST = 20;
    const REFILL_WAIT_MS = 5000;

    /** Fire BURST acks at once; assert some pass then the rest are rate_limited; returns the passed ones. */
    async function burst(socket, event, payload, rate) {
      const replies = await Promise.all(Array.from({ length: BURST }, (_, i) => ack(socket, event, payload(i))));
      const ok = replies.filter((r) => r?.ok === true);
      const refused = replies.filter((r) => r?.ok !== true);
      for (const r of refused) expectAckError(r, "rate_limited", `${event} in a burst`);
      assert.ok(ok.length >= rate, `the first ${rate} of a burst pass (a full bucket); ${ok.length} did`);
      assert.ok(refused.length > 0, `all ${BURST} ${event} of a burst passed a rate of ${rate}/s`);
      assert.ok(socket.connected, `a rate-limited socket stays connected (${event})`);
      return ok;
    }

    /** Retry `attempt` every 100 ms until it is ok, for at most REFILL_WAIT_MS (the bucket refills over time). */
    async function afterRefill(attempt, what) {
      const deadline = Date.now() + REFILL_WAIT_MS;
      let last;
      while (Date.now() < deadline) {
        last = await attempt();
        if (last?.ok === true) return last;
        expectAckError(last, "rate_limited", `${what} while waiting for the bucket`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.fail(`${what}: still refused after ${REFILL_WAIT_MS} ms: ${JSON.stringify(last)}`);
    }

    it("a burst of send_message: some ok, then rate_limited; after a refill it sends again", async () => {
      const conv = await ctx.server.createConversation();
      const s = await connect(ctx.server.url, { token: ctx.server.agentToken() });
      await join(s, conv.id);
      const ok = await burst(s, "send_message", (i) => ({ conversation_id: conv.id, text: `burst ${i}` }), PUBLISH_RATE);
      const stored = await ctx.server.history(conv.id);
      assert.deepEqual(
        stored.map((m) => m.id).sort(),
        ok.map((r) => r.message.id).sort(),
        "only the accepted sends are stored",
      );
      assert.deepEqual(stored.map((m) => m.offset), ok.map((_, i) => i + 1), "stored gap-free");
      const again = await afterRefill(
        () => ack(s, "send_message", { conversation_id: conv.id, text: "after the refill" }),
        "send_message",
      );
      assert.equal(again.message.offset, ok.length + 1, "the next message follows without a gap");
      await assertHealthy();
    });

    it("a burst of typing_start: some ok, then rate_limited; after a refill it types again", async () => {
      const conv = await ctx.server.createConversation();
      const s = await connect(ctx.server.url, { token: ctx.server.agentToken() });
      await join(s, conv.id);
      await burst(s, "typing_start", () => ({ conversation_id: conv.id }), TYPING_RATE);
      await afterRefill(() => ack(s, "typing_start", { conversation_id: conv.id }), "typing_start");
      // Publishing is limited separately: typing did not use up the send budget.
      await send(s, conv.id, "typing did not cost a send");
      await assertHealthy();
    });

    it("the canary is unaffected", async () => {
      await assertCanary("after rate-limit bursts");
    });
  });

  // ---- 7. demo pages' CSP ---------------------------------------------------------

  describe("7. the demo pages' Content-Security-Policy", () => {
    for (const path of ["/demo/", "/demo/agent"]) {
      it(`GET ${path}: connect-src allows only the page's own origin, not bare ws: or wss:`, async () => {
        const res = await ctx.server.http("GET", path);
        assert.equal(res.status, 200, `GET ${path}: ${res.status}`);
        const csp = res.headers.get("content-security-policy");
        assert.ok(csp, `GET ${path} has no content-security-policy header`);
        const directive = csp
          .split(";")
          .map((d) => d.trim().split(/\s+/))
          .find(([name]) => name.toLowerCase() === "connect-src");
        assert.ok(directive, `no connect-src in ${csp}`);
        const sources = directive.slice(1);
        const host = new URL(ctx.server.url).host;
        // Allowed: 'self', or a source naming this very origin (http/ws on the same host:port).
        const foreign = sources.filter((s) => {
          if (s === "'self'") return false;
          try {
            const url = new URL(s);
            return !["http:", "https:", "ws:", "wss:"].includes(url.protocol) || url.host !== host;
          } catch {
            return true; // bare schemes (ws:, wss:), wildcards and the like
          }
        });
        assert.deepEqual(foreign, [], `connect-src allows more than the page's origin: ${directive.join(" ")}`);
        await assertHealthy();
      });
    }

    it("the canary is unaffected", async () => {
      await assertCanary("after the demo pages");
    });
  });
});
