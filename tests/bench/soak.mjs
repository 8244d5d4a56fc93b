// A soak benchmark: hours-of-support-chat in minutes on one `switchboard dev`.
// Prints figures; asserts no timing. Not run in CI.
//
//   cargo build --release && (cd tests/client && npm ci)
//   bash tests/bench/soak                                   # the defaults below (10 minutes)
//   DURATION_S=20 CONVERSATIONS=50 RATE=100 ROUND_S=5 SWITCHBOARD_BIN=target/debug/switchboard node tests/bench/soak.mjs
//   MODE=churn CONNECTIONS=500 node tests/bench/soak.mjs    # connect, join, send one, close
//   MODE=churn ROUNDS=5 node tests/bench/soak.mjs           # five times: growth that levels off is the allocator's
//
// MODE=steady (default): CONVERSATIONS conversations (500), each with a customer and an
// agent socket (socket.io-client, websocket transport), RATE messages/s in total (1000)
// spread evenly over them, the two sockets of a conversation taking turns. Every ROUND_S
// seconds (30) a fraction CHURN (0.2) of all sockets disconnect and reconnect, rejoining with
// since_offset; their recovery must continue their offsets with no gap. After DURATION_S
// seconds (600) sending stops, every socket must catch up with its conversation, and all
// sockets close.
//
// Each round prints: elapsed s, server RSS (VmRSS), switchboard_subscriptions and
// switchboard_sockets from /metrics, messages sent and delivered in the round, delivery
// latency p50/p99/max (send -> message:new on the other socket of the conversation; sockets
// that were reconnecting recover by offset instead and are not timed), gaps and duplicates
// seen so far (must be 0), server and node CPU (% of one core) and the node event loop's p99
// delay (if node is saturated, the latencies are node's, not the server's).
// The summary compares the first round with the last ones and ends with the "after churn"
// figure: all sockets closed, switchboard_sockets back to 0, RSS and subscriptions.
//
// MODE=churn: CONNECTIONS (500) customers, PARALLEL at a time, each with a conversation of its own
// that its join creates, connect, join, send one message and close; ROUNDS (1) times (REUSE=1:
// the same customers and conversations every round, to tell per-connection from per-conversation
// memory). Prints
// RSS and switchboard_subscriptions before, and after each round once switchboard_sockets is 0.
//
// Knobs: MODE=steady|churn, DURATION_S, CONVERSATIONS, RATE, ROUND_S, CHURN, CONNECTIONS and ROUNDS
// (churn mode), PARALLEL (connections in flight at once, 50), SWITCHBOARD_BIN (default
// target/release/switchboard), SWITCHBOARD_LOG (warn). Agents get every conversation's inbox
// updates (conversation:new/updated), which at 500 agents x 500 busy conversations
// outweighs the chat itself: INBOX (default none) is the view the agents ask for with
// subscribe_inbox, on servers that have it; STAFF_ROLE=bot makes the second socket of each
// conversation a bot instead, which gets no inbox at all. The summary counts inbox events.
// The server's per-connection PUBLISH_RATE is raised so the limiter is not what is measured.
// 1000 sockets need ~1100 descriptors in this process and as many in the server: the
// tests/bench/soak wrapper raises `ulimit -n` to the hard limit; run `ulimit -n 4096` first
// when calling node directly on a system whose soft limit is 1024.
// Exit status 1 when a gap, a duplicate or a message missing at the end was seen.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { randomUUID } from "node:crypto";

process.env.SWITCHBOARD_BIN ??= "target/release/switchboard";
const { startServer } = await import("../client/lib/server.mjs");
const { io } = createRequire(new URL("../client/package.json", import.meta.url))("socket.io-client");

const env = (name, fallback) => Number(process.env[name] ?? fallback);
const MODE = process.env.MODE ?? "steady";
const DURATION_S = env("DURATION_S", 600);
const CONVERSATIONS = env("CONVERSATIONS", 500);
const RATE = env("RATE", 1000);
const ROUND_S = env("ROUND_S", 30);
const CHURN = env("CHURN", 0.2);
const CONNECTIONS = env("CONNECTIONS", 500);
const PARALLEL = env("PARALLEL", 50);
const CHURN_ROUNDS = env("ROUNDS", 1);
const REUSE = process.env.REUSE === "1";
const INBOX = process.env.INBOX ?? "none";
const STAFF_ROLE = process.env.STAFF_ROLE ?? "agent";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the server and what it reports --------------------------------------------

function warnOnDescriptors(needed) {
  const limits = readFileSync("/proc/self/limits", "utf8").match(/Max open files\s+(\d+)/);
  if (limits && Number(limits[1]) < needed) {
    console.error(`warning: the open-files limit is ${limits[1]}, this run needs ~${needed}: ulimit -n ${needed * 2}`);
  }
}

function rssMb(pid) {
  const kb = Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)?.[1] ?? NaN);
  return kb / 1024;
}

/** Seconds of CPU (user + system) a process used so far (utime, stime in USER_HZ: 100 on Linux). */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Sums of /metrics series: {subscriptions (kind="conversation"), sockets}. */
async function gauges(server) {
  const text = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const sum = (name, labels = "") => {
    let total = 0;
    for (const line of text.split("\n")) {
      const m = line.match(/^(\w+)(\{[^}]*\})?\s+(\S+)$/);
      if (m && m[1] === name && (m[2] ?? "").includes(labels)) total += Number(m[3]);
    }
    return total;
  };
  return { subscriptions: sum("switchboard_subscriptions", 'kind="conversation"'), sockets: sum("switchboard_sockets") };
}

/** Polls /metrics until switchboard_sockets is 0; resolves with the last reading and whether it got there. */
async function socketsGone(server, patience = 30_000) {
  const deadline = Date.now() + patience;
  let last;
  do {
    last = await gauges(server);
    if (last.sockets === 0) return { ...last, settled: true };
    await sleep(100);
  } while (Date.now() < deadline);
  return { ...last, settled: false };
}

// ---- sockets -------------------------------------------------------------------

function open(server, token) {
  const socket = io(server.url, { forceNew: true, reconnection: false, transports: ["websocket"], auth: { token } });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error("no connect within 20 s"));
    }, 20_000);
    socket.once("connect", () => (clearTimeout(timer), resolve(socket)));
    socket.once("connect_error", (err) => (clearTimeout(timer), socket.close(), reject(err)));
  });
}

function call(socket, event, payload, timeout = 20_000) {
  return socket.timeout(timeout).emitWithAck(event, payload);
}

/** Runs `fn(i)` for i in 0..count-1 with at most `parallel` at once. */
async function lanes(count, parallel, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

function percentile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const fmt = (v, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "-");

// ---- MODE=steady ---------------------------------------------------------------

async function steady(server) {
  const pid = server.child.pid;
  const stats = {
    gaps: 0,
    dups: 0,
    delivered: 0,
    sent: 0,
    acked: 0,
    sendErrors: 0,
    reconnects: 0,
    recovered: 0,
    connectErrors: 0,
    serverDisconnects: 0,
    inboxEvents: 0,
  };
  let sending = true;
  let latencies = [];
  let roundDelivered = 0;
  let roundSent = 0;

  // The conversations, created over HTTP.
  const convs = [];
  await lanes(CONVERSATIONS, PARALLEL, async (i) => {
    const conv = await server.createConversation({ customer: { id: `soak-c${i}`, name: `Customer ${i}` } });
    convs[i] = { index: i, id: conv.id, members: [], turn: 0, maxAcked: 0 };
  });

  /** A member: one of a conversation's two sockets, with the last offset it has seen. */
  function wire(member) {
    const { conv, socket } = member;
    socket.on("message:new", (m) => {
      if (m.conversation_id !== conv.id) return;
      if (member.joining) {
        member.buffered.push({ m, at: performance.now() });
        return;
      }
      see(member, m, true);
    });
    socket.on("conversation:updated", () => stats.inboxEvents++);
    socket.on("conversation:new", () => stats.inboxEvents++);
    socket.on("disconnect", (reason) => {
      member.connected = false;
      // Dropped by the server (e.g. as a slow consumer): come back as a client would.
      if (reason !== "io client disconnect" && sending) {
        stats.serverDisconnects++;
        connectMember(member).catch((err) => console.error(`${member.sub}: ${err.message}`));
      }
    });
  }

  /** A message the member got; `at` is when it arrived (live ones are timed). */
  function see(member, m, live, at = performance.now(), overlap = false) {
    if (m.offset <= member.last) {
      // A live message that a second page of history already gave is no duplicate.
      if (!overlap) stats.dups++;
      return;
    }
    if (m.offset !== member.last + 1) stats.gaps += m.offset - member.last - 1;
    member.last = m.offset;
    if (!live) {
      stats.recovered++;
      return;
    }
    stats.delivered++;
    roundDelivered++;
    if (m.sender?.id !== member.sub) {
      const sentAt = Number(m.text.split(" ")[2]);
      if (Number.isFinite(sentAt)) latencies.push(at - sentAt);
    }
  }

  /** Joins (again) from the member's last offset; pages through has_more; then takes the buffered live ones. */
  async function rejoin(member) {
    member.joining = true;
    member.buffered = [];
    let pages = 0;
    for (;;) {
      pages++;
      const since = member.last;
      const reply = await call(member.socket, "join_conversation", { conversation_id: member.conv.id, since_offset: since });
      if (!reply?.ok) throw new Error(`join answered ${JSON.stringify(reply)}`);
      for (const m of reply.messages) see(member, m, false);
      if (!reply.has_more) break;
    }
    member.joining = false;
    for (const { m, at } of member.buffered) see(member, m, true, at, pages > 1);
    member.buffered = [];
    member.connected = true;
  }

  async function connectMember(member) {
    member.connected = false;
    for (let attempt = 1; ; attempt++) {
      try {
        member.socket = await open(server, member.token);
        wire(member);
        // Not awaited: a server without inbox views (this one has none yet) does not answer it.
        if (member.role === "agent") member.socket.emit("subscribe_inbox", { view: INBOX });
        await rejoin(member);
        return;
      } catch (err) {
        stats.connectErrors++;
        member.socket?.close();
        if (attempt >= 5) throw new Error(`${member.sub}: could not connect and join: ${err.message}`);
        await sleep(200 * attempt);
      }
    }
  }

  const members = [];
  for (const conv of convs) {
    for (const role of ["customer", STAFF_ROLE]) {
      const sub = role === "customer" ? `soak-c${conv.index}` : `soak-a${conv.index}`;
      const token =
        role === "customer"
          ? server.customerToken(sub, { conversations: [conv.id] })
          : server.token({ sub, role: STAFF_ROLE, name: `Agent ${conv.index}` });
      const member = { conv, role, sub, token, socket: null, last: 0, joining: false, buffered: [], connected: false };
      conv.members.push(member);
      members.push(member);
    }
  }
  const connectStarted = performance.now();
  await lanes(members.length, PARALLEL, (i) => connectMember(members[i]));
  console.log(
    `${members.length} sockets in ${convs.length} conversations connected and joined in ${fmt((performance.now() - connectStarted) / 1000)} s; ` +
      `${RATE} msg/s, ${DURATION_S} s, rounds of ${ROUND_S} s, churn ${CHURN}`,
  );

  // Sending: a tick every 10 ms sends what is due, conversation by conversation, round robin.
  let nextConv = 0;
  let pendingAcks = 0;
  const started = performance.now();
  let due = 0;
  function send(conv) {
    let member = conv.members[conv.turn];
    conv.turn ^= 1;
    if (!member.connected) member = conv.members[conv.turn];
    if (!member.connected) return;
    const cmid = randomUUID();
    pendingAcks++;
    stats.sent++;
    roundSent++;
    member.socket
      .timeout(20_000)
      .emit("send_message", { conversation_id: conv.id, text: `soak ${conv.index} ${performance.now()}`, client_msg_id: cmid }, (err, reply) => {
        pendingAcks--;
        if (err || !reply?.ok) {
          stats.sendErrors++;
          return;
        }
        stats.acked++;
        conv.maxAcked = Math.max(conv.maxAcked, reply.message.offset);
      });
  }
  const ticker = setInterval(() => {
    if (!sending) return;
    const target = Math.floor(((performance.now() - started) / 1000) * RATE);
    while (due < target) {
      send(convs[nextConv]);
      nextConv = (nextConv + 1) % convs.length;
      due++;
    }
  }, 10);

  // Rounds: one line each, then churn.
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const rounds = [];
  let cpuServer = cpuSeconds(pid);
  let cpuNode = process.cpuUsage();
  let roundStart = performance.now();
  console.log("elapsed_s  rss_mb  subs  sockets  sent  delivered  p50_ms  p99_ms  max_ms  gaps  dups  server_cpu%  node_cpu%  loop_p99_ms");
  const roundsTotal = Math.max(1, Math.round(DURATION_S / ROUND_S));
  for (let r = 1; r <= roundsTotal; r++) {
    const end = started + Math.min(r * ROUND_S, DURATION_S) * 1000;
    await sleep(Math.max(0, end - performance.now()));
    const wall = (performance.now() - roundStart) / 1000;
    roundStart = performance.now();
    const g = await gauges(server);
    const sorted = latencies.sort((a, b) => a - b);
    const nowServer = cpuSeconds(pid);
    const nowNode = process.cpuUsage(cpuNode);
    const row = {
      elapsed: (performance.now() - started) / 1000,
      rss: rssMb(pid),
      ...g,
      sent: roundSent,
      delivered: roundDelivered,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      max: sorted.at(-1),
      serverCpu: ((nowServer - cpuServer) / wall) * 100,
      nodeCpu: ((nowNode.user + nowNode.system) / 1e6 / wall) * 100,
      loopP99: loop.percentile(99) / 1e6,
    };
    rounds.push(row);
    console.log(
      [
        fmt(row.elapsed, 0).padStart(9),
        fmt(row.rss).padStart(7),
        String(row.subscriptions).padStart(5),
        String(row.sockets).padStart(8),
        String(row.sent).padStart(5),
        String(row.delivered).padStart(10),
        fmt(row.p50).padStart(7),
        fmt(row.p99).padStart(7),
        fmt(row.max).padStart(7),
        String(stats.gaps).padStart(5),
        String(stats.dups).padStart(5),
        fmt(row.serverCpu, 0).padStart(12),
        fmt(row.nodeCpu, 0).padStart(10),
        fmt(row.loopP99).padStart(12),
      ].join(" "),
    );
    latencies = [];
    roundDelivered = 0;
    roundSent = 0;
    cpuServer = nowServer;
    cpuNode = process.cpuUsage();
    loop.reset();
    if (r < roundsTotal && CHURN > 0) {
      // A fraction of all sockets drop and come back, rejoining from their last offset.
      const chosen = members.filter((m) => m.connected && Math.random() < CHURN);
      stats.reconnects += chosen.length;
      await Promise.all(
        chosen.map(async (member) => {
          member.connected = false;
          const gone = new Promise((resolve) => member.socket.once("disconnect", resolve));
          member.socket.disconnect();
          await gone;
          await connectMember(member);
        }),
      );
    }
  }
  sending = false;
  clearInterval(ticker);
  loop.disable();

  // Every socket must catch up with the highest offset its conversation acknowledged.
  const deadline = Date.now() + 30_000;
  while (pendingAcks > 0 && Date.now() < deadline) await sleep(100);
  const behind = () => members.filter((m) => m.last < m.conv.maxAcked);
  while (behind().length > 0 && Date.now() < deadline) await sleep(100);
  const missing = behind().reduce((n, m) => n + (m.conv.maxAcked - m.last), 0);

  const tail = rounds.slice(-Math.min(3, Math.max(1, rounds.length - 1)));
  const avg = (rows, key) => rows.reduce((s, row) => s + row[key], 0) / rows.length;
  console.log(
    `summary: sent ${stats.sent}, acked ${stats.acked}, send errors ${stats.sendErrors}, delivered live ${stats.delivered}, ` +
      `recovered by offset ${stats.recovered}, reconnects ${stats.reconnects} (and ${stats.serverDisconnects} after the server ` +
      `dropped a socket), connect retries ${stats.connectErrors}, ` +
      `gaps ${stats.gaps}, duplicates ${stats.dups}, missing at the end ${missing}, unanswered sends ${pendingAcks}, ` +
      `inbox events to agents ${stats.inboxEvents}`,
  );
  console.log(
    `summary: RSS ${fmt(rounds[0].rss)} MB in the first round, ${fmt(avg(tail, "rss"))} MB in the last ${tail.length}; ` +
      `p99 ${fmt(rounds[0].p99)} ms in the first round, ${fmt(avg(tail, "p99"))} ms in the last ${tail.length}`,
  );

  for (const m of members) m.socket.close();
  const after = await socketsGone(server);
  console.log(
    `after churn: all sockets closed; switchboard_sockets ${after.sockets}${after.settled ? "" : " (not 0 within 30 s)"}, ` +
      `RSS ${fmt(rssMb(pid))} MB, switchboard_subscriptions ${after.subscriptions}`,
  );
  return stats.gaps === 0 && stats.dups === 0 && missing === 0 && after.settled;
}

// ---- MODE=churn ----------------------------------------------------------------

async function churn(server) {
  const pid = server.child.pid;
  const before = await gauges(server);
  const rssBefore = rssMb(pid);
  console.log(`before: RSS ${fmt(rssBefore)} MB, switchboard_subscriptions ${before.subscriptions}, switchboard_sockets ${before.sockets}`);
  const errors = [];
  const runTag = randomUUID().slice(0, 8);
  let after = before;
  for (let round = 1; round <= CHURN_ROUNDS; round++) {
    const started = performance.now();
    await lanes(CONNECTIONS, PARALLEL, async (i) => {
      // A widget's first visit: its own new conversation, created by the join (REUSE=1: the
      // same customers come back to the same conversations every round).
      const id = REUSE ? `${runTag}-${i}` : randomUUID();
      let socket;
      try {
        socket = await open(server, server.customerToken(`churn-${REUSE ? 0 : round}-${i}`, { conversations: [id] }));
        const joined = await call(socket, "join_conversation", { conversation_id: id });
        if (!joined?.ok) throw new Error(`join: ${JSON.stringify(joined)}`);
        const sent = await call(socket, "send_message", { conversation_id: id, text: "one", client_msg_id: `c${round}-${i}` });
        if (!sent?.ok) throw new Error(`send: ${JSON.stringify(sent)}`);
        const gone = new Promise((resolve) => socket.once("disconnect", resolve));
        socket.disconnect();
        await gone;
      } catch (err) {
        errors.push(err.message);
        socket?.close();
      }
    });
    const seconds = (performance.now() - started) / 1000;
    after = await socketsGone(server);
    const rss = rssMb(pid);
    console.log(
      `round ${round}: ${CONNECTIONS} connections (connect, join, send one, close), ${PARALLEL} at a time, in ${fmt(seconds)} s; ` +
        `errors ${errors.length}${errors.length ? ` (first: ${errors[0]})` : ""}; ` +
        `after: RSS ${fmt(rss)} MB (${fmt(rss - rssBefore)} MB more than before), switchboard_subscriptions ${after.subscriptions}, ` +
        `switchboard_sockets ${after.sockets}${after.settled ? "" : " (not 0 within 30 s)"}`,
    );
  }
  return errors.length === 0 && after.settled && after.subscriptions === before.subscriptions;
}

// ---- main ----------------------------------------------------------------------

if (!["steady", "churn"].includes(MODE)) {
  console.error(`MODE must be steady or churn, not ${MODE}`);
  process.exit(2);
}
warnOnDescriptors((MODE === "steady" ? 2 * CONVERSATIONS : PARALLEL) + 100);
const server = await startServer({
  env: { SWITCHBOARD_LOG: process.env.SWITCHBOARD_LOG ?? "warn", SWITCHBOARD_PUBLISH_RATE: "1000" },
});
console.log(`switchboard dev (${process.env.SWITCHBOARD_BIN}, pid ${server.child.pid}) on ${server.url}, MODE=${MODE}`);
let ok = false;
try {
  ok = MODE === "steady" ? await steady(server) : await churn(server);
  if (!ok) console.error("soak: FAILED (gaps, duplicates, missing messages, errors or sockets left; see above)");
} catch (err) {
  console.error(`soak: ${err.stack ?? err}`);
} finally {
  await server.stop();
}
// Sockets and timers of an interrupted run must not keep the process alive.
process.exit(ok ? 0 : 1);
