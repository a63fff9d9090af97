"""Requests decided together (the writer's group commit) stay batches of their own.

The spec orders records across batches by arrival and inside a batch by ts.  The writer
hands the kernel the requests of one flush as one Batch; ``unmo.kernel.batch_order`` gives
the order that keeps each request a batch: the answers must be those of the requests fed
one by one, which the reference does.
"""

from __future__ import annotations

import msgspec
import numpy as np

from tests.kernel.engines import OUTCOME_NAMES, ReferenceEngine
from tests.kernel.records import HOUR, IDFA_1, T0, click, event, install
from unmo.apps import AppSettings
from unmo.config import Limits
from unmo.ingest.batch import Batch, decode_body
from unmo.kernel import AppKernel, batch_order
from unmo.model import Outcome


def decoded(records: list[dict[str, object]], received: int) -> Batch:
    d = decode_body(msgspec.json.encode({"batch": records}), msgpack=False, received_ms=received, limits=Limits())
    assert not d.errors
    return d.batch


def test_group_commit_keeps_each_request_a_batch() -> None:
    first = [install("i1", T0 + HOUR, idfa=IDFA_1), event("e1", T0 + 2 * HOUR, idfa=IDFA_1)]
    # arrives second, though its click is older than the install: it must not win it
    second = [click("c1", T0, idfa=IDFA_1), install("i2", T0 + 3 * HOUR, idfa=IDFA_1)]
    received = T0 + 4 * HOUR
    merged = decoded(first, received)
    merged.extend(decoded(second, received))
    order = batch_order(np.asarray(merged.ts), [len(first), len(second)])
    d = AppKernel(AppSettings()).decide(merged, received, order=order)
    got = [OUTCOME_NAMES[Outcome(int(o))] for o in d.outcome]
    ref = ReferenceEngine(AppSettings())
    expected = [o.outcome for o in ref.feed(first, received) + ref.feed(second, received)]
    assert got == expected == ["organic", "organic", "ok", "reinstall"]
    # in plain ts order across the two requests the click would have won the install
    d = AppKernel(AppSettings()).decide(merged, received)
    assert OUTCOME_NAMES[Outcome(int(d.outcome[0]))] == "attributed"


def test_batch_order_is_request_then_stable_ts() -> None:
    ts = np.array([5, 1, 1, 9, 0, 5, 0], dtype=np.int64)
    assert batch_order(ts, [3, 4]).tolist() == [1, 2, 0, 4, 6, 5, 3]
