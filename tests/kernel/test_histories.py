"""Long seeded histories: the kernel agrees with the reference on every record, also while its
rebuilds evict touches and installs that fell out of their windows (Kernel._maybe_evict).

The seed is UNMO_TEST_SEED (printed in the pytest header) plus the test's own offset; a failure
message names it.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from tests.kernel.engines import KernelEngine, ReferenceEngine
from tests.kernel.records import DAY, HOUR, MINUTE, SECOND
from tests.kernel.workload import Mix, history
from unmo.apps import AppSettings
from unmo.kernel import GRACE_MS

Batches = list[tuple[int, list[dict[str, Any]]]]


def seed(offset: int) -> int:
    return int(os.environ.get("UNMO_TEST_SEED", "0")) + offset


def compare(kernel: KernelEngine, reference: ReferenceEngine, batches: Batches, seed_used: int) -> int:
    """Feed both; assert equal answers for every record; the number of records compared."""
    n = 0
    for b, (received, records) in enumerate(batches):
        k_outs = kernel.feed(records, received)
        r_outs = reference.feed(records, received)
        for i, (k, r) in enumerate(zip(k_outs, r_outs, strict=True)):
            assert k == r, f"seed {seed_used}: batch {b} record {i} {records[i]}:\n kernel    {k}\n reference {r}"
        n += len(records)
    return n


@pytest.mark.parametrize("offset", range(3))
def test_long_history_kernel_agrees_with_the_reference(offset: int) -> None:
    s = seed(1000 + offset)
    rng = random.Random(s)
    app = AppSettings(click_window_ms=2 * HOUR, impression_window_ms=HOUR, probabilistic_window_ms=30 * MINUTE,
                      reattribution_window_ms=DAY, min_ctit_ms=10 * SECOND, ip_blocklist=("10.0.0.0/24",))
    batches = history(rng, batches=300, batch_size=40, devices=400, step_ms=MINUTE, lag_ms=40 * MINUTE)
    assert compare(KernelEngine(app), ReferenceEngine(app), batches, s) == 12_000


def test_eviction_keeps_every_result_within_the_windows() -> None:
    """Rebuilds every few hundred records; records arrive up to the grace late (the edge
    included), so every touch an install may need is still held: the answers are the
    reference's exactly.  Installs older than the re-attribution window + grace are dropped
    and come back through the install store on a miss, as the writer looks them up."""
    s = seed(2000)
    rng = random.Random(s)
    grace = 3 * HOUR
    app = AppSettings(click_window_ms=2 * HOUR, impression_window_ms=HOUR, probabilistic_window_ms=HOUR,
                      reattribution_window_ms=4 * HOUR, min_ctit_ms=10 * SECOND)
    kernel = KernelEngine(app, rebuild_min=256)
    kernel.app.native.grace = grace
    batches = history(rng, batches=400, batch_size=30, devices=300, step_ms=5 * MINUTE, lag_ms=grace)
    compare(kernel, ReferenceEngine(app), batches, s)
    native = kernel.app.native
    # ~33 h of records against windows of at most 4 h + 3 h grace: most of it was dropped
    assert native.touches < 0.45 * sum(r["type"] in ("click", "impression") for _, rs in batches for r in rs)
    assert native.installs < 0.45 * sum(r["type"] == "install" for _, rs in batches for r in rs)
    assert kernel.lookups > 0


def test_eviction_at_the_default_rebuild_size() -> None:
    """The same, at the default rebuild threshold (65,536 entries) and the real grace."""
    s = seed(3000)
    rng = random.Random(s)
    app = AppSettings(click_window_ms=6 * HOUR, impression_window_ms=2 * HOUR, probabilistic_window_ms=HOUR,
                      reattribution_window_ms=DAY, min_ctit_ms=10 * SECOND)
    kernel = KernelEngine(app)
    mix = Mix(click=0.3, impression=0.15, install=0.47, open=0.03, event=0.05)
    batches = history(rng, batches=75, batch_size=2000, devices=20_000, step_ms=HOUR, lag_ms=GRACE_MS, mix=mix)
    compare(kernel, ReferenceEngine(app), batches, s)
    native = kernel.app.native
    total_touches = sum(r["type"] in ("click", "impression") for _, rs in batches for r in rs)
    assert native.touches < total_touches        # 75 h of records, 54 h kept: a rebuild ran
    assert native.installs < sum(r["type"] == "install" for _, rs in batches for r in rs)
