// PostgreSQL stopped for a few seconds mid-traffic, on two edges and two persist
// workers with a PostgreSQL of their own (so stopping it hurts no other suite).
//
// One scenario runs before the tests: four Socket.IO senders (two per edge, each
// send_message sequential with a unique client_msg_id) and two HTTP publishers keep
// writing to one conversation that a watcher on each edge is joined to; PostgreSQL is
// stopped (pg_ctl -m fast), kept down OUTAGE_MS while /readyz is probed on both edges,
// started again; traffic goes on until every sender was answered ok again, then each
// refused send is retried with its client_msg_id. The tests then judge what was recorded.

import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { useCluster } from "../lib/cluster.mjs";
import { connect } from "../lib/sio.mjs";
import { createConversation, range, stored, watcher } from "./common.mjs";

/**
 * The edge's wait for a worker's answer (SWITCHBOARD_COMMAND_TIMEOUT_MS). With the margin it is
 * shorter than the outage, so a send that waits for PostgreSQL to come back counts as a hang.
 */
const COMMAND_TIMEOUT_MS = 2000;
/** A send is answered within the command timeout plus this, or it hung. */
const MARGIN_MS = 2000;
const ANSWER_BOUND_MS = COMMAND_TIMEOUT_MS + MARGIN_MS;
/** How long PostgreSQL stays down. */
const OUTAGE_MS = 5000;
/** /readyz must answer within this while the database is down (the request itself gives up at 1.5 s). */
const READY_ANSWER_MS = 1000;
/** Each sender lane starts at most one send per this (PUBLISH_RATE is 20/s per connection). */
const PACE_MS = 100;
const SOCKET_SENDERS = 4;
const HTTP_LANES = 2;
/** Sends answered ok per lane before the outage, and after it, before traffic stops. */
const OK_BEFORE = 3;
const OK_AFTER = 3;
/** How long traffic may take to be answered ok again once both edges are ready. */
const RECOVERY_MS = 60_000;

const ctx = useCluster({
  edges: 2,
  workers: 2,
  ownDatabase: true,
  env: { SWITCHBOARD_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS) },
});

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `predicate()` holds, re-checked on every `notify()`; rejects after `timeout` saying `what`. */
class Progress {
  constructor() {
    this.waiters = [];
  }
  notify() {
    for (const w of [...this.waiters]) {
      if (w.predicate()) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }
  until(predicate, what, timeout) {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`${what} within ${timeout} ms`));
      }, timeout);
      const waiter = { predicate, resolve: () => (clearTimeout(timer), resolve()) };
      this.waiters.push(waiter);
    });
  }
}

/** One GET /readyz: its status and `database`, or why there was no answer, and how long it took. */
async function probe(edge) {
  const started = Date.now();
  try {
    const res = await fetch(`${edge.url}/readyz`, { signal: AbortSignal.timeout(1500) });
    const body = await res.json().catch(() => null);
    return { edge: edge.name, status: res.status, database: body?.database, ms: Date.now() - started };
  } catch (err) {
    const error = err.name === "TimeoutError" ? "no answer within 1500 ms" : (err.cause?.code ?? err.message);
    return { edge: edge.name, error, ms: Date.now() - started };
  }
}

/** Polls /readyz until it answers 200; resolves with how long that took, or null after `patience`. */
async function readyAgain(edge, patience = 30_000) {
  const started = Date.now();
  while (Date.now() - started < patience) {
    if ((await probe(edge)).status === 200) return Date.now() - started;
    await pause(100);
  }
  return null;
}

describe("PostgreSQL stopped for 5 s mid-traffic (2 edges, 2 persist workers)", () => {
  // Everything the scenario recorded, for the tests below.
  const rec = {
    id: null,
    /** Every send_message attempt: {lane, cmid, ms, reply, phase}; reply null when unanswered. */
    sends: [],
    /** Every HTTP publish attempt: {lane, cmid, ms, status, code, error, phase}. */
    posts: [],
    /** Acknowledged messages: {lane, cmid, sender, message} (ok:true acks, 200/201 answers, retries). */
    acked: [],
    /** Socket sends refused (or unanswered), retried after the outage: {lane, cmid, sender, reply}. */
    retried: [],
    /** /readyz probes while the database was down. */
    probes: [],
    /** ms until each edge answered 200 again after the restart (null: never). */
    readyAfter: {},
    /** Why traffic did not come back, if it did not. */
    recovery: null,
    disconnects: [],
    watchers: [],
    stopAt: 0,
    upAt: 0,
  };

  const phaseOf = (started, ended) => {
    if (!rec.stopAt || ended < rec.stopAt) return "before";
    if (!rec.upAt || started < rec.upAt) return "outage";
    return "after";
  };

  before(
    async () => {
      const { cluster } = ctx;
      const [a, b] = cluster.edges;
      const id = await createConversation(cluster, a);
      rec.id = id;
      rec.watchers = [await watcher(cluster, a, id), await watcher(cluster, b, id)];
      const progress = new Progress();
      let stopping = false;

      // Socket.IO senders: sequential, paced, one unique client_msg_id per send.
      const senders = [];
      for (let i = 0; i < SOCKET_SENDERS; i++) {
        const edge = cluster.edges[i % 2];
        const sub = `sender-${i}`;
        const token = cluster.agentToken(sub);
        const socket = await connect(edge.url, { token });
        socket.on("disconnect", (reason) => rec.disconnects.push({ lane: `sio${i}`, edge: edge.name, reason, at: Date.now() }));
        senders.push({ lane: `sio${i}`, sub, token, edge, socket, ok: 0, okAfter: 0, refused: [] });
      }
      const emitSend = async (s, socket, cmid) => {
        const started = Date.now();
        let reply = null;
        try {
          reply = await socket
            .timeout(ANSWER_BOUND_MS)
            .emitWithAck("send_message", { conversation_id: id, text: `${s.lane} ${cmid}`, client_msg_id: cmid });
        } catch {
          reply = null;
        }
        const ended = Date.now();
        return { lane: s.lane, cmid, ms: ended - started, reply, phase: phaseOf(started, ended), started };
      };
      const socketLane = async (s) => {
        for (let n = 1; !stopping; n++) {
          const cmid = `${s.lane}-${n}`;
          const attempt = await emitSend(s, s.socket, cmid);
          rec.sends.push(attempt);
          if (attempt.reply?.ok === true) {
            rec.acked.push({ lane: s.lane, cmid, sender: s.sub, message: attempt.reply.message });
            s.ok++;
            if (rec.upAt && attempt.started >= rec.upAt) s.okAfter++;
          } else {
            s.refused.push(cmid);
          }
          progress.notify();
          await pause(Math.max(0, PACE_MS - attempt.ms));
        }
      };

      // HTTP publishers: a refused or unanswered publish is retried with its client_msg_id until stored.
      const publishers = cluster.edges.slice(0, HTTP_LANES).map((edge, i) => ({ lane: `http${i}`, edge, ok: 0, okAfter: 0 }));
      const post = async (p, cmid) => {
        const started = Date.now();
        const out = { lane: p.lane, cmid, started };
        try {
          const res = await fetch(`${p.edge.url}/api/v1/conversations/${id}/messages`, {
            method: "POST",
            headers: { authorization: `Bearer ${cluster.serviceToken()}`, "content-type": "application/json" },
            body: JSON.stringify({ text: `${p.lane} ${cmid}`, client_msg_id: cmid }),
            signal: AbortSignal.timeout(ANSWER_BOUND_MS),
          });
          out.status = res.status;
          out.body = await res.json().catch(() => null);
          out.code = out.body?.error?.code;
        } catch (err) {
          out.error = err.name === "TimeoutError" ? `no answer within ${ANSWER_BOUND_MS} ms` : (err.cause?.code ?? err.message);
        }
        out.ms = Date.now() - started;
        out.phase = phaseOf(started, Date.now());
        return out;
      };
      const httpLane = async (p) => {
        for (let n = 1; !stopping; n++) {
          const cmid = `${p.lane}-${n}`;
          // Once traffic stops, the publish under way still goes on until it is stored.
          const deadline = Date.now() + RECOVERY_MS;
          for (;;) {
            const attempt = await post(p, cmid);
            rec.posts.push(attempt);
            if (attempt.status === 200 || attempt.status === 201) {
              rec.acked.push({ lane: p.lane, cmid, sender: "svc-cluster", message: attempt.body });
              p.ok++;
              if (rec.upAt && attempt.started >= rec.upAt) p.okAfter++;
              break;
            }
            progress.notify();
            if (Date.now() > deadline) {
              rec.recovery ??= `${p.lane}: ${cmid} was not stored within ${RECOVERY_MS} ms of retrying; last: ${JSON.stringify(attempt)}`;
              break;
            }
            await pause(Math.max(0, 2 * PACE_MS - attempt.ms));
          }
          progress.notify();
          await pause(PACE_MS);
        }
      };

      const lanes = [...senders.map(socketLane), ...publishers.map(httpLane)];
      const everyLane = [...senders, ...publishers];
      try {
        await progress.until(
          () => everyLane.every((l) => l.ok >= OK_BEFORE),
          `traffic did not start: ${everyLane.map((l) => `${l.lane} ${l.ok} ok`).join(", ")}`,
          30_000,
        );

        // The outage: down for OUTAGE_MS, /readyz probed on both edges meanwhile.
        rec.stopAt = Date.now();
        await cluster.stopDatabase("fast");
        const downAt = Date.now();
        try {
          while (Date.now() - downAt < OUTAGE_MS) {
            const round = Date.now();
            rec.probes.push(...(await Promise.all(cluster.edges.map(probe))));
            await pause(Math.max(0, 250 - (Date.now() - round)));
          }
        } finally {
          await cluster.startDatabase();
          rec.upAt = Date.now();
        }
        const ready = await Promise.all(cluster.edges.map((e) => readyAgain(e)));
        cluster.edges.forEach((e, i) => (rec.readyAfter[e.name] = ready[i]));

        // Traffic goes on until every lane was answered ok again.
        await progress
          .until(
            () => everyLane.every((l) => l.okAfter >= OK_AFTER),
            `traffic was not answered ok again after the restart: ${everyLane.map((l) => `${l.lane} ${l.okAfter} ok`).join(", ")}`,
            RECOVERY_MS,
          )
          .catch((err) => (rec.recovery ??= err.message));
      } finally {
        stopping = true;
        await Promise.all(lanes);
      }

      // Retry every refused (or unanswered) send with its own client_msg_id, as that client.
      for (const s of senders) {
        for (const cmid of s.refused) {
          const deadline = Date.now() + RECOVERY_MS;
          let attempt;
          for (;;) {
            if (!s.socket.connected) s.socket = await connect(s.edge.url, { token: s.token });
            attempt = await emitSend(s, s.socket, cmid);
            if (attempt.reply?.ok === true || Date.now() > deadline) break;
            await pause(200);
          }
          rec.retried.push({ lane: s.lane, cmid, sender: s.sub, reply: attempt.reply });
          if (attempt.reply?.ok === true) rec.acked.push({ lane: s.lane, cmid, sender: s.sub, message: attempt.reply.message });
        }
      }
    },
    { timeout: 300_000 },
  );

  it("(a) while PostgreSQL is down /readyz answers 503 database:false within 1 s on both edges; then 200 again", () => {
    const { cluster } = ctx;
    for (const edge of cluster.edges) {
      const mine = rec.probes.filter((p) => p.edge === edge.name);
      const bad = mine.filter((p) => p.error || p.status !== 503 || p.database !== false || p.ms > READY_ANSWER_MS);
      assert.deepEqual(
        bad,
        [],
        `${edge.name}: ${bad.length} of ${mine.length} /readyz probes during the outage did not answer 503 {database:false} within ${READY_ANSWER_MS} ms`,
      );
      assert.ok(mine.length >= 3, `${edge.name}: only ${mine.length} /readyz probes during the outage`);
      assert.notEqual(rec.readyAfter[edge.name], null, `${edge.name}: /readyz did not answer 200 within 30 s of PostgreSQL's restart`);
    }
  });

  it(`(b) every send_message is answered within the command timeout + ${MARGIN_MS} ms: ok with the message, unavailable, or outcome_unknown`, () => {
    const during = rec.sends.filter((s) => s.phase === "outage");
    assert.ok(during.length >= SOCKET_SENDERS, `only ${during.length} sends overlapped the outage: it was not exercised`);
    const wrong = rec.sends.filter((s) => {
      const r = s.reply;
      if (r?.ok === true) return !(r.message && r.message.conversation_id === rec.id && Number.isInteger(r.message.offset));
      return !(r?.ok === false && ["unavailable", "outcome_unknown"].includes(r.error?.code));
    });
    assert.deepEqual(
      wrong.map(({ lane, cmid, ms, phase, reply }) => ({ lane, cmid, ms, phase, reply: reply ?? `no answer within ${ANSWER_BOUND_MS} ms` })),
      [],
      `${wrong.length} of ${rec.sends.length} sends (${during.length} during the outage) were not answered ok, unavailable or outcome_unknown within ${ANSWER_BOUND_MS} ms (command timeout ${COMMAND_TIMEOUT_MS} ms)`,
    );
    assert.deepEqual(rec.disconnects, [], "sender sockets were disconnected");
  });

  it(`(b) every HTTP publish is answered within the command timeout + ${MARGIN_MS} ms: 201/200, 503 unavailable or 504 outcome_unknown`, () => {
    const during = rec.posts.filter((p) => p.phase === "outage");
    assert.ok(during.length >= HTTP_LANES, `only ${during.length} HTTP publishes overlapped the outage`);
    const answered = (p) =>
      p.status === 200 || p.status === 201 || (p.status === 503 && p.code === "unavailable") || (p.status === 504 && p.code === "outcome_unknown");
    const wrong = rec.posts.filter((p) => !answered(p));
    assert.deepEqual(
      wrong.map(({ lane, cmid, ms, phase, status, code, error }) => ({ lane, cmid, ms, phase, status, code, error })),
      [],
      `${wrong.length} of ${rec.posts.length} HTTP publishes (${during.length} during the outage) were not answered 2xx, 503 unavailable or 504 outcome_unknown within ${ANSWER_BOUND_MS} ms`,
    );
  });

  it("(c) every acknowledged message is in PostgreSQL exactly once, and both watchers saw offsets 1..n in order, once", async () => {
    const { cluster } = ctx;
    assert.equal(rec.recovery, null, rec.recovery ?? "");
    const rows = cluster
      .sql(`SELECT id, seq, sender_id, coalesce(client_msg_id, '') FROM messages WHERE conversation_id = '${rec.id}' ORDER BY seq`)
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [mid, seq, sender, cmid] = line.split("|");
        return { id: mid, seq: Number(seq), sender, cmid };
      });
    const n = rows.length;
    assert.deepEqual(stored(cluster, rec.id), { rows: n, ids: n, min: n ? 1 : 0, max: n }, "stored offsets are 1..n");
    const byId = new Map(rows.map((r) => [r.id, r]));
    const perKey = new Map();
    for (const r of rows) perKey.set(`${r.sender}/${r.cmid}`, (perKey.get(`${r.sender}/${r.cmid}`) ?? 0) + 1);
    const twice = [...perKey].filter(([, count]) => count > 1);
    assert.deepEqual(twice, [], "a client_msg_id is stored more than once");
    const missing = rec.acked.filter((a) => {
      const row = byId.get(a.message?.id);
      return !row || row.seq !== a.message.offset || row.cmid !== a.cmid || row.sender !== a.sender;
    });
    assert.deepEqual(
      missing.map((a) => ({ lane: a.lane, cmid: a.cmid, message: a.message })),
      [],
      `${missing.length} of ${rec.acked.length} acknowledged messages are not stored as acknowledged`,
    );
    for (const w of rec.watchers) {
      await w.until(n, 30_000);
      assert.deepEqual(w.offsets, range(n), "a watcher's offsets are 1..n in order, each once");
    }
    assert.equal(stored(cluster, rec.id).rows, n, "nothing was stored after the count");
  });

  it("(d) a send refused during the outage and retried with its client_msg_id afterwards is stored once", () => {
    const { cluster } = ctx;
    assert.ok(rec.retried.length > 0, "no send was refused during the outage, so no retry was exercised");
    const failed = rec.retried.filter((r) => r.reply?.ok !== true);
    assert.deepEqual(failed, [], `${failed.length} of ${rec.retried.length} retries after the outage were not answered ok`);
    for (const r of rec.retried) {
      const count = Number(
        cluster.sql(
          `SELECT count(*) FROM messages WHERE conversation_id = '${rec.id}' AND sender_id = '${r.sender}' AND client_msg_id = '${r.cmid}'`,
        ),
      );
      assert.equal(count, 1, `${r.cmid}: ${count} stored messages after the retry`);
    }
  });
});
