"""POST /v1/batch bodies to columns: unmo.ingest.batch.decode_body, JSON and MessagePack."""

from __future__ import annotations

import time

import msgspec
import pytest

from unmo.config import Limits
from unmo.ingest.batch import decode_body
from unmo.load.workload import Workload, build_templates

N = 1000


@pytest.fixture(scope="module")
def bodies() -> dict[str, bytes]:
    body = build_templates(Workload(batch_size=N, templates=1), "bench-", seed=11)[0].render(1)
    return {"json": body, "msgpack": msgspec.msgpack.encode(msgspec.json.decode(body))}


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_decode_body_to_columns(benchmark, bodies, findings, fmt):
    now = int(time.time() * 1000)
    limits = Limits()
    decoded = benchmark(decode_body, bodies[fmt], msgpack=fmt == "msgpack", received_ms=now, limits=limits)
    assert decoded.batch.n == N and not decoded.errors
    assert len(set(decoded.batch.record_id)) == N
    s = findings.add(f"batch to columns ({fmt}), s per 1000 records", findings.seconds(benchmark), "s")
    if s:
        findings.add(f"batch to columns ({fmt}), events/s on one core", N / s, "events/s")
        benchmark.extra_info["events_per_s"] = round(N / s)
