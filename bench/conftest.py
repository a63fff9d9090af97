"""Shared fixtures of the benchmark suites (``./run bench``, ``make bench``).

The suites run on the real parts the tests use (tests/support.py): a fresh
PostgreSQL database per session and ``unmo serve`` subprocesses on loopback.
Every benchmark asserts its result.  Ratios are measured inside one session
(``findings``): each test adds what it measured, a later test divides by it,
and the session ends with a table of them (also written to
test-artifacts/bench-findings.json), because only figures taken in the same
run on a shared 2-core machine can be compared.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support import ROOT, ServerProcess, TestDatabase, fresh_database

from unmo.load.driver import LoadResult
from unmo.load.workload import new_run_id

CEILING_SECONDS = float(os.environ.get("UNMO_BENCH_CEILING_S", "4"))
LOAD_SECONDS = float(os.environ.get("UNMO_BENCH_LOAD_S", "5"))


class Findings:
    """Figures measured in this session, and ratios between them."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[float, str]] = {}

    @staticmethod
    def seconds(benchmark: Any) -> float | None:
        """Median seconds per call of a finished benchmark; None when benchmarks are disabled."""
        stats = getattr(benchmark, "stats", None)
        if stats is None or not getattr(benchmark, "enabled", False):
            return None
        return float(stats.stats.median)

    def add(self, key: str, value: float | None, unit: str) -> float | None:
        if value is not None:
            self.values[key] = (value, unit)
        return value

    def get(self, key: str) -> float | None:
        got = self.values.get(key)
        return got[0] if got else None

    def ratio(self, key: str, numerator: str, denominator: str) -> float | None:
        a, b = self.get(numerator), self.get(denominator)
        if a is None or b is None or b == 0:
            return None
        return self.add(key, a / b, "x")


_findings = Findings()


@pytest.fixture(scope="session")
def findings() -> Findings:
    return _findings


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _findings.values:
        return
    terminalreporter.section("unmo: figures and ratios measured in this run")
    width = max(len(k) for k in _findings.values)
    for key, (value, unit) in _findings.values.items():
        text = f"{value:,.0f}" if value >= 100 else f"{value:,.3g}"
        terminalreporter.write_line(f"{key:<{width}}  {text} {unit}")
    out = ROOT / "test-artifacts" / "bench-findings.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({k: {"value": v, "unit": u} for k, (v, u) in _findings.values.items()}, indent=1))
    terminalreporter.write_line(f"(written to {out.relative_to(ROOT)})")


@pytest.fixture(scope="session")
def database() -> Iterator[TestDatabase]:
    with fresh_database() as db:
        yield db


@pytest.fixture(scope="session")
def server(database: TestDatabase) -> Iterator[ServerProcess]:
    """``unmo serve`` with its defaults (1 worker, pool of 4)."""
    with ServerProcess(database.url) as srv:
        yield srv


@pytest.fixture
def app(database: TestDatabase) -> dict[str, Any]:
    return database.create_app()


@pytest.fixture(scope="session")
def ceiling(database: TestDatabase, findings: Findings) -> LoadResult:
    """The limit every throughput is divided by: raw binary COPY of the load's rows, measured once.

    10,000-row buffers on 2 connections (the largest group commit the writer
    makes is bigger, but the row rate is flat past a few thousand rows).
    """
    from unmo.load.ceiling import run_ceiling

    result = run_ceiling(database.url, duration_s=CEILING_SECONDS, concurrency=2, batch_size=10_000,
                         devices=100_000, seed=1, run_id=new_run_id())
    assert result.verified, result.verify_problem
    findings.add("COPY ceiling (10k-row buffers, 2 connections), rows/s", result.events_per_s, "rows/s")
    return result


def wait_quiet(seconds: float = 1.0) -> None:
    """Let the database settle (checkpoints, autovacuum of the last run) before the next measurement."""
    time.sleep(seconds)
