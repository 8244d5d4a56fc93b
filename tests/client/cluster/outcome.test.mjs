// A write the workers cannot answer in time: the edge says `outcome_unknown` (504),
// never a plain failure, because the command is on the bus and a worker may still
// store it; the retry with the same client_msg_id then returns that one message.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { useCluster } from "../lib/cluster.mjs";
import { createConversation, publish, stored } from "./common.mjs";

const COMMAND_TIMEOUT_MS = 1500;

const ctx = useCluster({ edges: 1, workers: 1, env: { SWITCHBOARD_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS) } });

async function post(cluster, edge, conversationId, clientMsgId) {
  const res = await fetch(`${edge.url}/api/v1/conversations/${conversationId}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${cluster.serviceToken()}`, "content-type": "application/json" },
    body: JSON.stringify({ text: "written while the worker was frozen", client_msg_id: clientMsgId }),
    signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS + 5000),
  });
  return { status: res.status, body: await res.json() };
}

describe("a write the workers do not answer in time", () => {
  it("is answered outcome_unknown; once a worker takes it, the retry returns the one stored message", async () => {
    const { cluster } = ctx;
    const [edge] = cluster.edges;
    const id = await createConversation(cluster, edge);
    // Frozen, not killed: the command it may already hold comes back to life with it.
    const worker = cluster.pid("worker1");
    process.kill(worker, "SIGSTOP");
    let unanswered;
    try {
      unanswered = await post(cluster, edge, id, "late-1");
    } finally {
      process.kill(worker, "SIGCONT");
    }
    assert.equal(unanswered.status, 504, JSON.stringify(unanswered.body));
    assert.equal(unanswered.body.error.code, "outcome_unknown");
    assert.match(unanswered.body.error.message, /client_msg_id/);
    // The retry finds the message the resumed worker stored, or stores it: one message either way.
    const retried = await publish(cluster, edge, id, "written while the worker was frozen", "late-1");
    const again = await post(cluster, edge, id, "late-1");
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.id, retried.id);
    assert.deepEqual(stored(cluster, id), { rows: 1, ids: 1, min: 1, max: 1 });
  });
});
