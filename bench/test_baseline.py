"""unmo against the ingest server a team would write by hand (bench/baselines/handwritten.py).

Both are driven by the same ``unmo load`` run shape (8 connections, 1000-record
batches) in the same session, and both runs are verified against their tables.
"""

from __future__ import annotations

from bench.conftest import LOAD_SECONDS, wait_quiet
from bench.drive import Handwritten, drive


def test_handwritten_baseline(benchmark, database, ceiling, findings):
    with Handwritten(database.url) as hw:
        wait_quiet()
        result = benchmark.pedantic(lambda: drive(hw.url, database.url, seconds=LOAD_SECONDS,
                                                  table="handwritten.records"), rounds=1, iterations=1)
    assert result.verified and result.statuses == {"200": result.requests}
    findings.add("hand-written baseline, 8 connections, events/s", result.events_per_s, "events/s")
    benchmark.extra_info.update(events_per_s=round(result.events_per_s), p95_ms=result.p95_ms,
                                ratio_to_copy_ceiling=round(result.events_per_s / ceiling.events_per_s, 3))


def test_unmo_against_the_baseline(benchmark, server, database, ceiling, findings):
    wait_quiet()
    result = benchmark.pedantic(lambda: drive(server.url, database.url, seconds=LOAD_SECONDS), rounds=1,
                                iterations=1)
    assert result.verified and result.statuses == {"200": result.requests}
    findings.add("unmo, 8 connections, events/s", result.events_per_s, "events/s")
    ratio = findings.ratio("unmo vs hand-written baseline (x)", "unmo, 8 connections, events/s",
                           "hand-written baseline, 8 connections, events/s")
    benchmark.extra_info.update(events_per_s=round(result.events_per_s), p95_ms=result.p95_ms, x_baseline=ratio)
