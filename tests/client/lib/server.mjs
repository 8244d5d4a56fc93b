// Spawns a real `switchboard dev` process for one test file and mints its tokens.
//
//   const server = await startServer({ env: { SWITCHBOARD_TYPING_TTL_MS: "300" } });
//   server.url            -> "http://127.0.0.1:PORT"
//   server.token(claims)  -> HS256 JWT signed with this server's secret
//   await server.restart() (same port, same data dir, same secret)
//   await server.stop()   (SIGTERM, awaits exit, removes the data dir)

import { spawn } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
/** The repository root (tests/client/lib -> ../../..). */
export const REPO_ROOT = resolve(HERE, "..", "..", "..");

const READY_TIMEOUT_MS = 20_000;
const READY_POLL_MS = 50;
const STOP_TIMEOUT_MS = 10_000;
const MAX_LOG_CHARS = 200_000;

/** Path of the server binary: $SWITCHBOARD_BIN (relative paths against the repo root) or target/debug/switchboard. */
export function binaryPath() {
  const fromEnv = process.env.SWITCHBOARD_BIN;
  return resolve(REPO_ROOT, fromEnv && fromEnv.length > 0 ? fromEnv : join("target", "debug", "switchboard"));
}

/** A TCP port that was free a moment ago (listen on port 0, read it, close). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

function b64url(input) {
  return Buffer.from(input).toString("base64url");
}

/** Mint an HS256 JWT by hand. `claims` is used as given (no defaults added). */
export function signJwt(claims, secret) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = b64url(JSON.stringify(claims));
  const signature = createHmac("sha256", secret).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${signature}`;
}

/** Seconds since the epoch. */
export function nowSecs() {
  return Math.floor(Date.now() / 1000);
}

// A test process stopped by a signal runs no `after` hooks and no "exit" handlers of
// its own accord: turn SIGINT/SIGTERM into an exit so spawned servers are reaped.
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => process.exit(sig === "SIGINT" ? 130 : 143));
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

class ServerProcess {
  constructor({ env, port, dataDir, secret }) {
    this.extraEnv = env;
    this.port = port;
    this.dataDir = dataDir;
    this.secret = secret;
    this.url = `http://127.0.0.1:${port}`;
    this.child = null;
    this.exitPromise = null;
    this.output = "";
    this.stopped = false;
  }

  /** Everything the server printed (stdout and stderr, interleaved), for failure messages. */
  logs() {
    return this.output;
  }

  /**
   * Sign a token. Defaults: `exp` one hour ahead, `name` derived from `sub`.
   * Pass `exp: null` to omit the claim.
   */
  token(claims = {}) {
    const full = { name: claims.sub ? `Test ${claims.sub}` : "Test", exp: nowSecs() + 3600, ...claims };
    if (full.exp === null) delete full.exp;
    return signJwt(full, this.secret);
  }

  /** Shorthands for the four roles. */
  customerToken(sub, extra = {}) {
    return this.token({ sub, role: "customer", name: `Customer ${sub}`, ...extra });
  }
  agentToken(sub = `agent-${randomUUID().slice(0, 8)}`, extra = {}) {
    return this.token({ sub, role: "agent", name: `Agent ${sub}`, ...extra });
  }
  botToken(sub = "bot-1", extra = {}) {
    return this.token({ sub, role: "bot", name: "Botito", ...extra });
  }
  serviceToken(sub = "svc-tests", extra = {}) {
    return this.token({ sub, role: "service", name: "Test service", ...extra });
  }

  async spawn() {
    const bin = binaryPath();
    if (!existsSync(bin)) {
      throw new Error(`switchboard binary not found at ${bin}: run \`cargo build\` first or set SWITCHBOARD_BIN`);
    }
    this.stopped = false;
    const env = {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG ?? "info",
      SWITCHBOARD_HTTP_ADDR: `127.0.0.1:${this.port}`,
      SWITCHBOARD_DATA_DIR: this.dataDir,
      SWITCHBOARD_JWT_SECRET: this.secret,
      ...this.extraEnv,
    };
    const child = spawn(bin, ["dev"], { env, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    // A pid file beside the data dir lets tests/run end servers an interrupted run left behind.
    if (child.pid) writeFileSync(`${this.dataDir}.pid`, String(child.pid));
    // If this test process dies without running its `after` hooks, take the server with it.
    const reap = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    };
    process.once("exit", reap);
    child.once("exit", () => process.off("exit", reap));
    const append = (chunk) => {
      this.output += chunk.toString();
      if (this.output.length > MAX_LOG_CHARS) this.output = this.output.slice(-MAX_LOG_CHARS);
    };
    child.stdout.on("data", append);
    child.stderr.on("data", append);
    this.exitPromise = new Promise((res) => {
      child.on("exit", (code, signal) => res({ code, signal }));
      child.on("error", (err) => {
        append(`\n[spawn error] ${err.message}\n`);
        res({ code: null, signal: null, error: err });
      });
    });
    let exited = null;
    this.exitPromise.then((e) => {
      exited = e;
    });

    const deadline = Date.now() + READY_TIMEOUT_MS;
    let lastErr = "no answer yet";
    while (Date.now() < deadline) {
      if (exited) {
        throw new Error(
          `switchboard dev exited before becoming ready (code ${exited.code}, signal ${exited.signal}).\n--- server output ---\n${this.output}`,
        );
      }
      try {
        const res = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
        lastErr = `GET /readyz answered ${res.status}`;
      } catch (err) {
        lastErr = err.cause?.code ?? err.message;
      }
      await sleep(READY_POLL_MS);
    }
    await this.kill();
    throw new Error(
      `switchboard dev not ready after ${READY_TIMEOUT_MS / 1000}s (${lastErr}).\n--- server output ---\n${this.output}`,
    );
  }

  async kill() {
    if (!this.child) return null;
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      const result = await this.exitPromise;
      clearTimeout(timer);
      this.child = null;
      rmSync(`${this.dataDir}.pid`, { force: true });
      return result;
    }
    this.child = null;
    rmSync(`${this.dataDir}.pid`, { force: true });
    return this.exitPromise;
  }

  /**
   * kill -9: no shutdown of any kind, whatever is in flight is cut where it stands. Then start
   * again on the same port, data dir and secret; resolves with the kill's `{code, signal}` once ready.
   */
  async crash() {
    const child = this.child;
    child.kill("SIGKILL");
    const exit = await this.exitPromise;
    this.child = null;
    rmSync(`${this.dataDir}.pid`, { force: true });
    await this.spawn();
    return exit;
  }

  /** Restart on the same port with the same data dir and secret; resolves when ready again. */
  async restart() {
    const exit = await this.kill();
    this.lastExit = exit;
    await this.spawn();
    return exit;
  }

  /** SIGTERM, await exit, remove the data dir. Returns `{code, signal}` of the exit. */
  async stop() {
    if (this.stopped) return this.lastExit;
    this.stopped = true;
    const exit = await this.kill();
    this.lastExit = exit;
    rmSync(this.dataDir, { recursive: true, force: true });
    return exit;
  }

  // ---- small HTTP helpers -------------------------------------------------

  /**
   * `fetch` against this server. `token` adds `Authorization: Bearer`, `json` sends a JSON body.
   * Resolves to `{status, headers, body, text}` (body is parsed JSON or null).
   */
  async http(method, path, { token, json, body, headers = {} } = {}) {
    const h = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    let payload = body;
    if (json !== undefined) {
      payload = JSON.stringify(json);
      h["content-type"] = "application/json";
    }
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: h,
      body: payload,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let parsed = null;
    try {
      parsed = text.length ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    return { status: res.status, headers: res.headers, body: parsed, text };
  }

  /** Create a conversation over HTTP (service token) and return it. */
  async createConversation({ id = randomUUID(), channel = "web", customer } = {}) {
    const cust = customer ?? { id: `cust-${id.slice(0, 8)}`, name: "Ana Customer" };
    const res = await this.http("POST", "/api/v1/conversations", {
      token: this.serviceToken(),
      json: { id, channel, customer: cust },
    });
    if (res.status !== 201 && res.status !== 200) {
      throw new Error(`POST /api/v1/conversations answered ${res.status}: ${res.text}`);
    }
    return res.body;
  }

  /** Publish a message over HTTP (service token by default) and return the stored Message. */
  async postMessage(conversationId, text, { token, clientMsgId } = {}) {
    const json = { text };
    if (clientMsgId) json.client_msg_id = clientMsgId;
    const res = await this.http("POST", `/api/v1/conversations/${encodeURIComponent(conversationId)}/messages`, {
      token: token ?? this.serviceToken(),
      json,
    });
    if (res.status !== 201) {
      throw new Error(`POST messages answered ${res.status}: ${res.text}`);
    }
    return res.body;
  }

  /** History over HTTP: `{messages}`. */
  async history(conversationId, query = "") {
    const res = await this.http(
      "GET",
      `/api/v1/conversations/${encodeURIComponent(conversationId)}/messages${query ? `?${query}` : ""}`,
      { token: this.serviceToken() },
    );
    if (res.status !== 200) throw new Error(`GET messages answered ${res.status}: ${res.text}`);
    return res.body.messages;
  }
}

/**
 * Start `switchboard dev` on a free port with a fresh data dir and a random secret.
 * `env` adds per-test settings (e.g. SWITCHBOARD_MAX_JOINS).
 */
export async function startServer({ env = {} } = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(process.env.TMPDIR || tmpdir(), "switchboard-test-"));
  const secret = randomBytes(24).toString("hex");
  const server = new ServerProcess({ env, port, dataDir, secret });
  try {
    await server.spawn();
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return server;
}
