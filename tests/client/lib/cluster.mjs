// A scale-out cluster for one test file: `deploy/cluster.sh` starts nats-server
// (JetStream), edges and persist workers against a fresh database on the
// PostgreSQL that tests/run started (SWITCHBOARD_TEST_DATABASE_URL), or, with
// `ownDatabase` (benchmarks), on a PostgreSQL of its own.
//
//   const cluster = await startCluster({ edges: 2, workers: 2 });
//   cluster.edges[0].url, cluster.token(claims), cluster.sql("SELECT ...")
//   cluster.kill("worker1", "SIGKILL"), await cluster.addWorker("persist"), await cluster.status()
//   await cluster.restartNats(), await cluster.stop()
//   with ownDatabase: await cluster.stopDatabase(), await cluster.startDatabase()

import { execFile, execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { promisify } from "node:util";
import { REPO_ROOT, binaryPath, nowSecs, signJwt } from "./server.mjs";
import { closeAll } from "./sio.mjs";

const run = promisify(execFile);
const SCRIPT = join(REPO_ROOT, "deploy", "cluster.sh");

function adminUrl() {
  const url = process.env.SWITCHBOARD_TEST_DATABASE_URL;
  if (!url) {
    throw new Error("SWITCHBOARD_TEST_DATABASE_URL is not set: run the cluster suite through tests/run, which starts PostgreSQL");
  }
  return url;
}

function psql(url, sql) {
  return execFileSync("psql", [url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql], { encoding: "utf8" }).trim();
}

/** `KEY=value` lines as written by `printf %q`. */
function parseEnv(text) {
  const env = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^([A-Z0-9_]+)=(.*)$/);
    if (m) env[m[1]] = m[2].replace(/\\(.)/g, "$1");
  }
  return env;
}

class Cluster {
  constructor(dir, env, database = null, admin = null) {
    this.dir = dir;
    this.database = database;
    this.admin = admin;
    this.load(env);
  }

  load(env) {
    this.env = env;
    this.secret = env.SECRET;
    this.databaseUrl = env.DATABASE_URL;
    this.natsUrl = env.NATS_URL;
    this.partitions = Number(env.PARTITIONS);
    this.edges = [];
    for (let i = 1; env[`EDGE${i}_URL`]; i++) this.edges.push({ name: `edge${i}`, url: env[`EDGE${i}_URL`] });
  }

  token(claims = {}) {
    return signJwt({ name: claims.sub ? `Test ${claims.sub}` : "Test", exp: nowSecs() + 3600, ...claims }, this.secret);
  }

  /** The subject a bot or backend publishes a command on: `sb.cmd.<family>.<partition>.<op>`. */
  commandSubject(family, key, op) {
    return `sb.cmd.${family}.${partitionOf(key, this.partitions)}.${op}`;
  }

  serviceToken() {
    return this.token({ sub: "svc-cluster", role: "service" });
  }

  agentToken(sub = `agent-${randomUUID().slice(0, 8)}`) {
    return this.token({ sub, role: "agent" });
  }

  /** Runs SQL against this cluster's database; rows as `|`-separated lines. */
  sql(query) {
    return psql(this.databaseUrl, query);
  }

  pid(name) {
    const pid = Number(this.env[`${name.toUpperCase()}_PID`]);
    if (!pid) throw new Error(`no process ${name} in this cluster`);
    return pid;
  }

  /** Sends a signal to one process (`edge1`, `worker2`, ...) and awaits its exit. */
  async kill(name, signal = "SIGKILL") {
    const pid = this.pid(name);
    process.kill(pid, signal);
    for (let tick = 0; tick < 200; tick++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${name} (pid ${pid}) did not exit after ${signal}`);
  }

  /** Starts one more worker of a kind (`persist`, `sync`, `whatsapp`); resolves with its name once it is ready. */
  async addWorker(kind = "persist") {
    const { stdout } = await run("bash", [SCRIPT, "add", this.dir, kind], { env: { ...process.env, SWITCHBOARD_BIN: binaryPath() } });
    this.load(parseEnv(readFileSync(join(this.dir, "cluster.env"), "utf8")));
    return stdout.trim().split("\n").at(-1);
  }

  /** `switchboard status --json` against this cluster's bus (with `env` added to its environment). */
  async status(env = {}) {
    const { stdout } = await run(binaryPath(), ["status", "--json"], {
      env: {
        ...process.env,
        SWITCHBOARD_NATS_URL: this.natsUrl,
        SWITCHBOARD_PARTITIONS: String(this.partitions),
        SWITCHBOARD_LOG: "warn",
        ...env,
      },
    });
    return JSON.parse(stdout);
  }

  async restartNats() {
    await run("bash", [SCRIPT, "restart-nats", this.dir]);
    this.load(parseEnv(readFileSync(join(this.dir, "cluster.env"), "utf8")));
  }

  /**
   * Stops the cluster's own PostgreSQL (`ownDatabase`) under the running edges and workers;
   * `mode` is pg_ctl's: `fast` (sessions are cut, the default) or `immediate` (as if killed).
   */
  async stopDatabase(mode = "fast") {
    this.ownPostgres();
    await run("bash", [SCRIPT, "stop-postgres", this.dir, mode]);
  }

  /** Starts the cluster's own PostgreSQL again: same port, same data. Resolves once it takes connections. */
  async startDatabase() {
    this.ownPostgres();
    await run("bash", [SCRIPT, "start-postgres", this.dir]);
  }

  ownPostgres() {
    if (!this.env.PG_TMP_DIR) throw new Error("this cluster's PostgreSQL is not its own: start it with ownDatabase");
  }

  /** An edge's log, for failure messages. */
  log(name) {
    try {
      return readFileSync(join(this.dir, "logs", `${name}.log`), "utf8");
    } catch {
      return "";
    }
  }

  async stop() {
    try {
      await run("bash", [SCRIPT, "down", this.dir]);
    } finally {
      if (this.admin) psql(this.admin, `DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`);
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** A key's partition as the workers compute it: FNV-1a (32 bits) of its UTF-8 bytes, mod the count. */
export function partitionOf(key, count) {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(key)) {
    hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  }
  return hash % count;
}

export async function startCluster({ edges = 2, workers = 2, env = {}, ownDatabase = false } = {}) {
  const admin = ownDatabase ? null : adminUrl();
  const database = admin && `sb_cluster_${randomUUID().replaceAll("-", "")}`;
  const childEnv = {
    ...process.env,
    ...env,
    EDGES: String(edges),
    WORKERS: String(workers),
    SWITCHBOARD_BIN: binaryPath(),
  };
  delete childEnv.SWITCHBOARD_NATS_URL;
  delete childEnv.SWITCHBOARD_DATABASE_URL;
  if (admin) {
    psql(admin, `CREATE DATABASE ${database}`);
    const url = new URL(admin);
    url.pathname = `/${database}`;
    childEnv.SWITCHBOARD_DATABASE_URL = url.toString();
  }
  const dir = mkdtempSync(join(process.env.TMPDIR ?? tmpdir(), "switchboard-cluster-"));
  try {
    await run("bash", [SCRIPT, "up", dir], { env: childEnv });
  } catch (err) {
    const logs = ["edge1", "edge2", "worker1", "worker2", "sync1"]
      .map((n) => `--- ${n} ---\n${readLog(dir, n)}`)
      .join("\n");
    await run("bash", [SCRIPT, "down", dir]).catch(() => {});
    if (admin) psql(admin, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    throw new Error(`cluster did not start: ${err.stderr || err.message}\n${logs}`);
  }
  return new Cluster(dir, parseEnv(readFileSync(join(dir, "cluster.env"), "utf8")), database, admin);
}

function readLog(dir, name) {
  try {
    return readFileSync(join(dir, "logs", `${name}.log`), "utf8").slice(-4000);
  } catch {
    return "(none)";
  }
}

/** One cluster for a test file's tests: started before them, stopped after. */
export function useCluster(options) {
  const ctx = { cluster: null };
  before(async () => {
    ctx.cluster = await startCluster(options);
  });
  after(async () => {
    closeAll();
    await ctx.cluster?.stop();
  });
  return ctx;
}
