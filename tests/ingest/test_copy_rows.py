"""The COPY of unmo.records in two halves (decided columns + the segments decode_body encoded), read back
from PostgreSQL and compared with the batch columns, across requests merged into one flush."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from unmo._native import encode_flush
from unmo.config import Limits
from unmo.ingest.batch import Batch, decode_body
from unmo.ingest.rows import DECIDED_COLUMNS, RECORD_COLUMNS, SEGMENT_COLUMNS, encode_records
from unmo.model import CAMPAIGN_FIELDS, DEVICE_ID_FIELDS

NOW = 1_795_000_000_000
CAMP = {"network": "Net ✓", "campaign": "c1", "adset": None, "ad": "ad-1", "site": "s"}


def body(records, msgpack=False):
    env = {"batch": records}
    return msgspec.msgpack.encode(env) if msgpack else msgspec.json.encode(env)


FIRST = [
    {"type": "click", "id": "c-1", "ts": NOW - 60_000, "campaign": CAMP,
     "device": {"idfa": " ABC ", "ip": "::ffff:10.0.0.9", "ua": "UA/1 ünï", "platform": "ios"}},
    {"type": "install", "id": "i-1", "ts": NOW - 1_000, "referrer": "click_id=c-1&x=1",
     "device": {"idfa": "abc", "gaid": "G-1", "ip": "2001:db8::1", "os": "iOS", "os_version": "17.1",
                "model": "iPhone15,2"}},
    {"type": "click", "id": "bad", "ts": "yesterday", "campaign": CAMP},  # rejected: not in the columns
    {"type": "event", "id": "e-1", "ts": NOW, "name": "purchase 😀", "revenue": 9.99, "currency": "eur",
     "properties": {"sku": "A\u00e9", "n": [1, 2, {"x": None}]}},
]
SECOND = [
    {"type": "open", "id": "o-1", "ts": NOW - 5, "device": {"android_id": "AID", "oaid": "o", "idfv": "V"}},
    {"type": "event", "id": "e-2", "ts": NOW, "name": "level", "revenue": 0, "properties": None},
    {"type": "impression", "id": "m-1", "ts": NOW - 2, "campaign": {"network": "n2"}},
]


@pytest.mark.parametrize("msgpack", [False, True], ids=["json", "msgpack"])
def test_segments_of_merged_requests_round_trip_through_postgresql(database, msgpack):
    parts = [decode_body(body(r, msgpack), msgpack=msgpack, received_ms=NOW + k, limits=Limits())
             for k, r in enumerate((FIRST, SECOND))]
    assert [len(p.errors) for p in parts] == [1, 0]
    batch = Batch()
    for p in parts:
        batch.extend(p.batch)
    assert batch.n == 6 and len(batch.segs) == 2
    n = batch.n
    keep = np.array([1, 1, 0, 1, 1, 1], dtype=bool)  # the event e-1 is a duplicate: not written
    ord_ = np.array([5, 4, 3, 2, 1, 0], dtype=np.int32)
    received = np.array([NOW, NOW, NOW, NOW + 1, NOW + 1, NOW + 1], dtype=np.int64)
    outcome = np.arange(n, dtype=np.int16)
    campaigns = [("Net ✓", "c1", None, "ad-1", "s"), ("n2", None, None, None, None)]
    camp = np.array([0, 0, -1, -1, -1, 1], dtype=np.int32)
    install_ms = np.array([-1, 123, -1, -1, -1, -1], dtype=np.int64)
    rejected = [None, '[{"touch_id": "t", "reason": "ctit"}]', None, None, None, None]
    stream, written = encode_records(batch, app_id=7, seq=42, keep=keep, ord_=ord_, received=received,
                                     outcome=outcome, camp=camp, campaigns=campaigns, install_ms=install_ms,
                                     ctit_rejected=rejected)
    assert written == 5

    async def go(conn):
        await conn.execute("CREATE TEMP TABLE r (LIKE unmo.records)")
        await conn.copy_to_table("r", source=memoryview(stream), columns=RECORD_COLUMNS, format="binary")
        return await conn.fetch(
            "SELECT *, (extract(epoch from ts) * 1000)::bigint AS ts_ms, "
            "(extract(epoch from received_at) * 1000)::bigint AS received_ms, host(ip) AS ip_text, "
            "properties::text AS props_text, ctit_rejected::text AS rejected_text FROM r ORDER BY ord DESC")

    rows = database.call(go)
    want_rows = [i for i in range(n) if keep[i]]
    assert [r["record_id"] for r in rows] == [batch.record_id[i] for i in want_rows]
    for r, i in zip(rows, want_rows, strict=True):
        assert (r["app_id"], r["seq"], r["ord"], r["outcome"]) == (7, 42, ord_[i], outcome[i])
        assert r["device_key"] == batch.device_key[i] and r["kind"] == batch.kind[i]
        assert r["ts_ms"] == batch.ts[i] and r["received_ms"] == received[i]
        assert [r[f] for f in DEVICE_ID_FIELDS] == [batch.ids[f][i] for f in DEVICE_ID_FIELDS]
        assert r["ip_text"] == batch.ip[i]
        for f in ("ua", "platform", "os", "os_version", "model", "referrer", "name", "revenue", "currency"):
            assert r[f] == getattr(batch, f)[i], f
        got_props = None if r["props_text"] is None else json.loads(r["props_text"])
        assert got_props == (None if batch.properties[i] is None else json.loads(batch.properties[i]))
        assert [r[f] for f in CAMPAIGN_FIELDS] == (list(campaigns[camp[i]]) if camp[i] >= 0 else [None] * 5)
        assert r["install_ms"] == (None if install_ms[i] < 0 else install_ms[i])
        assert (None if r["rejected_text"] is None else json.loads(r["rejected_text"])) == (
            None if rejected[i] is None else json.loads(rejected[i]))
        fp = int(batch.fp.view(np.int64)[i])
        assert r["fp"] == (fp or None)
    # spot checks against the values as sent, not only against the batch
    assert rows[0]["ip_text"] == "10.0.0.9" and rows[0]["idfa"] == "abc" and rows[0]["ua"] == "UA/1 ünï"
    assert rows[3]["record_id"] == "e-2" and rows[3]["revenue"] == 0.0 and rows[3]["currency"] == "USD"
    assert rows[1]["ip_text"] == "2001:db8::1" and rows[1]["referrer"] == "click_id=c-1&x=1"


def test_the_two_halves_are_every_column_once():
    assert sorted(DECIDED_COLUMNS + SEGMENT_COLUMNS) == sorted(set(RECORD_COLUMNS))
    assert len(RECORD_COLUMNS) == 33


def test_encode_flush_refuses_segments_that_do_not_cover_the_batch():
    d = decode_body(body(SECOND), msgpack=False, received_ms=NOW, limits=Limits())
    b = d.batch
    args = (np.arange(3, dtype=np.int64), b.device_key, 1, np.full(3, NOW, dtype=np.int64), 1,
            np.zeros(3, dtype=np.int32), np.zeros(3, dtype=np.int16), np.full(3, -1, dtype=np.int32), [],
            np.full(3, -1, dtype=np.int64), [None] * 3)
    assert encode_flush(args[0], b.segs, *args[1:]).startswith(b"PGCOPY\n")
    buf, offs = b.segs[0]
    with pytest.raises(ValueError, match="hold 2 rows, expected 3"):
        encode_flush(args[0], [(buf, offs[:3])], *args[1:])
    with pytest.raises(ValueError, match="out of their buffer"):
        encode_flush(args[0], [(buf[:-1], offs)], *args[1:])
    with pytest.raises(IndexError):
        encode_flush(np.array([3], dtype=np.int64), b.segs, *args[1:])
