"""Parsing a 1000-record body: msgspec typed decoding against stdlib json plus hand validation.

The seed system claimed "3x faster parsing"; this measures the ratio on the
records ``unmo load`` sends.  All three produce validated records and agree.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from bench.baselines.handwritten import validate
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
