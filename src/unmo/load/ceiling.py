"""The limit: raw binary COPY of the load's own rows from prebuilt buffers, no HTTP, no kernel.

The rows are the ones ``unmo load`` sends, decoded and encoded once by the
server's own code (``decode_body`` and ``encode_records``) before the clock
starts; then ``concurrency`` connections COPY those buffers back to back, each
COPY its own transaction (as each group commit is), into a scratch table shaped
like ``unmo.records`` (``LIKE ... INCLUDING ALL``: same columns, defaults and
indexes, partitioned the same way).  Nothing the ingest path does can be
faster than this on the same database, so every throughput figure in
docs/performance.md is given as a ratio to it.  The scratch table is dropped at
the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from unmo.config import Limits
from unmo.ingest.batch import Batch, decode_body
from unmo.ingest.rows import RECORD_COLUMNS, encode_records
from unmo.load.driver import LoadResult
from unmo.load.workload import Workload, build_templates, id_prefix
from unmo.model import CAMPAIGN_FIELDS

SCRATCH_SCHEMA = "unmo_load"


@dataclass
class Buffers:
    """Binary COPY streams of ``rows`` rows each."""

    streams: list[bytes]
    rows: int


def own_campaigns(b: Batch) -> tuple[np.ndarray, list[tuple[str | None, ...]]]:
    """encode_records' ``camp`` and ``campaigns`` giving each row its own campaign, as a touch stores it
    (rows without a network: none)."""
    campaigns = [tuple(b.campaign[f][i] for f in CAMPAIGN_FIELDS) for i in range(b.n)]
    camp = np.array([i if b.campaign["network"][i] else -1 for i in range(b.n)], dtype=np.int32)
    return camp, campaigns


def prebuilt_buffers(batch_size: int, devices: int, seed: int, run_id: str, count: int = 4) -> Buffers:
    """``count`` COPY streams of the load's rows, encoded by the server's own encoder."""
    workload = Workload(batch_size=batch_size, devices=devices, seed=seed, templates=count)
    templates = build_templates(workload, id_prefix(run_id, 0xCE), seed=seed)
    now = int(time.time() * 1000)
    limits = Limits()
    streams = []
    for no, t in enumerate(templates):
        decoded = decode_body(t.render(no), msgpack=False, received_ms=now, limits=limits)
        b = decoded.batch
        if b.n != batch_size or decoded.errors:
            raise RuntimeError(f"copy ceiling: the workload decoded to {b.n} good records of {batch_size} "
                               f"({decoded.errors[:1]})")
        camp, campaigns = own_campaigns(b)
        stream, n = encode_records(
            b, app_id=-1, seq=1, keep=np.ones(b.n, dtype=bool), ord_=np.arange(b.n, dtype=np.int32),
            received=np.full(b.n, now, dtype=np.int64), outcome=np.zeros(b.n, dtype=np.int16), camp=camp,
            campaigns=campaigns,
        )
        assert n == batch_size
        streams.append(bytes(stream))
    return Buffers(streams, batch_size)


async def _scratch_table(conn: asyncpg.Connection, run_id: str) -> str:
    name = f"ceiling_{run_id}"
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCRATCH_SCHEMA}")
    await conn.execute(
        f"CREATE TABLE {SCRATCH_SCHEMA}.{name} (LIKE unmo.records INCLUDING ALL) PARTITION BY RANGE (received_at)")
    await conn.execute(f"CREATE TABLE {SCRATCH_SCHEMA}.{name}_default PARTITION OF {SCRATCH_SCHEMA}.{name} DEFAULT")
    return name


async def copy_ceiling(
    database_url: str,
    *,
    duration_s: float,
    concurrency: int,
    buffers: Buffers,
    run_id: str,
    counters: list[float] | None = None,
) -> LoadResult:
    """COPY ``buffers`` on ``concurrency`` connections for ``duration_s``; rows/s as ``events_per_s``.

    ``verified`` is true when the scratch table holds exactly the rows copied.
    ``counters`` (answered, rows, failures, in flight) is updated for a progress display.
    """
    counters = counters if counters is not None else [0.0] * 4
    admin = await asyncpg.connect(database_url)
    table = await _scratch_table(admin, run_id)
    conns = [await asyncpg.connect(database_url) for _ in range(concurrency)]
    latencies: list[float] = []
    copies = failures = 0
    rows = 0
    last = 0.0
    try:
        start = time.monotonic()
        end = start + duration_s

        async def worker(conn: asyncpg.Connection, k: int) -> None:
            nonlocal copies, rows, last, failures
            i = k
            while time.monotonic() < end:
                stream = buffers.streams[i % len(buffers.streams)]
                i += 1
                t0 = time.perf_counter()
                try:
                    await conn.copy_to_table(table, schema_name=SCRATCH_SCHEMA, source=memoryview(stream),
                                             columns=RECORD_COLUMNS, format="binary")
                except asyncpg.PostgresError:
                    failures += 1
                    counters[2] += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                copies += 1
                rows += buffers.rows
                counters[0] += 1
                counters[1] += buffers.rows
                last = time.monotonic()

        await asyncio.gather(*(worker(c, k) for k, c in enumerate(conns)))
        stored = await admin.fetchval(f"SELECT count(*) FROM {SCRATCH_SCHEMA}.{table}")
    finally:
        for c in conns:
            await c.close()
        await admin.execute(f"DROP TABLE IF EXISTS {SCRATCH_SCHEMA}.{table}")
        await admin.close()
    elapsed = max(last - start, 1e-9)
    lat = np.asarray(latencies)
    p50, p95, p99 = (float(x) for x in np.percentile(lat, [50, 95, 99])) if lat.size else (None, None, None)
    statuses = {"COPY": copies, **({"error": failures} if failures else {})}
    return LoadResult(
        events_per_s=rows / elapsed if rows else 0.0, requests=copies + failures, statuses=statuses, p50_ms=p50,
        p95_ms=p95, p99_ms=p99, acked_records=rows, verified=stored == rows, elapsed_s=elapsed,
        verify_problem=None if stored == rows else f"copied {rows} rows, the scratch table holds {stored}",
    )


def run_ceiling(database_url: str, *, duration_s: float, concurrency: int, batch_size: int, devices: int,
                seed: int, run_id: str, on_start: Callable[[list[float]], Any] | None = None) -> LoadResult:
    """Build the buffers, then measure (the ``unmo load --copy-ceiling`` mode)."""
    import uvloop

    buffers = prebuilt_buffers(batch_size, devices, seed, run_id)
    counters = [0.0] * 4
    stop = on_start(counters) if on_start is not None else None
    try:
        return uvloop.run(copy_ceiling(database_url, duration_s=duration_s, concurrency=concurrency,
                                       buffers=buffers, run_id=run_id, counters=counters))
    finally:
        if callable(stop):
            stop()
