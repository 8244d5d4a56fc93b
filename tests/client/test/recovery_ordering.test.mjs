// Offsets, ordering and recovery: since_offset after a reconnect, gapless ascending
// delivery under concurrent publishers, the latest page, and persistence across restart.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { useServer } from "../lib/setup.mjs";
import { ack, connect, disconnected, expectNone, join, many, once, send } from "../lib/sio.mjs";

const ctx = useServer();

async function postMany(id, texts, concurrency = 8) {
  const out = [];
  for (let i = 0; i < texts.length; i += concurrency) {
    out.push(...(await Promise.all(texts.slice(i, i + concurrency).map((t) => ctx.server.postMessage(id, t)))));
  }
  return out;
}

describe("join with since_offset", () => {
  it("returns every message after since_offset, ascending, and the latest offset", async () => {
    const conv = await ctx.server.createConversation();
    const posted = [];
    for (let i = 1; i <= 5; i++) posted.push(await ctx.server.postMessage(conv.id, `m${i}`));
    assert.deepEqual(
      posted.map((m) => m.offset),
      [1, 2, 3, 4, 5],
      "offsets start at 1 without gaps",
    );
    const a = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-r1") });

    let reply = await join(a, conv.id, 2);
    assert.equal(reply.offset, 5);
    assert.deepEqual(
      reply.messages.map((m) => [m.offset, m.text]),
      [
        [3, "m3"],
        [4, "m4"],
        [5, "m5"],
      ],
    );
    reply = await join(a, conv.id, 5);
    assert.equal(reply.offset, 5);
    assert.deepEqual(reply.messages, []);
    reply = await join(a, conv.id, 0);
    assert.deepEqual(
      reply.messages.map((m) => m.id),
      posted.map((m) => m.id),
    );
  });

  it("without since_offset returns the latest page: at most 50, ascending", async () => {
    const conv = await ctx.server.createConversation();
    const texts = Array.from({ length: 60 }, (_, i) => `bulk ${i}`);
    const posted = await postMany(conv.id, texts);
    assert.deepEqual(
      posted.map((m) => m.offset).sort((x, y) => x - y),
      Array.from({ length: 60 }, (_, i) => i + 1),
      "60 concurrent publishes get offsets 1..60 exactly once",
    );
    const a = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-r2") });
    const reply = await join(a, conv.id);
    assert.equal(reply.offset, 60);
    assert.deepEqual(
      reply.messages.map((m) => m.offset),
      Array.from({ length: 50 }, (_, i) => i + 11),
    );
  });
});

describe("recovery after a disconnect", () => {
  it("a new socket joining with since_offset gets exactly the missed messages, then live ones continue", async () => {
    const id = randomUUID();
    const token = ctx.server.customerToken("cust-r3", { conversations: [id] });
    const first = await connect(ctx.server.url, { token });
    await join(first, id);
    for (let i = 1; i <= 3; i++) await ctx.server.postMessage(id, `seen ${i}`);
    const seen = await many(first, "message:new", 3);
    assert.deepEqual(
      seen.map((m) => m.offset),
      [1, 2, 3],
    );
    const lastSeen = seen.at(-1).offset;

    first.close();
    await disconnected(first);
    const missed = [];
    for (let i = 1; i <= 4; i++) missed.push(await ctx.server.postMessage(id, `missed ${i}`));

    const second = await connect(ctx.server.url, { token });
    const reply = await join(second, id, lastSeen);
    assert.equal(reply.offset, 7);
    assert.deepEqual(
      reply.messages.map((m) => [m.id, m.offset, m.text]),
      missed.map((m) => [m.id, m.offset, m.text]),
      "exactly the missed messages, in order, each once",
    );

    const live = await ctx.server.postMessage(id, "live again");
    const got = await once(second, "message:new");
    assert.equal(got.id, live.id);
    assert.equal(got.offset, 8);
    // No replay of the recovered messages as live events.
    await expectNone(second, "message:new", { what: "recovered messages must not be re-sent live" });
  });

  it("the recovering socket sees no gap between the ack's messages and live traffic published during the join", async () => {
    const conv = await ctx.server.createConversation();
    await postMany(conv.id, ["a", "b", "c"]);
    const s = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-r4") });
    // Publish concurrently with the join: whatever the interleaving, ack.messages
    // followed by the live message:new events must be 1..N with no gap and no duplicate.
    const during = postMany(
      conv.id,
      Array.from({ length: 10 }, (_, i) => `during ${i}`),
      1,
    );
    const reply = await join(s, conv.id, 0);
    await during;
    const recovered = reply.messages.map((m) => m.offset);
    const liveCount = 13 - recovered.at(-1);
    const live = liveCount > 0 ? (await many(s, "message:new", liveCount)).map((m) => m.offset) : [];
    const all = [...recovered, ...live];
    assert.deepEqual(
      all,
      Array.from({ length: 13 }, (_, i) => i + 1),
      `ack ${JSON.stringify(recovered)} + live ${JSON.stringify(live)}`,
    );
    await expectNone(s, "message:new", { what: "duplicates" });
  });
});

describe("ordering", () => {
  it("concurrent publishers: every socket sees offsets 1..N ascending with no gap", async () => {
    const id = randomUUID();
    const c = await connect(ctx.server.url, { token: ctx.server.customerToken("cust-r5", { conversations: [id] }) });
    await join(c, id);
    const a = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-r5") });
    await join(a, id);
    const watcher = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-r5-watch") });
    await join(watcher, id);

    const PER = 15;
    const fromCustomer = (async () => {
      for (let i = 0; i < PER; i++) await send(c, id, `c${i}`);
    })();
    const fromAgent = (async () => {
      for (let i = 0; i < PER; i++) await send(a, id, `a${i}`);
    })();
    const fromApi = postMany(
      id,
      Array.from({ length: PER }, (_, i) => `h${i}`),
      3,
    );
    await Promise.all([fromCustomer, fromAgent, fromApi]);

    const N = PER * 3;
    const expected = Array.from({ length: N }, (_, i) => i + 1);
    for (const [who, s] of [
      ["customer", c],
      ["agent", a],
      ["watcher", watcher],
    ]) {
      const got = await many(s, "message:new", N, { what: who });
      assert.deepEqual(
        got.map((m) => m.offset),
        expected,
        `${who} saw offsets out of order or with gaps`,
      );
    }
    // Per-sender order is kept too.
    const history = await ctx.server.history(id, "since_offset=0");
    assert.deepEqual(
      history.map((m) => m.offset),
      expected,
    );
    for (const prefix of ["c", "a", "h"]) {
      const seq = history.filter((m) => m.text.startsWith(prefix) && /^[cah]\d+$/.test(m.text)).map((m) => m.text);
      if (prefix !== "h") {
        assert.deepEqual(
          seq,
          Array.from({ length: PER }, (_, i) => `${prefix}${i}`),
          `sender ${prefix} order`,
        );
      } else {
        assert.equal(seq.length, PER);
      }
    }
  });
});

describe("persistence", () => {
  it("SIGTERM exits 0; history, offsets and idempotency survive a restart", async () => {
    const id = randomUUID();
    const token = ctx.server.customerToken("cust-r6", { conversations: [id] });
    const c = await connect(ctx.server.url, { token });
    await join(c, id);
    const m1 = await send(c, id, "before restart 1", "persist-1");
    const m2 = await send(c, id, "before restart 2", "persist-2");

    const exit = await ctx.server.restart();
    assert.equal(exit.code, 0, `SIGTERM should drain and exit 0, got ${JSON.stringify(exit)}`);
    await disconnected(c);

    const c2 = await connect(ctx.server.url, { token });
    const reply = await join(c2, id, 0);
    assert.equal(reply.offset, 2);
    assert.deepEqual(reply.messages, [m1, m2]);
    const retry = await send(c2, id, "before restart 2", "persist-2");
    assert.deepEqual(retry, m2, "client_msg_id dedupe survives a restart");
    const m3 = await send(c2, id, "after restart");
    assert.equal(m3.offset, 3);
    const ack3 = await ack(c2, "join_conversation", { conversation_id: id, since_offset: 2 });
    assert.deepEqual(
      ack3.messages.map((m) => m.id),
      [m3.id],
    );
  });
});
