#!/usr/bin/env python3
"""Measure one ingest replica: the figures `unmo autoscale-sim` and the HPA are sized from.

Starts one `unmo serve` (one worker, default pool) on a free loopback port against
--database-url, then drives it with `unmo load` in batches of 1000 records:

1. capacity: closed loop at --concurrency connections, --repeat runs of --duration; the
   best run is the replica's capacity (on a shared machine the others lost time to
   neighbours), the median is printed too;
2. the latency curve: open loop at 10, 30, 50 and 70 % of that capacity, p95 at each,
   next to what the M/M/1 scaling of the 10 % point predicts (docs/deploy.md, "Sizing");
3. the server's CPU time per 1000 records and its resident memory, from its /metrics.

    .venv/bin/python tools/scripts/replica_capacity.py --database-url postgresql://... [--json]

Everything runs on this machine: the server, the load driver and (usually) PostgreSQL share
its cores, which the output states with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BATCH = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    out = {}
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
        m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def load(url: str, database_url: str, *flags: str) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-m", "unmo", "load", "--url", url, "--database-url", database_url,
                        "--batch-size", str(BATCH), "--json", *flags], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"replica_capacity: unmo load failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", default=os.environ.get("UNMO_DATABASE_URL"), required=False)
    p.add_argument("--duration", default="5s")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not args.database_url:
        print("replica_capacity: --database-url: required (or UNMO_DATABASE_URL)", file=sys.stderr)
        return 2
    if not 1 <= args.repeat <= 20 or not 1 <= args.concurrency <= 256:
        print("replica_capacity: --repeat: 1..20, --concurrency: 1..256", file=sys.stderr)
        return 2
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path("test-artifacts") / f"replica-capacity-{port}.log"
    log.parent.mkdir(exist_ok=True)
    load_before = os.getloadavg()
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "unmo", "serve", "--port", str(port), "--database-url",
                                   args.database_url], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(f"replica_capacity: unmo serve did not start; see {log}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        runs = []
        cpu_ms_per_1000 = []
        for _ in range(args.repeat):
            before = scrape(url)
            r = load(url, args.database_url, "--duration", args.duration, "--concurrency", str(args.concurrency))
            after = scrape(url)
            if not r["verified"]:
                print("replica_capacity: the database does not hold exactly the acknowledged records",
                      file=sys.stderr)
                return 1
            runs.append(r)
            cpu = after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]
            cpu_ms_per_1000.append(1e6 * cpu / max(r["acked_records"], 1))
        capacity = max(r["events_per_s"] for r in runs)
        curve = []
        base_p95 = None
        for share in (0.1, 0.3, 0.5, 0.7):
            r = load(url, args.database_url, "--duration", args.duration, "--rate", str(round(capacity * share)))
            if base_p95 is None:
                base_p95 = r["p95_ms"] * (1 - share)  # the unloaded p95 under the M/M/1 scaling
            curve.append({"rate": round(capacity * share), "share": share, "p95_ms": r["p95_ms"],
                          "p50_ms": r["p50_ms"], "mm1_p95_ms": round(base_p95 / (1 - share), 1),
                          "statuses": r["statuses"]})
        rss = scrape(url)["process_resident_memory_bytes"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    result = {
        "capacity_events_per_s": round(capacity),
        "median_events_per_s": round(statistics.median(r["events_per_s"] for r in runs)),
        "closed_loop": [{k: r[k] for k in ("events_per_s", "p50_ms", "p95_ms", "p99_ms", "statuses")} for r in runs],
        "cpu_ms_per_1000": round(statistics.median(cpu_ms_per_1000), 1),
        "p95_unloaded_ms": round(base_p95 or 0.0, 1),
        "latency_curve": curve,
        "rss_mb": round(rss / 1e6, 1),
        "concurrency": args.concurrency,
        "batch_size": BATCH,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cores": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
