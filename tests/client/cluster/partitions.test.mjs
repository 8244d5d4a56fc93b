// Partitioned workers on real NATS and PostgreSQL: conversations hash into partitions, each
// held by one persist worker by a lease in JetStream (`switchboard status` says which). A
// worker that joins gets its share, one that leaves (SIGTERM) hands its share over, one that
// dies (kill -9) is taken over when its lease lapses, and one frozen past its lease (SIGSTOP)
// is fenced out by the store when it wakes. Through all of it, every conversation's messages
// are stored once, in the order they were sent, and every watcher sees offsets 1..n.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { useCluster } from "../lib/cluster.mjs";
import { createConversation, postOnce, range, storedTexts, turns, watcher } from "./common.mjs";

// The default lease (SWITCHBOARD_LEASE_MS): what "within the lease" is measured against.
const LEASE_MS = 3000;
const CONVERSATIONS = 16;

const ctx = useCluster({ edges: 2, workers: 2 });

/** The persist workers `switchboard status` reports, by name, with the partitions each owns. */
function owners(status) {
  return Object.fromEntries(status.workers.filter((w) => w.kind === "persist").map((w) => [w.node, w.owns]));
}

/**
 * Polls `switchboard status` until exactly `workers` hold every persist partition, the counts
 * differing by at most one; resolves with that status and when it was first seen.
 */
async function balancedOver(cluster, workers, patience = 20_000) {
  const deadline = Date.now() + patience;
  let last;
  while (Date.now() < deadline) {
    last = await cluster.status();
    const owned = owners(last);
    const counts = workers.map((w) => owned[w]?.length ?? -1);
    const persist = last.partitions.filter((p) => p.kind === "persist");
    const allOwned = persist.every((p) => workers.includes(p.owner));
    if (
      Object.keys(owned).sort().join() === [...workers].sort().join() &&
      allOwned &&
      counts.reduce((a, b) => a + b, 0) === cluster.partitions &&
      Math.max(...counts) - Math.min(...counts) <= 1
    ) {
      return { status: last, at: Date.now() };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`partitions not balanced over ${workers} within ${patience} ms; last status: ${JSON.stringify(owners(last))}`);
}

/** Conversations with a watcher each, on alternating edges. */
async function conversations(cluster, count) {
  const ids = [];
  const watchers = [];
  for (let c = 0; c < count; c++) {
    const id = await createConversation(cluster, cluster.edges[c % 2]);
    ids.push(id);
    watchers.push(await watcher(cluster, cluster.edges[(c + 1) % 2], id));
  }
  return { ids, watchers };
}

/**
 * What every such test asserts at the end: each answer was the stored message, each
 * conversation holds its messages once, at the offsets they were sent in, and each watcher
 * saw 1..n in order.
 */
async function assertStoredInOrder(cluster, ids, watchers, answers, tag) {
  for (let c = 0; c < ids.length; c++) {
    const n = answers[c].length;
    answers[c].forEach((a, i) => {
      assert.ok(a.status === 200 || a.status === 201, `${tag}: answer ${c}/${i}: ${a.status} ${JSON.stringify(a.body)}`);
      assert.equal(a.body.offset, i + 1, `${tag}: conversation ${c} message ${i} stored at its turn`);
    });
    assert.deepEqual(storedTexts(cluster, ids[c]), range(n).map((seq) => `${seq}|${tag} #${seq - 1}`));
    await watchers[c].until(n);
    assert.deepEqual(watchers[c].offsets, range(n), `conversation ${c}: the watcher saw 1..${n} in order, once`);
  }
}

function slowest(answers) {
  return Math.max(...answers.flat().map((a) => a.ms));
}

describe("partitioned persist workers (32 partitions)", () => {
  it("two workers hold 16 each; a third that joins gets its share; SIGTERM of it hands over mid-burst with every answer the stored message, none waiting past the lease + 1 s", async (t) => {
    const { cluster } = ctx;
    const { status } = await balancedOver(cluster, ["worker1", "worker2"]);
    assert.deepEqual(Object.values(owners(status)).map((o) => o.length), [16, 16]);
    assert.equal(status.edges.length, 2, "both edges announce themselves");
    // Every edge's /metrics carries the same figures, read from the bus at the scrape.
    const metrics = await (await fetch(`${cluster.edges[1].url}/metrics`)).text();
    for (const worker of ["worker1", "worker2"]) {
      assert.match(metrics, new RegExp(`^switchboard_partitions_owned\\{kind="persist",worker="${worker}"\\} 16$`, "m"));
    }
    assert.match(metrics, /^# TYPE switchboard_partition_backlog gauge$/m);
    assert.match(metrics, /^switchboard_partition_backlog\{kind="persist",partition="31"\} \d+$/m);
    assert.match(metrics, /^switchboard_cluster_sockets\{edge="edge1"\} \d+$/m);

    const joined = await cluster.addWorker("persist");
    assert.equal(joined, "worker3");
    const three = await balancedOver(cluster, ["worker1", "worker2", "worker3"]);
    assert.deepEqual(Object.values(owners(three.status)).map((o) => o.length).sort(), [10, 11, 11]);

    const { ids, watchers } = await conversations(cluster, CONVERSATIONS);
    const perConversation = 30;
    let leaving;
    const answers = await turns(cluster, ids, perConversation, (n) => {
      if (n === (CONVERSATIONS * perConversation) / 3) leaving = cluster.kill("worker3", "SIGTERM");
    }, "handover");
    await leaving;
    await assertStoredInOrder(cluster, ids, watchers, answers, "handover");
    const wait = slowest(answers);
    t.diagnostic(`slowest answer during the hand-over: ${Math.round(wait)} ms`);
    assert.ok(wait <= LEASE_MS + 1000, `an answer took ${Math.round(wait)} ms`);
    await balancedOver(cluster, ["worker1", "worker2"]);
    const log = cluster.log("worker3");
    assert.doesNotMatch(log, /partition lost|fenced/, "a clean hand-over loses no partition:\n" + log.slice(-2000));
  });

  it("kill -9 of a worker mid-burst: every answer is the stored message or outcome_unknown (whose retry returns that one message), none waits past the lease + 1 s, its partitions are taken over", async (t) => {
    const { cluster } = ctx;
    await balancedOver(cluster, ["worker1", "worker2"]);
    const { ids, watchers } = await conversations(cluster, CONVERSATIONS);
    const perConversation = 30;
    let killed;
    let killedAt;
    const answers = await turns(cluster, ids, perConversation, (n) => {
      if (n === (CONVERSATIONS * perConversation) / 3) {
        killedAt = Date.now();
        killed = cluster.kill("worker2", "SIGKILL");
      }
    }, "kill");
    await killed;
    const taken = await balancedOver(cluster, ["worker1"]);
    t.diagnostic(`worker1 held every partition ${taken.at - killedAt} ms after the kill (or sooner: status is polled)`);
    // An answer the edge could not know is outcome_unknown, never a plain failure; the retry
    // with the same client_msg_id returns the one stored message.
    for (const a of answers.flat().filter((a) => a.status === 504)) {
      assert.equal(a.body.error.code, "outcome_unknown", JSON.stringify(a.body));
    }
    for (const [c, list] of answers.entries()) {
      for (const [i, a] of list.entries()) {
        if (a.status !== 504) continue;
        list[i] = await postOnce(cluster, cluster.edges[0], ids[c], a.text, a.clientMsgId);
      }
    }
    await assertStoredInOrder(cluster, ids, watchers, answers, "kill");
    const wait = slowest(answers);
    t.diagnostic(`slowest answer across the kill: ${Math.round(wait)} ms`);
    assert.ok(wait <= LEASE_MS + 1000, `an answer took ${Math.round(wait)} ms`);
  });

  it("a worker frozen (SIGSTOP) past its lease, then resumed: its partitions were taken over, and nothing it held is stored stale, twice, or out of turn", async (t) => {
    const { cluster } = ctx;
    await cluster.addWorker("persist");
    await balancedOver(cluster, ["worker1", "worker4"]);
    const { ids, watchers } = await conversations(cluster, CONVERSATIONS);
    const perConversation = 40;
    const frozen = cluster.pid("worker1");
    let thawed;
    const answers = await turns(cluster, ids, perConversation, (n) => {
      if (n !== (CONVERSATIONS * perConversation) / 4) return;
      process.kill(frozen, "SIGSTOP");
      // Resumed only once the other worker has taken every partition: well past its lease.
      thawed = balancedOver(cluster, ["worker4"]).finally(() => process.kill(frozen, "SIGCONT"));
    }, "freeze");
    await thawed;
    await assertStoredInOrder(cluster, ids, watchers, answers, "freeze");
    // Awake again, it rejoins and gets its share back; what it held before the freeze
    // was stored by the new owner, or refused to it by the fence.
    await balancedOver(cluster, ["worker1", "worker4"]);
    const epochs = cluster.sql("SELECT max(epoch) FROM partition_epochs WHERE kind = 'persist'");
    assert.ok(Number(epochs) >= 3, `partitions changed hands and their epochs rose: ${epochs}`);
    const more = await turns(cluster, ids.slice(0, 4), 5, () => {}, "after");
    for (const list of more) for (const a of list) assert.equal(a.status, 201, JSON.stringify(a.body));
    // It woke believing it held its partitions, found its leases gone, and stood down.
    assert.match(cluster.log("worker1"), /partition lost/);
    t.diagnostic(`batches of the resumed worker refused by the fence: ${(cluster.log("worker1").match(/fenced by a newer owner/g) ?? []).length}`);
  });
});
