// Two `worker whatsapp` processes on NATS share the outbound work: every
// agent message in a WhatsApp conversation reaches the Graph API once.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { useCluster } from "../lib/cluster.mjs";
import { startGraph } from "../lib/graph.mjs";
import { conversationId, deliver, fixture, randomWaId, waEnv } from "../lib/whatsapp.mjs";
import { connect, once } from "../lib/sio.mjs";
import { burst, publish } from "./common.mjs";

const graph = await startGraph();
after(() => graph.stop());
const ctx = useCluster({ edges: 2, workers: 2, env: { ...waEnv(graph.base), WA_WORKERS: "2" } });

describe("whatsapp across workers", () => {
  it("50 agent messages through two edges and two whatsapp workers: each sent once, in Meta's shape", async () => {
    const { cluster } = ctx;
    const [a, b] = cluster.edges;
    const waId = randomWaId();
    const id = conversationId(waId);
    const agent = await connect(b.url, { token: cluster.agentToken() });
    const res = await deliver(a.url, fixture("text", { waId }));
    assert.equal(res.status, 200);
    // The inbound message creates the conversation; answer once it exists.
    await once(agent, "conversation:new", { filter: (e) => e.conversation.id === id, timeout: 10_000 });
    const N = 50;
    await burst(N, 8, (i) => publish(cluster, i % 2 ? a : b, id, `reply ${i}`, `wa-${i}`));
    const sent = await graph.waitFor((reqs) => reqs.filter((r) => r.body?.to === waId).length >= N, {
      timeout: 30_000,
      what: `${N} sends to ${waId}`,
    });
    const bodies = sent.filter((r) => r.body?.to === waId).map((r) => r.body.text.body);
    // A bounded quiet window: a second send of any of them would come now.
    await new Promise((r) => setTimeout(r, 500));
    const all = graph.requests.filter((r) => r.body?.to === waId);
    assert.equal(all.length, N, "no message sent twice");
    assert.equal(new Set(bodies).size, N);
    for (const r of sent.filter((r) => r.body?.to === waId)) {
      assert.deepEqual(Object.keys(r.body).sort(), ["messaging_product", "recipient_type", "text", "to", "type"]);
      assert.equal(r.body.messaging_product, "whatsapp");
      assert.equal(r.auth, "Bearer test-access-token");
    }
  });
});
