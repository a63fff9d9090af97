"""Stored records read back for a replay: the native parse of their binary COPY (rows.batch_from_copy)
gives exactly the columns a plain-Python decode of the same records, read as asyncpg rows, gives; cut
anywhere, in chunks of any size; and it refuses what is not such a COPY."""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
from typing import Any

import asyncpg
import numpy as np
import pytest

from unmo.config import Limits
from unmo.hashing import hash_strings
from unmo.ingest.batch import DEVICE_SEEDS, ID_SEED_1, ID_SEED_2, decode_body
from unmo.ingest.rows import REPLAY_COLUMNS, batch_from_copy
from unmo.ingest.writer import Submission, Writer
from unmo.model import CAMPAIGN_FIELDS, DEVICE_ID_FIELDS, ZERO_ID

QUERY = f"SELECT {REPLAY_COLUMNS} FROM unmo.records WHERE app_id = $1 ORDER BY seq, ord"


def _records(rng: random.Random, now: int, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        kind = rng.choice(["click", "impression", "install", "open", "event"])
        device: dict[str, str] = {}
        for f in DEVICE_ID_FIELDS:
            r = rng.random()
            if r < 0.3:
                device[f] = f"{f}-{rng.randrange(40)}-ß"
            elif r < 0.35:
                device[f] = ZERO_ID
        if rng.random() < 0.5:
            device["ip"] = f"10.1.{rng.randrange(4)}.{rng.randrange(250)}"
            device["ua"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
        if not any(f in device for f in DEVICE_ID_FIELDS) and "ip" not in device:
            device["idfv"] = f"v-{i}"
        rec: dict[str, Any] = {"type": kind, "id": f"r-{i}-{'é' * (i % 3)}🙂", "ts": now - rng.randrange(86_400_000),
                               "device": device}
        if kind in ("click", "impression"):
            rec["campaign"] = {k: f"{k}-{rng.randrange(5)}-ü" for k in CAMPAIGN_FIELDS if rng.random() < 0.7}
            rec["campaign"].setdefault("network", "meta")
        if kind == "event":
            rec["name"] = "buy"
        out.append(rec)
    return out


def _reference(rows: list[Any]) -> dict[str, Any]:
    """The columns, decoded in plain Python from asyncpg rows."""
    rids = [r["record_id"] for r in rows]
    dev = np.zeros((len(rows), 5), dtype=np.uint64)
    for j, f in enumerate(DEVICE_ID_FIELDS):
        dev[:, j] = hash_strings([None if r[f] == ZERO_ID else r[f] for r in rows], DEVICE_SEEDS[f])
    return {
        "kind": np.array([r["kind"] for r in rows], dtype=np.uint8),
        "ts": np.array([r["ts_ms"] for r in rows], dtype=np.int64),
        "received": np.array([r["received_ms"] for r in rows], dtype=np.int64),
        "rids": rids,
        "id_h1": hash_strings(list(rids), ID_SEED_1), "id_h2": hash_strings(list(rids), ID_SEED_2),
        "dev": dev,
        "fp": np.array([(r["fp"] or 0) & 0xFFFFFFFFFFFFFFFF for r in rows], dtype=np.uint64),
        "campaign": {f: [r[f] for r in rows] for f in CAMPAIGN_FIELDS},
        "outcome": np.array([r["outcome"] for r in rows], dtype=np.int16),
    }


def _parse(copy: bytes, cuts: list[int], max_rows: int) -> dict[str, Any]:
    """Feed the COPY in pieces ending at ``cuts``, parsing whatever whole rows are there each time."""
    buf = bytearray()
    header, done = True, False
    parts: list[Any] = []
    fed = 0
    for cut in sorted({*cuts, len(copy)}):
        buf.extend(copy[fed:cut])
        fed = cut
        while buf and not done:
            end, done, batch, received, stored = batch_from_copy(buf, header, max_rows)
            if end == 0:
                break
            header = False
            del buf[:end]
            parts.append((batch, received, stored))
    assert done and not buf
    batches = [p[0] for p in parts if p[0].n]
    cat = np.concatenate
    return {
        "kind": cat([b.arrays()["kind"] for b in batches]), "ts": cat([b.arrays()["ts"] for b in batches]),
        "received": cat([p[1] for p in parts]), "rids": [i for b in batches for i in b.record_id],
        "id_h1": cat([b.arrays()["id_h1"] for b in batches]), "id_h2": cat([b.arrays()["id_h2"] for b in batches]),
        "dev": cat([b.arrays()["dev"] for b in batches]), "fp": cat([b.arrays()["fp"] for b in batches]),
        "campaign": {f: [v for b in batches for v in b.campaign[f]] for f in CAMPAIGN_FIELDS},
        "outcome": cat([p[2] for p in parts]),
    }


@pytest.fixture(scope="module")
def stored(database: Any) -> tuple[list[Any], bytes]:
    """600 varied records stored through a writer: their asyncpg rows and their binary COPY."""
    app_id = int(database.create_app()["app_id"])
    rng = random.Random(7)

    async def go() -> tuple[list[Any], bytes]:
        pool = await asyncpg.create_pool(database.url, min_size=1, max_size=2)
        try:
            writer = Writer(pool, Limits())
            now = int(time.time() * 1000)
            for k in range(3):
                body = json.dumps({"batch": _records(rng, now, 200)}).encode().replace(b'"r-', f'"b{k}-'.encode())
                batch = decode_body(body, msgpack=False, received_ms=now, limits=Limits()).batch
                sub = Submission(app_id, batch, now, asyncio.get_running_loop().create_future())
                await writer.flush([sub])
                assert sub.future.result().accepted == 200
            async with pool.acquire() as conn:
                rows = await conn.fetch(QUERY, app_id)
                out = io.BytesIO()
                await conn.copy_from_query(QUERY, app_id, output=out, format="binary")
            return rows, out.getvalue()
        finally:
            await pool.close()

    return asyncio.run(go())


@pytest.mark.parametrize("seed", range(6))
def test_the_native_parse_of_the_copy_gives_the_rows_columns(stored: tuple[list[Any], bytes], seed: int) -> None:
    rows, copy = stored
    assert len(rows) == 600
    want = _reference(rows)
    assert sum(v is not None for v in want["campaign"]["adset"]) > 0 and (want["fp"] != 0).any()
    assert (want["dev"] == 0).any() and (want["dev"] != 0).any()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(copy)), k=[0, 1, 5, 40, 300, 2000][seed]))
    got = _parse(copy, cuts, max_rows=[600, 1, 7, 100, 1000, 3][seed])
    for k, v in want.items():
        if isinstance(v, np.ndarray):
            assert np.array_equal(got[k], v), k
        else:
            assert got[k] == v, k


def test_what_is_not_a_replay_copy_is_refused(stored: tuple[list[Any], bytes]) -> None:
    _rows, copy = stored
    with pytest.raises(ValueError, match="not a binary COPY header"):
        batch_from_copy(bytearray(b"PGCOPX" + copy[6:]), True, 10)
    # a row of another shape: the field count of the first row changed
    header_end = 19
    bad = bytearray(copy)
    bad[header_end:header_end + 2] = (15).to_bytes(2, "big")
    with pytest.raises(ValueError, match="a row of 15 fields, expected 16"):
        batch_from_copy(bad, True, 10)
    # a header not all there yet: nothing read, wait for more
    end, done, batch, _received, _stored = batch_from_copy(bytearray(copy[:12]), True, 10)
    assert (end, done, batch.n) == (0, False, 0)
