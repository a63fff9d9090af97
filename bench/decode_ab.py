"""Before/after of decode_body per record on the load driver's bodies, interleaved in one process.

    .venv/bin/python -m bench.decode_ab [rounds]

Each round times 5 passes over 4 rendered 1000-record templates of the load
driver with each of: the msgspec path (decode_body_msgspec: what decode_body
did before the native decoder), decode_body (native decoder first), and the
native decoder alone (decode_body without making the Batch).  Prints the median (and min, max) microseconds per record.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from unmo._native import decode_json_columns
from unmo.config import Limits
from unmo.ingest.batch import _HELPERS, MIN_TS_MS, decode_body, decode_body_msgspec
from unmo.load.workload import Workload, build_templates, id_prefix

PASSES = 5


def main(rounds: int = 15) -> None:
    limits = Limits()
    templates = build_templates(Workload(batch_size=1000, devices=100000, seed=1, templates=4), id_prefix("abcd", 1),
                                seed=1)
    bodies = [t.render(i + 1) for i, t in enumerate(templates)]
    now = int(time.time() * 1000)

    def native(body: bytes) -> Any:
        return decode_json_columns(body, now, MIN_TS_MS, now + limits.max_future_ms, limits.max_records,
                                   limits.max_record_bytes, limits.max_properties_bytes, _HELPERS)

    def before(body: bytes) -> Any:
        return decode_body_msgspec(body, msgpack=False, received_ms=now, limits=limits)

    def after(body: bytes) -> Any:
        return decode_body(body, msgpack=False, received_ms=now, limits=limits)

    if any(native(b) is None for b in bodies):
        raise SystemExit("the native decoder refused a load driver body")
    fns: dict[str, Callable[[bytes], Any]] = {
        "before: decode_body_msgspec": before, "after: decode_body": after, "native decoder alone": native,
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    records = PASSES * sum(1000 for _ in bodies)
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(PASSES):
                for b in bodies:
                    fn(b)
            times[name].append((time.perf_counter() - t0) / records * 1e6)
    base = statistics.median(times["before: decode_body_msgspec"])
    for name, v in times.items():
        med = statistics.median(v)
        print(f"{name:28s} median {med:.3f} us/record  (min {min(v):.3f}, max {max(v):.3f}; "
              f"{med / base:.2f} of before; {rounds} rounds)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
