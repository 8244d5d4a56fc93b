// WhatsApp throughput on `switchboard dev` with the Graph API stand-in:
// signed webhooks accepted per second at the edge (signature checked, body
// handed to the bus durably), and agent messages sent per second through the
// stand-in (store → outbox → Graph API), with the per-number pacing raised
// out of the way (WA_RATE, default 10000/s; Meta's own default is 80/s).
//
//   cargo build --release && (cd tests/client && npm ci && node bench/whatsapp.mjs)
//
// Prints one JSON line. A measurement, not a test.

import { performance } from "node:perf_hooks";
import { startGraph } from "../lib/graph.mjs";
import { startServer } from "../lib/server.mjs";
import { connect, once } from "../lib/sio.mjs";
import { conversationId, deliver, fixture, randomWaId, waEnv } from "../lib/whatsapp.mjs";
import { burst } from "../cluster/common.mjs";

const WEBHOOKS = Number(process.env.WEBHOOKS ?? 5000);
const SENDS = Number(process.env.SENDS ?? 1000);
const PARALLEL = Number(process.env.PARALLEL ?? 64);
process.env.SWITCHBOARD_BIN ??= "target/release/switchboard";

const graph = await startGraph();
const server = await startServer({
  env: { ...waEnv(graph.base), SWITCHBOARD_WA_RATE: process.env.WA_RATE ?? "10000", SWITCHBOARD_LOG: "warn" },
});
try {
  const bodies = Array.from({ length: WEBHOOKS }, () => JSON.stringify(fixture("text", { waId: randomWaId() })));
  let started = performance.now();
  await burst(WEBHOOKS, PARALLEL, async (i) => {
    const res = await deliver(server.url, bodies[i]);
    if (res.status !== 200) throw new Error(`webhook answered ${res.status}`);
    await res.arrayBuffer();
  });
  const webhooksPerS = Math.round(WEBHOOKS / ((performance.now() - started) / 1000));

  const waId = randomWaId();
  const agent = await connect(server.url, { token: server.agentToken() });
  await deliver(server.url, fixture("text", { waId }));
  const id = conversationId(waId);
  await once(agent, "conversation:new", { filter: (e) => e.conversation.id === id, timeout: 30_000 });
  const before = graph.requests.length;
  started = performance.now();
  await burst(SENDS, PARALLEL, (i) => server.postMessage(id, `send ${i}`));
  await graph.waitFor((reqs) => reqs.length - before >= SENDS, { timeout: 120_000 });
  const sendsPerS = Math.round(SENDS / ((performance.now() - started) / 1000));
  agent.close();
  console.log(JSON.stringify({ webhooks: WEBHOOKS, webhooks_accepted_per_s: webhooksPerS, sends: SENDS, sends_per_s: sendsPerS }));
} finally {
  await server.stop();
  await graph.stop();
}
