#!/usr/bin/env python3
"""Persist workers scaling out (driven by tests/bench/run with BENCH=workers).

For each worker count (WORKER_COUNTS, default 1,2,4) a cluster of two edges on its own
NATS and PostgreSQL (deploy/cluster.sh): receivers on edge 2, one publishing socket per
conversation on edge 1, CONNECTIONS receivers over CONVERSATIONS conversations, each offered
rate (RATES msgs/s) for DURATION seconds. Meanwhile pg_locks is sampled for lock waits and each
process's CPU time is read from /proc (where the cores go); after, pg_stat_database's deadlocks
are read. With two or more workers, one is then killed (-9) and
`switchboard status` polled until the others hold every partition: the takeover time.

A measurement, not a test: nothing here asserts a timing. Prints a markdown table and writes
target/bench/workers.md and workers.json.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
REL = os.path.join(TARGET, os.environ.get("BENCH_PROFILE", "release"))
LOAD = os.path.join(REL, "switchboard-load")
SB = os.environ.get("SWITCHBOARD_BIN", os.path.join(REL, "switchboard"))
CLUSTER = os.path.join(ROOT, "deploy", "cluster.sh")

SMOKE = os.environ.get("SIZE", "full") == "smoke"
WORKER_COUNTS = [int(w) for w in os.environ.get("WORKER_COUNTS", "1,2" if SMOKE else "1,2,4").split(",")]
RATES = [float(r) for r in os.environ.get("RATES", "50" if SMOKE else "1000,2000,4000").split(",")]
CONNECTIONS = int(os.environ.get("CONNECTIONS", "20" if SMOKE else "2000"))
CONVERSATIONS = int(os.environ.get("CONVERSATIONS", "10" if SMOKE else "1000"))
DURATION = os.environ.get("DURATION", "2" if SMOKE else "5")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def read_env(path):
    values = {}
    for line in open(path):
        k, _, v = line.strip().partition("=")
        values[k] = v.strip("'\"")
    return values


def psql(url, sql):
    return subprocess.run(["psql", url, "-At", "-c", sql], capture_output=True, text=True, check=True).stdout.strip()


class LockSampler(threading.Thread):
    """Counts samples of pg_locks in which some lock was waited for, and the most at once."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.samples, self.waiting, self.most = url, 0, 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.1):
            try:
                n = int(psql(self.url, "SELECT count(*) FROM pg_locks WHERE NOT granted"))
            except subprocess.CalledProcessError:
                continue
            self.samples += 1
            self.waiting += n > 0
            self.most = max(self.most, n)


def cpu_times():
    """CPU seconds so far by process role: the node id of Switchboard's, else the program."""
    times = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
            fields = stat[stat.rindex(")") + 2:].split()
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            # PostgreSQL's backends rename themselves "postgres: user db host".
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode().split(" ")[0].rstrip(":")
        except (OSError, ValueError):
            continue
        node = next((e[20:].decode() for e in environ if e.startswith(b"SWITCHBOARD_NODE_ID=")), None)
        role = node or os.path.basename(cmd)
        if role and (node or role in ("nats-server", "postgres")):
            times[role] = times.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return times


def loader_cpu():
    """CPU seconds of the loader runs so far (they are this process's children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def used(before, after):
    """CPU seconds each role used between two readings, the busiest first."""
    spent = {k: round(v - before.get(k, 0.0), 1) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in spent.items() if v >= 0.1), key=lambda kv: -kv[1]))


def status(env):
    out = subprocess.run([SB, "status", "--json"], env={**os.environ, "SWITCHBOARD_NATS_URL": env["NATS_URL"],
                         "SWITCHBOARD_PARTITIONS": env["PARTITIONS"], "SWITCHBOARD_LOG": "warn"},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def takeover(env, dir, workers):
    """Kills worker1; ms until the others hold every persist partition."""
    pid = int(env["WORKER1_PID"])
    killed = time.monotonic()
    os.kill(pid, 9)
    live = {f"worker{i}" for i in range(2, workers + 1)}
    while time.monotonic() - killed < 30:
        persist = [p for p in status(env)["partitions"] if p["kind"] == "persist"]
        if all(p["owner"] in live for p in persist):
            return round((time.monotonic() - killed) * 1000)
        time.sleep(0.05)
    return None


def run_workers(workers):
    dir = tempfile.mkdtemp(prefix="switchboard-bench-workers-")
    os.chmod(dir, 0o755)
    env = {**os.environ, "EDGES": "2", "WORKERS": str(workers), "SYNC_WORKERS": "0", "WA_WORKERS": "0",
           "SWITCHBOARD_BIN": SB}
    env.pop("SWITCHBOARD_DATABASE_URL", None)
    env.pop("SWITCHBOARD_NATS_URL", None)
    rows = []
    try:
        subprocess.run(["bash", CLUSTER, "up", dir], env=env, check=True, stdout=sys.stderr, timeout=180)
        cenv = read_env(os.path.join(dir, "cluster.env"))
        for rate in RATES:
            sampler = LockSampler(cenv["DATABASE_URL"])
            sampler.start()
            cmd = [LOAD, "--label", f"{workers} workers", "--protocol", "sio", "--url", cenv["EDGE2_URL"],
                   "--publish-url", cenv["EDGE1_URL"], "--secret", cenv["SECRET"], "--source-addrs", "8",
                   "--connections", str(CONNECTIONS), "--conversations", str(CONVERSATIONS),
                   "--rate", str(rate), "--duration", DURATION, "--drain", "5"]
            log("+", " ".join(cmd).replace(cenv["SECRET"], "<secret>"))
            before = {**cpu_times(), "loader": loader_cpu()}
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            after = {**cpu_times(), "loader": loader_cpu()}
            sampler.stop.set()
            sampler.join()
            out = next((json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")), None)
            if out is None:
                raise RuntimeError(f"no JSON from switchboard-load: {r.stderr[-500:]}")
            fixed = out["fixed"]
            rows.append({"workers": workers, "rate": rate, "delivered_share": fixed["delivered_share"],
                         "p50_ms": fixed["p50_ms"], "p99_ms": fixed["p99_ms"], "deliveries_per_s": fixed["deliveries_per_s"],
                         "lock_wait_samples": sampler.waiting, "samples": sampler.samples, "most_waiting": sampler.most,
                         "cpu_s": used(before, after)})
            log(json.dumps(rows[-1]))
        deadlocks = int(psql(cenv["DATABASE_URL"], "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"))
        took = takeover(cenv, dir, workers) if workers > 1 else None
        for row in rows:
            row["deadlocks"] = deadlocks
            row["takeover_ms"] = took
    finally:
        subprocess.run(["bash", CLUSTER, "down", dir], stdout=sys.stderr, stderr=sys.stderr, timeout=120)
    return rows


def main():
    rows = [row for w in WORKER_COUNTS for row in run_workers(w)]
    lines = ["| persist workers | offered msg/s | delivered | deliveries/s | p50 ms | p99 ms | lock waits (samples) | deadlocks | kill -9 takeover ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['rate']:.0f} | {100 * r['delivered_share']:.1f}% | {r['deliveries_per_s']:.0f} | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['lock_wait_samples']}/{r['samples']} | {r['deadlocks']} | "
                     f"{r['takeover_ms'] if r['takeover_ms'] is not None else '-'} |")
    lines.append("")
    lines.append("CPU seconds per process over each run (connect, phase and drain):")
    for r in rows:
        lines.append(f"- {r['workers']} workers, {r['rate']:.0f}/s: " + ", ".join(f"{k} {v}" for k, v in r["cpu_s"].items()))
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.join(TARGET, "bench"), exist_ok=True)
    with open(os.path.join(TARGET, "bench", "workers.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(TARGET, "bench", "workers.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
