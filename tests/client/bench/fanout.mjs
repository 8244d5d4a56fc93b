// Publish-to-deliver latency on `switchboard dev`: SOCKETS sockets in one
// conversation, MESSAGES messages published over HTTP one at a time; each
// latency runs from just before the POST to `message:new` on one socket.
//
//   cargo build --release && (cd tests/client && npm ci && node bench/fanout.mjs)
//   SOCKETS=100 MESSAGES=1000 SWITCHBOARD_BIN=target/release/switchboard node bench/fanout.mjs
//
// Prints one JSON line. A measurement, not a test: it asserts nothing about time.

import { performance } from "node:perf_hooks";
import { startServer } from "../lib/server.mjs";
import { connect, join } from "../lib/sio.mjs";

const SOCKETS = Number(process.env.SOCKETS ?? 100);
const MESSAGES = Number(process.env.MESSAGES ?? 1000);
process.env.SWITCHBOARD_BIN ??= "target/release/switchboard";

const server = await startServer({ env: { SWITCHBOARD_LOG: "warn" } });
try {
  const conversation = await server.createConversation();
  const sockets = [];
  for (let i = 0; i < SOCKETS; i++) {
    const socket = await connect(server.url, { token: server.agentToken(`bench-${i}`) });
    await join(socket, conversation.id);
    sockets.push(socket);
  }
  const latencies = [];
  for (let n = 1; n <= MESSAGES; n++) {
    const delivered = sockets.map(
      (socket) =>
        new Promise((resolve) => {
          const onMessage = (m) => {
            if (m.offset === n) {
              socket.off("message:new", onMessage);
              resolve(performance.now());
            }
          };
          socket.on("message:new", onMessage);
        }),
    );
    const sentAt = performance.now();
    await server.postMessage(conversation.id, `message ${n}`);
    for (const at of await Promise.all(delivered)) latencies.push(at - sentAt);
  }
  latencies.sort((a, b) => a - b);
  const pick = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(2);
  console.log(
    JSON.stringify({
      sockets: SOCKETS,
      messages: MESSAGES,
      deliveries: latencies.length,
      p50_ms: Number(pick(0.5)),
      p99_ms: Number(pick(0.99)),
      max_ms: Number(latencies.at(-1).toFixed(2)),
    }),
  );
  for (const s of sockets) s.close();
} finally {
  await server.stop();
}
