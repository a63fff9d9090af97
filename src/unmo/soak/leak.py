"""The memory-leak verdict of a soak: RSS slope against the state the server is meant to keep.

An ingest process keeps, by design, every record id of the dedup window (7
days) and every touch of the longest attribution window plus two days of grace
in memory (docs/architecture.md, "Memory").  Within a soak shorter than those
windows that state only grows, so a rising RSS alone proves nothing.  The
verdict therefore compares:

* ``rss_slope_mb_per_h``: least-squares slope of the server's RSS
  (``process_resident_memory_bytes``) over the samples after the warm-up.  The
  warm-up (the first 10 % of the run, at most 10 minutes) is left out because
  connection pools, caches, the allocator's arenas and the kernel's first table
  growths fill there at once;
* ``expected_mb_per_h``: the acknowledged records per hour times the bytes the
  server's own kernel keeps per record of this traffic mix, measured at the
  start of the soak by running ``unmo.kernel.AppKernel`` (the code the server
  runs) on 10 000 records of the mix (``tracemalloc`` for Python objects plus
  the native tables' ``memory_bytes``);

and calls it a leak when the slope exceeds the expected growth by more than
``max(20 MB/h, 25 % of the expected growth)``.  The 20 MB/h floor is what a 24-hour
run can tell from noise: hash tables double (a step of up to 2x their size), and
glibc returns freed memory to the kernel lazily.  For the same reason a run
needs at least ``MIN_JUDGED_S`` (5 minutes) of samples after the warm-up before
it is judged at all: a shorter run reports ``leak: false`` with
``leak_judged: false``, and its slope for information only.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass

import msgspec
import numpy as np

from unmo.apps import AppSettings
from unmo.config import Limits
from unmo.ingest.batch import decode_body
from unmo.kernel import AppKernel
from unmo.sim.profile import Profile

LEAK_FLOOR_MB_PER_H = 20.0
LEAK_SHARE = 0.25
WARMUP_SHARE = 0.10
WARMUP_MAX_S = 600.0
CALIBRATION_RECORDS = 10_000
MIN_JUDGED_S = 300.0


@dataclass
class Verdict:
    rss_slope_mb_per_h: float | None
    expected_mb_per_h: float
    threshold_mb_per_h: float
    leak: bool
    judged: bool
    warmup_s: float
    samples_used: int


def warmup_s(duration_s: float) -> float:
    return min(WARMUP_MAX_S, WARMUP_SHARE * duration_s)


def state_bytes_per_record(profiles: list[Profile], seed: int = 0) -> float:
    """Bytes the server's kernel keeps per record of this mix (see the module docstring)."""
    from unmo.soak.traffic import LiveMix

    mix = LiveMix(profiles, run="calibration", seed=seed, batch_size=5_000)
    now = int(time.time() * 1000)
    mix.produce(now, CALIBRATION_RECORDS)
    batches = mix.due(now)
    bodies = [msgspec.json.encode({"batch": b.records}) for b in batches]
    n = sum(len(b.records) for b in batches)
    del batches, mix
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kernel = AppKernel(AppSettings())
    for body in bodies:
        decoded = decode_body(body, msgpack=False, received_ms=now, limits=Limits())
        kernel.decide(decoded.batch, now)
        del decoded
    gc.collect()
    python_bytes = tracemalloc.get_traced_memory()[0] - base
    if not was_tracing:
        tracemalloc.stop()
    native_bytes = int(kernel.native.memory_bytes())
    return float(max(0, python_bytes) + native_bytes) / max(1, n)


def rss_slope(times_s: list[float], rss_mb: list[float | None], warmup: float) -> tuple[float | None, int]:
    """Least-squares slope in MB per hour over the samples after ``warmup`` (None: fewer than 3)."""
    pts = [(t, m) for t, m in zip(times_s, rss_mb, strict=True) if t >= warmup and m is not None]
    if len(pts) < 3:
        return None, len(pts)
    t = np.array([p[0] for p in pts]) / 3600.0
    m = np.array([p[1] for p in pts])
    slope = float(np.polyfit(t, m, 1)[0])
    return slope, len(pts)


def verdict(
    times_s: list[float],
    rss_mb: list[float | None],
    duration_s: float,
    acked_per_h: float,
    bytes_per_record: float,
) -> Verdict:
    w = warmup_s(duration_s)
    slope, used = rss_slope(times_s, rss_mb, w)
    expected = acked_per_h * bytes_per_record / 1e6
    threshold = expected + max(LEAK_FLOOR_MB_PER_H, LEAK_SHARE * expected)
    judged = slope is not None and bool(times_s) and max(times_s) - w >= MIN_JUDGED_S
    return Verdict(
        slope, expected, threshold, judged and slope is not None and slope > threshold, judged, w, used
    )
