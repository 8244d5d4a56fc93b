#!/usr/bin/env python3
"""The benchmark matrix, Switchboard against Node Socket.IO and the floor, in one run
(driven by tests/bench/run).

Systems: Switchboard `dev` over Socket.IO (sb-sio) and native WebSocket (sb-native),
the Node Socket.IO 4.x peer (node), the tokio-tungstenite floor (floor), and
Switchboard over Socket.IO on a two-edge cluster (cluster-sio: receivers on edge 2,
publishers on edge 1, through NATS and PostgreSQL).

Support chat first: 2 and 3 sockets per conversation across 1000 conversations,
each message sent by one of the conversation's own sockets in turn (the customer,
then an agent), the cluster with two edges and two persist workers (a
conversation's sockets alternate between the edges).

For each fan-out (sockets per conversation) each system is ramped (offered rate
doubled until fewer than 95% of deliveries arrive, then bisected twice) to find
its peak deliveries/s,
then measured at half its peak, and at Node's half-peak rate (same offered load);
the support rows also at 1000 messages/s.
Idle connections: connect and join N, server VmRSS before/after divided by N.

A measurement, not a test: nothing here asserts a timing.
"""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
REL = os.path.join(TARGET, os.environ.get("BENCH_PROFILE", "release"))
LOAD = os.path.join(REL, "switchboard-load")
FLOOR = os.path.join(REL, "switchboard-floor")
SB = os.environ.get("SWITCHBOARD_BIN", os.path.join(REL, "switchboard"))
PEERS = os.path.join(ROOT, "tests", "load", "peers")
SECRET = "bench-" + os.urandom(8).hex()

SIZE = os.environ.get("SIZE", "full")
SMOKE = SIZE == "smoke"


def env_list(name, default):
    v = os.environ.get(name)
    return [int(x) for x in v.split(",") if x] if v else default


FANOUTS = env_list("FANOUTS", [10] if SMOKE else [10, 100, 1000])
# Support chat: sockets per conversation, each conversation's own sockets sending.
SUPPORT = env_list("SUPPORT", [2] if SMOKE else [2, 3])
SUPPORT_CONVS = int(os.environ.get("SUPPORT_CONVS", "20" if SMOKE else "1000"))
# customer: a conversation's sockets are its customer's devices; support: the
# first is the customer, the others agents (who also get every inbox update).
SUPPORT_ROLE = os.environ.get("SUPPORT_ROLE", "customer")
SUPPORT_FIXED = float(os.environ.get("SUPPORT_FIXED", "1000"))
# 19,000: the most this machine's descriptor limit (20,000, not raisable) allows.
IDLE = env_list("IDLE", [100] if SMOKE else [10000, 19000, 50000, 100000])
DURATION = os.environ.get("DURATION", "1" if SMOKE else "3")
RAMP_STEPS = os.environ.get("RAMP_STEPS", "2" if SMOKE else "12")
SYSTEMS = os.environ.get("SYSTEMS", "node,sb-sio,sb-native,floor,cluster-sio").split(",")
CLUSTER = os.environ.get("CLUSTER", "0" if SMOKE else "1") == "1"
# Conversations per fan-out: enough sockets to matter, few enough to connect quickly.
CONVS = {10: 20, 100: 10, 1000: 2}
if SMOKE:
    CONVS = {f: 2 for f in FANOUTS}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_ready(url, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready in {timeout}s")


class Server:
    """One system under test: url (receivers), publish_url, pid (for VmRSS)."""

    def __init__(self, system, workers=1):
        self.system = system
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="sb-bench-")
        self.cluster_dir = None
        port = free_port()
        self.url = self.publish_url = f"http://127.0.0.1:{port}"
        logf = open(os.path.join(self.tmp, "server.log"), "w")
        env = dict(os.environ, SWITCHBOARD_JWT_SECRET=SECRET, SWITCHBOARD_PUBLISH_RATE="1000000",
                   SWITCHBOARD_LOG="warn", RUST_LOG="warn")
        if system in ("sb-sio", "sb-native"):
            env.update(SWITCHBOARD_HTTP_ADDR=f"127.0.0.1:{port}", SWITCHBOARD_DATA_DIR=os.path.join(self.tmp, "data"))
            p = subprocess.Popen([SB, "dev"], env=env, stdout=logf, stderr=logf)
            self.procs.append(p)
            wait_ready(self.url, p)
        elif system == "node":
            env.update(PORT=str(port), JWT_SECRET=SECRET)
            p = subprocess.Popen(["node", "socketio.mjs"], cwd=PEERS, env=env, stdout=logf, stderr=logf)
            self.procs.append(p)
            wait_ready(self.url, p)
        elif system == "floor":
            p = subprocess.Popen([FLOOR, "--addr", f"127.0.0.1:{port}"], stdout=logf, stderr=logf)
            self.procs.append(p)
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
        elif system == "cluster-sio":
            self.cluster_dir = os.path.join(self.tmp, "cluster")
            os.makedirs(self.cluster_dir)
            # PostgreSQL runs as the postgres OS user, which must reach its data dir inside.
            os.chmod(self.tmp, 0o755)
            os.chmod(self.cluster_dir, 0o755)
            env.update(EDGES="2", WORKERS=str(workers), SYNC_WORKERS="0", WA_WORKERS="0", SWITCHBOARD_BIN=SB)
            try:
                subprocess.run(["bash", os.path.join(ROOT, "deploy", "cluster.sh"), "up", self.cluster_dir],
                               env=env, check=True, stdout=logf, stderr=logf, timeout=180)
            except Exception:
                # What did start (NATS, say) must not outlive the failed attempt.
                self.stop()
                raise
            vals = {}
            for line in open(os.path.join(self.cluster_dir, "cluster.env")):
                k, _, v = line.strip().partition("=")
                vals[k] = v.strip("'\"")
            self.secret = vals["SECRET"]
            self.url, self.publish_url = vals["EDGE2_URL"], vals["EDGE1_URL"]
            self.pid = int(vals["EDGE2_PID"])
            return
        self.secret = SECRET
        self.pid = self.procs[0].pid

    def protocol(self):
        return {"sb-native": "native", "floor": "floor"}.get(self.system, "sio")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.cluster_dir:
            subprocess.run(["bash", os.path.join(ROOT, "deploy", "cluster.sh"), "down", self.cluster_dir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        shutil.rmtree(self.tmp, ignore_errors=True)


def load(server, label, extra_args):
    cmd = [LOAD, "--label", label, "--protocol", server.protocol(), "--url", server.url,
           "--publish-url", server.publish_url, "--secret", server.secret, "--pid", str(server.pid),
           "--source-addrs", "8"] + extra_args
    log("+", " ".join(c if c != server.secret else "<secret>" for c in cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    sys.stderr.write(r.stderr)
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{label}: no JSON from switchboard-load (exit {r.returncode}): {r.stderr[-500:]}")


def errors(r):
    """Everything that went wrong in one load run: send errors, failed connects, disconnects."""
    return r.get("errors", 0) + r.get("connect_errors", 0) + r.get("disconnects", 0)


def first_extra(r):
    """The first extra phase of a run (at Node's half-peak rate, where there is one)."""
    return (r.get("extras") or [{}])[0]


def ramp_all(kind, fanouts, systems, skipped, args_for, workers=1):
    """Ramps each system, started fresh, at each fan-out; `args_for(fanout)` gives the load's
    arguments before and after the extra phase at Node's half-peak rate (Node runs first: its
    half peak is the shared offered load for the p99 comparison)."""
    results = {}
    for fanout in fanouts:
        node_half = None
        for system in systems:
            try:
                server = Server(system, workers=workers)
            except Exception as e:  # noqa: BLE001 - reported, the matrix goes on
                skipped.append(f"{system}: could not start ({e})")
                continue
            try:
                before, after = args_for(fanout)
                args = before + ["--ramp", "--duration", DURATION, "--ramp-steps", RAMP_STEPS]
                if node_half and system != "node":
                    args += ["--extra-rate", str(node_half)]
                r = load(server, f"{system} {kind} {fanout}", args + after)
                results[(system, fanout)] = r
                if system == "node" and "half_peak" in r:
                    node_half = r["half_peak"]["offered_msgs_per_s"]
            except Exception as e:  # noqa: BLE001
                skipped.append(f"{system} {kind} {fanout}: {e}")
            finally:
                server.stop()
    return results


def main():
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    skipped = []
    systems = [s for s in SYSTEMS if s != "cluster-sio" or CLUSTER]
    if "cluster-sio" in SYSTEMS and not CLUSTER:
        skipped.append("cluster-sio: CLUSTER=0 (the smoke size skips the cluster)")
    # Node first: its half-peak rate is the shared offered load for the p99 comparison.
    systems.sort(key=lambda s: s != "node")

    def support_args(fanout):
        return (["--connections", str(fanout * SUPPORT_CONVS), "--conversations", str(SUPPORT_CONVS),
                 "--publish", "own", "--role", SUPPORT_ROLE, "--rate", "500"],
                ["--extra-rate", str(SUPPORT_FIXED)])

    def fanout_args(fanout):
        convs = CONVS.get(fanout, 2)
        return (["--connections", str(fanout * convs), "--conversations", str(convs),
                 "--rate", str(max(1.0, 8000.0 / fanout))], [])

    support = ramp_all("support", SUPPORT, [s for s in systems if s != "floor"], skipped, support_args, workers=2)
    results = ramp_all("fan-out", FANOUTS, systems, skipped, fanout_args)
    idle = {}
    for n in IDLE:
        # The load generator and the server each hold one descriptor per connection.
        if n + 200 > nofile[0]:
            skipped.append(f"idle {n}: RLIMIT_NOFILE is {nofile[0]} (hard {nofile[1]}, not raisable here);"
                           f" {n} connections need more descriptors in both the server and the generator")
            continue
        for system in systems:
            try:
                server = Server(system)
            except Exception as e:  # noqa: BLE001
                skipped.append(f"{system}: could not start ({e})")
                continue
            try:
                idle[(system, n)] = load(server, f"{system} idle {n}",
                                         ["--idle", "--connections", str(n),
                                          "--conversations", str(max(1, n // 100))])
            except Exception as e:  # noqa: BLE001
                skipped.append(f"{system} idle {n}: {e}")
            finally:
                server.stop()

    def f(v, nd=1):
        return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    out = ["# Switchboard benchmark matrix", "",
           f"Size `{SIZE}`; {os.cpu_count()} CPUs; {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB;"
           f" RLIMIT_NOFILE {nofile[0]}; {time.strftime('%Y-%m-%d %H:%M')}.", "",
           "## Support chat: each conversation's own sockets sending", "",
           f"{SUPPORT_CONVS} conversations; role `{SUPPORT_ROLE}`; latencies from send to each socket's"
           " `message:new`, the sender's own included.", "",
           "| system | sockets/conv | sockets | peak msgs/s | peak deliveries/s | half-peak p50 ms | p99 ms |"
           f" p99 ms at Node's half-peak load | p99 ms at {SUPPORT_FIXED:.0f} msgs/s | errors |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for fanout in SUPPORT:
        for system in systems:
            r = support.get((system, fanout))
            if not r:
                continue
            h = r.get("half_peak", {})
            extras = r.get("extras", [])
            at_node = h if system == "node" else (extras[0] if len(extras) > 1 else {})
            fixed = extras[-1] if extras else {}
            peak_msgs = (r.get("peak_deliveries_per_s") or 0) / fanout
            errs = errors(r)
            out.append(f"| {system} | {fanout} | {r['connected']}/{r['connections']} | {f(peak_msgs, 0)} |"
                       f" {f(r.get('peak_deliveries_per_s'), 0)} | {f(h.get('p50_ms'), 2)} | {f(h.get('p99_ms'), 2)} |"
                       f" {f(at_node.get('p99_ms'), 2)} | {f(fixed.get('p99_ms'), 2)} | {errs} |")
    out += ["", "## Fan-out", "",
           "| system | sockets/conv | sockets | connects/s | peak deliveries/s | half-peak p50 ms | p99 ms |"
           " p99.9 ms | max ms | p99 ms at Node's half-peak load | errors |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for fanout in FANOUTS:
        for system in systems:
            r = results.get((system, fanout))
            if not r:
                continue
            h = r.get("half_peak", {})
            ex = first_extra(r) if system != "node" else h
            errs = errors(r)
            out.append(f"| {system} | {fanout} | {r['connected']}/{r['connections']} | {f(r['connects_per_s'], 0)} |"
                       f" {f(r.get('peak_deliveries_per_s'), 0)} | {f(h.get('p50_ms'), 2)} | {f(h.get('p99_ms'), 2)} |"
                       f" {f(h.get('p999_ms'), 2)} | {f(h.get('max_ms'), 2)} | {f(ex.get('p99_ms'), 2)} | {errs} |")
    out += ["", "## Idle connections", "", "| system | connections | connects/s | server KiB per connection | errors |",
            "|---|---|---|---|---|"]
    for (system, n), r in idle.items():
        b = r.get("server_bytes_per_conn")
        out.append(f"| {system} | {r['connected']}/{n} | {f(r['connects_per_s'], 0)} |"
                   f" {'-' if b is None else f'{b / 1024:.1f}'} | {r.get('connect_errors', 0) + r.get('disconnects', 0)} |")
    out += ["", "## Ratios to the targets", ""]
    for fanout in SUPPORT:
        node = support.get(("node", fanout))
        for name in ("sb-sio", "sb-native", "cluster-sio"):
            r = support.get((name, fanout))
            if not r:
                continue
            parts = []
            if node and node.get("peak_deliveries_per_s"):
                parts.append(f"peak {r['peak_deliveries_per_s'] / node['peak_deliveries_per_s']:.2f}x Node's"
                             + (" (target >= 1.5)" if name == "sb-sio" and fanout == 2 else ""))
            extras = r.get("extras", [])
            np99 = (node or {}).get("half_peak", {}).get("p99_ms")
            if np99 and len(extras) > 1:
                parts.append(f"p99 at Node's half-peak load {extras[0]['p99_ms']:.2f} ms vs Node's {np99:.2f} ms"
                             " (target <=)")
            if extras:
                parts.append(f"p99 at {SUPPORT_FIXED:.0f} msgs/s {extras[-1]['p99_ms']:.2f} ms (target <= 10)")
            if name == "cluster-sio":
                parts.append(f"peak {r['peak_deliveries_per_s'] / fanout:.0f} msgs/s (target >= 10,000 with p99"
                             " <= 250 ms)")
            out.append(f"- support {fanout}, {name}: " + "; ".join(parts))
    for fanout in FANOUTS:
        sb, node, floor = (results.get((s, fanout)) for s in ("sb-sio", "node", "floor"))
        nat = results.get(("sb-native", fanout))
        for name, r in (("sb-sio", sb), ("sb-native", nat)):
            if not r:
                continue
            parts = []
            if node and node.get("peak_deliveries_per_s"):
                parts.append(f"peak {r['peak_deliveries_per_s'] / node['peak_deliveries_per_s']:.2f}x Node's (target >= 5)")
            if floor and floor.get("peak_deliveries_per_s"):
                parts.append(f"{100 * r['peak_deliveries_per_s'] / floor['peak_deliveries_per_s']:.0f}% of the floor's"
                             " (target >= 70%)")
            np99 = (node or {}).get("half_peak", {}).get("p99_ms")
            sp99 = first_extra(r).get("p99_ms")
            if np99 and sp99 is not None:
                parts.append(f"p99 at Node's half-peak load {sp99:.2f} ms vs Node's {np99:.2f} ms = {sp99 / np99:.2f}x"
                             " (target <= 0.2)")
            out.append(f"- fan-out {fanout}, {name}: " + "; ".join(parts))
    for (system, n), r in idle.items():
        b = r.get("server_bytes_per_conn")
        if system.startswith("sb") and b is not None:
            out.append(f"- idle {n}, {system}: {b / 1024:.1f} KiB per connection (target <= 8 KiB)")
    if skipped:
        out += ["", "## Skipped", ""] + [f"- {s}" for s in skipped]
    text = "\n".join(out) + "\n"
    os.makedirs(os.path.join(TARGET, "bench"), exist_ok=True)
    with open(os.path.join(TARGET, "bench", "results.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(TARGET, "bench", "results.json"), "w") as fh:
        json.dump({"support": {f"{k[0]} {k[1]}": v for k, v in support.items()},
                   "fanout": {f"{k[0]} {k[1]}": v for k, v in results.items()},
                   "idle": {f"{k[0]} {k[1]}": v for k, v in idle.items()}, "skipped": skipped}, fh)
    print(text)
    # The smoke run proves the tool works: every system that started produced a result.
    if not results or not support:
        sys.exit(1)


if __name__ == "__main__":
    main()
