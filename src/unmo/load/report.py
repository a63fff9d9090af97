"""How a load run shows itself: a live progress display on a terminal, then a table (rich) or JSON."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from unmo.load.driver import LoadResult, poll


def progress(duration_s: float, processes: int, title: str) -> Callable[[Sequence[float]], Callable[[], None]]:
    """An ``on_start`` callback for run_load: a rich progress bar on stderr fed from the shared counters."""

    def start(counters: Sequence[float]) -> Callable[[], None]:
        console = Console(file=sys.stderr)
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
                       TextColumn("{task.fields[stats]}"), console=console, transient=True)
        task = bar.add_task(title, total=duration_s, stats="")
        done = threading.Event()
        t0 = time.monotonic()

        def loop() -> None:
            # events/s over the last 2 s: answers arrive in bursts of a batch, a 0.25 s window would flicker
            history: deque[tuple[float, float]] = deque([(t0, 0.0)], maxlen=8)
            while not done.wait(0.25):
                now = time.monotonic()
                answered, records, failures, in_flight = poll(counters, processes)
                then, before = history[0]
                rate = (records - before) / max(now - then, 1e-9)
                history.append((now, records))
                bar.update(task, completed=min(now - t0, duration_s),
                           stats=f"{rate:>12,.0f} events/s  {answered:,.0f} requests  {failures:,.0f} failed"
                                 + (f"  {in_flight:,.0f} in flight" if in_flight else ""))

        bar.start()
        thread = threading.Thread(target=loop, name="unmo-load-progress", daemon=True)
        thread.start()

        def stop() -> None:
            done.set()
            thread.join()
            bar.stop()

        return stop

    return start


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f} ms"


def table(result: LoadResult, title: str, extra: dict[str, Any] | None = None) -> Table:
    """The readable summary of a run."""
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("events/s", f"{result.events_per_s:,.0f}")
    t.add_row("acknowledged records", f"{result.acked_records:,}")
    t.add_row("requests", f"{result.requests:,}")
    t.add_row("statuses", ", ".join(f"{k}: {v:,}" for k, v in result.statuses.items()) or "-")
    t.add_row("latency P50 / P95 / P99", f"{_ms(result.p50_ms)} / {_ms(result.p95_ms)} / {_ms(result.p99_ms)}")
    t.add_row("elapsed", f"{result.elapsed_s:,.2f} s")
    if result.duplicates or result.rejected:
        t.add_row("duplicates / rejected records", f"{result.duplicates:,} / {result.rejected:,}")
    if result.unanswered:
        t.add_row("requests without an answer", f"{result.unanswered:,}")
    verified = {None: "not checked (no --database-url)", True: "yes: the database holds exactly the acked records",
                False: f"NO: {result.verify_problem}"}[result.verified]
    t.add_row("verified", verified)
    for k, v in (extra or {}).items():
        t.add_row(k, str(v))
    return t
