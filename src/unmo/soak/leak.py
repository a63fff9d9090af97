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
  server's own kernel keeps per record of this traffic mix, measured after the
  run in a process of its own: it decodes and decides as many records of the mix
  as the run acknowledged (between 20 000 and 100 000)
  with ``unmo.kernel.AppKernel`` (the code the server runs), drops everything
  else, returns free heap to the system (glibc ``malloc_trim``) and divides the
  growth of its resident set by the records;

and calls it a leak when the slope exceeds the expected growth by more than
``max(20 MB/h, 25 % of the expected growth)``.  The 20 MB/h floor is what a 24-hour
run can tell from noise: hash tables double (a step of up to 2x their size), and
glibc returns freed memory to the kernel lazily.  For the same reason a run
needs at least ``MIN_JUDGED_S`` (5 minutes) of samples after the warm-up before
it is judged at all: a shorter run reports ``leak: false`` with
``leak_judged: false``, and its slope for information only.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
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
CALIBRATION_RECORDS = 100_000
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


def state_bytes_per_record(
    profiles: list[Profile], seed: int = 0, records: int = CALIBRATION_RECORDS
) -> float:
    """Bytes of resident memory the server's kernel keeps per record of this mix (module docstring)."""
    names = [p.name for p in profiles]
    profile_json = [msgspec.json.encode(p).decode() for p in profiles]
    proc = subprocess.run(
        [sys.executable, "-m", "unmo.soak.leak", str(seed), str(records), json.dumps(profile_json)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"measuring kernel memory for {names} failed: {proc.stderr.strip()[-300:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def _resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _measure(seed: int, records: int, profile_json: list[str]) -> float:
    """Run in a process of its own: resident growth per record decided by the kernel."""
    from unmo.sim.profile import parse_profile
    from unmo.soak.traffic import LiveMix

    profiles = [parse_profile(text) for text in profile_json]
    mix = LiveMix(profiles, run="calibration", seed=seed, batch_size=5_000)
    now = int(time.time() * 1000)
    mix.produce(now, records)
    batches = mix.due(now)
    n = sum(len(b.records) for b in batches)
    bodies = [msgspec.json.encode({"batch": b.records}) for b in batches]
    del mix, batches
    kernel = AppKernel(AppSettings())
    # warm the code paths and the first table sizes on a batch that is then dropped
    warm = AppKernel(AppSettings())
    warm.decide(decode_body(bodies[0], msgpack=False, received_ms=now, limits=Limits()).batch, now)
    del warm
    _trim()
    before = _resident_bytes()
    for body in bodies:  # the bodies stay alive until measured: only the kernel's state is new
        kernel.decide(decode_body(body, msgpack=False, received_ms=now, limits=Limits()).batch, now)
    _trim()
    after = _resident_bytes()
    return max(0, after - before) / max(1, n)


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


if __name__ == "__main__":
    print(_measure(int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])))
