// The bus is no single point of failure: on a three-node NATS cluster with every stream and
// the lease bucket at three replicas, kill -9 of the node leading the command stream in the
// middle of a burst loses nothing that was acknowledged, stores nothing twice, and writes
// resume within seconds on the two nodes left.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { connect as natsConnect } from "nats";
import { useCluster } from "../lib/cluster.mjs";
import { createConversation, range, storedTexts, turns, watcher } from "./common.mjs";

const ctx = useCluster({ edges: 2, workers: 2, env: { NATS_NODES: "3" } });

describe("a three-node NATS cluster (replicas 3)", () => {
  it("kill -9 of the SB_COMMANDS leader mid-burst: every acknowledged message stored once and in turn, watchers gap-free, writes back within seconds", async (t) => {
    const { cluster } = ctx;
    // An operator's look with other settings changes nothing on the bus.
    await cluster.status({ SWITCHBOARD_NATS_REPLICAS: "1", SWITCHBOARD_LEASE_MS: "1000" });
    const nc = await natsConnect({ servers: cluster.natsUrl.split(","), name: "test-operator" });
    let leader;
    try {
      const jsm = await nc.jetstreamManager();
      assert.equal((await jsm.streams.info("KV_SB_LEASES")).config.max_age, 3_000_000_000, "the lease stays 3 s");
      for (const name of ["SB_COMMANDS", "SB_EVENTS", "KV_SB_LEASES"]) {
        const info = await jsm.streams.info(name);
        assert.equal(info.config.num_replicas, 3, `${name} has three replicas`);
      }
      leader = (await jsm.streams.info("SB_COMMANDS")).cluster.leader;
    } finally {
      await nc.close();
    }
    assert.match(leader, /^nats[123]$/);

    const ids = [];
    const watchers = [];
    for (let c = 0; c < 8; c++) {
      const id = await createConversation(cluster, cluster.edges[c % 2]);
      ids.push(id);
      watchers.push(await watcher(cluster, cluster.edges[(c + 1) % 2], id));
    }
    const perConversation = 40;
    let killed;
    let killedAt;
    const answers = await turns(
      cluster,
      ids,
      perConversation,
      (n) => {
        if (n !== (ids.length * perConversation) / 4) return;
        killedAt = Date.now();
        killed = cluster.kill(leader, "SIGKILL");
      },
      "leader",
      { retry: true },
    );
    await killed;

    // A write the cluster could not complete was answered as such, never as a plain failure.
    const refused = answers.flat().flatMap((a) => a.attempts.slice(0, -1));
    for (const a of refused) {
      assert.ok([0, 503, 504].includes(a.status), `a failed attempt: ${a.status} ${JSON.stringify(a.body)}`);
      if (a.status === 504) assert.equal(a.body.error.code, "outcome_unknown");
      if (a.status === 503) assert.equal(a.body.error.code, "unavailable");
    }
    const afterKill = answers.flat().filter((a) => a.started >= killedAt && (a.status === 200 || a.status === 201));
    assert.ok(afterKill.length > 0, "writes succeeded after the kill");
    const resumed = Math.min(...afterKill.map((a) => a.started + a.ms)) - killedAt;
    t.diagnostic(`leader ${leader} killed; first write stored ${Math.round(resumed)} ms later; ${refused.length} attempts answered 503/504 and retried`);
    assert.ok(resumed <= 15_000, `writes resumed ${Math.round(resumed)} ms after the kill`);

    for (let c = 0; c < ids.length; c++) {
      answers[c].forEach((a, i) => {
        assert.ok(a.status === 200 || a.status === 201, `conversation ${c} message ${i}: ${a.status} ${JSON.stringify(a.body)}`);
        assert.equal(a.body.offset, i + 1);
      });
      assert.deepEqual(storedTexts(cluster, ids[c]), range(perConversation).map((seq) => `${seq}|leader #${seq - 1}`));
      await watchers[c].until(perConversation);
      assert.deepEqual(watchers[c].offsets, range(perConversation), `conversation ${c}: 1..n in order, once`);
    }
  });
});
