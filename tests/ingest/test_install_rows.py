"""The unmo.installs rows a flush stores (binary COPY encoded from the batch's columns, the installs of every
app of the flush in one COPY), read back from PostgreSQL: each row holds what the API answered for it, the
install's typed identifier hashes, times and order."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import numpy as np

from unmo._native import encode_copy
from unmo.config import Limits
from unmo.ingest.batch import decode_body, to_signed
from unmo.ingest.writer import Submission, Writer, _int8_arrays, stored_result
from unmo.pgcopy import ColType


def _records(tag: str, now: int) -> list[dict[str, Any]]:
    return [
        # a click 60 s before the install: attributed, with a CTIT
        {"type": "click", "id": f"{tag}-c1", "ts": now - 60_000, "device": {"idfa": f"{tag}-a", "idfv": f"{tag}-v"},
         "campaign": {"network": "Meta ✓", "campaign": "spring", "adset": "s1", "ad": "a1", "site": "x.com"}},
        # a click 2 s before it: a CTIT anomaly (under the 10 s minimum), listed in the install's rejected
        {"type": "click", "id": f"{tag}-c2", "ts": now - 2_000, "device": {"idfa": f"{tag}-a"},
         "campaign": {"network": "fraudnet"}},
        {"type": "install", "id": f"{tag}-i1", "ts": now, "device": {"idfa": f"{tag}-a", "idfv": f"{tag}-v"}},
        # no touch at all: organic, NULL touch columns
        {"type": "install", "id": f"{tag}-i2", "ts": now - 5, "device": {"gaid": f"{tag}-g"}},
        {"type": "event", "id": f"{tag}-e1", "ts": now, "name": "buy", "device": {"gaid": f"{tag}-g"}},
    ]


def test_install_rows_of_two_apps_in_one_flush_hold_what_was_answered(database: Any) -> None:
    apps = [int(database.create_app()["app_id"]) for _ in range(2)]
    now = int(time.time() * 1000)

    async def scenario() -> tuple[list[Any], list[list[asyncpg.Record]], list[Any]]:
        pool = await asyncpg.create_pool(database.url, min_size=1, max_size=2)
        try:
            loop = asyncio.get_running_loop()
            subs, batches = [], []
            for k, app_id in enumerate(apps):
                body = json.dumps({"batch": _records(f"app{k}", now)}).encode()
                batch = decode_body(body, msgpack=False, received_ms=now + k, limits=Limits()).batch
                batches.append(batch)
                subs.append(Submission(app_id, batch, now + k, loop.create_future()))
            await Writer(pool, Limits()).flush(subs)                 # both apps' installs: one COPY
            async with pool.acquire() as conn:
                rows = [await conn.fetch("SELECT * FROM unmo.installs WHERE app_id = $1 ORDER BY ord", a)
                        for a in apps]
            return [s.future.result() for s in subs], rows, batches
        finally:
            await pool.close()

    outcomes, rows, batches = asyncio.run(scenario())
    for k, (out, stored, batch) in enumerate(zip(outcomes, rows, batches, strict=True)):
        assert len(stored) == 2
        answered = {i["id"]: i for i in out.installs}
        by_id = {r["record_id"]: r for r in stored}
        assert set(by_id) == set(answered) == {f"app{k}-i1", f"app{k}-i2"}
        for rid, row in by_id.items():
            want = {key: v for key, v in answered[rid].items() if key not in ("index", "id")}
            assert stored_result(row) == want
            i = batch.record_id.index(rid)
            assert row["device_hashes"] == [to_signed(int(h)) for h in batch.dev[i] if h]
            assert int(row["ts"].timestamp() * 1000) == int(batch.ts[i])
            assert int(row["received_at"].timestamp() * 1000) == now + k
            assert row["device_key"] == int(batch.device_key[i]) and row["seq"] >= 1
        attributed, organic = by_id[f"app{k}-i1"], by_id[f"app{k}-i2"]
        assert attributed["status"] == "attributed" and attributed["touch_id"] == f"app{k}-c1"
        assert attributed["network"] == "Meta ✓" and attributed["ctit_s"] == 60.0
        assert int(attributed["touch_ts"].timestamp() * 1000) == now - 60_000
        assert len(attributed["device_hashes"]) == 2
        assert [r["touch_id"] for r in json.loads(attributed["rejected"])] == [f"app{k}-c2"]
        assert organic["status"] == "organic" and organic["touch"] is None and organic["touch_ts"] is None
        assert organic["ctit_s"] is None and json.loads(organic["rejected"]) == []


def test_identifier_arrays_read_back_as_postgresql_int8_arrays(database: Any) -> None:
    """_int8_arrays writes array_send's form: PostgreSQL reads back each row's non-zero hashes, in order, as
    signed int8 (a hash of 2^63 or more is negative), and a row without any as an empty array."""
    dev = np.array([[1, 0, 2**64 - 1, 0, 0], [0] * 5, [5, 6, 7, 8, 2**63]], dtype=np.uint64)
    stream = encode_copy(3, [(ColType.INT4, np.arange(3, dtype=np.int32), None),
                             (ColType.TEXT, _int8_arrays(dev), None)])

    async def read_back() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database.url)
        try:
            await conn.execute("CREATE TEMP TABLE arrays (i integer, a bigint[])")
            await conn.copy_to_table("arrays", source=memoryview(stream), columns=["i", "a"], format="binary")
            return await conn.fetch("SELECT a FROM arrays ORDER BY i")
        finally:
            await conn.close()

    got = [r["a"] for r in asyncio.run(read_back())]
    assert got == [[1, -1], [], [5, 6, 7, 8, to_signed(2**63)]]
