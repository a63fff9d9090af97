#!/usr/bin/env python3
"""Two replicas behind nginx: consistent hashing on the key header against round robin.

Runs from a checkout (it uses the test suite's real-process helpers): a fresh database,
two `unmo serve` replicas, nginx with deploy/nginx/unmo.conf (and the same file without
its `hash` line), then `unmo load` through nginx in batches of 1000 for each mode,
alternating the modes --repeat times.  Per run: events/s, p95, the replicas' CPU time
per 1000 records and the records they replayed from each other's commits
(unmo_catch_up_records_total) - the work sticky routing saves.

    UNMO_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python tools/scripts/lb_hashing.py [--apps 1] [--duration 5s] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.deploy.lb import Nginx  # noqa: E402 - the checkout's test helpers
from tests.support import ServerProcess, TestDatabase  # noqa: E402


def counters(url: str) -> tuple[float, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    cpu = re.search(r"^process_cpu_seconds_total ([0-9.e+]+)$", text, re.M)
    catch = re.search(r"^unmo_catch_up_records_total ([0-9.e+]+)$", text, re.M)
    return float(cpu.group(1)) if cpu else 0.0, float(catch.group(1)) if catch else 0.0


class RoundRobin(Nginx):
    def render(self) -> Path:
        main = super().render()
        conf = self.dir / "unmo.conf"
        text = conf.read_text()
        assert text.count("hash $http_authorization consistent;") == 1
        conf.write_text(text.replace("hash $http_authorization consistent;", ""))
        return main


def run(mode: str, replicas: list[ServerProcess], db: TestDatabase, args: argparse.Namespace) -> dict[str, Any]:
    cls = RoundRobin if mode == "round-robin" else Nginx
    with cls([f"127.0.0.1:{r.port}" for r in replicas]) as lb:
        before = [counters(r.url) for r in replicas]
        r = subprocess.run([sys.executable, "-m", "unmo", "load", "--url", lb.url, "--database-url", db.url,
                            "--duration", args.duration, "--concurrency", str(args.concurrency), "--batch-size",
                            "1000", "--apps", str(args.apps), "--json"], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"lb_hashing: unmo load failed: {r.stderr.strip()[-400:]}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        after = [counters(x.url) for x in replicas]
    cpu = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    return {"mode": mode, "events_per_s": out["events_per_s"], "p95_ms": out["p95_ms"],
            "acked_records": out["acked_records"], "verified": out["verified"],
            "cpu_ms_per_1000": round(1e6 * cpu / max(out["acked_records"], 1), 1),
            "catch_up_records": round(sum(a[1] - b[1] for a, b in zip(after, before, strict=True)))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--apps", type=int, default=1)
    p.add_argument("--duration", default="5s")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not 1 <= args.apps <= 100 or not 1 <= args.repeat <= 10:
        print("lb_hashing: --apps: 1..100, --repeat: 1..10", file=sys.stderr)
        return 2
    db = TestDatabase()
    db.create()
    runs: list[dict[str, Any]] = []
    try:
        replicas = [ServerProcess(db.url).start(), ServerProcess(db.url).start()]
        try:
            for _ in range(args.repeat):
                for mode in ("hash", "round-robin"):
                    runs.append(run(mode, replicas, db, args))
        finally:
            for r in replicas:
                r.stop()
    finally:
        db.drop()
    summary = {}
    for mode in ("hash", "round-robin"):
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {k: statistics.median(r[k] for r in mine)
                         for k in ("events_per_s", "p95_ms", "cpu_ms_per_1000", "catch_up_records")}
    result = {"apps": args.apps, "runs": runs, "median": summary, "load_average": round(os.getloadavg()[0], 2)}
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0 if all(r["verified"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
