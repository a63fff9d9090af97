"""What the report fold's two statements cost on a database's unfolded tail, optionally against the
statements of another commit's ``rollup.py``, interleaved in one connection.

    .venv/bin/python -m bench.fold_cost DATABASE_URL [--against PATH] [--rounds N]

Fill the database first with the folder off, so that the whole load is one tail::

    UNMO_REPORT_FOLD_S=0 .venv/bin/python -m unmo serve --database-url URL --port 8090 &
    .venv/bin/python -m unmo load --url http://127.0.0.1:8090 --duration 4s --concurrency 16

Each round runs, for the first app of ``unmo.app_log``, the daily and the cohort statement over every
record it has (watermark 0 to its ``app_log.seq``), each in a transaction that is rolled back, with the
settings ``rollup._fold_locked`` uses.  With ``--against`` (e.g. ``git show REV:src/unmo/reports/rollup.py
> /tmp/rollup_old.py``) the other statements run in the same rounds, the two orders alternating, and
the rollup rows they would write must be equal.  Prints one JSON object: per statement and side, the
median and spread of the milliseconds and the microseconds per record.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import time
from types import ModuleType
from typing import Any

import asyncpg

from unmo.reports import rollup

SETTINGS = "SET LOCAL enable_sort = off; SET LOCAL jit = off; SET LOCAL work_mem = '64MB'"
TABLES = {"daily": "unmo.report_rollup", "cohort": "unmo.cohort_rollup"}


def _module(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("rollup_against", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _run(conn: asyncpg.Connection, sql: str, table: str, app: int, hi: int) -> tuple[float, list[Any]]:
    """Milliseconds of the statement and the rollup rows it wrote; rolled back, so every run starts from
    the same rollups."""
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute(SETTINGS)
        t = time.perf_counter()
        await conn.fetchval(sql, app, 0, hi)
        ms = (time.perf_counter() - t) * 1000
        return ms, sorted(tuple(r) for r in await conn.fetch(f"SELECT * FROM {table}"))
    finally:
        await tr.rollback()


async def main(url: str, against: str | None, rounds: int) -> dict[str, Any]:
    sides = {"this": rollup}
    if against:
        sides["against"] = _module(against)
    conn = await asyncpg.connect(url)
    try:
        app, hi = await conn.fetchrow("SELECT app_id, seq FROM unmo.app_log ORDER BY app_id LIMIT 1")
        records = await conn.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", app)
        times: dict[str, dict[str, list[float]]] = {s: {n: [] for n in TABLES} for s in sides}
        for r in range(rounds + 1):                      # round 0 warms the caches and is not counted
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name, table in TABLES.items():
                results = {}
                for side in order:
                    sql = getattr(sides[side], f"FOLD_{name.upper()}_SQL")
                    ms, results[side] = await _run(conn, sql, table, app, hi)
                    if r:
                        times[side][name].append(ms)
                first = next(iter(results.values()))
                if any(rows != first for rows in results.values()):
                    raise SystemExit(f"the {name} statements would write different rollups")
    finally:
        await conn.close()
    out: dict[str, Any] = {"records": records, "rounds": rounds}
    for side, per in times.items():
        out[side] = {name: {"median_ms": round(statistics.median(ms), 1), "min_ms": round(min(ms), 1),
                            "max_ms": round(max(ms), 1),
                            "us_per_record": round(statistics.median(ms) * 1000 / max(records, 1), 3)}
                     for name, ms in per.items()}
    if against:
        out["ratio_this_to_against"] = {
            name: round(out["this"][name]["median_ms"] / out["against"][name]["median_ms"], 3) for name in TABLES}
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("database_url")
    p.add_argument("--against", metavar="PATH", help="another commit's src/unmo/reports/rollup.py")
    p.add_argument("--rounds", type=int, default=6)
    a = p.parse_args()
    print(json.dumps(asyncio.run(main(a.database_url, a.against, a.rounds))))
