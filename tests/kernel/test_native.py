"""The native kernel's own contract, on columns built directly (as bench/test_kernel.py does):
the order a batch applies in, explicit orders, bad columns, rebuilds and memory accounting."""

from __future__ import annotations

import os

import numpy as np
import pytest

from unmo._native import Kernel
from unmo.kernel import DEDUP_WINDOW_MS, GRACE_MS
from unmo.model import Kind, Outcome

DAY = 86_400_000
T0 = 1_790_000_000_000


def kernel() -> Kernel:
    return Kernel(7 * DAY, DAY, DAY, 90 * DAY, 10_000, DEDUP_WINDOW_MS, GRACE_MS)


def columns(kind: np.ndarray, ts: np.ndarray, id_h: np.ndarray, dev: np.ndarray | None = None,
            received: int = T0 + DAY) -> list[object]:
    n = len(kind)
    h1 = (id_h.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    h2 = (id_h.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)) | np.uint64(1)
    return [
        np.ascontiguousarray(kind, dtype=np.uint8), np.ascontiguousarray(ts, dtype=np.int64), h1, h2,
        np.zeros((n, 5), dtype=np.uint64) if dev is None else dev, np.zeros(n, dtype=np.uint64),
        np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=np.uint64),
        np.where(kind <= Kind.IMPRESSION, 0, -1).astype(np.int32), np.zeros(n, dtype=np.uint8),
        [f"r{i}" for i in id_h.tolist()], np.full(n, received, dtype=np.int64),
    ]


@pytest.mark.parametrize("spread", [0, 1_000, 2**20, 2**40, 2**60])
def test_a_batch_applies_in_stable_ts_order(spread: int) -> None:
    """Copies of one id: the first applied is accepted, the rest are duplicates.  Over random
    timestamps (the radix order's digits, 1 to 6 passes, ties) that is numpy's stable order."""
    rng = np.random.default_rng(int(os.environ.get("UNMO_TEST_SEED", "0")) + spread % 9973)
    n = 50_000
    ts = T0 + rng.integers(0, spread + 1, size=n, dtype=np.int64) if spread else np.full(n, T0)
    id_h = rng.integers(1, n // 8, size=n)          # about 8 copies of each id
    dup, *_ = kernel().process(*columns(np.full(n, Kind.EVENT, dtype=np.uint8), ts, id_h))
    order = np.argsort(ts, kind="stable")
    _, first = np.unique(id_h[order], return_index=True)
    expected = np.ones(n, dtype=np.uint8)
    expected[order[first]] = 0
    assert np.array_equal(dup, expected)


def test_an_explicit_order_is_followed_and_checked() -> None:
    n = 1000
    id_h = np.arange(n) % 10
    cols = columns(np.full(n, Kind.EVENT, dtype=np.uint8), np.full(n, T0), id_h)
    backwards = np.arange(n - 1, -1, -1, dtype=np.int64)
    dup, *_ = kernel().process(*cols, order=backwards)
    assert np.flatnonzero(dup == 0).tolist() == list(range(n - 10, n))   # the last copies came first
    with pytest.raises(ValueError, match=r"order\[3\] = 1000 is not a row"):
        kernel().process(*cols, order=np.array([0, 1, 2, 1000] + [0] * (n - 4), dtype=np.int64))


def test_columns_of_different_lengths_are_refused() -> None:
    cols = columns(np.full(10, Kind.EVENT, dtype=np.uint8), np.full(10, T0), np.arange(10))
    cols[1] = np.full(9, T0, dtype=np.int64)
    with pytest.raises(ValueError, match="columns differ in length"):
        kernel().process(*cols)


def test_touch_ids_are_any_unicode_and_come_back_intact() -> None:
    """Touch ids live in a byte arena as UTF-8 (ASCII ones copied straight from the str)."""
    ids = ["c-ascii", "c-ünïcødé", "c-😀" * 32, "c-" + "x" * 126]
    k = kernel()
    n = len(ids)
    dev = np.zeros((n + 1, 5), dtype=np.uint64)
    dev[:, 0] = 77
    cols = columns(np.array([Kind.CLICK] * n + [Kind.INSTALL], dtype=np.uint8),
                   np.array([T0 + i for i in range(n)] + [T0 + DAY], dtype=np.int64), np.arange(n + 1), dev)
    cols[8] = np.array([0] * n + [-1], dtype=np.int32)
    cols[10] = [*ids, "i-1"]
    _dup, outcome, _camp, inst, _match, _rejected = k.process(*cols)
    assert outcome[-1] == Outcome.ATTRIBUTED
    assert k.install_info(int(inst[-1]))[7] == ids[-1]          # the latest click
    # rejected touches are listed with their ids too: all four are injected (CTIT < 1 day)
    k2 = Kernel(7 * DAY, DAY, DAY, 90 * DAY, 2 * DAY, DEDUP_WINDOW_MS, GRACE_MS)
    *_, rejected = k2.process(*cols)
    assert [touch_id for _row, touch_id, *_rest in rejected] == ids[::-1]


def test_rebuilds_drop_what_fell_out_of_the_windows_and_memory_follows() -> None:
    k = kernel()
    k.rebuild_min = 1000
    day = 5000
    dev = np.zeros((day, 5), dtype=np.uint64)
    dev[:, 1] = np.arange(day, dtype=np.uint64) % 997 + 1
    for d in range(30):                       # a day of clicks each, received that day
        ts = T0 + d * DAY + np.arange(day, dtype=np.int64) * 1000
        cols = columns(np.full(day, Kind.CLICK, dtype=np.uint8), ts, np.arange(day) + d * day, dev,
                       received=T0 + d * DAY + DAY)
        k.process(*cols)
        k.evict(k.last_received)
    # Kept: click window 7 d + grace 2 d = the last 9 days; a rebuild runs once the touches
    # held doubled since the last one, so at most twice that plus a batch, never all 30 days.
    assert 9 * day <= k.touches <= 2 * 9 * day + day
    assert k.touch_links == k.touches
    # ids: those of the dedup window (7 d) and a batch; a rebuild sizes the table to at least
    # twice that (a power of two) and runs again at 70 % full: at most 2.8 times as many
    assert 7 * day <= k.record_ids <= 2.8 * 8 * day
    assert 0 < k.memory_bytes() < 64 * 1024 * 1024
    assert k.touch_rebuilds > 0


def test_a_growing_app_is_not_rebuilt_until_a_quarter_of_it_fell_out() -> None:
    """Touches doubling with nothing out of the window: each look counts the ts column and rebuilds
    nothing (a rebuild would rewrite every column and index as it was, on the serving thread).  Once
    a quarter or more fell out, the next look rebuilds and drops it."""
    k = kernel()
    k.rebuild_min = 1000
    batch = 4000
    dev = np.zeros((batch, 5), dtype=np.uint64)
    dev[:, 1] = np.arange(batch, dtype=np.uint64) + 1
    received = T0 + DAY

    def clicks(b: int, ts0: int) -> None:
        ts = ts0 + np.arange(batch, dtype=np.int64)
        k.process(*columns(np.full(batch, Kind.CLICK, dtype=np.uint8), ts, np.arange(batch) + b * batch, dev,
                           received=received))
        k.evict(k.last_received)

    for b in range(16):                        # 64,000 clicks of one day: every look finds them all live
        clicks(b, T0 + b * batch)
    assert k.touches == 16 * batch and k.touch_rebuilds == 0
    # ten days later (click window 7 d + grace 2 d): the old ones fall out, and a look due by then rebuilds
    received = T0 + 11 * DAY
    b = 16
    while k.touch_rebuilds == 0:
        clicks(b, T0 + 10 * DAY + b * batch)
        b += 1
        assert b < 64
    assert k.touch_rebuilds == 1
    assert k.touches == (b - 16) * batch       # only the new days' clicks are held


def test_the_dedup_sets_next_table_is_prefaulted_and_taken_by_its_growth() -> None:
    """Past half of its load limit, the dedup set names the table it will grow into; a prefaulted mapping of
    that size, adopted, is what the growth takes (no longer held as a spare), and the set stays right."""
    from unmo._native import prefault_table, spare_tables
    k = kernel()
    assert k.seen_growth_bytes() == 0  # empty
    step = 20_000
    n = 0
    while not k.seen_growth_bytes():
        ids = np.arange(n, n + step)
        dup, *_ = k.process(*columns(np.full(step, Kind.EVENT, dtype=np.uint8), np.full(step, T0), ids))
        assert not dup.any()
        n += step
        assert n < 2_000_000
    want = k.seen_growth_bytes()
    assert want >= 2 << 20 and want % 24 == 0
    before = spare_tables()
    table = prefault_table(want)
    assert table is not None and table.nbytes == want
    assert table.adopt() is True
    with pytest.raises(ValueError, match="adopted already"):
        table.adopt()
    held = spare_tables()
    assert (-(-want // (2 << 20)) * (2 << 20), True) in held and len(held) <= max(len(before) + 1, 4)
    assert k.seen_growth_bytes() == 0  # held already: not asked for twice
    # grow: the batches that fill the set past its limit rebuild it into the adopted mapping
    while (-(-want // (2 << 20)) * (2 << 20), True) in spare_tables():
        ids = np.arange(n, n + step)
        dup, *_ = k.process(*columns(np.full(step, Kind.EVENT, dtype=np.uint8), np.full(step, T0), ids))
        assert not dup.any()
        n += step
        assert n < 4_000_000
    # every id is still known after the growth
    again = np.arange(0, n, 997)
    dup, *_ = k.process(*columns(np.full(len(again), Kind.EVENT, dtype=np.uint8), np.full(len(again), T0), again))
    assert dup.all()
    with pytest.raises(ValueError, match="under 2 MiB"):
        prefault_table(4096)


def test_a_prefaulted_table_displaces_smaller_released_ones_when_the_spares_are_full() -> None:
    """The spares hold at most 4 mappings: a prefaulted one makes room by releasing the smallest others
    (a growth that is due is worth more), so that it is never dropped and asked for again at every flush."""
    from unmo._native import prefault_table, spare_tables
    mib = 1 << 20
    sizes = [22 * mib, 24 * mib, 26 * mib, 28 * mib, 30 * mib]  # sizes no other test's tables have
    for size in sizes:
        table = prefault_table(size)
        assert table is not None and table.adopt() is True
        assert (size, True) in spare_tables()
    held = spare_tables()
    assert len(held) == 4
    assert (sizes[-1], True) in held and (sizes[0], True) not in held  # the smallest went first
