"""The attribution kernel's figures: records/s for dedup + attribution, the plain-Python
reference on the same data, bytes per item held, and this machine's memory floor.

The workload is built as numpy columns directly (no decoding) and fed to
``AppKernel(...).native.process`` the way AppKernel.decide does: a realistic mix of one app's
day (30 % clicks, 30 % impressions, 3 % installs, 12 % opens, 25 % events; 200,000 devices,
6 in 7 with an IDFA or a GAID, the rest known by fingerprint only; 1 % duplicate ids; a
tenth of the installs carry a Play referrer naming a click; records up to a minute late, so
the kernel sorts the batch).  The same records, written as wire records, feed the reference
(tests/kernel/reference.py) on a slice, and both must agree record by record.

Run: ``./run bench bench/test_kernel.py`` (figures at the end; docs/kernel.md cites them).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from tests.kernel.reference import Reference

from unmo.apps import AppSettings
from unmo.kernel import AppKernel
from unmo.model import Kind, Outcome

DAY = 86_400_000
T0 = 1_790_000_000_000
N = 1_000_000
DEVICES = 200_000
REFERENCE_SLICE = 20_000
MIX = {Kind.CLICK: 0.30, Kind.IMPRESSION: 0.30, Kind.INSTALL: 0.03, Kind.OPEN: 0.12, Kind.EVENT: 0.25}
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
OUTCOMES = {int(o): o.name.lower() for o in Outcome}


def _mix64(x: np.ndarray, salt: int) -> np.ndarray:
    """A splitmix64 finaliser of (salt, x < 2^48): distinct pairs give distinct, well spread,
    non-zero hashes, as typed XXH64 hashes of distinct identifiers do."""
    z = (x.astype(np.uint64) | (np.uint64(salt) << np.uint64(48))) * GOLDEN
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z | np.uint64(1)


@dataclass
class Day:
    """One day of one app's records as the kernel's columns, and how to write them as records."""

    kind: np.ndarray
    ts: np.ndarray
    rid: np.ndarray        # record id number (copies share it)
    device: np.ndarray     # device number
    id_type: np.ndarray    # 0 idfa, 1 gaid, -1 none (fingerprint only)
    ref: np.ndarray        # installs: the record id number of the click the referrer names, -1 none
    camp: np.ndarray       # touches: campaign number, -1 none
    received: int

    @property
    def n(self) -> int:
        return len(self.kind)

    def columns(self) -> list[Any]:
        n = self.n
        dev = np.zeros((n, 5), dtype=np.uint64)
        for t in (0, 1):
            rows = self.id_type == t
            dev[rows, t] = _mix64(self.device[rows], 1000 + t)
        has_ref = self.ref >= 0
        return [
            self.kind.astype(np.uint8), self.ts.astype(np.int64),
            _mix64(self.rid, 1), _mix64(self.rid, 2), dev, _mix64(self.device, 3),
            np.where(has_ref, _mix64(np.maximum(self.ref, 0), 1), np.uint64(0)).astype(np.uint64),
            np.where(has_ref, _mix64(np.maximum(self.ref, 0), 2), np.uint64(0)).astype(np.uint64),
            self.camp.astype(np.int32), np.zeros(n, dtype=np.uint8),
            [f"r{i}" for i in self.rid.tolist()], np.full(n, self.received, dtype=np.int64),
        ]

    def records(self, rows: slice) -> list[dict[str, Any]]:
        """The same records on the wire (ids, addresses and campaigns named after their numbers)."""
        out = []
        names = {int(k): k.name.lower() for k in Kind}
        for i in range(*rows.indices(self.n)):
            d = int(self.device[i])
            device: dict[str, Any] = {"ip": f"10.{d >> 16 & 255}.{d >> 8 & 255}.{d & 255}"}
            if self.id_type[i] == 0:
                device["idfa"] = f"{d:08x}-0000-4000-8000-000000000000"
            elif self.id_type[i] == 1:
                device["gaid"] = f"{d:08x}-0000-4000-8000-000000000001"
            rec: dict[str, Any] = {"type": names[int(self.kind[i])], "id": f"r{self.rid[i]}", "ts": int(self.ts[i]),
                                   "device": device}
            if self.camp[i] >= 0:
                rec["campaign"] = {"network": f"n{self.camp[i]}"}
            if self.ref[i] >= 0:
                rec["referrer"] = f"utm_source=google-play&click_id=r{self.ref[i]}"
            if self.kind[i] == Kind.EVENT:
                rec["name"] = "purchase"
            out.append(rec)
        return out


def synthetic_day(day: int, n: int = N, seed: int = 1, sorted_ts: bool = False) -> Day:
    """Records of day ``day`` (0: the day measured; -1, -2: the days before), received at its end."""
    rng = np.random.default_rng(seed + 7919 * (day + 10))
    kinds = np.array(list(MIX), dtype=np.uint8)
    kind = rng.choice(kinds, size=n, p=np.array(list(MIX.values())) / sum(MIX.values()))
    start = T0 + day * DAY
    arrival = np.sort(rng.integers(start, start + DAY, size=n))
    ts = arrival if sorted_ts else arrival - rng.integers(0, 60_000, size=n)   # up to a minute late
    device = rng.integers(0, DEVICES, size=n)
    id_type = np.where(device % 7 == 0, -1, device % 2)
    rid = np.arange(n, dtype=np.int64) + (day + 10) * 10 * n
    copies = rng.integers(1, n, size=n // 100)                                  # 1 % duplicates
    rid[copies] = rid[copies - 1]
    clicks = np.flatnonzero(kind == Kind.CLICK)
    ref = np.full(n, -1, dtype=np.int64)
    installs = np.flatnonzero(kind == Kind.INSTALL)
    named = installs[rng.random(len(installs)) < 0.1]
    # each names a click up to ~an hour of records earlier (the click the user tapped, in most
    # cases of the same device; the benchmark only needs the lookup)
    before = np.searchsorted(clicks, named) - 1 - rng.integers(0, 200, size=len(named))
    ok = before >= 0
    ref[named[ok]] = rid[clicks[before[ok]]]
    camp = np.where(kind <= Kind.IMPRESSION, rng.integers(0, 50, size=n), -1)
    return Day(kind, ts, rid, device, id_type, ref, camp, received=start + DAY + 60_000)


@pytest.fixture(scope="module")
def days() -> dict[int, Day]:
    return {d: synthetic_day(d) for d in (-2, -1, 0)}


def new_kernel() -> AppKernel:
    return AppKernel(AppSettings())


def summary(out: tuple[Any, ...]) -> Counter[str]:
    dup, outcome = out[0], out[1]
    c = Counter({OUTCOMES[int(k)]: int(v) for k, v in zip(*np.unique(outcome[dup == 0], return_counts=True),
                                                          strict=True)})
    c["duplicates"] = int(dup.sum())
    return c


def check(c: Counter[str], n: int) -> None:
    """What a day of this mix must come to (the exact counts are checked against the reference
    and against the same records in other batch sizes)."""
    assert c["duplicates"] >= 0.009 * n
    assert c["attributed"] >= 0.01 * n and c["organic"] > 0 and c["reinstall"] > 0


# -- records/s ---------------------------------------------------------------------------------
# CPU time of this process (page faults included), not wall time: on a shared 2-core machine
# the wall clock mostly measures the other processes.
cpu_time = pytest.mark.benchmark(timer=time.process_time)


@cpu_time
@pytest.mark.parametrize("arrival", ["late", "sorted"])
def test_kernel_one_day_fresh(benchmark: Any, findings: Any, arrival: str) -> None:
    """1,000,000 records in one batch into a fresh kernel (its tables grow on the way)."""
    day = synthetic_day(0, sorted_ts=arrival == "sorted")
    cols = day.columns()
    result = benchmark.pedantic(lambda k: k.native.process(*cols), setup=lambda: ((new_kernel(),), {}),
                                rounds=5, iterations=1)
    check(summary(result), N)
    if arrival == "late":
        # the kernel's radix order is numpy's stable argsort: the same answers either way
        again = new_kernel().native.process(*cols, order=np.argsort(cols[1], kind="stable"))
    else:
        # in ts order, batch boundaries do not matter: the API's 10,000-record batches agree
        k = new_kernel()
        parts = [k.native.process(*[x[i:i + 10_000] for x in cols]) for i in range(0, N, 10_000)]
        again = tuple(np.concatenate([p[j] for p in parts]) for j in range(3))
    assert all(np.array_equal(result[j], again[j]) for j in range(3))
    s = findings.seconds(benchmark)
    findings.add(f"kernel, 1M records ({arrival} ts) into a fresh kernel, records/s", s and N / s, "records/s")


@cpu_time
def test_kernel_one_day_after_a_day(benchmark: Any, findings: Any, days: dict[int, Day]) -> None:
    """The same, into a kernel holding the day before (same devices): tables sized, chains long."""
    prev, cols = days[-1].columns(), days[0].columns()

    def setup() -> tuple[tuple[AppKernel], dict[str, Any]]:
        k = new_kernel()
        k.native.process(*prev)
        return (k,), {}

    result = benchmark.pedantic(lambda k: k.native.process(*cols), setup=setup, rounds=5, iterations=1)
    check(summary(result), N)
    s = findings.seconds(benchmark)
    findings.add("kernel, 1M records after a day held, records/s", s and N / s, "records/s")


STEADY = AppSettings(click_window_ms=DAY, impression_window_ms=DAY, probabilistic_window_ms=DAY,
                     reattribution_window_ms=DAY)


def steady_kernel() -> AppKernel:
    """A kernel whose windows all fit in a day (the dedup window and the grace too), so that a
    few days of records bring it to its steady state: as much dropped as added each day."""
    k = AppKernel(STEADY)
    s = STEADY
    k.native.configure(s.click_window_ms, s.impression_window_ms, s.probabilistic_window_ms,
                       s.reattribution_window_ms, s.min_ctit_ms, DAY, 2 * 3_600_000)
    return k


def api_batches(day: Day) -> list[list[Any]]:
    cols = day.columns()
    return [[np.ascontiguousarray(x[i:i + 10_000]) if isinstance(x, np.ndarray) else x[i:i + 10_000]
             for x in cols] for i in range(0, day.n, 10_000)]


@cpu_time
def test_kernel_stream_of_api_batches(benchmark: Any, findings: Any) -> None:
    """Steady state: after three days (windows of a day), two days of records in the 10,000-record
    batches of the API, trimming (Kernel.evict) between batches as AppKernel does (two days, so
    that the table rebuilds of a day or so are in the figure)."""
    warm = [api_batches(synthetic_day(d)) for d in (-3, -2, -1)]
    batches = api_batches(synthetic_day(0)) + api_batches(synthetic_day(1))

    def feed(k: AppKernel, day: list[list[Any]]) -> list[tuple[Any, ...]]:
        out = []
        for b in day:
            out.append(k.native.process(*b))
            k.native.evict(k.native.last_received)
        return out

    def setup() -> tuple[tuple[AppKernel], dict[str, Any]]:
        k = steady_kernel()
        for day in warm:
            feed(k, day)
        return (k,), {}

    held: list[int] = []
    parts = benchmark.pedantic(lambda k: (feed(k, batches), held.append(k.native.memory_bytes()))[0],
                               setup=setup, rounds=3, iterations=1)
    check(summary(tuple(np.concatenate([p[j] for p in parts]) for j in range(2))), 2 * N)
    s = findings.seconds(benchmark)
    findings.add("kernel, 2M records in 10k batches, steady state (windows of a day), records/s",
                 s and 2 * N / s, "records/s")
    findings.add("kernel, steady state, memory held, MB", held[-1] / 1e6, "MB")


@cpu_time
def test_reference_on_a_slice(benchmark: Any, findings: Any, days: dict[int, Day]) -> None:
    """The plain-Python reference on the first 20,000 records of the same day; the kernel on the
    same slice must answer the same for every record."""
    day = days[0]
    records = day.records(slice(0, REFERENCE_SLICE))
    settings = AppSettings()
    result = benchmark.pedantic(lambda: Reference(settings).feed(records, day.received), rounds=3, iterations=1)
    k = new_kernel()
    dup, outcome, *_ = k.native.process(*[x[:REFERENCE_SLICE] for x in day.columns()])
    assert [o.dup for o in result] == dup.astype(bool).tolist()
    assert [o.outcome for o in result if not o.dup] == [OUTCOMES[int(x)] if x else "ok"
                                                         for x in outcome[dup == 0].tolist()]
    assert sum(o.outcome == "attributed" for o in result) > 0
    s = findings.seconds(benchmark)
    findings.add("reference, 20k records, records/s", s and REFERENCE_SLICE / s, "records/s")
    findings.ratio("kernel (1M, after a day) / reference, per record", "kernel, 1M records after a day held, records/s",
                   "reference, 20k records, records/s")


# -- memory --------------------------------------------------------------------------------

def _held(make: Any) -> tuple[int, int]:
    """(Kernel.memory_bytes, Python bytes allocated and kept) of what ``make`` builds."""
    gc.collect()
    tracemalloc.start()
    app = make()
    py_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return app.native.memory_bytes(), py_bytes


@pytest.mark.parametrize("what", ["record id", "touch", "install"])
def test_bytes_per_item(findings: Any, what: str) -> None:
    """Bytes held per record id (events without identifiers), per touch (impressions, one
    identifier each, 200,000 devices) and per install (the last one attributed), for 1M items."""
    n = N

    def make() -> AppKernel:
        d = synthetic_day(0, n=n, sorted_ts=True)
        kind = {"record id": Kind.EVENT, "touch": Kind.IMPRESSION, "install": Kind.INSTALL}[what]
        d.kind[:] = kind
        d.id_type[d.id_type < 0] = 0
        d.rid = np.arange(n, dtype=np.int64)
        if what == "install":
            d.device = np.arange(n, dtype=np.int64)     # every install its own device: no reinstalls
        cols = d.columns()
        del d
        k = new_kernel()
        k.native.process(*cols)
        del cols
        gc.collect()
        return k

    base_native, base_py = _held(new_kernel)
    native, py = _held(make)
    per = (native - base_native + py - base_py) / n
    findings.add(f"memory per {what} held (1M, native + Python), bytes", per, "bytes")
    assert 8 <= per <= 400


# -- the machine -----------------------------------------------------------------------------

@cpu_time
def test_memory_floor(benchmark: Any, findings: Any) -> None:
    """This machine's cost of one random read of a 64 MB table (numpy gathers 1M of them): the
    kernel's probes are such reads, so it bounds records/s from below whatever the code does."""
    rng = np.random.default_rng(5)
    table = rng.integers(0, 1 << 62, size=8 << 20, dtype=np.int64)    # 64 MiB
    idx = rng.integers(0, len(table), size=N)
    total = benchmark(lambda: int(table[idx].sum()))
    assert total == int(table[idx].sum())
    s = findings.seconds(benchmark)
    findings.add("random 8-byte reads of a 64 MB table, ns each", s and s / N * 1e9, "ns")
    start = time.perf_counter()
    fresh = np.ones(64 << 20, dtype=np.uint8)        # first touch of fresh pages
    findings.add("first touch of fresh memory, GB/s", (64 << 20) / (time.perf_counter() - start) / 1e9, "GB/s")
    assert int(fresh[::4096].sum()) == 16384
