// Failures on real NATS and PostgreSQL: a persist worker killed mid-burst,
// and NATS restarted during traffic.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { useCluster } from "../lib/cluster.mjs";
import { burst, createConversation, publish, range, stored, storedTexts, watcher } from "./common.mjs";

const ctx = useCluster({ edges: 2, workers: 2 });

async function ready(edge, patience = 30_000) {
  const deadline = Date.now() + patience;
  while (Date.now() < deadline) {
    const res = await fetch(`${edge.url}/readyz`).catch(() => null);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${edge.name} not ready again within ${patience} ms`);
}

describe("failures", () => {
  it("kill -9 of one of two persist workers mid-burst: exactly N rows, no duplicate, no gap", async () => {
    const { cluster } = ctx;
    const N = 2000;
    const [a, b] = cluster.edges;
    const id = await createConversation(cluster, a);
    const w = await watcher(cluster, b, id);
    let done = 0;
    let killed;
    const producers = [a, b].map((edge, p) =>
      burst(N / 2, 8, async (i) => {
        const m = await publish(cluster, edge, id, `p${p} #${i}`, `k${p}-${i}`);
        if (++done === N / 4) killed = cluster.kill("worker1", "SIGKILL");
        return m;
      }),
    );
    await Promise.all(producers);
    await killed;
    await w.until(N);
    assert.deepEqual(w.offsets, range(N));
    assert.deepEqual(stored(cluster, id), { rows: N, ids: N, min: 1, max: N });
  });

  it("kill -9 of a persist worker storing batches that span 40 conversations: nothing half-stored", async () => {
    const { cluster } = ctx;
    const [a, b] = cluster.edges;
    const C = 40;
    const PER = 25;
    // A worker to take over: the one killed here holds partitions whatever ran before.
    await cluster.addWorker("persist");
    const ids = [];
    for (let c = 0; c < C; c++) ids.push(await createConversation(cluster, c % 2 ? b : a));
    let done = 0;
    let killed;
    // Each conversation sends one message after another, all conversations at once: every
    // batch a worker takes holds many conversations, and the kill lands in one of them.
    await Promise.all(
      ids.map(async (id, c) => {
        for (let i = 0; i < PER; i++) {
          await publish(cluster, c % 2 ? b : a, id, `c${c} #${i}`, `k${c}-${i}`);
          if (++done === (C * PER) / 4) killed = cluster.kill("worker2", "SIGKILL");
        }
      }),
    );
    await killed;
    // Each conversation's offset counts exactly its rows, and the rows are 1..n, in the order sent.
    const rows = cluster
      .sql(`SELECT c.id, c.last_offset, count(m.seq), count(DISTINCT m.seq), coalesce(max(m.seq), 0)
            FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
            WHERE c.id IN (${ids.map((id) => `'${id}'`).join(", ")}) GROUP BY c.id, c.last_offset`)
      .split("\n")
      .map((line) => line.split("|"));
    assert.equal(rows.length, C);
    for (const [id, ...counts] of rows) {
      assert.deepEqual(counts.map(Number), [PER, PER, PER, PER], `conversation ${id}: last_offset, rows, offsets, max`);
    }
    for (const [c, id] of ids.entries()) {
      assert.deepEqual(storedTexts(cluster, id), range(PER).map((i) => `${i}|c${c} #${i - 1}`));
    }
  });

  it("NATS restarted during traffic: edges and workers recover by themselves and nothing durable is lost", async () => {
    const { cluster } = ctx;
    const M = 300;
    const [a, b] = cluster.edges;
    const id = await createConversation(cluster, a);
    const watchers = [await watcher(cluster, a, id), await watcher(cluster, b, id)];
    let done = 0;
    let restarted;
    const sent = await burst(M, 4, async (i) => {
      const m = await publish(cluster, i % 2 ? b : a, id, `#${i}`, `n-${i}`);
      if (++done === M / 3) restarted = cluster.restartNats();
      return m;
    });
    await restarted;
    await Promise.all([ready(a), ready(b)]);
    assert.equal(new Set(sent.map((m) => m.id)).size, M);
    // One more after the restart proves the whole path is back.
    const last = await publish(cluster, b, id, "after the restart");
    assert.equal(last.offset, M + 1);
    for (const w of watchers) {
      await w.until(M + 1);
      assert.deepEqual(w.offsets, range(M + 1));
    }
    assert.deepEqual(stored(cluster, id), { rows: M + 1, ids: M + 1, min: 1, max: M + 1 });
  });
});
