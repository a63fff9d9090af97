"""The load driver: closed loop at a concurrency or open loop at a rate, in one or several processes.

Closed loop: ``concurrency`` connections each send a request, wait for its
answer and send the next; latency is send to answer.

Open loop: requests are scheduled on a timer at ``rate / batch_size`` per
second whatever the answers do, and latency is measured from the *scheduled*
send time, so a server that stalls is charged for the requests it kept
waiting (Gil Tene's "coordinated omission"; wrk2 measures the same way).

Several processes (``processes``) split the concurrency or the rate; each has
its own record-id prefix, so the verification can tell their requests apart.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from unmo.load.client import Connection, HttpStatusError, Target
from unmo.load.workload import Template, Workload, build_templates, id_prefix, request_key

BACKOFF_S = 0.05          # pause of a closed-loop connection after a 429/503 (a well-behaved client backs off)
MAX_OPEN_CONNECTIONS = 512  # per process, open loop: beyond it requests wait (and their wait counts)
COUNTERS = 4              # per process: requests answered, records acked, failures, requests in flight


class Ack(msgspec.Struct):
    """The part of a POST /v1/batch answer the driver reads (installs are skipped unread)."""

    accepted: int = 0
    duplicates: int = 0
    errors: list[msgspec.Raw] = []


_ack = msgspec.json.Decoder(Ack)


@dataclass
class LoadConfig:
    """One load run (the flags of ``unmo load``)."""

    url: str
    keys: list[str]
    duration_s: float = 10.0
    concurrency: int | None = 8
    rate: float | None = None          # events/s (open loop) instead of a concurrency
    batch_size: int = 1000
    devices: int = 100_000
    processes: int = 1
    seed: int = 0
    run_id: str = "00000000"
    timeout_s: float = 30.0
    templates: int = 16
    timeline: bool = False             # keep each request's send time, latency and status (--timeline)

    def share(self, process: int) -> tuple[int | None, float | None]:
        """This process's part of the concurrency or the rate."""
        if self.rate is not None:
            return None, self.rate / self.processes
        assert self.concurrency is not None
        base, extra = divmod(self.concurrency, self.processes)
        return base + (1 if process < extra else 0), None


@dataclass
class ProcessResult:
    """What one driver process saw."""

    latencies_ms: np.ndarray
    statuses: dict[str, int]
    acked: dict[str, tuple[int, int]]  # request key -> (app index, records accepted)
    refused: list[str]                 # answered, but not 200: must not be stored
    unanswered: list[str]              # no answer (timeout, connection lost): may or may not be stored
    duplicates: int
    rejected: int                      # records the server reported as bad
    started: float                     # time.monotonic(), the same clock in every process on Linux
    finished: float
    cpu_s: float = 0.0                 # CPU the process spent sending (bodies are built before the clock)
    timeline: list[tuple[float, float, str]] | None = None  # (sent, monotonic; latency ms; status), if asked
    process: int = 0


@dataclass
class LoadResult:
    """The merged result of a run."""

    events_per_s: float
    requests: int
    statuses: dict[str, int]
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    acked_records: int
    verified: bool | None = None
    elapsed_s: float = 0.0
    duplicates: int = 0
    rejected: int = 0
    unanswered: int = 0
    driver_cpu_s: float = 0.0
    verify_problem: str | None = None
    acked: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    refused: list[str] = field(default_factory=list, repr=False)
    unanswered_keys: list[str] = field(default_factory=list, repr=False)
    # with LoadConfig.timeline: (seconds from the run's start to the send, latency ms, status, driver process),
    # in the order sent
    timeline: list[tuple[float, float, str, int]] = field(default_factory=list, repr=False)

    def write_timeline(self, path: str) -> None:
        """``--timeline FILE``: one CSV line a request, to see when a run's slow requests were sent."""
        with open(path, "w", encoding="utf-8") as f:
            f.write("sent_s,latency_ms,status,process\n")
            for sent, latency, status, process in self.timeline:
                f.write(f"{sent:.4f},{latency:.2f},{status},{process}\n")

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``unmo load --json`` (spec: tools.md "unmo load")."""
        return {
            "events_per_s": round(self.events_per_s, 1), "requests": self.requests, "statuses": self.statuses,
            "p50_ms": _round(self.p50_ms), "p95_ms": _round(self.p95_ms), "p99_ms": _round(self.p99_ms),
            "acked_records": self.acked_records, "verified": self.verified,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


class _Run:
    """The requests of one process."""

    def __init__(self, cfg: LoadConfig, process: int, counters: Any, templates: list[Template]) -> None:
        self.cfg = cfg
        self.process = process
        self.prefix = id_prefix(cfg.run_id, process)
        self.target = Target(cfg.url)
        self.templates = templates
        self.heads = [[self.target.head(k, len(t.body)) for t in templates] for k in cfg.keys]
        self.counters = counters
        self.base = process * COUNTERS
        self.next_no = 0
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.acked: dict[str, tuple[int, int]] = {}
        self.refused: list[str] = []
        self.unanswered: list[str] = []
        self.duplicates = 0
        self.rejected = 0
        self.last_answer = 0.0
        self.timeline: list[tuple[float, float, str]] | None = [] if cfg.timeline else None
        self.clock_offset = time.perf_counter() - time.monotonic()  # requests are timed with perf_counter

    def _take(self) -> tuple[int, int, bytes, bytes]:
        no = self.next_no
        self.next_no += 1
        t = no % len(self.templates)
        app = no % len(self.cfg.keys)
        return no, app, self.heads[app][t], self.templates[t].render(no)

    def _count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def _answered(self, no: int, app: int, status: int, body: bytes, latency_s: float) -> str:
        """Count an answer; returns the status counted."""
        key = request_key(self.prefix, no)
        self.latencies.append(latency_s * 1000.0)
        self.last_answer = time.monotonic()
        c, b = self.counters, self.base
        c[b] += 1
        if status == 200:
            try:
                ack = _ack.decode(body)
            except msgspec.DecodeError:  # a 200 that is not the API's answer: nothing known of the request
                self._count("bad_answer")
                self.unanswered.append(key)
                c[b + 2] += 1
                return "bad_answer"
            self._count("200")
            self.acked[key] = (app, ack.accepted)
            self.duplicates += ack.duplicates
            self.rejected += len(ack.errors)
            c[b + 1] += ack.accepted
            return "200"
        self._count(str(status))
        self.refused.append(key)
        c[b + 2] += 1
        return str(status)

    def _lost(self, no: int, what: str) -> str:
        self._count(what)
        self.unanswered.append(request_key(self.prefix, no))
        self.counters[self.base + 2] += 1
        return what

    def _mark(self, t0: float, status: str, latency_s: float | None = None) -> None:
        if self.timeline is not None:
            latency = time.perf_counter() - t0 if latency_s is None else latency_s
            self.timeline.append((t0 - self.clock_offset, latency * 1000.0, status))

    async def _send(self, conn: Connection | None, no: int, app: int, head: bytes, body: bytes,
                    t0: float) -> tuple[Connection | None, int]:
        """One request on ``conn`` (opened when None); the connection to keep and the status (0: none)."""
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                if conn is None or conn.closed:
                    conn = await Connection.open(self.target)
                status, answer = await conn.request(head, body)
        except TimeoutError:
            if conn is not None:
                conn.abort()
            self._mark(t0, self._lost(no, "timeout"))
            return None, 0
        except (OSError, HttpStatusError):  # ConnectionError is an OSError
            if conn is not None:
                conn.abort()
            self._mark(t0, self._lost(no, "error"))
            return None, 0
        latency = time.perf_counter() - t0
        self._mark(t0, self._answered(no, app, status, answer, latency), latency)
        return conn, status

    async def closed_loop(self, concurrency: int, end: float) -> None:
        async def worker() -> None:
            conn: Connection | None = None
            while time.monotonic() < end:
                no, app, head, body = self._take()
                conn, status = await self._send(conn, no, app, head, body, time.perf_counter())
                if status in (0, 429, 503):
                    await asyncio.sleep(BACKOFF_S)
            if conn is not None:
                conn.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def open_loop(self, rate: float, start: float, end: float) -> None:
        interval = self.cfg.batch_size / rate
        idle: list[Connection] = []
        free = asyncio.Semaphore(MAX_OPEN_CONNECTIONS)
        tasks: set[asyncio.Task[None]] = set()
        # perf_counter and monotonic are both CLOCK_MONOTONIC on Linux; keep one per use.
        offset = time.perf_counter() - time.monotonic()

        async def one(scheduled: float) -> None:
            async with free:
                no, app, head, body = self._take()
                conn = idle.pop() if idle else None
                self.counters[self.base + 3] += 1
                conn, _status = await self._send(conn, no, app, head, body, scheduled + offset)
                self.counters[self.base + 3] -= 1
                if conn is not None and not conn.closed:
                    idle.append(conn)

        k = 0
        while True:
            scheduled = start + k * interval
            if scheduled >= end:
                break
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        if tasks:
            await asyncio.wait(tasks, timeout=self.cfg.timeout_s + 5.0)
        for conn in idle:
            conn.close()

    def result(self, started: float, cpu_s: float) -> ProcessResult:
        return ProcessResult(
            latencies_ms=np.asarray(self.latencies, dtype=np.float64), statuses=self.statuses, acked=self.acked,
            refused=self.refused, unanswered=self.unanswered, duplicates=self.duplicates, rejected=self.rejected,
            started=started, finished=max(self.last_answer, started), cpu_s=cpu_s, timeline=self.timeline,
            process=self.process,
        )


def _templates(cfg: LoadConfig, process: int) -> list[Template]:
    workload = Workload(batch_size=cfg.batch_size, devices=cfg.devices, seed=cfg.seed, templates=cfg.templates)
    return build_templates(workload, id_prefix(cfg.run_id, process), seed=cfg.seed * 1000 + process)


async def _run_process(cfg: LoadConfig, process: int, counters: Any, templates: list[Template],
                       start: float) -> ProcessResult:
    run = _Run(cfg, process, counters, templates)
    delay = start - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    end = start + cfg.duration_s
    cpu0 = time.process_time()
    concurrency, rate = cfg.share(process)
    if rate is not None:
        await run.open_loop(rate, start, end)
    else:
        assert concurrency is not None
        await run.closed_loop(concurrency, end)
    return run.result(start, time.process_time() - cpu0)


def _child(cfg: LoadConfig, process: int, counters: Any, barrier: Any, out: Any) -> None:
    import uvloop

    templates = _templates(cfg, process)
    barrier.wait()  # every process has built its bodies: start together
    start = time.monotonic() + 0.05
    try:
        out.put(uvloop.run(_run_process(cfg, process, counters, templates, start)))
    except BaseException as exc:  # report, or the parent would wait for a result forever
        out.put(exc)
        raise


def run_load(cfg: LoadConfig, on_start: Callable[[Sequence[float]], Any] | None = None) -> LoadResult:
    """Run the load described by ``cfg``; ``on_start(counters)`` is called when requests start flowing.

    ``counters`` holds ``COUNTERS`` numbers per process (answered requests,
    acknowledged records, failures, requests in flight) for a progress display.
    The return value of ``on_start`` is called (no arguments) at the end, when callable.
    """
    results: list[ProcessResult] = []
    stop: Any = None
    if cfg.processes == 1:
        import uvloop

        counters: Any = [0.0] * COUNTERS
        templates = _templates(cfg, 0)
        if on_start is not None:
            stop = on_start(counters)
        try:
            results.append(uvloop.run(_run_process(cfg, 0, counters, templates, time.monotonic() + 0.01)))
        finally:
            if callable(stop):
                stop()
    else:
        ctx = mp.get_context("spawn")
        counters = ctx.Array("d", COUNTERS * cfg.processes, lock=False)
        barrier = ctx.Barrier(cfg.processes + 1)
        out = ctx.Queue()
        procs = [ctx.Process(target=_child, args=(cfg, p, counters, barrier, out), daemon=True)
                 for p in range(cfg.processes)]
        for p in procs:
            p.start()
        try:
            barrier.wait(timeout=300)
            if on_start is not None:
                stop = on_start(counters)
            for _ in procs:
                got = out.get(timeout=cfg.duration_s + cfg.timeout_s + 120)
                if isinstance(got, BaseException):
                    raise RuntimeError(f"load: a driver process failed: {got!r}")
                results.append(got)
        finally:
            if callable(stop):
                stop()
            for p in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.terminate()
    return merge(results, cfg.duration_s if cfg.rate is not None else 0.0)


def merge(results: list[ProcessResult], scheduled_s: float = 0.0) -> LoadResult:
    """One result from the processes' results.

    events/s is acknowledged records over the time from the first send to the last
    answer; in an open loop at least the scheduled duration (a slow rate sends its
    last request well before the end).
    """
    lat = np.concatenate([r.latencies_ms for r in results]) if results else np.empty(0)
    statuses: dict[str, int] = {}
    acked: dict[str, tuple[int, int]] = {}
    refused: list[str] = []
    unanswered: list[str] = []
    for r in results:
        for k, v in r.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
        acked.update(r.acked)
        refused.extend(r.refused)
        unanswered.extend(r.unanswered)
    acked_records = sum(n for _app, n in acked.values())
    started = min((r.started for r in results), default=0.0)
    finished = max((r.finished for r in results), default=0.0)
    elapsed = max(finished - started, scheduled_s, 1e-9)
    p50 = p95 = p99 = None
    if lat.size:
        p50, p95, p99 = (float(x) for x in np.percentile(lat, [50, 95, 99]))
    timeline = sorted((sent - started, latency, status, r.process) for r in results
                      for sent, latency, status in (r.timeline or ()))
    return LoadResult(
        events_per_s=acked_records / elapsed if acked_records else 0.0,
        requests=sum(statuses.values()), statuses=dict(sorted(statuses.items())), p50_ms=p50, p95_ms=p95,
        p99_ms=p99, acked_records=acked_records, elapsed_s=elapsed,
        duplicates=sum(r.duplicates for r in results), rejected=sum(r.rejected for r in results),
        unanswered=len(unanswered), driver_cpu_s=sum(r.cpu_s for r in results), acked=acked, refused=refused,
        unanswered_keys=unanswered, timeline=timeline,
    )


def poll(counters: Sequence[float], processes: int) -> tuple[float, float, float, float]:
    """Totals of the shared counters: (answered requests, acked records, failures, in flight)."""
    arr = [0.0] * COUNTERS
    for p in range(processes):
        for i in range(COUNTERS):
            arr[i] += counters[p * COUNTERS + i]
    return arr[0], arr[1], arr[2], arr[3]

