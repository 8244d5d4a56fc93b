// Scale-out delivery on real NATS and PostgreSQL: clients on different edges,
// concurrent producers, and a client moving to another edge.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { describe, it } from "node:test";
import { useCluster } from "../lib/cluster.mjs";
import { binaryPath } from "../lib/server.mjs";
import { parseMetrics, value } from "../lib/metrics.mjs";
import { connect, eventually, join, once } from "../lib/sio.mjs";
import { burst, createConversation, publish, range, stored, watcher } from "./common.mjs";

// A third edge, to be restarted without taking the others down.
const ctx = useCluster({ edges: 3, workers: 2 });

describe("across edges", () => {
  it("a message sent on one edge reaches a client on the other, both ways", async () => {
    const { cluster } = ctx;
    const [a, b] = cluster.edges;
    const id = await createConversation(cluster, a);
    const onA = await connect(a.url, { token: cluster.agentToken() });
    const onB = await connect(b.url, { token: cluster.agentToken() });
    await join(onA, id);
    await join(onB, id);
    const fromA = await onA.timeout(10_000).emitWithAck("send_message", { conversation_id: id, text: "from A" });
    assert.equal(fromA.ok, true, JSON.stringify(fromA));
    assert.equal((await once(onB, "message:new", { timeout: 10_000 })).id, fromA.message.id);
    const fromB = await onB.timeout(10_000).emitWithAck("send_message", { conversation_id: id, text: "from B" });
    assert.equal(fromB.ok, true, JSON.stringify(fromB));
    const seenOnA = [await once(onA, "message:new", { timeout: 10_000 }), await once(onA, "message:new", { timeout: 10_000 })];
    assert.deepEqual(seenOnA.map((m) => m.offset), [1, 2]);
    assert.equal(seenOnA[1].id, fromB.message.id);
  });

  it("two producers on two edges, 2000 messages: each edge's watcher sees offsets 1..2000 in order, once", async () => {
    const { cluster } = ctx;
    const N = 2000;
    const [a, b] = cluster.edges;
    const id = await createConversation(cluster, a);
    const watchers = [await watcher(cluster, a, id), await watcher(cluster, b, id)];
    const half = N / 2;
    const producers = [a, b].map((edge, p) =>
      burst(half, 8, (i) => publish(cluster, edge, id, `p${p} #${i}`, `p${p}-${i}`)),
    );
    const sent = (await Promise.all(producers)).flat();
    assert.equal(new Set(sent.map((m) => m.id)).size, N, "every publish stored a distinct message");
    for (const w of watchers) {
      await w.until(N);
      assert.deepEqual(w.offsets, range(N), "offsets in order, no gap, no repeat");
      assert.equal(w.ids.size, N);
    }
    assert.deepEqual(stored(cluster, id), { rows: N, ids: N, min: 1, max: N });
  });

  it("each worker serves its own /metrics: its kind, and the batches the persist workers stored", async () => {
    const { cluster } = ctx;
    const scrape = async (name) => {
      const url = cluster.env[`${name.toUpperCase()}_METRICS_URL`];
      assert.ok(url, `cluster.env names ${name}'s metrics URL`);
      const res = await fetch(url);
      assert.equal(res.status, 200);
      return parseMetrics(await res.text());
    };
    const persisters = ["worker1", "worker2"];
    for (const [name, role] of [...persisters.map((n) => [n, "persist"]), ["sync1", "sync"]]) {
      const metrics = await scrape(name);
      assert.equal(value(metrics, "switchboard_build_info", { role }), 1, `${name} says it is a ${role} worker`);
      assert.equal(metrics.types.get("switchboard_persist_batch_size"), "histogram");
      assert.ok(value(metrics, "process_resident_memory_bytes") > 0, `${name} reports its memory`);
    }
    const storedSoFar = async () => {
      let sum = 0;
      for (const name of persisters) sum += value(await scrape(name), "switchboard_persist_batch_size_sum");
      return sum;
    };
    const before = await storedSoFar();
    const N = 20;
    const [a] = cluster.edges;
    const id = await createConversation(cluster, a);
    await burst(N, 4, (i) => publish(cluster, a, id, `counted #${i}`, `counted-${i}`));
    await eventually(storedSoFar, (sum) => sum - before >= N, { what: `the persist workers counting ${N} more messages stored` });
  });

  it("`switchboard tail` prints what flows on a subject as JSON lines", async () => {
    const { cluster } = ctx;
    const [a] = cluster.edges;
    const id = await createConversation(cluster, a);
    const tail = spawn(binaryPath(), ["tail", `sb.conv.${id}.>`], {
      env: { ...process.env, SWITCHBOARD_NATS_URL: cluster.natsUrl, SWITCHBOARD_LOG: "warn" },
    });
    try {
      const lines = createInterface({ input: tail.stdout });
      const first = new Promise((resolve, reject) => {
        lines.once("line", resolve);
        tail.once("exit", (code) => reject(new Error(`tail exited with ${code}`)));
      });
      // tail subscribes after it connects: publish until its first line shows up.
      let line;
      for (let i = 0; !line && i < 50; i++) {
        await publish(cluster, a, id, `seen by tail ${i}`);
        line = await Promise.race([first, new Promise((r) => setTimeout(r, 200))]);
      }
      const event = JSON.parse(line);
      assert.equal(event.headers["Sb-Event"], "message.new");
      assert.equal(event.headers["Sb-Conversation"], id);
      assert.match(event.body.text, /^seen by tail /);
      assert.equal(event.body.conversation_id, id);
    } finally {
      tail.kill();
    }
  });

  it("a rolling restart: SIGTERM of a client's edge, the client moves to the other one and loses nothing", async () => {
    const { cluster } = ctx;
    const [, b, c] = cluster.edges;
    const id = await createConversation(cluster, b);
    const before = await watcher(cluster, c, id);
    const N = 200;
    let done = 0;
    let drained;
    const publishing = burst(N, 4, async (i) => {
      const m = await publish(cluster, b, id, `rolling ${i}`, `r-${i}`);
      if (++done === N / 4) drained = cluster.kill("edge3", "SIGTERM");
      return m;
    });
    await publishing;
    await drained;
    assert.equal(before.socket.connected, false, "the draining edge closed the socket");
    const seen = [...before.offsets];
    const after = await watcher(cluster, b, id, seen.at(-1) ?? 0);
    const all = [...seen, ...after.joined.messages.map((m) => m.offset)];
    assert.deepEqual(all, range(N), "what the client saw before the restart and recovered after it");
  });

  it("a client whose edge dies resumes on the other with since_offset and gets exactly what it missed", async () => {
    const { cluster } = ctx;
    const [a, b] = cluster.edges;
    const id = await createConversation(cluster, b);
    const client = await watcher(cluster, a, id);
    for (let i = 1; i <= 3; i++) await publish(cluster, b, id, `before ${i}`);
    await client.until(3, 10_000);
    const last = client.offsets.at(-1);
    await cluster.kill("edge1", "SIGKILL");
    const missed = [];
    for (let i = 1; i <= 5; i++) missed.push(await publish(cluster, b, id, `while away ${i}`));
    const resumed = await connect(b.url, { token: cluster.agentToken() });
    const ack = await join(resumed, id, last);
    assert.deepEqual(
      ack.messages.map((m) => m.id),
      missed.map((m) => m.id),
      "exactly the missed messages, in order",
    );
    assert.deepEqual(ack.messages.map((m) => m.offset), range(5, last + 1));
    const live = await publish(cluster, b, id, "after the move");
    assert.equal((await once(resumed, "message:new", { timeout: 10_000 })).id, live.id);
    assert.equal(live.offset, last + 6);
  });
});
