// A batch cut by a crash: `switchboard dev` killed with SIGKILL while it stores batches that
// span many conversations. Each batch is one transaction, so after the restart every
// conversation holds a whole prefix of what was sent to it: offsets 1..n with no hole, no
// offset counted without its message (the next message is n + 1), every acknowledged message
// where it was acknowledged, and a retry of anything unanswered stored exactly once.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { useServer } from "../lib/setup.mjs";

const ctx = useServer();

const CONVERSATIONS = 40;
const PER_CONVERSATION = 40;

/** One POST, no retry: the stored message, or null when the process died under it. */
async function attempt(server, conversationId, text, clientMsgId) {
  try {
    return await server.postMessage(conversationId, text, { clientMsgId });
  } catch {
    return null;
  }
}

const range = (n) => Array.from({ length: n }, (_, i) => i + 1);

describe("a batch interrupted by a crash", () => {
  it("kill -9 mid-burst over 40 conversations: each holds a whole prefix, offsets 1..n, retries stored once", async () => {
    const server = ctx.server;
    const ids = [];
    for (let c = 0; c < CONVERSATIONS; c++) ids.push((await server.createConversation()).id);
    // Every conversation sends at once, one message after another, so each batch the worker
    // takes holds messages of many conversations.
    const acked = new Map(ids.map((id) => [id, []]));
    let answered = 0;
    let crash;
    await Promise.all(
      ids.map(async (id, c) => {
        for (let i = 0; i < PER_CONVERSATION; i++) {
          const m = await attempt(server, id, `c${c} #${i}`, `k${c}-${i}`);
          if (!m) {
            // Cut by the crash: this conversation's burst ends here.
            if (crash) break;
            throw new Error(`message ${i} of conversation ${c} refused before the crash`);
          }
          acked.get(id).push(m);
          if (++answered === Math.floor((CONVERSATIONS * PER_CONVERSATION) / 3)) crash = server.crash();
        }
      }),
    );
    const exit = await crash;
    assert.equal(exit.signal, "SIGKILL", "the process was killed, not stopped");

    let total = 0;
    for (const [c, id] of ids.entries()) {
      const history = await server.history(id, "limit=1000");
      const n = history.length;
      total += n;
      assert.deepEqual(history.map((m) => m.offset), range(n), `conversation ${id}: offsets 1..${n}`);
      const byId = new Map(history.map((m) => [m.id, m]));
      for (const m of acked.get(id)) {
        assert.equal(byId.get(m.id)?.offset, m.offset, `acknowledged message ${m.id} kept at offset ${m.offset}`);
      }
      // Stored in the order sent: a prefix of this conversation's messages, none skipped.
      assert.deepEqual(history.map((m) => m.text), range(n).map((i) => `c${c} #${i - 1}`));
      // The conversation's offset counts exactly the stored messages.
      const next = await server.postMessage(id, "after the crash");
      assert.equal(next.offset, n + 1, `conversation ${id}: the next offset follows the last stored`);
    }
    assert.ok(total < CONVERSATIONS * PER_CONVERSATION, "the crash cut the burst short");

    // Retrying every message with its client_msg_id stores each that was missing, once.
    // (`after the crash` is one more, without a key.)
    const c0 = ids[0];
    const kept = (await server.history(c0, "limit=1000")).length - 1;
    for (let i = 0; i < PER_CONVERSATION; i++) {
      const res = await server.http("POST", `/api/v1/conversations/${c0}/messages`, {
        token: server.serviceToken(),
        json: { text: `c0 #${i}`, client_msg_id: `k0-${i}` },
      });
      // 200: stored before the crash, answered as it was; 201: stored now.
      assert.equal(res.status, i < kept ? 200 : 201, `retry of message ${i}: ${res.text}`);
    }
    const after = await server.history(c0, "limit=1000");
    assert.deepEqual(after.map((m) => m.offset), range(PER_CONVERSATION + 1));
    assert.equal(new Set(after.map((m) => m.text)).size, PER_CONVERSATION + 1, "no message stored twice");
  });
});
