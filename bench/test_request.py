"""The whole request: HTTP POST of 1000 records to a real ``unmo serve``, answered after commit."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import uvloop

from bench.conftest import LOAD_SECONDS, wait_quiet
from bench.drive import drive, make_keys
from unmo.load.client import Connection, Target
from unmo.load.workload import Workload, build_templates

N = 1000


def test_one_request_of_1000_records(benchmark, server, database, findings):
    key = make_keys(database.url)[0]
    templates = build_templates(Workload(batch_size=N, templates=4), "req-", seed=5)
    target = Target(server.url)
    loop = uvloop.new_event_loop()
    conn = loop.run_until_complete(Connection.open(target))
    counter = iter(range(1, 10**9))
    answers = []

    def post() -> None:
        no = next(counter)
        body = templates[no % 4].render(no)
        answers.append(loop.run_until_complete(conn.request(target.head(key, len(body)), body)))

    try:
        benchmark.pedantic(post, rounds=30, warmup_rounds=2)
    finally:
        conn.close()
        loop.run_until_complete(asyncio.sleep(0.01))  # let uvloop close the transport before the loop
        loop.close()
    assert all(status == 200 for status, _ in answers)
    assert {msgspec.json.decode(body)["accepted"] for _, body in answers} == {N}
    s = findings.seconds(benchmark)
    if s:
        findings.add("one request of 1000 records, alone, ms", s * 1000, "ms")
        benchmark.extra_info["events_per_s_one_client"] = round(N / s)


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_sustained_closed_loop(benchmark, server, database, ceiling, findings, concurrency):
    wait_quiet()
    result = benchmark.pedantic(lambda: drive(server.url, database.url, seconds=LOAD_SECONDS,
                                              concurrency=concurrency), rounds=1, iterations=1)
    assert result.verified and result.statuses == {"200": result.requests} and result.acked_records > 0
    ratio = result.events_per_s / ceiling.events_per_s
    findings.add(f"unmo, 1000-record batches, {concurrency} connections, events/s", result.events_per_s, "events/s")
    findings.add(f"unmo, 1000-record batches, {concurrency} connections, P95 ms", result.p95_ms, "ms")
    findings.add(f"unmo, {concurrency} connections, ratio to the COPY ceiling", ratio, "x")
    benchmark.extra_info.update(events_per_s=round(result.events_per_s), p50_ms=result.p50_ms,
                                p95_ms=result.p95_ms, p99_ms=result.p99_ms, ratio_to_copy_ceiling=round(ratio, 3))
