"""Property tests over random batches (hypothesis): the kernel agrees with the reference on
every record, and both obey the spec's invariants (ts order, batch boundaries, duplicates).

The strategies (tests/kernel/strategies.py) make the edges likely: timestamps on a grid of
offsets +-1 ms with windows of a few ms, ids from a small pool, identifiers in several
spellings.  Example counts keep the whole tests/kernel run well under a minute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kernel.engines import Engine, KernelEngine, ReferenceEngine
from tests.kernel.reference import Out
from tests.kernel.strategies import history_st, settings_st
from unmo.apps import AppSettings

Make = Callable[..., Engine]
Batches = list[tuple[int, list[dict[str, Any]]]]


def examples(n: int) -> settings:
    # the ``make`` fixture is a factory: reusing it across examples is what we want
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run(engine: Engine, history: Batches) -> list[list[Out]]:
    return [engine.feed(records, received) for received, records in history]


def explain(history: Batches, b: int, i: int) -> str:
    lines = [f"batch {b} record {i} differs; history:"]
    for n, (received, records) in enumerate(history):
        lines.append(f"  batch {n} received {received}")
        lines.extend(f"    [{k}] {r}" for k, r in enumerate(records))
    return "\n".join(lines)


@settings(max_examples=300, deadline=None)
@given(app=settings_st, history=history_st())
def test_kernel_agrees_with_the_reference(app: AppSettings, history: Batches) -> None:
    kernel = run(KernelEngine(app), history)
    reference = run(ReferenceEngine(app), history)
    for b, (k_outs, r_outs) in enumerate(zip(kernel, reference, strict=True)):
        for i, (k, r) in enumerate(zip(k_outs, r_outs, strict=True)):
            assert k == r, explain(history, b, i)


@examples(60)
@given(app=settings_st, history=history_st(max_batches=4))
def test_a_batch_sent_again_is_all_duplicates_and_changes_nothing(
        make: Make, app: AppSettings, history: Batches) -> None:
    """Spec "Duplicates": acknowledged, not stored again, no state changed."""
    *before, (received, records), (_, probe) = history
    once, twice = make(app), make(app)
    run(once, [*before, (received, records)])
    run(twice, [*before, (received, records)])
    again = twice.feed(records, received)  # at once: every id was accepted within the window
    assert all(o.dup for o in again)
    assert once.feed(probe, received + 2) == twice.feed(probe, received + 2)


@examples(60)
@given(app=settings_st, history=history_st(max_batches=4), data=st.data())
def test_records_apply_in_ts_order_whatever_their_order_in_the_batch(
        make: Make, app: AppSettings, history: Batches, data: st.DataObject) -> None:
    """Spec "Order": inside one batch, records are applied in ts order (stable for equal ts)."""
    *before, (received, batch) = history
    a, b = make(app), make(app)
    run(a, before)
    run(b, before)
    # any permutation that keeps records of equal ts in their order
    keys = data.draw(st.lists(st.integers(0, 3), min_size=len(batch), max_size=len(batch)))
    shuffled = sorted(range(len(batch)), key=lambda i: (keys[i], i))
    by_ts: dict[int, list[int]] = {}
    for i in range(len(batch)):
        by_ts.setdefault(batch[i]["ts"], []).append(i)
    slots = {ts: iter(rows) for ts, rows in by_ts.items()}
    order = [next(slots[batch[i]["ts"]]) for i in shuffled]
    outs_a = a.feed(batch, received)
    outs_b = b.feed([batch[i] for i in order], received)
    assert [outs_b[order.index(i)] for i in range(len(batch))] == outs_a


@examples(60)
@given(app=settings_st, history=history_st(max_batches=4), cut=st.integers(0, 12))
def test_batch_boundaries_do_not_matter_when_arrival_follows_ts(
        make: Make, app: AppSettings, history: Batches, cut: int) -> None:
    """Across batches records apply in arrival order, inside one in ts order: a ts-sorted batch
    split in two and sent as two batches is decided the same."""
    *before, (received, batch) = history
    a, b = make(app), make(app)
    run(a, before)
    run(b, before)
    batch = sorted(batch, key=lambda r: r["ts"])
    whole = a.feed(batch, received)
    parts = b.feed(batch[:cut], received) if cut else []
    parts += b.feed(batch[cut:], received) if cut < len(batch) else []
    assert parts == whole
