// Node Socket.IO 4.x peer with Switchboard's chat surface, for tests/bench.
// No storage: offsets are per-conversation counters in memory.
//
//   PORT=9400 JWT_SECRET=... node socketio.mjs
//
// - handshake: HS256 JWT in auth.token (or query.token), refused otherwise
// - join_conversation {conversation_id} → room join, ack {ok:true, conversation_id, offset}
// - send_message {conversation_id, text} → message:new to the room, ack {ok:true, message}
// - POST /api/v1/conversations (201) and POST /api/v1/conversations/{id}/messages (201) → message:new
// Prints "ready on <port>" when listening.

import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { Server } from "socket.io";

const PORT = Number(process.env.PORT ?? 9400);
const SECRET = process.env.JWT_SECRET ?? process.env.SWITCHBOARD_JWT_SECRET ?? "bench-secret";

function verify(token) {
  if (typeof token !== "string") return null;
  const [h, p, s] = token.split(".");
  if (!h || !p || !s) return null;
  const expected = createHmac("sha256", SECRET).update(`${h}.${p}`).digest();
  const given = Buffer.from(s, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  try {
    const claims = JSON.parse(Buffer.from(p, "base64url").toString());
    if (claims.exp && claims.exp < Date.now() / 1000) return null;
    return claims;
  } catch {
    return null;
  }
}

const offsets = new Map();
function message(conversationId, text, sender, source) {
  const offset = (offsets.get(conversationId) ?? 0) + 1;
  offsets.set(conversationId, offset);
  return {
    id: randomUUID(),
    conversation_id: conversationId,
    offset,
    sender,
    text,
    source,
    created_at: new Date().toISOString(),
  };
}

function body(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {});
      } catch (e) {
        reject(e);
      }
    });
    req.on("error", reject);
  });
}

function reply(res, status, json) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(json));
}

const http = createServer(async (req, res) => {
  if (req.url === "/readyz") return reply(res, 200, { ok: true });
  const auth = (req.headers.authorization ?? "").replace(/^Bearer /, "");
  const claims = verify(auth);
  if (req.method !== "POST" || !req.url.startsWith("/api/v1/conversations")) return reply(res, 404, {});
  if (!claims) return reply(res, 401, { error: { code: "unauthorized" } });
  let json;
  try {
    json = await body(req);
  } catch {
    return reply(res, 400, { error: { code: "bad_request" } });
  }
  const m = req.url.match(/^\/api\/v1\/conversations\/([^/]+)\/messages$/);
  if (m) {
    const id = decodeURIComponent(m[1]);
    if (typeof json.text !== "string" || !json.text.trim()) return reply(res, 400, { error: { code: "bad_request" } });
    const msg = message(id, json.text, { id: claims.sub, role: claims.role, name: claims.name }, "api");
    io.to(id).emit("message:new", msg);
    return reply(res, 201, msg);
  }
  if (req.url === "/api/v1/conversations") {
    const now = new Date().toISOString();
    return reply(res, 201, { id: json.id ?? randomUUID(), channel: json.channel ?? "web", status: "open", customer: json.customer, created_at: now, updated_at: now });
  }
  return reply(res, 404, {});
});

const io = new Server(http, { serveClient: false, cors: { origin: true } });
io.use((socket, next) => {
  const claims = verify(socket.handshake.auth?.token ?? socket.handshake.query?.token);
  if (!claims) return next(new Error("invalid token"));
  socket.data.user = { id: claims.sub, role: claims.role, name: claims.name };
  next();
});
io.on("connection", (socket) => {
  socket.emit("connected", { message: "connected", user_id: socket.data.user.id });
  socket.on("join_conversation", (data, ack) => {
    const id = data?.conversation_id;
    if (typeof id !== "string") return ack?.({ ok: false, error: { code: "bad_request", message: "conversation_id" } });
    socket.join(id);
    socket.emit("joined_conversation", { conversation_id: id, message: "joined" });
    ack?.({ ok: true, conversation_id: id, offset: offsets.get(id) ?? 0, messages: [] });
  });
  socket.on("send_message", (data, ack) => {
    const id = data?.conversation_id;
    if (typeof id !== "string" || typeof data.text !== "string" || !socket.rooms.has(id)) {
      return ack?.({ ok: false, error: { code: "bad_request", message: "join first, with text" } });
    }
    const msg = message(id, data.text, socket.data.user, socket.data.user.role === "customer" ? "widget" : "agent");
    io.to(id).emit("message:new", msg);
    ack?.({ ok: true, message: msg });
  });
});

http.listen(PORT, "127.0.0.1", () => console.log(`ready on ${PORT}`));
for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => process.exit(0));
