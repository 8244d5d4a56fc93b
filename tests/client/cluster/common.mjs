// What the cluster tests share: publishing over HTTP with retries, and
// watchers that record every message:new a socket gets.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect, join } from "../lib/sio.mjs";

/** POST a message through an edge; retried (same client_msg_id) while the cluster answers 5xx or not at all. */
export async function publish(cluster, edge, conversationId, text, clientMsgId = randomUUID(), { patience = 60_000 } = {}) {
  const deadline = Date.now() + patience;
  let last;
  while (Date.now() < deadline) {
    try {
      const { status, body } = await postOnce(cluster, edge, conversationId, text, clientMsgId, 15_000);
      if (status === 200 || status === 201) return body;
      if (status < 500) throw new Error(`publish answered ${status}: ${JSON.stringify(body)}`);
      last = `${status} ${JSON.stringify(body)}`;
    } catch (err) {
      if (String(err.message).startsWith("publish answered")) throw err;
      last = err.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`publish of ${clientMsgId} did not succeed within ${patience} ms; last: ${last}`);
}

/** Runs `count` publishes with at most `parallel` in flight; resolves with the stored messages. */
export async function burst(count, parallel, publishOne) {
  const results = new Array(count);
  let next = 0;
  async function lane() {
    while (next < count) {
      const i = next++;
      results[i] = await publishOne(i);
    }
  }
  await Promise.all(Array.from({ length: parallel }, lane));
  return results;
}

export async function createConversation(cluster, edge) {
  const id = randomUUID();
  const res = await fetch(`${edge.url}/api/v1/conversations`, {
    method: "POST",
    headers: { authorization: `Bearer ${cluster.serviceToken()}`, "content-type": "application/json" },
    body: JSON.stringify({ id, channel: "web", customer: { id: `cust-${id.slice(0, 8)}`, name: "Ana" } }),
  });
  assert.equal(res.status, 201, await res.text());
  return id;
}

/** A socket on `edge`, joined to the conversation, recording the offsets it receives. */
export async function watcher(cluster, edge, conversationId, sinceOffset) {
  const socket = await connect(edge.url, { token: cluster.agentToken() });
  const offsets = [];
  const ids = new Set();
  const waiters = [];
  socket.on("message:new", (m) => {
    if (m.conversation_id !== conversationId) return;
    offsets.push(m.offset);
    ids.add(m.id);
    for (const w of [...waiters]) {
      if (offsets.length >= w.count) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  const joined = await join(socket, conversationId, sinceOffset);
  return {
    socket,
    offsets,
    ids,
    joined,
    /** Resolves once `count` messages arrived; fails after `timeout` ms saying how many did. */
    until(count, timeout = 60_000) {
      if (offsets.length >= count) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${edge.name}: ${offsets.length} of ${count} messages arrived within ${timeout} ms`)),
          timeout,
        );
        waiters.push({ count, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
  };
}

/** 1..n, for comparing offsets. */
export function range(n, from = 1) {
  return Array.from({ length: n }, (_, i) => i + from);
}

/** What PostgreSQL holds for a conversation: rows, distinct ids, lowest and highest offset. */
export function stored(cluster, conversationId) {
  const [rows, ids, min, max] = cluster
    .sql(`SELECT count(*), count(DISTINCT id), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM messages WHERE conversation_id = '${conversationId}'`)
    .split("|")
    .map(Number);
  return { rows, ids, min, max };
}

/** One POST of a message, no retry: its status, body, and how long the answer took. */
export async function postOnce(cluster, edge, conversationId, text, clientMsgId, timeout = 30_000) {
  const started = performance.now();
  const res = await fetch(`${edge.url}/api/v1/conversations/${conversationId}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${cluster.serviceToken()}`, "content-type": "application/json" },
    body: JSON.stringify({ text, client_msg_id: clientMsgId }),
    signal: AbortSignal.timeout(timeout),
  });
  const body = await res.json().catch(() => null);
  const ms = performance.now() - started;
  // `started` as wall-clock time, to compare with when a fault was injected.
  return { status: res.status, body, ms, clientMsgId, text, started: Date.now() - ms };
}

/**
 * Each conversation's messages sent one after another (the next once the last is answered),
 * every conversation at once, alternating edges: the answers by conversation, in order.
 * `onAnswer(count)` is told how many answers came so far. With `retry`, a 5xx answer is
 * retried with the same client_msg_id until it succeeds; every answer is kept in `attempts`.
 */
export async function turns(cluster, conversations, perConversation, onAnswer = () => {}, tag = "t", { retry = false } = {}) {
  let answered = 0;
  return Promise.all(
    conversations.map(async (id, c) => {
      const answers = [];
      for (let i = 0; i < perConversation; i++) {
        const attempts = [];
        for (let k = 0; ; k++) {
          const edge = cluster.edges[(c + i + k) % cluster.edges.length];
          const answer = await postOnce(cluster, edge, id, `${tag} #${i}`, `${tag}-${c}-${i}`).catch((err) => ({
            status: 0,
            body: { error: { code: "no_answer", message: err.message } },
          }));
          attempts.push(answer);
          if (!retry || answer.status === 200 || answer.status === 201 || (answer.status > 0 && answer.status < 500)) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        answers.push({ ...attempts.at(-1), attempts });
        onAnswer(++answered);
      }
      return answers;
    }),
  );
}

/** A conversation's stored messages as `seq|text` lines, in offset order. */
export function storedTexts(cluster, conversationId) {
  const rows = cluster.sql(`SELECT seq, text FROM messages WHERE conversation_id = '${conversationId}' ORDER BY seq`);
  return rows ? rows.split("\n") : [];
}
