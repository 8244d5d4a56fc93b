// Point-of-sale sync clients over Socket.IO: the POS client's own `SyncClient`
// (lib/seed002.mjs), as written, against `switchboard dev`. It connects to
// namespace `/sync` with `auth: {apiKey}`, gets `changes:pending` (no payload) when
// its tenant has changes, pulls them from GET /sync/pull-changes and confirms them
// (its `confirmSync`, which the client's code leaves to the integrator, POSTs
// /sync/confirm with the cursor). Changes are produced by a service over POST
// /sync/changes.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SyncClient, nextSync } from "../lib/seed002.mjs";
import { useServer } from "../lib/setup.mjs";
import { ack, assertRfc3339, connect, connectError, expectNone, once, track, whenConnected } from "../lib/sio.mjs";

const TENANTS = ["flow", "burst", "again", "orders", "iso-a", "iso-b", "bad", "ids"];
const keyOf = (tenant) => `key-${tenant}-0123456789`;

const ctx = useServer({ SWITCHBOARD_SYNC_API_KEYS: TENANTS.map((t) => `${t}=${keyOf(t)}`).join(",") });

function startClient(tenant) {
  const client = new SyncClient(ctx.server.url, keyOf(tenant));
  client.connect();
  track(client.socket); // recorded, and closed after the test
  return client;
}

async function postChange(tenant, entity = "order", op = "create", data = { total: 12.5 }) {
  const res = await ctx.server.http("POST", "/sync/changes", {
    token: ctx.server.serviceToken(),
    json: { tenant, entity, op, data },
  });
  assert.equal(res.status, 201, res.text);
  return res.body;
}

async function pull(tenant, query = "") {
  const res = await ctx.server.http("GET", `/sync/pull-changes${query}`, { token: keyOf(tenant) });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

async function confirm(tenant, body) {
  const res = await ctx.server.http("POST", "/sync/confirm", { token: keyOf(tenant), json: body });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

/** A plain socket on /sync, closed after the test. */
function syncSocket(tenant) {
  return connect(`${ctx.server.url}/sync`, { auth: { apiKey: keyOf(tenant) } });
}

function assertChange(change, expect = {}) {
  assert.match(change.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/i, `change.id: ${change.id}`);
  assert.ok(Number.isInteger(change.seq) && change.seq >= 1, `change.seq: ${change.seq}`);
  assertRfc3339(change.created_at, "change.created_at");
  for (const [k, v] of Object.entries(expect)) assert.deepEqual(change[k], v, `change.${k}`);
}

function assertError(res, status, code) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.body?.error?.code, code, res.text);
  assert.equal(typeof res.body.error.message, "string");
  assert.ok(res.body.error.message.length > 0);
}

describe("point-of-sale sync: refusals", () => {
  it("refuses a socket without an API key with exactly 'API key required'", async () => {
    const err = await connectError(`${ctx.server.url}/sync`, {});
    assert.equal(err.message, "API key required");
    const empty = await connectError(`${ctx.server.url}/sync`, { auth: { apiKey: "" } });
    assert.equal(empty.message, "API key required");
  });

  it("refuses an unknown API key with exactly 'Invalid API key'", async () => {
    const err = await connectError(`${ctx.server.url}/sync`, { auth: { apiKey: "not-a-key" } });
    assert.equal(err.message, "Invalid API key");
  });

  it("the POS client logs the refusal message it checks for", async () => {
    const client = new SyncClient(ctx.server.url, "wrong");
    client.connect();
    track(client.socket);
    const err = await new Promise((resolve) => client.socket.once("connect_error", resolve));
    assert.equal(err.message, "Invalid API key");
    client.disconnect();
  });

  it("answers 401 with the error shape over HTTP", async () => {
    assertError(await ctx.server.http("GET", "/sync/pull-changes"), 401, "api_key_required");
    assertError(await ctx.server.http("GET", "/sync/pull-changes", { token: "nope" }), 401, "invalid_api_key");
    assertError(
      await ctx.server.http("POST", "/sync/confirm", { token: "nope", json: { cursor: 1 } }),
      401,
      "invalid_api_key",
    );
  });
});

describe("point-of-sale sync: the SyncClient", () => {
  it("is told of a new change, pulls it, confirms it, and the next pull is empty", async () => {
    const client = startClient("flow");
    await whenConnected(client.socket);
    const synced = nextSync(client);
    const posted = await postChange("flow", "order", "create", { id: "o-1", items: [{ sku: "a", qty: 2 }] });
    assertChange(posted, { seq: 1, entity: "order", op: "create", data: { id: "o-1", items: [{ sku: "a", qty: 2 }] } });
    const { data, confirmed } = await synced;
    assert.equal(data.changes.length, 1, JSON.stringify(data));
    assertChange(data.changes[0], { id: posted.id, seq: 1, entity: "order", op: "create" });
    assert.deepEqual(data.changes[0].data, { id: "o-1", items: [{ sku: "a", qty: 2 }] });
    assert.equal(data.cursor, 1);
    assert.deepEqual(confirmed, { confirmed: 1 });
    const after = await pull("flow");
    assert.deepEqual(after, { changes: [], cursor: 1 });
    // `changes:pending` carries no payload at all.
    const notice = client.socket.log.entries.find((e) => e.event === "changes:pending");
    assert.deepEqual(notice.args, []);
  });

  it("gets a handful of changes:pending for a burst of 20, and one pull returns all 20 in order", async () => {
    const socket = await syncSocket("burst");
    const posted = await Promise.all(Array.from({ length: 20 }, (_, i) => postChange("burst", "order", "create", { n: i })));
    await once(socket, "changes:pending");
    await expectNone(socket, "never", { ms: 400 }); // the trailing notice, if any, comes within the window
    const notices = socket.log.all("changes:pending").length;
    assert.ok(notices >= 1 && notices <= 5, `expected 1 to 5 changes:pending, got ${notices}`);
    const { changes, cursor } = await pull("burst");
    assert.deepEqual(changes.map((c) => c.seq), Array.from({ length: 20 }, (_, i) => i + 1));
    assert.deepEqual(new Set(changes.map((c) => c.id)), new Set(posted.map((c) => c.id)));
    assert.equal(cursor, 20);
    const page = await pull("burst", "?limit=5");
    assert.deepEqual(page.changes.map((c) => c.seq), [1, 2, 3, 4, 5]);
    assert.equal(page.cursor, 5);
  });

  it("is told again on reconnect while changes stay unconfirmed", async () => {
    await postChange("again");
    await postChange("again");
    const first = await syncSocket("again");
    await once(first, "changes:pending", { what: "at connect" });
    const pulled = await pull("again");
    assert.equal(pulled.changes.length, 2);
    first.close();
    const second = await syncSocket("again");
    await once(second, "changes:pending", { what: "at reconnect, nothing confirmed" });
    assert.deepEqual(await confirm("again", { cursor: pulled.cursor }), { confirmed: 2 });
    second.close();
    const third = await syncSocket("again");
    await expectNone(third, "changes:pending", { what: "everything confirmed" });
    // The POS client, on reconnect, syncs what is pending.
    await postChange("again", "product", "update", { sku: "b" });
    const client = startClient("again");
    const { data } = await nextSync(client);
    assert.deepEqual(data.changes.map((c) => [c.seq, c.entity, c.op]), [[3, "product", "update"]]);
  });

  it("answers sync:orders with orders:pending, and in the ack when asked", async () => {
    const posted = [await postChange("orders"), await postChange("orders", "order", "update")];
    const socket = await syncSocket("orders");
    socket.emit("sync:orders");
    const pending = await once(socket, "orders:pending");
    assert.deepEqual(pending.map((c) => c.id), posted.map((c) => c.id));
    pending.forEach((c, i) => assertChange(c, { seq: i + 1 }));
    const acked = await ack(socket, "sync:orders", undefined);
    assert.deepEqual(acked.map((c) => c.seq), [1, 2]);
    assert.deepEqual(await once(socket, "orders:pending"), acked);
  });

  it("confirms by ids, and unconfirmed changes come back on the next pull", async () => {
    const a = await postChange("ids");
    const b = await postChange("ids");
    const c = await postChange("ids");
    assert.deepEqual(await confirm("ids", { ids: [a.id, c.id] }), { confirmed: 2 });
    assert.deepEqual(await confirm("ids", { ids: [a.id] }), { confirmed: 0 });
    const { changes, cursor } = await pull("ids");
    assert.deepEqual(changes.map((x) => x.id), [b.id]);
    assert.equal(cursor, 2);
  });

  it("keeps tenants apart", async () => {
    const a = await syncSocket("iso-a");
    const clientB = startClient("iso-b");
    await whenConnected(clientB.socket);
    const posted = await postChange("iso-a", "order", "create", { secret: "A's" });
    await once(a, "changes:pending");
    await expectNone(clientB.socket, "changes:pending");
    assert.deepEqual((await pull("iso-b")).changes, []);
    assert.deepEqual(await confirm("iso-b", { cursor: 1000 }), { confirmed: 0 });
    assert.deepEqual(await confirm("iso-b", { ids: [posted.id] }), { confirmed: 0 });
    assert.deepEqual((await pull("iso-a")).changes.map((c) => c.id), [posted.id]);
    a.emit("sync:orders");
    assert.equal((await once(a, "orders:pending")).length, 1);
    assert.equal(clientB.synced, undefined);
  });
});

describe("point-of-sale sync: bad input", () => {
  it("refuses malformed bodies with 400 and the error shape", async () => {
    const service = ctx.server.serviceToken();
    const post = (path, body, token) =>
      ctx.server.http("POST", path, { token, body, headers: { "content-type": "application/json" } });
    assertError(await post("/sync/changes", "{not json", service), 400, "bad_request");
    assertError(await post("/sync/changes", JSON.stringify({ entity: "order", op: "create", data: {} }), service), 400, "bad_request");
    assertError(await post("/sync/changes", JSON.stringify({ tenant: "bad", entity: "order", op: "create" }), service), 400, "bad_request");
    assertError(await post("/sync/changes", JSON.stringify({ tenant: "", entity: "order", op: "create", data: 1 }), service), 400, "bad_request");
    assertError(await post("/sync/changes", JSON.stringify({ tenant: "bad", entity: 5, op: "create", data: 1 }), service), 400, "bad_request");
    const key = keyOf("bad");
    assertError(await post("/sync/confirm", "nope", key), 400, "bad_request");
    assertError(await post("/sync/confirm", JSON.stringify({}), key), 400, "bad_request");
    assertError(await post("/sync/confirm", JSON.stringify({ cursor: "x" }), key), 400, "bad_request");
    assertError(await post("/sync/confirm", JSON.stringify({ cursor: -1 }), key), 400, "bad_request");
    assertError(await post("/sync/confirm", JSON.stringify({ ids: ["not-a-uuid"] }), key), 400, "bad_request");
    assertError(await post("/sync/confirm", JSON.stringify({ cursor: 1, ids: [] }), key), 400, "bad_request");
    assertError(await ctx.server.http("GET", "/sync/pull-changes?limit=lots", { token: key }), 400, "bad_request");
    // Producing changes takes a service or bot token; an API key or a customer's token is not one.
    const customer = ctx.server.customerToken("c-sync");
    const change = JSON.stringify({ tenant: "bad", entity: "order", op: "create", data: {} });
    assertError(await post("/sync/changes", change, customer), 403, "forbidden");
    assert.equal((await post("/sync/changes", change, key)).status, 401);
    assert.deepEqual((await pull("bad")).changes, []);
    // The socket stays healthy after junk events.
    const socket = await syncSocket("bad");
    socket.emit("sync:orders", "junk", 42);
    assert.deepEqual(await once(socket, "orders:pending"), []);
  });
});
