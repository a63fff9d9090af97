"""Parsing a 1000-record body: msgspec typed decoding against stdlib json plus hand validation.

The seed system claimed "3x faster parsing"; this measures the ratio on the
records ``unmo load`` sends.  All three produce validated records and agree.

Then the whole of unmo.ingest.batch.decode_body (body -> batch columns) on the
same body: the msgspec path (decode_body_msgspec: typed decode + build_columns)
against the native one-pass decoder (decode_json_columns) that decode_body
tries first for JSON, alone and within decode_body.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from bench.baselines.handwritten import validate
from unmo._native import decode_json_columns
from unmo.config import Limits
from unmo.ingest.batch import _HELPERS, MIN_TS_MS, decode_body, decode_body_msgspec
from unmo.load.workload import Workload, build_templates
from unmo.model import Envelope, Record

N = 1000


class TypedEnvelope(msgspec.Struct):
    batch: list[Record]


@pytest.fixture(scope="module")
def body() -> bytes:
    return build_templates(Workload(batch_size=N, templates=1), "bench-", seed=7)[0].render(1)


def stdlib(body: bytes) -> list[tuple]:
    return [validate(i, rec, 1) for i, rec in enumerate(json.loads(body)["batch"])]


_envelope = msgspec.json.Decoder(Envelope)
_record = msgspec.json.Decoder(Record)
_typed = msgspec.json.Decoder(TypedEnvelope)


def unmo_way(body: bytes) -> list[Record]:
    # what unmo.ingest.batch.decode_body does: the envelope first, then each record on its own,
    # so that one bad record is reported by index instead of failing the batch
    return [_record.decode(raw) for raw in _envelope.decode(body).batch]


def typed_whole(body: bytes) -> list[Record]:
    return _typed.decode(body).batch


def test_decode_stdlib_json_and_hand_validation(benchmark, body, findings):
    rows = benchmark(stdlib, body)
    assert len(rows) == N and {r[2] for r in rows} <= {"click", "impression", "install", "open", "event"}
    s = findings.add("decode: stdlib json + hand validation, s per 1000 records", findings.seconds(benchmark), "s")
    if s:
        benchmark.extra_info["events_per_s"] = round(N / s)


def test_decode_msgspec_per_record(benchmark, body, findings):
    records = benchmark(unmo_way, body)
    assert [r.id for r in records] == [row[1] for row in stdlib(body)]
    s = findings.add("decode: msgspec typed, per record (unmo), s per 1000 records", findings.seconds(benchmark), "s")
    ratio = findings.ratio("decode: unmo's msgspec decode vs stdlib json (x faster)",
                           "decode: stdlib json + hand validation, s per 1000 records",
                           "decode: msgspec typed, per record (unmo), s per 1000 records")
    if s:
        benchmark.extra_info.update(events_per_s=round(N / s), x_faster_than_stdlib=ratio)


def test_decode_msgspec_whole_body(benchmark, body, findings):
    records = benchmark(typed_whole, body)
    assert records == unmo_way(body)
    s = findings.add("decode: msgspec typed, whole body, s per 1000 records", findings.seconds(benchmark), "s")
    ratio = findings.ratio("decode: msgspec whole-body decode vs stdlib json (x faster)",
                           "decode: stdlib json + hand validation, s per 1000 records",
                           "decode: msgspec typed, whole body, s per 1000 records")
    if s:
        benchmark.extra_info.update(events_per_s=round(N / s), x_faster_than_stdlib=ratio)


LIMITS = Limits()


def _received(body: bytes) -> int:
    """A receive time a few seconds after the body's newest record (build_templates stamps them now)."""
    return max(r["ts"] for r in msgspec.json.decode(body)["batch"]) + 5000


def body_msgspec_path(body: bytes, received_ms: int):
    return decode_body_msgspec(body, msgpack=False, received_ms=received_ms, limits=LIMITS)


def body_decode(body: bytes, received_ms: int):
    return decode_body(body, msgpack=False, received_ms=received_ms, limits=LIMITS)


def native_columns(body: bytes, received_ms: int):
    return decode_json_columns(body, received_ms, MIN_TS_MS, received_ms + LIMITS.max_future_ms, LIMITS.max_records,
                               LIMITS.max_record_bytes, LIMITS.max_properties_bytes, _HELPERS)


def test_decode_body_msgspec_path(benchmark, body, findings):
    received = _received(body)
    d = benchmark(body_msgspec_path, body, received)
    assert d.batch.n == N and not d.errors
    s = findings.add("decode_body: msgspec path (typed decode + build_columns), s per 1000 records",
                     findings.seconds(benchmark), "s")
    if s:
        benchmark.extra_info["us_per_record"] = round(s / N * 1e6, 3)


def _against_msgspec_path(benchmark, findings, label: str, what: str) -> None:
    """Record ``label``'s seconds and its share of the msgspec path's time (``what`` names the pair)."""
    s = findings.add(label, findings.seconds(benchmark), "s")
    ratio = findings.ratio(f"decode_body: {what} vs msgspec path (share of the time)", label,
                           "decode_body: msgspec path (typed decode + build_columns), s per 1000 records")
    if s:
        benchmark.extra_info.update(us_per_record=round(s / N * 1e6, 3), share_of_msgspec_path=ratio)


def test_decode_body_native_columns(benchmark, body, findings):
    received = _received(body)
    got = benchmark(native_columns, body, received)
    assert got is not None, "the native decoder refused the load driver's body"
    assert got[1]["record_id"] == body_msgspec_path(body, received).batch.record_id
    _against_msgspec_path(benchmark, findings, "decode_body: native decode_json_columns alone, s per 1000 records",
                          "native decoder")


def test_decode_body_with_native_path(benchmark, body, findings):
    received = _received(body)
    d = benchmark(body_decode, body, received)
    assert d.batch.n == N and not d.errors
    _against_msgspec_path(benchmark, findings, "decode_body: native path (Batch included), s per 1000 records",
                          "native path")
