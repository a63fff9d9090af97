"""``/readyz`` probes of the ingest servers; uptime = successful probes / probes (spec: tracker.md).

A probe succeeds when the server answers ``200`` within the timeout: ``/readyz``
answers ``503`` while the server cannot reach its database or sheds load, which
is downtime as a customer sees it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import asyncpg
import httpx

from unmo.errors import cut


async def probe_once(client: httpx.AsyncClient, url: str, timeout_s: float) -> dict[str, Any]:
    """One probe of ``url``/readyz: ok, status, latency_ms, error."""
    t0 = time.perf_counter()
    try:
        r = await client.get(url + "/readyz", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return {"url": url, "ok": False, "status": None, "latency_ms": (time.perf_counter() - t0) * 1000,
                "error": f"{exc.__class__.__name__}: {cut(str(exc), 200)}"}
    latency = (time.perf_counter() - t0) * 1000
    error = None if r.status_code == 200 else f"readyz answered {r.status_code}: {cut(r.text, 200)}"
    return {"url": url, "ok": r.status_code == 200, "status": r.status_code, "latency_ms": latency, "error": error}


async def probe_all(client: httpx.AsyncClient, urls: list[str], timeout_s: float) -> list[dict[str, Any]]:
    """Probe every URL at once."""
    return list(await asyncio.gather(*(probe_once(client, u, timeout_s) for u in urls)))


async def store(conn: asyncpg.Connection, results: list[dict[str, Any]]) -> None:
    """Keep probe results (the history uptime is computed from)."""
    await conn.executemany(
        "INSERT INTO tracker.probes (url, ok, status, latency_ms, error) VALUES ($1, $2, $3, $4, $5)",
        [(r["url"], r["ok"], r["status"], r["latency_ms"], r["error"]) for r in results],
    )


async def uptime(conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    """Uptime over [start, end): overall and per server, with the probe counts it rests on."""
    rows = await conn.fetch(
        """SELECT url, count(*) AS probes, count(*) FILTER (WHERE ok) AS ok,
                  max(at) FILTER (WHERE NOT ok) AS last_failure
           FROM tracker.probes WHERE at >= $1 AND at < $2 GROUP BY url ORDER BY url""",
        start, end,
    )
    total = sum(r["probes"] for r in rows)
    ok = sum(r["ok"] for r in rows)
    return {
        "uptime": ok / total if total else None,
        "probes": total,
        "failed": total - ok,
        "servers": [
            {"url": r["url"], "probes": r["probes"], "uptime": r["ok"] / r["probes"],
             "last_failure": r["last_failure"].isoformat() if r["last_failure"] else None}
            for r in rows
        ],
    }


async def prune(conn: asyncpg.Connection, keep_days: int) -> None:
    """Forget probes older than ``keep_days``."""
    await conn.execute("DELETE FROM tracker.probes WHERE at < now() - make_interval(days => $1)", keep_days)
