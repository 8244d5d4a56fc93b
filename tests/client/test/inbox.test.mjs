// The support inbox (contract §11): assignment, hand-off, status, inbox views,
// unread counts, private notes, availability and round-robin assignment, over
// Socket.IO, the native WebSocket and HTTP, against `switchboard dev`.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, it } from "node:test";
import WebSocket from "ws";
import { startGraph } from "../lib/graph.mjs";
import { startServer } from "../lib/server.mjs";
import { useServer } from "../lib/setup.mjs";
import {
  DEFAULT_TIMEOUT_MS,
  QUIET_WINDOW_MS,
  ack,
  assertConversation,
  assertMessage,
  connect,
  eventually,
  expectAckError,
  expectNone,
  expectOk,
  join,
  once,
  send,
} from "../lib/sio.mjs";
import { conversationId, deliver, fixture, randomWaId, waEnv } from "../lib/whatsapp.mjs";

const graph = await startGraph();
after(() => graph.stop());
const ctx = useServer(waEnv(graph.base));

const uid = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;
/** An agent as `agentToken(sub)` names it, which is also how an assignee reads. */
const who = (sub) => ({ id: sub, name: `Agent ${sub}` });

function agent(sub, server = ctx.server) {
  return connect(server.url, { token: server.agentToken(sub) });
}
function customer(sub) {
  return connect(ctx.server.url, { token: ctx.server.customerToken(sub) });
}

/** A new web conversation, made over HTTP, whose customer has an id of its own. */
function conversation(server = ctx.server) {
  const sub = uid("cust");
  return server.createConversation({ customer: { id: sub, name: `Customer ${sub}` } });
}

/** The conversation as the server has it now (GET, service token). */
async function stored(id, server = ctx.server) {
  const res = await server.http("GET", `/api/v1/conversations/${encodeURIComponent(id)}`, { token: server.serviceToken() });
  assert.equal(res.status, 200, `GET conversation ${id}: ${res.text}`);
  return assertConversation(res.body);
}

function assertUnassigned(conv, what) {
  assert.ok(!("assignee" in conv), `${what}: an unassigned conversation has no assignee, got ${JSON.stringify(conv.assignee)}`);
}

// ---- the operations on each transport ------------------------------------------

const HTTP_PATHS = {
  assign_conversation: "assign",
  close_conversation: "close",
  reopen_conversation: "reopen",
  request_human: "handoff",
};
const HTTP_STATUS = { bad_request: 400, forbidden: 403, not_found: 404, conflict: 409 };

/** An operation over HTTP, answered the way an ack is: `{ok, conversation}` or `{ok:false, error}`, plus `status`. */
async function httpCall(server, token, op, { conversation_id, ...body }) {
  const path = `/api/v1/conversations/${encodeURIComponent(conversation_id)}/${HTTP_PATHS[op]}`;
  const res = await server.http("POST", path, { token, json: body });
  if (res.status === 200) return { ok: true, conversation: res.body, status: res.status };
  return { ok: false, error: res.body?.error, status: res.status, text: res.text };
}

/** A setup step over HTTP (a service by default) that must succeed; the conversation as it now is. */
async function must(op, payload, { server = ctx.server, token = server.serviceToken() } = {}) {
  const reply = await httpCall(server, token, op, payload);
  assert.equal(reply.ok, true, `${op} ${JSON.stringify(payload)}: HTTP ${reply.status} ${reply.text}`);
  return reply.conversation;
}

function claim(id, sub, server = ctx.server) {
  return must("assign_conversation", { conversation_id: id }, { server, token: server.agentToken(sub) });
}

/** A success answered with the Conversation as it now is. */
function accepted(reply, what) {
  expectOk(reply, what);
  return assertConversation(reply.conversation);
}

/** A refusal with `code` (over HTTP with its status too). */
function refused(reply, code, what) {
  if (reply.status !== undefined) assert.equal(reply.status, HTTP_STATUS[code], `${what}: HTTP status, body ${reply.text}`);
  return expectAckError(reply, code, what);
}

const natives = new Set();
afterEach(() => {
  for (const ws of natives) ws.terminate();
  natives.clear();
});

/**
 * A native WebSocket (`/ws`, JSON frames) that records every frame: `event` awaits the
 * next untaken event of a type, `none` asserts no other comes (as `expectNone` does),
 * `call` sends `{type, ref, ...}` and resolves with the ack of that ref.
 */
async function native(token) {
  const ws = new WebSocket(`${ctx.server.url.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(token)}`);
  natives.add(ws);
  const frames = [];
  const waiters = [];
  ws.on("message", (data) => {
    const entry = { frame: JSON.parse(data.toString()), taken: false };
    frames.push(entry);
    const w = waiters.find((w) => w.match(entry.frame));
    if (w) {
      entry.taken = true;
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(entry.frame);
    }
  });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  const take = (match, what) => {
    const hit = frames.find((e) => !e.taken && match(e.frame));
    if (hit) {
      hit.taken = true;
      return Promise.resolve(hit.frame);
    }
    return new Promise((resolve, reject) => {
      const waiter = { match, resolve: (f) => (clearTimeout(timer), resolve(f)) };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(waiter), 1);
        const seen = frames.map((e) => e.frame.type).join(", ") || "none";
        reject(new Error(`native: no ${what} within ${DEFAULT_TIMEOUT_MS} ms; frames so far: ${seen}`));
      }, DEFAULT_TIMEOUT_MS);
      waiters.push(waiter);
    });
  };
  let refs = 0;
  return {
    async event(type, filter = () => true, what = type) {
      return (await take((f) => f.type === type && filter(f.data), what)).data;
    },
    async none(type, filter = () => true, what = type) {
      await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
      const hit = frames.find((e) => !e.taken && e.frame.type === type && filter(e.frame.data));
      assert.ok(!hit, `native: expected no ${what} within ${QUIET_WINDOW_MS} ms, got ${JSON.stringify(hit?.frame)}`);
    },
    call(type, payload = {}) {
      const ref = `r${++refs}`;
      ws.send(JSON.stringify({ type, ref, ...payload }));
      return take((f) => f.type === "ack" && f.ref === ref, `the ack of ${type}`);
    },
  };
}

/** Each transport: given a token, a `call(op, payload)` answering as an ack does. */
const TRANSPORTS = {
  "Socket.IO": async (token) => {
    const socket = await connect(ctx.server.url, { token });
    return (op, payload) => ack(socket, op, payload);
  },
  "native WebSocket": async (token) => {
    const client = await native(token);
    return (op, payload) => client.call(op, payload);
  },
  HTTP: async (token) => (op, payload) => httpCall(ctx.server, token, op, payload),
};

for (const [transport, open] of Object.entries(TRANSPORTS)) {
  describe(`inbox operations over ${transport}`, () => {
    it("an agent claims an unassigned conversation; claiming it again answers ok and changes nothing", async () => {
      const conv = await conversation();
      const a = uid("agent");
      const call = await open(ctx.server.agentToken(a));
      const claimed = accepted(await call("assign_conversation", { conversation_id: conv.id }), "claim");
      assert.deepEqual(claimed.assignee, who(a));
      assert.equal(claimed.status, "open");
      const again = accepted(await call("assign_conversation", { conversation_id: conv.id }), "claim again");
      assert.deepEqual(again.assignee, who(a));
      const now = await stored(conv.id);
      assert.deepEqual(now.assignee, who(a));
      assert.equal(now.updated_at, claimed.updated_at, "claiming one's own conversation changes nothing");
    });

    it("claiming a conversation another agent holds is a conflict and changes nothing", async () => {
      const conv = await conversation();
      const [a, b] = [uid("agent"), uid("agent")];
      const held = await claim(conv.id, a);
      const call = await open(ctx.server.agentToken(b));
      refused(await call("assign_conversation", { conversation_id: conv.id }), "conflict", "claim of a held conversation");
      const now = await stored(conv.id);
      assert.deepEqual(now.assignee, who(a));
      assert.equal(now.status, held.status);
      assert.equal(now.updated_at, held.updated_at, "a refused claim leaves the conversation as it was");
    });

    it("assignee {id, name} transfers it whoever holds it; assignee null unassigns", async () => {
      const conv = await conversation();
      const [a, b, c] = [uid("agent"), uid("agent"), uid("agent")];
      await claim(conv.id, a);
      // Neither holder nor recipient: any agent may transfer.
      const asB = await open(ctx.server.agentToken(b));
      const moved = accepted(await asB("assign_conversation", { conversation_id: conv.id, assignee: who(c) }), "transfer");
      assert.deepEqual(moved.assignee, who(c));
      assert.deepEqual((await stored(conv.id)).assignee, who(c));
      const asService = await open(ctx.server.serviceToken());
      const freed = accepted(await asService("assign_conversation", { conversation_id: conv.id, assignee: null }), "unassign");
      assertUnassigned(freed, "the unassign answer");
      assertUnassigned(await stored(conv.id), "GET after unassign");
    });

    it("a pending conversation that gets an assignee, by claim or by transfer, becomes open", async () => {
      const conv = await conversation();
      assert.equal((await must("request_human", { conversation_id: conv.id })).status, "pending");
      const [a, b] = [uid("agent"), uid("agent")];
      const call = await open(ctx.server.agentToken(a));
      const claimed = accepted(await call("assign_conversation", { conversation_id: conv.id }), "claim of a pending conversation");
      assert.deepEqual([claimed.status, claimed.assignee], ["open", who(a)]);
      assert.equal((await stored(conv.id)).status, "open");
      assert.equal((await must("request_human", { conversation_id: conv.id })).status, "pending");
      const moved = accepted(
        await call("assign_conversation", { conversation_id: conv.id, assignee: who(b) }),
        "transfer of a pending conversation",
      );
      assert.deepEqual([moved.status, moved.assignee], ["open", who(b)]);
      assert.equal((await stored(conv.id)).status, "open");
    });

    it("close makes it closed, reopen open again", async () => {
      const conv = await conversation();
      const a = uid("agent");
      const call = await open(ctx.server.agentToken(a));
      const closed = accepted(await call("close_conversation", { conversation_id: conv.id }), "close");
      assert.equal(closed.status, "closed");
      assert.equal((await stored(conv.id)).status, "closed");
      const reopened = accepted(await call("reopen_conversation", { conversation_id: conv.id }), "reopen");
      assert.equal(reopened.status, "open");
      assert.equal((await stored(conv.id)).status, "open");
    });

    it("request_human: a customer's own conversation becomes pending; another's is forbidden and unchanged", async () => {
      const [own, other] = [await conversation(), await conversation()];
      const call = await open(ctx.server.customerToken(own.customer.id));
      const pending = accepted(await call("request_human", { conversation_id: own.id }), "request_human on its own");
      assert.equal(pending.status, "pending");
      assert.equal((await stored(own.id)).status, "pending");
      refused(await call("request_human", { conversation_id: other.id }), "forbidden", "request_human on another's");
      assert.equal((await stored(other.id)).status, "open");
    });

    it("request_human by a bot or a service makes it pending; an agent assigns instead (forbidden)", async () => {
      for (const [caller, token] of [
        ["a bot", ctx.server.botToken(uid("bot"))],
        ["a service", ctx.server.serviceToken()],
      ]) {
        const conv = await conversation();
        const call = await open(token);
        assert.equal(accepted(await call("request_human", { conversation_id: conv.id }), `request_human by ${caller}`).status, "pending");
        assert.equal((await stored(conv.id)).status, "pending", `GET after request_human by ${caller}`);
      }
      const conv = await conversation();
      const asAgent = await open(ctx.server.agentToken(uid("agent")));
      refused(await asAgent("request_human", { conversation_id: conv.id }), "forbidden", "request_human by an agent");
      assert.equal((await stored(conv.id)).status, "open", "an agent's refused hand-off changes nothing");
    });

    it("a customer may not assign, transfer, close or reopen, not even its own conversation", async () => {
      const conv = await conversation();
      const before = await stored(conv.id);
      const call = await open(ctx.server.customerToken(conv.customer.id));
      for (const [op, extra] of [
        ["assign_conversation", {}],
        ["assign_conversation", { assignee: who(uid("agent")) }],
        ["assign_conversation", { assignee: null }],
        ["close_conversation", {}],
        ["reopen_conversation", {}],
      ]) {
        refused(await call(op, { conversation_id: conv.id, ...extra }), "forbidden", `${op} ${JSON.stringify(extra)} by a customer`);
      }
      const now = await stored(conv.id);
      assert.deepEqual([now.status, now.assignee, now.updated_at], [before.status, before.assignee, before.updated_at]);
    });

    it("an unknown conversation is not_found; a service claiming for nobody is forbidden; a malformed assignee is bad_request", async () => {
      const call = await open(ctx.server.agentToken(uid("agent")));
      for (const op of ["assign_conversation", "close_conversation", "reopen_conversation"]) {
        refused(await call(op, { conversation_id: randomUUID() }), "not_found", `${op} of an unknown conversation`);
      }
      const asBot = await open(ctx.server.botToken(uid("bot")));
      refused(await asBot("request_human", { conversation_id: randomUUID() }), "not_found", "request_human of an unknown conversation");
      const conv = await conversation();
      const asService = await open(ctx.server.serviceToken());
      refused(await asService("assign_conversation", { conversation_id: conv.id }), "forbidden", "a service claiming for nobody");
      refused(await call("assign_conversation", { conversation_id: conv.id, assignee: "someone" }), "bad_request", "assignee a string");
      assertUnassigned(await stored(conv.id), "after the refusals");
    });
  });
}

for (const transport of ["Socket.IO", "native WebSocket"]) {
  describe(`subscribe_inbox and set_availability over ${transport}`, () => {
    const open = TRANSPORTS[transport];

    it("subscribe_inbox answers the view; an unknown view or a missing conversation id is bad_request", async () => {
      const call = await open(ctx.server.agentToken(uid("agent")));
      for (const view of ["mine", "unassigned", "none", "all"]) {
        assert.equal(expectOk(await call("subscribe_inbox", { view }), `subscribe_inbox ${view}`).view, view);
      }
      refused(await call("subscribe_inbox", { view: "everything" }), "bad_request", "an unknown view");
      refused(await call("assign_conversation", {}), "bad_request", "assign without conversation_id");
    });

    it("set_availability answers the agent; an unknown status is bad_request", async () => {
      const a = uid("agent");
      const call = await open(ctx.server.agentToken(a));
      const away = expectOk(await call("set_availability", { status: "away" }), "set away").agent;
      assert.deepEqual(away, { ...who(a), availability: "away", open_assigned: 0 });
      assert.equal(expectOk(await call("set_availability", { status: "online" }), "set online").agent.availability, "online");
      refused(await call("set_availability", { status: "busy" }), "bad_request", "an unknown status");
    });

    it("a customer may not subscribe_inbox or set_availability", async () => {
      const call = await open(ctx.server.customerToken(uid("cust")));
      refused(await call("subscribe_inbox", { view: "all" }), "forbidden", "subscribe_inbox by a customer");
      refused(await call("set_availability", { status: "away" }), "forbidden", "set_availability by a customer");
    });
  });
}

describe("inbox operations over HTTP, beyond the shared ones", () => {
  it("close, reopen and handoff take an empty body", async () => {
    const conv = await conversation();
    for (const [path, status] of [["close", "closed"], ["reopen", "open"], ["handoff", "pending"]]) {
      const res = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/${path}`, { token: ctx.server.serviceToken() });
      assert.equal(res.status, 200, `${path} with no body: ${res.text}`);
      assert.equal(assertConversation(res.body).status, status);
    }
  });

  it("GET /api/v1/conversations filters by assignee=me|none|<id> and status", async () => {
    const [a, b] = [uid("agent"), uid("agent")];
    const [mineOpen, mineClosed, theirs, waiting] = await Promise.all([1, 2, 3, 4].map(() => conversation()));
    await claim(mineOpen.id, a);
    await claim(mineClosed.id, a);
    await must("close_conversation", { conversation_id: mineClosed.id });
    await claim(theirs.id, b);
    await must("request_human", { conversation_id: waiting.id });
    const list = async (query) => {
      const res = await ctx.server.http("GET", `/api/v1/conversations?${query}&limit=100`, { token: ctx.server.agentToken(a) });
      assert.equal(res.status, 200, `GET ?${query}: ${res.text}`);
      return res.body.conversations;
    };
    const ids = (convs) => convs.map((c) => c.id).sort();
    assert.deepEqual(ids(await list("assignee=me")), ids([mineOpen, mineClosed]), "assignee=me");
    assert.deepEqual(ids(await list("assignee=me&status=open")), [mineOpen.id], "assignee=me&status=open");
    assert.deepEqual(ids(await list(`assignee=${a}&status=closed`)), [mineClosed.id], "assignee=<id>&status=closed");
    assert.deepEqual(ids(await list(`assignee=${b}`)), [theirs.id], "assignee=<another agent>");
    const none = await list("assignee=none");
    assert.ok(none.some((c) => c.id === waiting.id), "assignee=none lists the unassigned one");
    for (const c of none) assertUnassigned(c, "assignee=none");
    const pending = await list("status=pending");
    assert.ok(pending.some((c) => c.id === waiting.id), "status=pending lists the handed-off one");
    assert.ok(pending.every((c) => c.status === "pending"), "status=pending lists only pending ones");
  });

  it("unread: the messages after the agent's last mark_read, never its own", async () => {
    const conv = await conversation();
    const [a, b] = [uid("agent"), uid("agent")];
    const unread = async (sub) => {
      const res = await ctx.server.http("GET", "/api/v1/conversations?limit=100", { token: ctx.server.agentToken(sub) });
      assert.equal(res.status, 200, res.text);
      const found = res.body.conversations.find((c) => c.id === conv.id);
      assert.ok(found, `conversation ${conv.id} is not in ${sub}'s list`);
      return found.unread;
    };
    const cust = await customer(conv.customer.id);
    await join(cust, conv.id);
    const sent = [];
    for (const text of ["one", "two", "three"]) sent.push(await send(cust, conv.id, text));
    assert.equal(await unread(a), 3);
    const sa = await agent(a);
    await join(sa, conv.id);
    expectOk(await ack(sa, "mark_read", { conversation_id: conv.id, message_id: sent[1].id }), "mark_read of the 2nd");
    await eventually(() => unread(a), (n) => n === 1, { what: "unread after marking the 2nd of 3 read" });
    await send(sa, conv.id, "an answer");
    assert.equal(await unread(a), 1, "the agent's own message is not unread for it");
    await send(cust, conv.id, "four");
    assert.equal(await unread(a), 2);
    assert.equal(await unread(b), 5, "an agent who marked nothing: every message but its own (none)");
    const asService = await ctx.server.http("GET", "/api/v1/conversations?limit=100", { token: ctx.server.serviceToken() });
    const seen = asService.body.conversations.find((c) => c.id === conv.id);
    assert.ok(seen && !("unread" in seen), `unread is for agent tokens only: ${JSON.stringify(seen)}`);
  });
});

// ---- events ---------------------------------------------------------------------

/** The first conversation:updated of `id` (received or coming) whose conversation passes `test`. */
async function update(socket, id, test, what) {
  const e = await once(socket, "conversation:updated", { filter: (e) => e?.conversation?.id === id && test(e.conversation), what });
  return assertConversation(e.conversation);
}

const about = (...ids) => (e) => ids.includes(e?.conversation?.id);

/** Takes every conversation:updated of `id` received so far, so only later ones are judged next. */
function forget(socket, id) {
  while (socket.log.take("conversation:updated", about(id)).found);
}

describe("conversation:updated on status and assignee changes", () => {
  it("every joined socket, the customer's included, and agents' inboxes get one copy of each change", async () => {
    const conv = await conversation();
    const a = uid("agent");
    const cust = await customer(conv.customer.id);
    await join(cust, conv.id);
    const nativeCust = await native(ctx.server.customerToken(conv.customer.id));
    expectOk(await nativeCust.call("join_conversation", { conversation_id: conv.id }), "native join");
    // Joined and in the `all` view: still one copy, not one per reason.
    const joinedAgent = await agent(uid("agent"));
    await join(joinedAgent, conv.id);
    const inbox = await agent(uid("agent"));
    const changes = [
      ["claim", () => claim(conv.id, a), (c) => c.assignee?.id === a && c.status === "open"],
      ["close", () => must("close_conversation", { conversation_id: conv.id }), (c) => c.status === "closed"],
      ["reopen", () => must("reopen_conversation", { conversation_id: conv.id }), (c) => c.status === "open"],
      ["handoff", () => must("request_human", { conversation_id: conv.id }), (c) => c.status === "pending"],
      ["unassign", () => must("assign_conversation", { conversation_id: conv.id, assignee: null }), (c) => !("assignee" in c)],
    ];
    for (const [what, change, test] of changes) {
      await change();
      for (const [name, socket] of [["customer", cust], ["joined agent", joinedAgent], ["inbox agent", inbox]]) {
        const got = (await once(socket, "conversation:updated", { filter: about(conv.id), what: `${what}, ${name}` })).conversation;
        assert.ok(test(got), `${name}'s next update after the ${what} shows it: ${JSON.stringify(got)}`);
      }
      const got = await nativeCust.event("conversation:updated", about(conv.id), `${what}, native customer`);
      assert.ok(test(got.conversation), `native customer's update after the ${what}: ${JSON.stringify(got)}`);
      const again = { filter: about(conv.id), what: `a second copy of the ${what}` };
      await Promise.all([
        ...[cust, joinedAgent, inbox].map((s) => expectNone(s, "conversation:updated", again)),
        nativeCust.none("conversation:updated", about(conv.id), again.what),
      ]);
    }
  });

  it("a customer's message in a closed conversation reopens it with its assignee, and says so", async () => {
    const conv = await conversation();
    const a = uid("agent");
    await claim(conv.id, a);
    await must("close_conversation", { conversation_id: conv.id });
    const cust = await customer(conv.customer.id);
    await join(cust, conv.id);
    const inbox = await agent(uid("agent"));
    await send(cust, conv.id, "one more question");
    for (const [name, socket] of [["customer", cust], ["inbox agent", inbox]]) {
      const got = await update(socket, conv.id, (c) => c.status === "open", `the reopen, ${name}`);
      assert.deepEqual(got.assignee, who(a), `${name}: the assignee is kept`);
    }
    const now = await stored(conv.id);
    assert.deepEqual([now.status, now.assignee], ["open", who(a)]);
  });
});

describe("the claim race", () => {
  it("20 conversations, two agents claiming each at the same instant: exactly one wins each, and GET agrees", async () => {
    const convs = await Promise.all(Array.from({ length: 20 }, () => conversation()));
    const [a, b] = [uid("agent"), uid("agent")];
    const [sa, sb] = [await agent(a), await agent(b)];
    const claimOn = (socket, id) => ack(socket, "assign_conversation", { conversation_id: id });
    const replies = await Promise.all(
      convs.map(async (c, i) => {
        // Alternate which claim leaves first, so neither socket is always ahead.
        if (i % 2) return Promise.all([claimOn(sa, c.id), claimOn(sb, c.id)]);
        const [rb, ra] = await Promise.all([claimOn(sb, c.id), claimOn(sa, c.id)]);
        return [ra, rb];
      }),
    );
    for (const [i, [ra, rb]] of replies.entries()) {
      const winners = [[a, ra, rb], [b, rb, ra]].filter(([, won]) => won.ok === true);
      assert.equal(winners.length, 1, `conversation ${i}: exactly one claim wins, got ${JSON.stringify([ra, rb])}`);
      const [winner, won, lost] = winners[0];
      expectAckError(lost, "conflict", `the losing claim of conversation ${i}`);
      assert.deepEqual(won.conversation.assignee, who(winner));
      assert.deepEqual((await stored(convs[i].id)).assignee, who(winner), `GET of conversation ${i} agrees with the winner`);
    }
  });
});

describe("inbox views", () => {
  async function subscribed(view) {
    const socket = await agent(uid("agent"));
    assert.equal(expectOk(await ack(socket, "subscribe_inbox", { view }), `subscribe_inbox ${view}`).view, view);
    return socket;
  }

  it("`mine`: only the agent's own open conversations, and one last update for one transferred away or closed", async () => {
    const a = uid("agent");
    const mine = await agent(a);
    expectOk(await ack(mine, "subscribe_inbox", { view: "mine" }));
    // A socket in the default view shows each event went out.
    const all = await agent(uid("agent"));
    const [own, ownToClose, others, free] = await Promise.all([1, 2, 3, 4].map(() => conversation()));
    await claim(own.id, a);
    await claim(ownToClose.id, a);
    await claim(others.id, uid("agent"));
    await update(mine, own.id, (c) => c.assignee?.id === a, "a conversation that became mine");
    await update(mine, ownToClose.id, (c) => c.assignee?.id === a, "another that became mine");
    const posted = {};
    for (const c of [others, free, own]) posted[c.id] = await ctx.server.postMessage(c.id, `news in ${c.id}`);
    for (const c of [others, free, own]) await update(all, c.id, (x) => x.last_message?.id === posted[c.id].id, "reference");
    await update(mine, own.id, (x) => x.last_message?.id === posted[own.id].id, "a message in my conversation");
    await expectNone(mine, "conversation:updated", { filter: about(others.id, free.id), what: "another's and an unassigned conversation" });
    assert.deepEqual(mine.log.all("conversation:new", about(own.id, ownToClose.id, others.id, free.id)), [], "none was mine when new");

    await must("assign_conversation", { conversation_id: own.id, assignee: who(uid("agent")) });
    await update(mine, own.id, (c) => c.assignee?.id !== a, "the transfer away");
    await must("close_conversation", { conversation_id: ownToClose.id });
    await update(mine, ownToClose.id, (c) => c.status === "closed", "the close");
    const later = await ctx.server.postMessage(own.id, "after the transfer");
    await must("close_conversation", { conversation_id: others.id });
    await update(all, others.id, (x) => x.status === "closed", "reference, another's closed");
    await update(all, own.id, (x) => x.last_message?.id === later.id, "reference, after the transfer");
    await expectNone(mine, "conversation:updated", { filter: about(own.id, ownToClose.id, others.id), what: "conversations no longer mine" });
  });

  it("`unassigned`: new and unassigned conversations, one last update once claimed or closed", async () => {
    const u = await subscribed("unassigned");
    const all = await agent(uid("agent"));
    const [claimed, closed] = [await conversation(), await conversation()];
    for (const c of [claimed, closed]) await once(u, "conversation:new", { filter: about(c.id), what: "a new, unassigned conversation" });
    const waiting = await ctx.server.postMessage(claimed.id, "still waiting");
    await update(u, claimed.id, (c) => c.last_message?.id === waiting.id, "a message in an unassigned conversation");
    const a = uid("agent");
    await claim(claimed.id, a);
    await update(u, claimed.id, (c) => c.assignee?.id === a, "the claim");
    await must("close_conversation", { conversation_id: closed.id });
    await update(u, closed.id, (c) => c.status === "closed", "the close");
    const later = await ctx.server.postMessage(claimed.id, "after the claim");
    await update(all, claimed.id, (c) => c.last_message?.id === later.id, "reference, after the claim");
    await expectNone(u, "conversation:updated", { filter: about(claimed.id, closed.id), what: "conversations that left the view" });
  });

  it("`none`: no inbox events, but conversation:updated still for a conversation it joined", async () => {
    const n = await subscribed("none");
    const all = await agent(uid("agent"));
    const [joined, other] = [await conversation(), await conversation()];
    await join(n, joined.id);
    await once(all, "conversation:new", { filter: about(other.id), what: "reference" });
    const news = await ctx.server.postMessage(other.id, "news");
    await update(all, other.id, (c) => c.last_message?.id === news.id, "reference");
    const a = uid("agent");
    await claim(other.id, a);
    await update(all, other.id, (c) => c.assignee?.id === a, "reference");
    const inJoined = await ctx.server.postMessage(joined.id, "in the joined one");
    assert.equal((await once(n, "message:new", { filter: (m) => m.id === inJoined.id })).conversation_id, joined.id);
    await update(all, joined.id, (c) => c.last_message?.id === inJoined.id, "reference");
    await must("close_conversation", { conversation_id: joined.id });
    await update(n, joined.id, (c) => c.status === "closed", "the close of the joined conversation");
    await Promise.all([
      expectNone(n, "conversation:updated", { filter: about(joined.id, other.id), what: "inbox updates in view none" }),
      expectNone(n, "conversation:new", { filter: about(joined.id, other.id), what: "conversation:new in view none" }),
    ]);
  });

  it("`all` is the default, and subscribing to it again after `none` brings the events back", async () => {
    const fresh = await agent(uid("agent"));
    const conv = await conversation();
    await once(fresh, "conversation:new", { filter: about(conv.id) });
    const b = uid("agent");
    await claim(conv.id, b);
    await update(fresh, conv.id, (c) => c.assignee?.id === b, "another agent's claim");
    await must("close_conversation", { conversation_id: conv.id });
    await update(fresh, conv.id, (c) => c.status === "closed", "the close");
    expectOk(await ack(fresh, "subscribe_inbox", { view: "none" }));
    const reference = await agent(uid("agent"));
    const unseen = await conversation();
    await once(reference, "conversation:new", { filter: about(unseen.id) });
    await expectNone(fresh, "conversation:new", { filter: about(unseen.id), what: "while in view none" });
    expectOk(await ack(fresh, "subscribe_inbox", { view: "all" }));
    const seen = await conversation();
    await once(fresh, "conversation:new", { filter: about(seen.id), what: "back in view all" });
  });

  it("a native socket's `mine` view works the same", async () => {
    const a = uid("agent");
    const client = await native(ctx.server.agentToken(a));
    assert.equal(expectOk(await client.call("subscribe_inbox", { view: "mine" })).view, "mine");
    const all = await agent(uid("agent"));
    const [own, others] = [await conversation(), await conversation()];
    await claim(others.id, uid("agent"));
    await claim(own.id, a);
    await update(all, others.id, (c) => "assignee" in c, "reference");
    await update(all, own.id, (c) => c.assignee?.id === a, "reference");
    const got = await client.event("conversation:updated", about(own.id, others.id), "the update of my conversation");
    assert.equal(got.conversation.id, own.id);
    await client.none("conversation:updated", about(others.id), "another's conversation in view mine");
  });

  it("inbox updates from a burst of 20 messages are coalesced; the last carries the newest message", async () => {
    const inbox = await agent(uid("agent"));
    const conv = await conversation();
    await once(inbox, "conversation:new", { filter: about(conv.id) });
    const sent = [];
    for (let i = 1; i <= 20; i++) sent.push(await ctx.server.postMessage(conv.id, `burst ${i}`));
    const newest = sent.at(-1);
    await update(inbox, conv.id, (c) => c.last_message?.id === newest.id, "the newest state after the burst");
    // One coalescing window (1 s) after the newest state: no older state may follow it.
    forget(inbox, conv.id);
    await expectNone(inbox, "conversation:updated", { filter: about(conv.id), ms: 1100, what: "anything after the newest state" });
    const offsets = inbox.log.all("conversation:updated", about(conv.id)).map((e) => e.conversation.last_message?.offset);
    assert.ok(offsets.length <= 3, `20 messages gave ${offsets.length} inbox updates (offsets ${offsets.join(", ")})`);
    assert.deepEqual(offsets, [...offsets].sort((x, y) => x - y), "each update is newer than the one before");
    assert.equal(offsets.at(-1), newest.offset);
  });
});

describe("availability and GET /api/v1/agents", () => {
  /** The agent as GET /api/v1/agents lists it. */
  async function listed(sub) {
    const res = await ctx.server.http("GET", "/api/v1/agents", { token: ctx.server.serviceToken() });
    assert.equal(res.status, 200, res.text);
    return res.body.agents.find((x) => x.id === sub);
  }
  const becomes = (sub, availability) =>
    eventually(() => listed(sub), (x) => x?.availability === availability, { what: `${sub} ${availability}` });

  it("online while connected, away when set, offline once its last socket is gone; open_assigned counts", async () => {
    const a = uid("agent");
    const first = await agent(a);
    const second = await agent(a);
    await becomes(a, "online");
    assert.deepEqual(await listed(a), { ...who(a), availability: "online", open_assigned: 0 });
    const conv = await conversation();
    await claim(conv.id, a);
    expectOk(await ack(first, "set_availability", { status: "away" }));
    assert.deepEqual(await becomes(a, "away"), { ...who(a), availability: "away", open_assigned: 1 });
    // The first socket's presence in a room tells when its disconnect has been handled.
    await join(first, conv.id);
    const watcher = await agent(uid("agent"));
    await join(watcher, conv.id);
    first.close();
    await once(watcher, "presence", { filter: (p) => p.user_id === a && p.online === false, what: "the first socket's disconnect" });
    assert.notEqual((await listed(a)).availability, "offline", "one socket of the agent is still connected");
    second.close();
    await becomes(a, "offline");
  });

  it("agents only: a customer listing agents is forbidden", async () => {
    const res = await ctx.server.http("GET", "/api/v1/agents", { token: ctx.server.customerToken(uid("cust")) });
    assert.equal(res.status, 403, res.text);
    assert.equal(res.body?.error?.code, "forbidden");
  });
});

// ---- private notes --------------------------------------------------------------

/** send_message with private: true, asserting the stored note is marked private. */
async function note(socket, id, text) {
  const reply = expectOk(await ack(socket, "send_message", { conversation_id: id, text, private: true }), "a private note");
  assert.equal(reply.message?.private, true, `the note is marked private: ${JSON.stringify(reply.message)}`);
  return assertMessage(reply.message);
}

function assertPublic(msg) {
  assert.ok(!("private" in msg), `a public message carries no private flag: ${JSON.stringify(msg)}`);
}

/** A conversation with its customer's socket, an agent's and a bot's joined. */
async function noteRoom() {
  const conv = await conversation();
  const cust = await customer(conv.customer.id);
  await join(cust, conv.id);
  const staff = await agent(uid("agent"));
  await join(staff, conv.id);
  const bot = await connect(ctx.server.url, { token: ctx.server.botToken(uid("bot")) });
  await join(bot, conv.id);
  return { conv, cust, staff, bot };
}

describe("private notes never reach a customer", () => {
  it("live: the customer gets the public reply after a note and never the note; staff get both, consecutive", async () => {
    const { conv, cust, staff, bot } = await noteRoom();
    const nativeCust = await native(ctx.server.customerToken(conv.customer.id));
    expectOk(await nativeCust.call("join_conversation", { conversation_id: conv.id }));
    const n = await note(staff, conv.id, "VIP customer, refund approved");
    const reply = await send(staff, conv.id, "Good news: your refund is on its way");
    assertPublic(reply);
    assert.equal(reply.offset, n.offset + 1, "a note takes an offset in the conversation's one sequence");
    for (const [name, socket] of [["agent", staff], ["bot", bot]]) {
      const got = [await once(socket, "message:new", { what: name }), await once(socket, "message:new", { what: name })];
      assert.deepEqual(got.map((m) => [m.id, m.offset, m.private]), [[n.id, n.offset, true], [reply.id, reply.offset, undefined]], name);
    }
    assert.equal((await once(cust, "message:new")).id, reply.id, "the customer's first message is the public reply");
    assert.equal((await nativeCust.event("message:new")).id, reply.id, "so is the native customer's");
    await Promise.all([
      expectNone(cust, "message:new", { filter: (m) => m.id === n.id, what: "the note" }),
      nativeCust.none("message:new", (m) => m.id === n.id, "the note"),
    ]);
  });

  it("a note's read receipt reaches staff only; a public message's reaches the customer", async () => {
    const { conv, cust, staff, bot } = await noteRoom();
    const n = await note(staff, conv.id, "check the order history first");
    const reply = await send(staff, conv.id, "Looking into it");
    expectOk(await ack(bot, "mark_read", { conversation_id: conv.id, message_id: n.id }), "mark_read of the note");
    const staffSees = await once(staff, "message:status", { filter: (s) => s.message_id === n.id, what: "the note's receipt" });
    assert.equal(staffSees.status, "read");
    expectOk(await ack(bot, "mark_read", { conversation_id: conv.id, message_id: reply.id }), "mark_read of the reply");
    // Receipts of one conversation arrive in order: the reply's comes after the note's would have.
    const first = await once(cust, "message:status", { what: "the customer's first receipt" });
    assert.equal(first.message_id, reply.id, "the customer's first receipt is the public reply's, never the note's");
    const denied = await ack(cust, "mark_read", { conversation_id: conv.id, message_id: n.id });
    assert.equal(denied.ok, false, "a customer cannot mark a note it never saw");
    assert.equal(denied.error.code, "not_found");
  });

  it("history over HTTP: the customer's token skips notes on both paths, with holes where they are; staff see them in place", async () => {
    const conv = await conversation();
    const first = await ctx.server.postMessage(conv.id, "public one");
    const byHttp = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, {
      token: ctx.server.agentToken(uid("agent")),
      json: { text: "note over HTTP", private: true },
    });
    assert.equal(byHttp.status, 201, byHttp.text);
    assert.equal(byHttp.body.private, true);
    const bot = await connect(ctx.server.url, { token: ctx.server.botToken(uid("bot")) });
    const byBot = await note(bot, conv.id, "a bot's note");
    const last = await ctx.server.postMessage(conv.id, "public two");
    const history = async (path, token) => {
      const res = await ctx.server.http("GET", path, { token });
      assert.equal(res.status, 200, `${path}: ${res.text}`);
      return res.body.messages.map((m) => [m.offset, m.private ?? false]);
    };
    const custToken = ctx.server.customerToken(conv.customer.id);
    for (const path of [`/api/v1/conversations/${conv.id}/messages`, `/api/chat/sessions/${conv.id}/messages`]) {
      assert.deepEqual(await history(path, custToken), [[first.offset, false], [last.offset, false]], `customer: ${path}`);
      assert.deepEqual(
        await history(path, ctx.server.serviceToken()),
        [[1, false], [byHttp.body.offset, true], [byBot.offset, true], [4, false]],
        `staff: ${path}`,
      );
    }
    assert.deepEqual(await history(`/api/v1/conversations/${conv.id}/messages?since_offset=1`, custToken), [[4, false]]);
  });

  it("the join ack: the customer's skips the note, an agent's carries it", async () => {
    const conv = await conversation();
    const first = await ctx.server.postMessage(conv.id, "public one");
    const staff = await agent(uid("agent"));
    const n = await note(staff, conv.id, "internal: check the order first");
    const last = await ctx.server.postMessage(conv.id, "public two");
    const cust = await customer(conv.customer.id);
    const custAck = await join(cust, conv.id);
    assert.deepEqual(custAck.messages.map((m) => m.id), [first.id, last.id]);
    const staffAck = await join(staff, conv.id);
    assert.deepEqual(staffAck.messages.map((m) => [m.id, m.private]), [[first.id, undefined], [n.id, true], [last.id, undefined]]);
  });

  it("recovery by since_offset after a reconnect: the customer's offsets skip exactly the note", async () => {
    const { conv, cust, staff } = await noteRoom();
    const seen = await send(cust, conv.id, "hello?");
    await once(cust, "message:new", { filter: (m) => m.id === seen.id });
    cust.close();
    const n = await note(staff, conv.id, "while the customer is away");
    const missed = await send(staff, conv.id, "Hi! Sorry for the wait");
    const back = await customer(conv.customer.id);
    const recovered = await join(back, conv.id, seen.offset);
    assert.deepEqual(recovered.messages.map((m) => [m.id, m.offset]), [[missed.id, n.offset + 1]], "only the public message, offset after the hole");
    const staffBack = await agent(uid("agent"));
    const staffRecovered = await join(staffBack, conv.id, seen.offset);
    assert.deepEqual(staffRecovered.messages.map((m) => m.offset), [n.offset, missed.offset], "staff recover the note in place");
    // And live after the recovery: a note and a reply, the customer gets the reply first and only.
    const n2 = await note(staff, conv.id, "second note");
    const reply = await send(staff, conv.id, "anything else?");
    assert.equal((await once(back, "message:new")).id, reply.id);
    await expectNone(back, "message:new", { filter: (m) => m.id === n2.id, what: "the second note" });
  });

  it("the room-string style (join \"chat:<id>\"): new-message for the public reply only", async () => {
    const conv = await conversation();
    const staff = await agent(uid("agent"));
    await join(staff, conv.id);
    const widget = await customer(conv.customer.id);
    widget.emit("join", `chat:${conv.id}`);
    // `join` has no ack: the agent's presence event says it took effect.
    await once(staff, "presence", { filter: (p) => p.user_id === conv.customer.id && p.online === true, what: "the widget's join" });
    const n = await note(staff, conv.id, "do not show the widget");
    const reply = await send(staff, conv.id, "Olá!");
    const got = await once(widget, "new-message");
    assert.deepEqual([got.message.id, got.from], [reply.id, "agent"], "the widget's first new-message is the public reply");
    await expectNone(widget, "new-message", { filter: (d) => d?.message?.id === n.id, what: "the note" });
    assert.deepEqual(widget.log.all("message:new", (m) => m.id === n.id), [], "nor as message:new");
  });

  it("a customer asking for private: true is forbidden on every transport and nothing is stored", async () => {
    const conv = await conversation();
    const cust = await customer(conv.customer.id);
    await join(cust, conv.id);
    const payload = { conversation_id: conv.id, text: "let me see the notes", private: true };
    expectAckError(await ack(cust, "send_message", payload), "forbidden", "Socket.IO");
    const nativeCust = await native(ctx.server.customerToken(conv.customer.id));
    expectAckError(await nativeCust.call("send_message", payload), "forbidden", "native WebSocket");
    const res = await ctx.server.http("POST", `/api/v1/conversations/${conv.id}/messages`, {
      token: ctx.server.customerToken(conv.customer.id),
      json: { text: payload.text, private: true },
    });
    assert.equal(res.status, 403, res.text);
    assert.deepEqual(await ctx.server.history(conv.id), []);
  });

  it("a status change after a note: the customer's conversation:updated never shows it, staff's does", async () => {
    const { conv, cust, staff } = await noteRoom();
    const n = await note(staff, conv.id, "escalating to billing");
    await must("close_conversation", { conversation_id: conv.id });
    const forCustomer = await update(cust, conv.id, (c) => c.status === "closed", "the close, customer");
    assert.ok(forCustomer.last_message?.id !== n.id && !forCustomer.last_message?.private, JSON.stringify(forCustomer));
    const forStaff = await update(staff, conv.id, (c) => c.status === "closed", "the close, agent");
    assert.equal(forStaff.last_message?.id, n.id, "staff see the note as the last message");
  });
});

describe("whatsapp conversations", () => {
  /** A WhatsApp conversation opened by an inbound message, and an agent socket that saw it appear. */
  async function inbound() {
    const waId = randomWaId();
    const inbox = await agent(uid("agent"));
    assert.equal((await deliver(ctx.server.url, fixture("text", { waId }))).status, 200);
    const id = conversationId(waId);
    await once(inbox, "conversation:new", { filter: about(id), timeout: 10_000, what: "the inbound conversation" });
    return { waId, id, inbox };
  }

  it("a note is never sent to the Graph API; the public reply after it is", async () => {
    const { waId, id, inbox } = await inbound();
    const n = await note(inbox, id, `note for ${waId}`);
    const reply = await send(inbox, id, `reply for ${waId}`);
    await graph.waitFor((reqs) => reqs.some((q) => q.body?.to === waId && q.body.text?.body === reply.text), {
      what: "the public reply's send",
    });
    const sends = graph.requests.filter((q) => q.body?.to === waId).map((q) => q.body.text?.body);
    assert.deepEqual(sends, [reply.text], `only the public reply went out, not "${n.text}"`);
  });

  it("an inbound message in a closed conversation reopens it with its assignee", async () => {
    const { waId, id, inbox } = await inbound();
    const a = uid("agent");
    await claim(id, a);
    await must("close_conversation", { conversation_id: id });
    await update(inbox, id, (c) => c.status === "closed", "the close");
    // Updates from before the close (the first message's, say) also read "open".
    forget(inbox, id);
    assert.equal((await deliver(ctx.server.url, fixture("text", { waId }))).status, 200);
    const reopened = await update(inbox, id, (c) => c.status === "open", "the reopen");
    assert.deepEqual(reopened.assignee, who(a));
    assert.deepEqual([(await stored(id)).status, (await stored(id)).assignee], ["open", who(a)]);
  });
});

// ---- round-robin assignment (a server of its own) ---------------------------------

const ASSIGNMENT_TIMEOUT_MS = 4 * DEFAULT_TIMEOUT_MS;

describe("auto-assignment (SWITCHBOARD_AUTO_ASSIGN=round_robin)", () => {
  let rr;
  before(async () => {
    rr = await startServer({ env: { SWITCHBOARD_AUTO_ASSIGN: "round_robin" } });
  });
  after(() => rr?.stop());

  async function onlineAgents() {
    const res = await rr.http("GET", "/api/v1/agents", { token: rr.serviceToken() });
    assert.equal(res.status, 200, res.text);
    return res.body.agents;
  }
  /** Availability has no event: poll until exactly `subs` are online (earlier tests' agents gone). */
  function onlineAre(subs) {
    const want = [...subs].sort();
    return eventually(
      async () => (await onlineAgents()).filter((x) => x.availability === "online").map((x) => x.id).sort(),
      (ids) => JSON.stringify(ids) === JSON.stringify(want),
      { what: `online agents should be ${JSON.stringify(want)}` },
    );
  }

  /**
   * The first conversation:new or :updated of `id` on `socket` (received or coming) whose conversation passes `test`.
   * An assignment takes a worker's round trip and a read of every edge's announcement, so it is given longer than
   * one event under a loaded machine.
   */
  function inboxEvent(socket, id, test, what) {
    const match = (event, e) =>
      (event === "conversation:new" || event === "conversation:updated") && e?.conversation?.id === id && test(e.conversation);
    const seen = socket.log.entries.find((x) => match(x.event, x.args[0]));
    if (seen) return Promise.resolve(seen.args[0].conversation);
    return new Promise((resolve, reject) => {
      const listener = (event, e) => {
        if (!match(event, e)) return;
        clearTimeout(timer);
        socket.offAny(listener);
        resolve(e.conversation);
      };
      const timer = setTimeout(() => {
        socket.offAny(listener);
        reject(new Error(`timed out after ${ASSIGNMENT_TIMEOUT_MS} ms waiting for ${what}`));
      }, ASSIGNMENT_TIMEOUT_MS);
      socket.onAny(listener);
    });
  }

  /** A new conversation, and whom it went to, as `watch` (an agent in view all) sees it. */
  async function routed(watch) {
    const conv = await conversation(rr);
    const got = await inboxEvent(watch, conv.id, (c) => "assignee" in c, `the assignment of ${conv.id}`);
    assert.equal(got.status, "open");
    assert.deepEqual((await stored(conv.id, rr)).assignee, got.assignee, "GET agrees with the event");
    return { conv, to: got.assignee.id };
  }

  it("two online agents: new conversations alternate, then go to whoever has fewer open (ties: least recently assigned)", async () => {
    const [x, y] = [uid("agent"), uid("agent")];
    const watch = await agent(x, rr);
    await agent(y, rr);
    await onlineAre([x, y]);
    const first = [];
    for (let i = 0; i < 4; i++) first.push(await routed(watch));
    const [p, q] = [first[0].to, first[0].to === x ? y : x];
    assert.deepEqual(first.map((r) => r.to), [p, q, p, q], "alternating");
    // q's two closed: q has none open, p two.
    for (const r of [first[1], first[3]]) await must("close_conversation", { conversation_id: r.conv.id }, { server: rr });
    const next = [];
    for (let i = 0; i < 3; i++) next.push((await routed(watch)).to);
    assert.deepEqual(next, [q, q, p], "fewest open first; at two each, the least recently assigned");
    const counts = Object.fromEntries((await onlineAgents()).filter((a) => [p, q].includes(a.id)).map((a) => [a.id, a.open_assigned]));
    assert.deepEqual(counts, { [p]: 3, [q]: 2 });
  });

  it("an away agent gets none; with nobody online a conversation waits, and its hand-off then goes to who is online", async () => {
    const [x, z] = [uid("agent"), uid("agent")];
    const watch = await agent(x, rr);
    const away = await agent(z, rr);
    assert.equal(expectOk(await ack(away, "set_availability", { status: "away" })).agent.availability, "away");
    await onlineAre([x]);
    for (let i = 0; i < 3; i++) assert.equal((await routed(watch)).to, x, "the online agent, though the away one has fewer");
    expectOk(await ack(watch, "set_availability", { status: "away" }));
    await onlineAre([]);
    const waiting = await conversation(rr);
    const created = await inboxEvent(watch, waiting.id, () => true, "the waiting conversation");
    assertUnassigned(created, "nobody online");
    await expectNone(watch, "conversation:updated", {
      filter: (e) => about(waiting.id)(e) && "assignee" in e.conversation,
      what: "an assignment with nobody online",
    });
    assertUnassigned(await stored(waiting.id, rr), "GET with nobody online");
    expectOk(await ack(watch, "set_availability", { status: "online" }));
    await onlineAre([x]);
    await must("request_human", { conversation_id: waiting.id }, { server: rr });
    const handed = await inboxEvent(watch, waiting.id, (c) => c.assignee?.id === x, "the hand-off's assignment");
    assert.deepEqual(handed.assignee, who(x));
    assert.equal((await stored(waiting.id, rr)).status, "open", "a pending conversation that gets an assignee is open");
  });
});
