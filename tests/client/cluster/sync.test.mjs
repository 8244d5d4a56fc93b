// Point-of-sale sync across the cluster: the POS SyncClient on one edge is told of
// changes produced through the other edge, or published straight onto the bus
// (a protobuf SyncChange on NATS JetStream), and pulls and confirms them.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join as joinPath } from "node:path";
import { describe, it } from "node:test";
import { connect as natsConnect, headers as natsHeaders } from "nats";
import protobuf from "protobufjs";
import { useCluster } from "../lib/cluster.mjs";
import { SyncClient, nextSync } from "../lib/seed002.mjs";
import { REPO_ROOT } from "../lib/server.mjs";
import { track, whenConnected } from "../lib/sio.mjs";

const KEYS = { "store-1": "pos-key-store-1", "store-2": "pos-key-store-2" };
const ctx = useCluster({
  edges: 2,
  workers: 1,
  env: { SWITCHBOARD_SYNC_API_KEYS: Object.entries(KEYS).map(([t, k]) => `${t}=${k}`).join(",") },
});

function client(edge, tenant) {
  const c = new SyncClient(edge.url, KEYS[tenant]);
  c.connect();
  track(c.socket);
  return c;
}

async function postChange(edge, tenant, data) {
  const res = await fetch(`${edge.url}/sync/changes`, {
    method: "POST",
    headers: { authorization: `Bearer ${ctx.cluster.serviceToken()}`, "content-type": "application/json" },
    body: JSON.stringify({ tenant, entity: "order", op: "create", data }),
    signal: AbortSignal.timeout(15_000),
  });
  const body = await res.json();
  assert.equal(res.status, 201, JSON.stringify(body));
  return body;
}

describe("sync notifications across edges", () => {
  it("the SyncClient on edge 2 gets a change posted on edge 1, pulls it and confirms it", async () => {
    const { cluster } = ctx;
    const [edge1, edge2] = cluster.edges;
    const pos = client(edge2, "store-1");
    await whenConnected(pos.socket);
    const synced = nextSync(pos, 10_000);
    const posted = await postChange(edge1, "store-1", { order: "A-1", total: 30 });
    const { data, confirmed } = await synced;
    assert.deepEqual(data.changes.map((c) => c.id), [posted.id]);
    assert.deepEqual(data.changes[0].data, { order: "A-1", total: 30 });
    assert.equal(data.cursor, 1);
    assert.deepEqual(confirmed, { confirmed: 1 });
    const res = await fetch(`${edge1.url}/sync/pull-changes`, { headers: { authorization: `Bearer ${KEYS["store-1"]}` } });
    assert.deepEqual(await res.json(), { changes: [], cursor: 1 });
  });

  it("a change published on the bus reaches the SyncClient, and the publisher gets the stored change", async () => {
    const { cluster } = ctx;
    const pos = client(cluster.edges[0], "store-2");
    await whenConnected(pos.socket);
    const synced = nextSync(pos, 10_000);
    const root = await protobuf.load(joinPath(REPO_ROOT, "proto", "sync.proto"));
    const SyncChange = root.lookupType("switchboard.v1.SyncChange");
    const nc = await natsConnect({ servers: cluster.natsUrl, name: "test-pos-backend" });
    try {
      const inbox = nc.subscribe(`sync-answers.${randomUUID()}`, { max: 1 });
      const h = natsHeaders();
      h.set("Sb-Reply-To", inbox.getSubject());
      const id = randomUUID();
      const body = SyncChange.encode(
        SyncChange.create({ id, tenant: "store-2", entity: "product", op: "update", dataJson: '{"sku":"b-2"}' }),
      ).finish();
      await nc.jetstream().publish(cluster.commandSubject("sync", "store-2", "change"), body, { msgID: id, headers: h });
      let answer;
      for await (const m of inbox) answer = JSON.parse(new TextDecoder().decode(m.data));
      assert.equal(answer.change.id, id);
      assert.equal(answer.change.seq, 1);
      const { data } = await synced;
      assert.deepEqual(
        data.changes.map((c) => [c.id, c.entity, c.op, c.data]),
        [[id, "product", "update", { sku: "b-2" }]],
      );
    } finally {
      await nc.close();
    }
  });
});
