#!/usr/bin/env python3
"""Contact-centre scale (driven by tests/bench/run with BENCH=inbox): the support-chat load
(2 sockets per conversation, 1000 conversations, each conversation's customer and agent
sending in turn) at a fixed rate, alone and beside 2000 more agent sockets that join nothing
and only watch their inbox view (`all`, then `mine`). Reports the joined sockets' message
latency, the inbox events each watcher received per second, and disconnected watchers.

Knobs: INBOX_SYSTEMS=sb-sio,sb-native,cluster-sio, INBOX_RATES=1000, WATCHERS=2000,
INBOX_VIEWS=all,mine, SUPPORT_CONVS=1000, DURATION=5. A measurement, not a test.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from matrix import TARGET, Server, errors, load, log  # noqa: E402

SYSTEMS = os.environ.get("INBOX_SYSTEMS", "sb-sio,sb-native,cluster-sio").split(",")
RATES = [float(r) for r in os.environ.get("INBOX_RATES", "1000").split(",") if r]
WATCHERS = int(os.environ.get("WATCHERS", "2000"))
VIEWS = os.environ.get("INBOX_VIEWS", "all,mine").split(",")
CONVS = int(os.environ.get("SUPPORT_CONVS", "1000"))
DURATION = os.environ.get("DURATION", "5")


def main():
    rows, skipped = [], []
    for system in SYSTEMS:
        for rate in RATES:
            for watchers, view in [(0, "-")] + [(WATCHERS, v) for v in VIEWS]:
                try:
                    server = Server(system, workers=2)
                except Exception as e:  # noqa: BLE001 - reported, the run goes on
                    skipped.append(f"{system}: could not start ({e})")
                    continue
                try:
                    args = ["--connections", str(2 * CONVS), "--conversations", str(CONVS), "--publish", "own",
                            "--role", "support", "--rate", str(rate), "--duration", DURATION, "--drain", "5"]
                    if watchers:
                        args += ["--watchers", str(watchers), "--watch-view", view]
                    r = load(server, f"{system} inbox {rate:.0f} {watchers} {view}", args)
                    rows.append((system, rate, watchers, view, r))
                except Exception as e:  # noqa: BLE001
                    skipped.append(f"{system} {rate} {watchers} {view}: {e}")
                finally:
                    server.stop()
    out = ["# Inbox at contact-centre scale", "",
           f"{CONVS} conversations, 2 sockets each (customer and agent, taking turns), {DURATION} s per run;"
           " watchers: agent sockets in no conversation, in the given inbox view.", "",
           "| system | msgs/s | watchers | view | delivered | p50 ms | p99 ms | p99 vs no watchers |"
           " inbox events per watcher per s | watchers disconnected | errors |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {}
    for system, rate, watchers, view, r in rows:
        fixed = r.get("fixed", {})
        if not watchers:
            base[(system, rate)] = fixed.get("p99_ms")
        b = base.get((system, rate))
        ratio = f"{fixed['p99_ms'] / b:.2f}x" if watchers and b and fixed.get("p99_ms") is not None else "-"
        w = r.get("watchers", {})
        out.append(f"| {system} | {rate:.0f} | {watchers} | {view} | {fixed.get('delivered_share', 0):.3f} |"
                   f" {fixed.get('p50_ms', '-')} | {fixed.get('p99_ms', '-')} | {ratio} |"
                   f" {w.get('per_watcher_per_s', '-')} | {w.get('disconnected', '-')} | {errors(r)} |")
    if skipped:
        out += ["", "## Skipped", ""] + [f"- {s}" for s in skipped]
    text = "\n".join(out) + "\n"
    os.makedirs(os.path.join(TARGET, "bench"), exist_ok=True)
    with open(os.path.join(TARGET, "bench", "inbox.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(TARGET, "bench", "inbox.json"), "w") as fh:
        json.dump([{"system": s, "rate": r, "watchers": w, "view": v, "result": x} for s, r, w, v, x in rows], fh)
    log(text)
    print(text)
    if not rows:
        sys.exit(1)


if __name__ == "__main__":
    main()
