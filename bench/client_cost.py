"""Driver CPU per request: unmo load's client against httpx.AsyncClient, on a running server.

    .venv/bin/python bench/client_cost.py --url http://127.0.0.1:8080 --database-url URL [--requests 40]

Sends the same 1000-record bodies one after another with each client and prints
one JSON object: microseconds of this process's CPU per request for each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.drive import make_keys
from unmo.load.client import Connection, Target
from unmo.load.workload import Workload, build_templates


async def own_client(url: str, key: str, bodies: list[bytes]) -> float:
    target = Target(url)
    conn = await Connection.open(target)
    cpu = 0.0
    try:
        for body in bodies:
            c0 = time.process_time()
            status, answer = await conn.request(target.head(key, len(body)), body)
            cpu += time.process_time() - c0
            assert status == 200, answer[:200]
    finally:
        conn.close()
    return cpu / len(bodies)


async def httpx_client(url: str, key: str, bodies: list[bytes]) -> float:
    cpu = 0.0
    async with httpx.AsyncClient(timeout=60) as client:
        for body in bodies:
            c0 = time.process_time()
            r = await client.post(url + "/v1/batch", content=body,
                                  headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            r.json()
            cpu += time.process_time() - c0
            assert r.status_code == 200, r.text[:200]
    return cpu / len(bodies)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--database-url", required=True, help="the server's database (an app is created there)")
    p.add_argument("--requests", type=int, default=40)
    a = p.parse_args()
    key = make_keys(a.database_url)[0]
    templates = build_templates(Workload(batch_size=1000, templates=2), "cc-", seed=1)
    n = a.requests
    own = uvloop.run(own_client(a.url, key, [templates[i % 2].render(i) for i in range(n)]))
    other = uvloop.run(httpx_client(a.url, key, [templates[i % 2].render(n + i) for i in range(n)]))
    print(json.dumps({"requests": n, "own_client_cpu_us": round(own * 1e6), "httpx_cpu_us": round(other * 1e6),
                      "ratio": round(other / own, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
