// The core chat flow over each Engine.IO transport an unmodified socket.io-client uses:
// websocket only, long-polling only, and the default (polling, then upgrade to websocket).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { useServer } from "../lib/setup.mjs";
import { ack, assertMessage, connect, connectError, expectOk, join, once, send } from "../lib/sio.mjs";

const ctx = useServer();

const MODES = [
  { name: "websocket only", opts: { transports: ["websocket"] }, final: "websocket" },
  { name: "polling only", opts: { transports: ["polling"] }, final: "polling" },
  { name: "default (polling then upgrade)", opts: { transports: "default" }, final: "websocket", upgrades: true },
];

function upgraded(socket, timeout = 5000) {
  const engine = socket.io.engine;
  if (engine.transport.name === "websocket") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no upgrade to websocket within ${timeout} ms (still ${engine.transport.name})`)),
      timeout,
    );
    engine.once("upgrade", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe("transports", () => {
  for (const mode of MODES) {
    it(`core flow over ${mode.name}: connect, join, send, receive, typing, read, ping, leave`, async () => {
      const id = randomUUID();
      const sub = `cust-${id.slice(0, 6)}`;
      const c = await connect(ctx.server.url, {
        token: ctx.server.customerToken(sub, { conversations: [id] }),
        ...mode.opts,
      });
      const a = await connect(ctx.server.url, { token: ctx.server.agentToken(`agent-${id.slice(0, 6)}`), ...mode.opts });
      const hello = await once(c, "connected");
      assert.equal(hello.user_id, sub);

      if (mode.upgrades) {
        await upgraded(c);
        await upgraded(a);
      }
      assert.equal(c.io.engine.transport.name, mode.final, "customer transport");
      assert.equal(a.io.engine.transport.name, mode.final, "agent transport");

      await join(c, id);
      await join(a, id);

      const msg = await send(c, id, `hello over ${mode.name}`, `cm-${id}`);
      assertMessage(msg, { offset: 1, source: "widget", conversation_id: id });
      assert.deepEqual(await once(a, "message:new"), msg);
      assert.deepEqual(await once(c, "message:new"), msg);

      const reply = await send(a, id, "agent answer");
      assert.equal(reply.offset, 2);
      assert.equal((await once(c, "message:new")).id, reply.id);
      assert.equal((await once(a, "message:new")).id, reply.id, "the sender gets its own message:new");

      // A large-ish message (well under the limits) crosses each transport intact.
      const big = "ñ€😀".repeat(500);
      const bigMsg = await send(c, id, big);
      const bigLive = await once(a, "message:new");
      assert.equal(bigLive.id, bigMsg.id);
      assert.ok(bigLive.text === big, `multi-byte text altered in transit (length ${bigLive.text?.length})`);
      assert.ok(bigMsg.text === big, "multi-byte text altered in the ack");

      c.emit("typing_start", { conversation_id: id });
      const typing = await once(a, "user_typing");
      assert.equal(typing.typing, true);
      assert.equal(typing.user_id, sub);

      expectOk(await ack(a, "mark_read", { conversation_id: id, message_id: msg.id }));
      const st = await once(c, "message:status", { filter: (e) => e?.message_id === msg.id });
      assert.equal(st.status, "read");

      c.emit("ping", {});
      await once(c, "pong");

      expectOk(await ack(c, "leave_conversation", { conversation_id: id }));
      assert.equal((await once(c, "left_conversation")).conversation_id, id);
    });
  }

  it("polling and websocket clients in the same room see each other's messages", async () => {
    const conv = await ctx.server.createConversation();
    const p = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-poll"), transports: ["polling"] });
    const w = await connect(ctx.server.url, { token: ctx.server.agentToken("agent-ws"), transports: ["websocket"] });
    await join(p, conv.id);
    await join(w, conv.id);
    const m1 = await send(p, conv.id, "from polling");
    assert.equal((await once(w, "message:new")).id, m1.id);
    assert.equal((await once(p, "message:new")).id, m1.id);
    const m2 = await send(w, conv.id, "from websocket");
    assert.equal((await once(p, "message:new")).id, m2.id);
    assert.equal((await once(w, "message:new")).id, m2.id);
  });

  it("the refusal reasons are the same over polling", async () => {
    const err = await connectError(ctx.server.url, { transports: ["polling"] });
    assert.equal(err.message, "token required");
    const err2 = await connectError(ctx.server.url, { transports: ["polling"], token: "bad" });
    assert.equal(err2.message, "invalid token");
  });
});
