// Persistence throughput into PostgreSQL and cross-edge latency, on a cluster
// of two edges and WORKERS persist workers started by deploy/cluster.sh (with
// its own nats-server and PostgreSQL).
//
//   cargo build --release && (cd tests/client && npm ci && WORKERS=1 node bench/persist.mjs && WORKERS=2 node bench/persist.mjs)
//
// Throughput: MESSAGES messages published over HTTP through both edges with
// PARALLEL requests in flight; messages per second from the first publish to
// the last row in PostgreSQL. Latency: LATENCY_MESSAGES messages published one
// at a time on edge 1, timed to `message:new` on a socket on edge 2.
// Prints one JSON line. A measurement, not a test.

import { performance } from "node:perf_hooks";
import { startCluster } from "../lib/cluster.mjs";
import { closeAll } from "../lib/sio.mjs";
import { burst, createConversation, publish, stored, watcher } from "../cluster/common.mjs";

const WORKERS = Number(process.env.WORKERS ?? 2);
const MESSAGES = Number(process.env.MESSAGES ?? 20000);
const PARALLEL = Number(process.env.PARALLEL ?? 64);
const CONVERSATIONS = Number(process.env.CONVERSATIONS ?? 50);
const LATENCY_MESSAGES = Number(process.env.LATENCY_MESSAGES ?? 1000);
process.env.SWITCHBOARD_BIN ??= "target/release/switchboard";

const cluster = await startCluster({ edges: 2, workers: WORKERS, ownDatabase: true, env: { SWITCHBOARD_LOG: "warn" } });
try {
  const [a, b] = cluster.edges;
  const conversations = [];
  for (let i = 0; i < CONVERSATIONS; i++) conversations.push(await createConversation(cluster, a));
  const started = performance.now();
  await burst(MESSAGES, PARALLEL, (i) =>
    publish(cluster, i % 2 ? b : a, conversations[i % CONVERSATIONS], `bench ${i}`, `bench-${i}`),
  );
  const rows = Number(cluster.sql("SELECT count(*) FROM messages"));
  const seconds = (performance.now() - started) / 1000;

  const id = await createConversation(cluster, a);
  const w = await watcher(cluster, b, id);
  const latencies = [];
  for (let n = 1; n <= LATENCY_MESSAGES; n++) {
    const arrived = w.until(n, 10_000).then(() => performance.now());
    const sentAt = performance.now();
    await publish(cluster, a, id, `latency ${n}`);
    latencies.push((await arrived) - sentAt);
  }
  latencies.sort((x, y) => x - y);
  const pick = (q) => Number(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(2));
  console.log(
    JSON.stringify({
      workers: WORKERS,
      messages: MESSAGES,
      rows,
      parallel: PARALLEL,
      persisted_per_s: Math.round(rows / seconds),
      cross_edge_p50_ms: pick(0.5),
      cross_edge_p99_ms: pick(0.99),
      gap_free: stored(cluster, id).max === LATENCY_MESSAGES,
    }),
  );
} finally {
  closeAll();
  await cluster.stop();
}
