"""What attribution costs on the ingest path: the CPU side of one 1000-record request
(body -> columns -> kernel -> binary COPY stream) with and without the kernel.

Without the kernel every record is written as decided nothing (no dedup, no attribution);
the difference is what dedup and attribution add per request, on one core.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from unmo.apps import AppSettings
from unmo.config import Limits
from unmo.ingest.batch import decode_body
from unmo.ingest.rows import encode_records
from unmo.kernel import AppKernel
from unmo.load.workload import Workload, build_templates

N = 1000
TEMPLATES = 8
ROUNDS = 24


@pytest.fixture(scope="module")
def bodies() -> list[bytes]:
    """A body per round (request numbers make every record id new)."""
    templates = build_templates(Workload(batch_size=N, templates=TEMPLATES), "pipe-", seed=5)
    return [templates[i % TEMPLATES].render(i) for i in range(ROUNDS + 1)]


def _request(body: bytes, kernel: AppKernel | None, now: int) -> int:
    b = decode_body(body, msgpack=False, received_ms=now, limits=Limits()).batch
    received = np.full(b.n, now, dtype=np.int64)
    order = np.argsort(b.arrays()["ts"], kind="stable")
    ord_ = np.empty(b.n, dtype=np.int32)
    ord_[order] = np.arange(b.n, dtype=np.int32)
    if kernel is not None:
        d = kernel.decide(b, received)
        keep, outcome, camp, campaigns = d.dup == 0, d.outcome, d.camp, d.campaigns
    else:
        keep = np.ones(b.n, dtype=bool)
        outcome = np.zeros(b.n, dtype=np.int16)
        camp, campaigns = np.full(b.n, -1, dtype=np.int32), []
    stream, rows = encode_records(b, app_id=1, seq=1, keep=keep, ord_=ord_, received=received, outcome=outcome,
                                  camp=camp, campaigns=campaigns)
    assert stream.startswith(b"PGCOPY\n")
    return rows


@pytest.mark.parametrize("with_kernel", [False, True], ids=["without kernel", "with kernel"])
def test_request_cpu_with_and_without_the_kernel(benchmark, bodies, findings, with_kernel):
    now = int(time.time() * 1000)
    counter = iter(range(10**9))
    kernel = AppKernel(AppSettings()) if with_kernel else None

    def one() -> int:
        # a new body each call: the kernel sees new record ids, not duplicates
        return _request(bodies[next(counter)], kernel, now)

    rows = benchmark.pedantic(one, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert rows == N
    if with_kernel:
        assert kernel is not None and kernel.native.record_ids > 0
    name = "with" if with_kernel else "without"
    s = findings.add(f"request CPU {name} kernel, s per 1000 records", findings.seconds(benchmark), "s")
    if s:
        benchmark.extra_info["events_per_s"] = round(N / s)
    if with_kernel:
        ratio = findings.ratio("attribution's share: with / without kernel", "request CPU with kernel, s per "
                               "1000 records", "request CPU without kernel, s per 1000 records")
        if ratio:
            benchmark.extra_info["with_over_without"] = round(ratio, 3)
