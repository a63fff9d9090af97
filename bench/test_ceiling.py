"""The limit: raw binary COPY of the load's rows from prebuilt buffers (unmo.load.ceiling).

The sustained ceiling on 2 connections is the session fixture ``ceiling``
(other suites divide by it); this suite times single COPYs of one prebuilt
buffer on one connection, to show what one group commit of that size costs.
"""

from __future__ import annotations

import asyncpg
import pytest
import uvloop

from unmo.ingest.rows import RECORD_COLUMNS
from unmo.load.ceiling import SCRATCH_SCHEMA, _scratch_table, prebuilt_buffers
from unmo.load.workload import new_run_id


@pytest.mark.parametrize("rows", [1000, 10_000])
def test_one_copy_of_a_prebuilt_buffer(benchmark, database, ceiling, findings, rows):
    loop = uvloop.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(database.url))
    table = loop.run_until_complete(_scratch_table(conn, new_run_id()))
    stream = prebuilt_buffers(rows, 100_000, 1, new_run_id(), count=1).streams[0]
    try:
        def go() -> None:
            loop.run_until_complete(conn.copy_to_table(table, schema_name=SCRATCH_SCHEMA, source=memoryview(stream),
                                                       columns=RECORD_COLUMNS, format="binary"))

        benchmark.pedantic(go, rounds=8, warmup_rounds=1)
        stored = loop.run_until_complete(conn.fetchval(f"SELECT count(*) FROM {SCRATCH_SCHEMA}.{table}"))
        assert stored == 9 * rows
    finally:
        loop.run_until_complete(conn.execute(f"DROP TABLE {SCRATCH_SCHEMA}.{table}"))
        loop.run_until_complete(conn.close())
        loop.close()
    s = findings.seconds(benchmark)
    benchmark.extra_info["sustained_ceiling_rows_per_s"] = round(ceiling.events_per_s)
    if s:
        findings.add(f"one COPY of {rows} prebuilt rows, 1 connection, rows/s", rows / s, "rows/s")
        benchmark.extra_info["rows_per_s"] = round(rows / s)
