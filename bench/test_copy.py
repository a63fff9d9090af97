"""COPY encoding: unmo's native binary encoder against asyncpg's tuple path, alone and into PostgreSQL.

``encode_records`` (unmo._native.encode_flush underneath) writes the binary COPY
stream from the batch columns: the columns the flush decides, then each row's own
columns as decode_body encoded them (its share is timed with the decode).  The naive way builds a Python tuple
per row and hands them to asyncpg's ``copy_records_to_table``, which encodes
them in its own Cython codecs.  Both go into a scratch table shaped like
unmo.records (same columns and indexes), one transaction per COPY.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import numpy as np
import pytest
import uvloop

from unmo.config import Limits
from unmo.ingest.batch import Batch, decode_body
from unmo.ingest.rows import RECORD_COLUMNS, encode_records
from unmo.load.ceiling import SCRATCH_SCHEMA, _scratch_table, own_campaigns
from unmo.load.workload import Workload, build_templates, new_run_id
from unmo.model import CAMPAIGN_FIELDS, DEVICE_ID_FIELDS

SIZES = [1000, 10_000]


def batch_of(n: int) -> Batch:
    body = build_templates(Workload(batch_size=n, templates=1), "copy-", seed=3)[0].render(1)
    decoded = decode_body(body, msgpack=False, received_ms=int(time.time() * 1000), limits=Limits())
    assert decoded.batch.n == n
    return decoded.batch


@pytest.fixture(scope="module")
def batches() -> dict[int, Batch]:
    return {n: batch_of(n) for n in SIZES}


def campaigns(b: Batch) -> tuple[np.ndarray, list[tuple[str | None, ...]]]:
    """The campaign refs and table the kernel hands the writer (each row's own campaign; built outside the
    timing)."""
    return own_campaigns(b)


def encode(b: Batch, campaign: tuple[np.ndarray, list[tuple[str | None, ...]]]) -> tuple[bytes, int]:
    """The flush's half of the native COPY encoding: the decided columns plus a copy of each row's segment,
    which decode_body encoded with the rest of the request (its cost is in bench/test_decode.py)."""
    camp, table = campaign
    return encode_records(b, app_id=1, seq=1, keep=np.ones(b.n, dtype=bool), ord_=np.arange(b.n, dtype=np.int32),
                          received=np.full(b.n, int(time.time() * 1000), dtype=np.int64),
                          outcome=np.zeros(b.n, dtype=np.int16), camp=camp, campaigns=table)


def tuples(b: Batch) -> list[tuple[Any, ...]]:
    """One tuple per row (RECORD_COLUMNS order), the way a pipeline without a columnar encoder feeds asyncpg."""
    now = dt.datetime.now(dt.UTC)
    out = []
    key, kind, ts, fp = (b.device_key.tolist(), b.kind.tolist(), b.ts.tolist(), b.fp.view(np.int64).tolist())
    ids = b.ids  # this and the columns below are read back from the segments: once, not a row at a time
    own = [b.segment_column(name) for name in ("ip", "ua", "platform", "os", "os_version", "model", "referrer",
                                               "name", "revenue", "currency", "properties")]
    for i in range(b.n):
        out.append((
            key[i], 1, now, 1, i, 0, *[b.campaign[f][i] for f in CAMPAIGN_FIELDS],
            None, None,  # the reports' install_ms and ctit_rejected: NULL, as encode_records writes them here
            kind[i], b.record_id[i], dt.datetime.fromtimestamp(ts[i] / 1000, dt.UTC),
            *[ids[f][i] for f in DEVICE_ID_FIELDS], *[col[i] for col in own], fp[i] or None,
        ))
    return out


@pytest.mark.parametrize("n", SIZES)
def test_encode_records_native(benchmark, batches, findings, n):
    stream, rows = benchmark(encode, batches[n], campaigns(batches[n]))
    assert rows == n and stream.startswith(b"PGCOPY\n\xff\r\n\x00") and stream.endswith(b"\xff\xff")
    s = findings.add(f"COPY encoding, native, {n} rows, s", findings.seconds(benchmark), "s")
    if s:
        benchmark.extra_info["rows_per_s"] = round(n / s)
        findings.add(f"COPY encoding, native, rows/s ({n}-row batches)", n / s, "rows/s")


@pytest.fixture(scope="module")
def scratch(database) -> Iterator[tuple[asyncio.AbstractEventLoop, asyncpg.Connection, str]]:
    loop = uvloop.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(database.url))
    table = loop.run_until_complete(_scratch_table(conn, new_run_id()))
    try:
        yield loop, conn, table
    finally:
        loop.run_until_complete(conn.execute(f"DROP TABLE {SCRATCH_SCHEMA}.{table}"))
        loop.run_until_complete(conn.close())
        loop.close()


def _count(loop, conn, table) -> int:
    return int(loop.run_until_complete(conn.fetchval(f"SELECT count(*) FROM {SCRATCH_SCHEMA}.{table}")))


def test_copy_tuple_path_into_postgres(benchmark, batches, scratch, findings):
    loop, conn, table = scratch
    b = batches[10_000]
    before = _count(loop, conn, table)

    def go() -> None:
        loop.run_until_complete(conn.copy_records_to_table(table, schema_name=SCRATCH_SCHEMA, records=tuples(b),
                                                           columns=RECORD_COLUMNS))

    benchmark.pedantic(go, rounds=5, warmup_rounds=1)
    assert _count(loop, conn, table) == before + 6 * b.n
    s = findings.add("COPY 10k rows, tuples + asyncpg codecs, s", findings.seconds(benchmark), "s")
    if s:
        benchmark.extra_info["rows_per_s"] = round(b.n / s)


def test_copy_native_binary_into_postgres(benchmark, batches, scratch, findings):
    loop, conn, table = scratch
    b = batches[10_000]
    campaign = campaigns(b)
    before = _count(loop, conn, table)

    def go() -> None:
        stream, _n = encode(b, campaign)
        loop.run_until_complete(conn.copy_to_table(table, schema_name=SCRATCH_SCHEMA, source=memoryview(stream),
                                                   columns=RECORD_COLUMNS, format="binary"))

    benchmark.pedantic(go, rounds=5, warmup_rounds=1)
    assert _count(loop, conn, table) == before + 6 * b.n
    s = findings.add("COPY 10k rows, native binary encoder, s", findings.seconds(benchmark), "s")
    ratio = findings.ratio("COPY into PostgreSQL: native binary vs asyncpg tuple path (x faster)",
                           "COPY 10k rows, tuples + asyncpg codecs, s", "COPY 10k rows, native binary encoder, s")
    if s:
        benchmark.extra_info.update(rows_per_s=round(b.n / s), x_faster_than_tuples=ratio)
