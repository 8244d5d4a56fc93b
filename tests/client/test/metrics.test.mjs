// What operators see (README, Metrics and logs), on a real `switchboard dev`:
//
// - a fresh node exports every series the README's tables list, with the documented type,
//   and nothing switchboard_* or process_* they do not; series with known label values
//   start at 0, build_info says role="dev";
// - a scripted session moves each figure as it should: a Socket.IO connect and a join,
//   messages over the socket and over HTTP, refused tokens on both transports, closes, a
//   reader that stopped, an unknown route; refusals and closes are one log line each;
// - afterwards every documented series has samples, each with exactly the documented
//   labels, and every name the Grafana dashboard and the alert rules query is exported;
// - SWITCHBOARD_LOG_FORMAT=json writes one JSON object per log line.
//
// Values that change asynchronously (a close the server notices after the client left, a
// batch stored after its answer) are polled on /metrics with `eventually`; nothing sleeps.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import WebSocket from "ws";
import {
  ALERTS,
  DASHBOARD,
  alertRules,
  dashboardPanels,
  documentedSeries,
  exactly,
  familyOf,
  metricNames,
  samplesOf,
  scrapeOf,
  value,
} from "../lib/metrics.mjs";
import { RawWebSocketClient } from "../lib/raw.mjs";
import { nowSecs, startServer } from "../lib/server.mjs";
import { useServer } from "../lib/setup.mjs";
import { connect, connectError, eventually, join, many, send } from "../lib/sio.mjs";

/** A small queue, so a stalled reader is given up on after a short flood. */
const OUTBOUND_BUFFER = 64;
const ctx = useServer({ SWITCHBOARD_OUTBOUND_BUFFER: String(OUTBOUND_BUFFER) });

const documented = documentedSeries();
const scrape = () => scrapeOf(ctx.server);

const SOCKETS = "switchboard_sockets";
const SUBSCRIPTIONS = "switchboard_subscriptions";
const REFUSED = "switchboard_connections_refused_total";
const CLOSED = "switchboard_connections_closed_total";
const SLOW = "switchboard_slow_consumers_disconnected_total";
const HTTP = "switchboard_http_requests_total";
const MESSAGES_ROUTE = "/api/v1/conversations/{id}/messages";

/** `after - before` of a sum of samples. */
function delta(before, after, name, labels = {}) {
  return value(after, name, labels) - value(before, name, labels);
}

/** How many lines of the server's output contain every one of `parts`. */
function logLines(server, ...parts) {
  return server
    .logs()
    .split("\n")
    .filter((l) => parts.every((p) => l.includes(p))).length;
}

/** A customer with a conversation of its own, created over HTTP. */
async function customerWithConversation() {
  const sub = `metrics-${randomUUID().slice(0, 8)}`;
  const conv = await ctx.server.createConversation({ customer: { id: sub, name: `Customer ${sub}` } });
  return { sub, conv, token: ctx.server.customerToken(sub) };
}

/** A native /ws connection: resolves once open; `frames` records what arrives. */
async function openNative(token) {
  const ws = new WebSocket(`${ctx.server.url.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(token)}`);
  const frames = [];
  ws.on("message", (data) => frames.push(JSON.parse(data.toString())));
  ws.on("error", () => {});
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("unexpected-response", (_, res) => reject(new Error(`native upgrade refused: HTTP ${res.statusCode}`)));
    ws.once("error", reject);
  });
  return { ws, frames };
}

/** A native connect that must be refused: resolves with the HTTP status and the error code. */
async function nativeRefusal(query) {
  const ws = new WebSocket(`${ctx.server.url.replace(/^http/, "ws")}/ws${query}`);
  ws.on("error", () => {});
  const res = await new Promise((resolve, reject) => {
    ws.once("unexpected-response", (_, r) => resolve(r));
    ws.once("open", () => {
      ws.terminate();
      reject(new Error(`native connect with ${query || "no token"} was accepted`));
    });
  });
  const text = await new Promise((resolve) => {
    let body = "";
    res.on("data", (c) => (body += c));
    res.on("end", () => resolve(body));
  });
  return { status: res.statusCode, code: JSON.parse(text).error?.code };
}

describe("a fresh dev node", () => {
  it("exports every series of the README's tables with its documented type, and no other", async () => {
    assert.ok(documented.length >= 30, `the README's tables list ${documented.length} series`);
    const names = documented.map((s) => s.name);
    assert.equal(new Set(names).size, names.length, "a series listed twice in the README");
    const fresh = await scrape();
    const wrong = documented
      .filter((s) => fresh.types.get(s.name) !== s.type)
      .map((s) => `${s.name}: README says ${s.type}, /metrics ${fresh.types.get(s.name) ?? "nothing"}`);
    assert.deepEqual(wrong, [], "series the scrape does not export as documented");
    for (const s of documented) {
      assert.ok((fresh.help.get(s.name) ?? "").length > 0, `${s.name} has a # HELP`);
    }
    const undocumented = [...fresh.types.keys()].filter(
      (n) => /^(switchboard|process)_/.test(n) && !names.includes(n),
    );
    assert.deepEqual(undocumented, [], "series /metrics exports that the README's tables do not list");
  });

  it("has the series with known labels at 0 from the start, build_info role=dev at 1", async () => {
    const fresh = await scrape();
    const zeros = [
      [SOCKETS, { transport: "socket.io" }],
      [SOCKETS, { transport: "native" }],
      [SUBSCRIPTIONS, { kind: "conversation" }],
      [SUBSCRIPTIONS, { kind: "tenant" }],
      [SUBSCRIPTIONS, { kind: "phone" }],
      ["switchboard_deliveries_total", { transport: "socket.io" }],
      ["switchboard_deliveries_total", { transport: "native" }],
      [SLOW, { transport: "socket.io" }],
      [SLOW, { transport: "native" }],
      ["switchboard_ephemeral_skipped_total", {}],
      ["switchboard_gaps_filled_total", {}],
      ["switchboard_foreign_events_dropped_total", {}],
      ["switchboard_wa_webhooks_total", {}],
      ["switchboard_wa_webhooks_refused_total", {}],
      ["switchboard_commands_returned_total", {}],
      ["switchboard_wa_sent_total", {}],
      ["switchboard_wa_retries_total", {}],
      ["switchboard_wa_failed_total", {}],
      ["switchboard_command_duration_seconds_count", {}],
      ["switchboard_delivery_latency_seconds_count", {}],
      ["switchboard_persist_batch_size_count", {}],
      ["switchboard_persist_store_duration_seconds_count", {}],
      ["switchboard_partition_backlog", { kind: "persist", partition: "0" }],
      ["switchboard_partition_redelivered", { kind: "persist", partition: "0" }],
    ];
    for (const [name, labels] of zeros) {
      const sample = exactly(fresh, name, labels);
      assert.ok(sample, `${name}${JSON.stringify(labels)} is exported before anything happened`);
      assert.equal(sample.value, 0, `${name}${JSON.stringify(labels)} starts at 0`);
    }
    // Histograms with known labels export every bucket at 0, +Inf included.
    const buckets = samplesOf(fresh, "switchboard_delivery_latency_seconds_bucket");
    assert.ok(buckets.some((b) => b.labels.le === "+Inf"), "delivery latency has a +Inf bucket");
    assert.deepEqual(
      buckets.map((b) => Number(b.labels.le)).filter(Number.isFinite),
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      "the seconds buckets the README lists",
    );
    assert.deepEqual(
      samplesOf(fresh, "switchboard_persist_batch_size_bucket").map((b) => Number(b.labels.le)).filter(Number.isFinite),
      [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      "the batch-size buckets the README lists",
    );
    // Series whose labels come with their samples say only what they are until then.
    for (const name of [REFUSED, CLOSED]) {
      assert.deepEqual(samplesOf(fresh, name), [], `${name} has no sample before the first one`);
    }
    const build = samplesOf(fresh, "switchboard_build_info");
    assert.equal(build.length, 1, `one build_info sample: ${JSON.stringify(build)}`);
    assert.equal(build[0].labels.role, "dev");
    assert.match(build[0].labels.version, /^\d+\.\d+\.\d+/);
    assert.equal(build[0].value, 1);
    // dev's one worker takes its one partition of each kind, and its edge announces itself,
    // on the bus: soon after start, not necessarily before /readyz first answers.
    const cluster = await eventually(
      scrape,
      (now) =>
        value(now, "switchboard_partitions_owned", { kind: "persist" }) === 1 &&
        samplesOf(now, "switchboard_cluster_sockets").length === 1,
      { what: "dev's worker and edge in the cluster gauges" },
    );
    assert.equal(samplesOf(cluster, "switchboard_partitions_owned", { kind: "persist" }).length, 1, "one persist worker");
    assert.equal(value(cluster, "switchboard_cluster_sockets"), 0, "the edge announces no socket yet");
    assert.ok(value(fresh, "process_resident_memory_bytes") > 0, "resident memory is measured");
    assert.ok(value(fresh, "process_open_fds") > 0, "open fds are counted");
    assert.ok(value(fresh, "process_max_fds") >= value(fresh, "process_open_fds"), "the fd limit is above the fds open");
    const started = value(fresh, "process_start_time_seconds");
    assert.ok(started > nowSecs() - 600 && started <= nowSecs() + 1, `process_start_time_seconds ${started} is recent`);
  });
});

describe("a scripted session moves the figures", () => {
  it("a Socket.IO connect, a join, messages over the socket and HTTP, then a close", async () => {
    const N_SOCKET = 3;
    const N_HTTP = 3;
    const N = N_SOCKET + N_HTTP;
    const { conv, token } = await customerWithConversation();

    const start = await scrape();
    const s = await connect(ctx.server.url, { token });
    const connected = await scrape();
    assert.equal(delta(start, connected, SOCKETS, { transport: "socket.io" }), 1, "a connect is one more socket.io socket");
    assert.equal(delta(start, connected, SOCKETS, { transport: "native" }), 0, "and no native one");

    await join(s, conv.id);
    const joined = await scrape();
    assert.equal(
      delta(connected, joined, SUBSCRIPTIONS, { kind: "conversation" }),
      1,
      "a join of a conversation nobody on this edge follows is one more conversation subscription",
    );

    for (let i = 0; i < N_SOCKET; i++) await send(s, conv.id, `over the socket ${i}`);
    for (let i = 0; i < N_HTTP; i++) await ctx.server.postMessage(conv.id, `over HTTP ${i}`);
    const delivered = await many(s, "message:new", N, { what: "the session's messages" });
    assert.equal(delivered.length, N);
    await ctx.server.history(conv.id);

    // Stored batches are recorded by the worker; poll until every message is in one.
    const after = await eventually(
      scrape,
      (now) =>
        delta(joined, now, "switchboard_persist_batch_size_sum") >= N &&
        delta(joined, now, "switchboard_delivery_latency_seconds_count") >= N &&
        delta(joined, now, "switchboard_deliveries_total", { transport: "socket.io" }) >= N,
      { what: "the session's messages in /metrics" },
    );
    const d = (name, labels) => delta(joined, after, name, labels);
    assert.ok(
      d("switchboard_deliveries_total", { transport: "socket.io" }) >= N,
      `${N} message:new delivered, deliveries_total{socket.io} +${d("switchboard_deliveries_total", { transport: "socket.io" })}`,
    );
    assert.equal(d("switchboard_deliveries_total", { transport: "native" }), 0, "no native socket was there");
    assert.equal(d("switchboard_command_duration_seconds_count"), N, "one command round trip per message");
    assert.ok(d("switchboard_command_duration_seconds_sum") > 0, "round trips take time");
    assert.ok(d("switchboard_delivery_latency_seconds_count") >= N, "a delivery latency per message at least");
    assert.equal(d("switchboard_persist_batch_size_sum"), N, "every message stored once, in some batch");
    const batches = d("switchboard_persist_batch_size_count");
    assert.ok(batches >= 1 && batches <= N, `${batches} batches for ${N} messages`);
    assert.equal(d("switchboard_persist_store_duration_seconds_count"), batches, "one store time per batch");
    assert.equal(d("switchboard_commands_returned_total"), 0, "a healthy session hands nothing back to the bus");
    assert.equal(d(HTTP, { route: MESSAGES_ROUTE, method: "POST", status: "201" }), N_HTTP, "POST messages, by template");
    assert.equal(d(HTTP, { route: MESSAGES_ROUTE, method: "GET", status: "200" }), 1, "GET messages, by template");
    assert.equal(
      d("switchboard_http_request_duration_seconds_count", { route: MESSAGES_ROUTE, method: "POST" }),
      N_HTTP,
      "each POST timed",
    );
    const routes = new Set(samplesOf(after, HTTP).map((x) => x.labels.route));
    for (const route of routes) {
      assert.ok(!route.includes(conv.id), `a route label holds the raw id: ${route}`);
      assert.ok(route === "unmatched" || route.startsWith("/"), `route label ${route}`);
    }

    // The close: counted once as the client's, and the gauges come back down.
    const closing = await scrape();
    const closedLines = logLines(ctx.server, "connection closed", "client_closed");
    s.close();
    const closed = await eventually(
      scrape,
      (now) =>
        delta(closing, now, CLOSED, { transport: "socket.io", reason: "client_closed" }) >= 1 &&
        value(now, SOCKETS, { transport: "socket.io" }) === value(start, SOCKETS, { transport: "socket.io" }) &&
        value(now, SUBSCRIPTIONS, { kind: "conversation" }) === value(start, SUBSCRIPTIONS, { kind: "conversation" }),
      { what: "the close in /metrics" },
    );
    assert.equal(delta(closing, closed, CLOSED, { transport: "socket.io", reason: "client_closed" }), 1);
    assert.equal(delta(closing, closed, CLOSED), 1, "one close, under one reason");
    await eventually(
      () => logLines(ctx.server, "connection closed", "client_closed") - closedLines,
      (n) => n >= 1,
      { what: "the close's log line" },
    );
    assert.equal(logLines(ctx.server, "connection closed", "client_closed") - closedLines, 1, "one log line per close");
  });

  it("a native connect and close", async () => {
    const { token } = await customerWithConversation();
    const start = await scrape();
    const n = await openNative(token);
    await eventually(
      () => n.frames.some((f) => f.type === "connected"),
      (yes) => yes,
      { what: "the native connected frame" },
    );
    const open = await scrape();
    assert.equal(delta(start, open, SOCKETS, { transport: "native" }), 1, "one more native socket");
    assert.equal(delta(start, open, SOCKETS, { transport: "socket.io" }), 0);
    n.ws.close();
    const closed = await eventually(
      scrape,
      (now) =>
        delta(open, now, CLOSED, { transport: "native" }) >= 1 &&
        value(now, SOCKETS, { transport: "native" }) === value(start, SOCKETS, { transport: "native" }),
      { what: "the native close in /metrics" },
    );
    assert.equal(delta(open, closed, CLOSED, { transport: "native", reason: "client_closed" }), 1);
    assert.equal(delta(open, closed, CLOSED), 1, "one close, under one reason");
  });

  it("refused tokens, by transport and reason, are neither sockets nor closes", async () => {
    const before = await scrape();
    const linesBefore = logLines(ctx.server, "connection refused");
    const sub = `refused-${randomUUID().slice(0, 8)}`;
    const refusals = [
      ["socket.io", "invalid_token", () => connectError(ctx.server.url, { token: "not-a-jwt" })],
      ["socket.io", "token_required", () => connectError(ctx.server.url)],
      [
        "socket.io",
        "token_expired",
        () => connectError(ctx.server.url, { token: ctx.server.customerToken(sub, { exp: nowSecs() - 120 }) }),
      ],
      [
        "socket.io",
        "token_not_yet_valid",
        () => connectError(ctx.server.url, { token: ctx.server.customerToken(sub, { nbf: nowSecs() + 3600 }) }),
      ],
      ["native", "invalid_token", () => nativeRefusal("?token=garbage")],
      ["native", "token_required", () => nativeRefusal("")],
    ];
    for (const [transport, reason, refuse] of refusals) {
      const got = await refuse();
      if (transport === "native") {
        assert.equal(got.status, 401, `native ${reason}`);
        assert.equal(got.code, reason);
      }
    }
    const after = await scrape();
    for (const [transport, reason] of refusals) {
      assert.equal(delta(before, after, REFUSED, { transport, reason }), 1, `${REFUSED}{transport="${transport}",reason="${reason}"}`);
    }
    assert.equal(delta(before, after, REFUSED), refusals.length, "nothing else counted as refused");
    assert.equal(delta(before, after, SOCKETS), 0, "a refused connection is never a socket");
    assert.equal(delta(before, after, CLOSED), 0, "nor a close");
    const lines = await eventually(
      () => logLines(ctx.server, "connection refused") - linesBefore,
      (n) => n >= refusals.length,
      { what: "a log line per refusal" },
    );
    assert.equal(lines, refusals.length, "one log line per refused connection");
    for (const [, reason] of refusals) {
      assert.ok(logLines(ctx.server, "connection refused", reason) >= 1, `the refusal's line names ${reason}`);
    }
  });

  it("a reader that stopped: one slow consumer, closed as stopped_reading", { timeout: 60_000 }, async () => {
    const { conv, token } = await customerWithConversation();
    const raw = await RawWebSocketClient.open(ctx.server.url);
    try {
      await raw.connect({ token });
      const joined = await raw.emitWithAck("join_conversation", { conversation_id: conv.id });
      assert.equal(joined?.ok, true, `stalled join: ${JSON.stringify(joined)}`);
      const before = await scrape();
      const logsBefore = logLines(ctx.server, "connection closed", "stopped_reading");
      raw.pause();

      // Posts large messages, a few in flight, until the server reports the socket given up
      // on (the kernel's buffers on both ends fill first, then the socket's queue).
      const FLOOD = 2500;
      const IN_FLIGHT = 8;
      const CHECK_EVERY = 50;
      const text = "x".repeat(4000);
      const svc = ctx.server.serviceToken();
      let issued = 0;
      let evicted = false;
      let checking = false;
      const worker = async () => {
        while (!evicted && issued < FLOOD) {
          const i = issued++;
          const res = await ctx.server.http("POST", `/api/v1/conversations/${encodeURIComponent(conv.id)}/messages`, {
            token: svc,
            json: { text },
          });
          assert.equal(res.status, 201, `flood POST answered ${res.status}: ${res.text.slice(0, 200)}`);
          if (i % CHECK_EVERY === 0 && !checking) {
            checking = true;
            evicted = delta(before, await scrape(), SLOW, { transport: "socket.io" }) >= 1;
            checking = false;
          }
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      assert.ok(evicted, `${issued} messages of ${text.length} characters and the stalled socket was never given up on`);

      raw.resume();
      await raw.ended({ timeout: 10_000, what: "the disconnect after resuming" });
      const after = await eventually(
        scrape,
        (now) =>
          delta(before, now, CLOSED, { transport: "socket.io" }) >= 1 &&
          value(now, SOCKETS, { transport: "socket.io" }) === value(before, SOCKETS, { transport: "socket.io" }) - 1,
        { what: "the stalled socket's close in /metrics" },
      );
      assert.equal(delta(before, after, SLOW, { transport: "socket.io" }), 1, "counted once as a slow consumer");
      assert.equal(delta(before, after, SLOW, { transport: "native" }), 0);
      assert.equal(
        delta(before, after, CLOSED, { transport: "socket.io", reason: "stopped_reading" }),
        1,
        `closed as stopped_reading; closes by reason: ${JSON.stringify(
          samplesOf(after, CLOSED).map((x) => [x.labels.transport, x.labels.reason, x.value]),
        )}`,
      );
      assert.equal(delta(before, after, CLOSED), 1, "and under no other reason");
      const logged = await eventually(
        () => logLines(ctx.server, "connection closed", "stopped_reading") - logsBefore,
        (n) => n >= 1,
        { what: "the stopped_reading close's log line" },
      );
      assert.equal(logged, 1, "one log line for its close, however many messages it missed");
    } finally {
      raw.close();
    }
  });

  it("an unknown route is counted as route=unmatched, never by its path", async () => {
    const before = await scrape();
    const path = `/api/v1/no-such-thing-${randomUUID().slice(0, 8)}`;
    const res = await ctx.server.http("GET", path, { token: ctx.server.serviceToken() });
    assert.equal(res.status, 404);
    const after = await scrape();
    assert.equal(delta(before, after, HTTP, { route: "unmatched", method: "GET", status: "404" }), 1);
    assert.equal(delta(before, after, "switchboard_http_request_duration_seconds_count", { route: "unmatched", method: "GET" }), 1);
    const leaked = samplesOf(after, HTTP).filter((x) => x.labels.route.includes("no-such-thing"));
    assert.deepEqual(leaked, [], "the path itself became a label value");
  });
});

describe("after the session", () => {
  it("every documented series has samples, each with exactly the documented labels", async () => {
    const now = await scrape();
    const problems = [];
    for (const s of documented) {
      const samples = now.samples.filter((x) => familyOf(x.name, now.types) === s.name);
      if (samples.length === 0) {
        problems.push(`${s.name}: no sample`);
        continue;
      }
      const want = [...s.labels].sort().join(",");
      for (const x of samples) {
        const have = Object.keys(x.labels)
          .filter((k) => !(k === "le" && x.name.endsWith("_bucket")))
          .sort()
          .join(",");
        if (have !== want) problems.push(`${x.name}${JSON.stringify(x.labels)}: labels ${have || "none"}, README says ${want || "none"}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it("every metric the dashboard and the alert rules query is one a dev node exports", async () => {
    const now = await scrape();
    // Made by Prometheus itself (up) or by the blackbox exporter probing /readyz.
    const notOurs = new Set(["up", "probe_success"]);
    const queried = new Map();
    const note = (expr, where) => {
      for (const n of metricNames(expr)) queried.set(n, [...(queried.get(n) ?? []), where]);
    };
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8"));
    const panels = dashboardPanels(dashboard).filter((p) => p.type !== "row");
    assert.ok(panels.length > 0, "the dashboard has panels");
    for (const p of panels) {
      assert.ok(p.title, `a panel without a title: ${JSON.stringify(p).slice(0, 200)}`);
      assert.ok((p.targets ?? []).length > 0, `panel "${p.title}" has no target`);
      for (const t of p.targets) note(t.expr, `panel "${p.title}"`);
    }
    const { rules } = alertRules(readFileSync(ALERTS, "utf8"));
    assert.ok(rules.length > 0, "the rules file has alerts");
    for (const r of rules) note(r.expr, `alert ${r.alert}`);
    assert.ok(queried.size >= 30, `${queried.size} metric names queried`);
    const missing = [...queried]
      .filter(([n]) => !notOurs.has(n) && !now.types.has(familyOf(n, now.types)))
      .map(([n, where]) => `${n} (${[...new Set(where)].join(", ")})`);
    assert.deepEqual(missing, [], "queried but not exported");
    // A suffix only a histogram has must be queried on one.
    for (const [n, where] of queried) {
      if (/_bucket$/.test(n)) assert.equal(now.types.get(familyOf(n, now.types)), "histogram", `${n} in ${where}`);
    }
  });
});

describe("SWITCHBOARD_LOG_FORMAT=json", () => {
  it("writes one JSON object per log line, a refusal with its transport and reason", async () => {
    const server = await startServer({ env: { SWITCHBOARD_LOG_FORMAT: "json" } });
    try {
      const ws = new WebSocket(`${server.url.replace(/^http/, "ws")}/ws?token=garbage`);
      ws.on("error", () => {});
      const status = await new Promise((resolve) => ws.once("unexpected-response", (_, r) => resolve(r.statusCode)));
      assert.equal(status, 401);
      const records = () =>
        server
          .logs()
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l));
      const refused = await eventually(
        () => records().filter((r) => r.fields?.message === "connection refused"),
        (found) => found.length >= 1,
        { what: "the refusal's JSON log line" },
      );
      assert.equal(refused.length, 1, "one line for one refusal");
      assert.equal(refused[0].fields.transport, "native");
      assert.equal(refused[0].fields.reason, "invalid_token");
      assert.equal(refused[0].level, "INFO");
      assert.equal(typeof refused[0].timestamp, "string");
      const text = server
        .logs()
        .split("\n")
        .filter((l) => /^\S*\d{4}-\d\d-\d\dT\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s/.test(l));
      assert.deepEqual(text, [], "no log line in the text format");
    } finally {
      await server.stop();
    }
  });
});
