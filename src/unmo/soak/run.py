"""The endurance run: a profile mix at a rate (and a spike), sampled, verified.

Open loop: every 100 ms the driver makes the records that the target rate owes
and sends what is due, whatever the server's answers; at most
``max_in_flight`` requests are open and what waits beyond them is the driver's
backlog (reported, so a driver that cannot keep up is seen, not hidden).  Every
``sample`` seconds it writes one line to ``samples.jsonl``: the driver's own
view of the interval (throughput, latency percentiles, answers by kind) and the
server's ``/metrics`` (RSS, CPU, database size, queue, shedding).  At the end it
waits for the open batches (their retries included), checks that every
acknowledged record is stored exactly once, and judges memory (``leak``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from unmo.sim.profile import Profile
from unmo.sim.send import Attempt, Sender
from unmo.soak.leak import CALIBRATION_RECORDS, state_bytes_per_record, verdict
from unmo.soak.scrape import ServerSample, scrape
from unmo.soak.traffic import LiveMix, Outgoing

TICK_S = 0.1
DRAIN_S = 120.0
MAX_BACKLOG_RECORDS = 2_000_000
MAX_ATTEMPTS = 200


@dataclass
class Spike:
    factor: float
    seconds: float
    start_s: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.seconds


@dataclass
class SoakConfig:
    url: str
    key: str
    duration_s: float
    rate: float
    profiles: list[Profile]
    sample_s: float = 10.0
    out: Path = Path("soak")
    spike: Spike | None = None
    database_url: str | None = None
    seed: int = 0
    batch_size: int = 200
    max_in_flight: int = 64


@dataclass
class Interval:
    """Counters of the current sample interval."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    acked: int = 0


class Soak:
    def __init__(self, cfg: SoakConfig, on_sample: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.cfg = cfg
        self.on_sample = on_sample
        self.run_id = secrets.token_hex(4)
        self.mix = LiveMix(cfg.profiles, run=self.run_id, seed=cfg.seed, batch_size=cfg.batch_size)
        self.acked = np.zeros(1 << 20, dtype=bool)
        self.interval = Interval()
        self.statuses: Counter[int] = Counter()
        self.latencies_ms: list[float] = []  # every answered 200, for the run's percentiles
        self.acked_records = 0
        self.failed_batches = 0
        self.failed_records = 0
        self.batches = 0
        self.delivered_batches = 0
        self.first_shed: float | None = None
        self.last_shed: float | None = None
        self.errors: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []
        self.t0 = 0.0
        self.in_flight = 0
        self.backlog: deque[Outgoing] = deque()
        self.backlog_records = 0
        self.sent_records = 0

    # -- answers ---------------------------------------------------------------------------
    def on_attempt(self, a: Attempt) -> None:
        self.statuses[a.status] += 1
        self.interval.statuses[a.status] += 1
        if a.status == 200:
            ms = a.latency_s * 1000
            self.latencies_ms.append(ms)
            self.interval.latencies_ms.append(ms)
        elif a.status in (429, 503):
            at = a.at - self.t0
            self.first_shed = at if self.first_shed is None else self.first_shed
            self.last_shed = at
        else:
            self.errors[a.error.split(":")[0] if a.error else f"HTTP {a.status}"] += 1

    def mark_acked(self, numbers: list[int]) -> None:
        top = max(numbers)
        if top >= len(self.acked):
            grown = np.zeros(max(top + 1, 2 * len(self.acked)), dtype=bool)
            grown[: len(self.acked)] = self.acked
            self.acked = grown
        self.acked[numbers] = True

    async def deliver(self, sender: Sender, batch: Outgoing, deadline: float) -> None:
        """Send one batch (``launch`` counted it in flight already)."""
        self.batches += 1
        try:
            d = await sender.post(batch.records, deadline=deadline)
        finally:
            self.in_flight -= 1
        if d.ok and d.body is not None:
            self.delivered_batches += 1
            self.mark_acked(batch.numbers)
            self.acked_records += len(batch.numbers)
            self.interval.acked += len(batch.numbers)
        else:
            self.failed_batches += 1
            self.failed_records += len(batch.numbers)
            self.errors[d.error.split(":")[0]] += 1

    def launch(self, sender: Sender, tasks: set[asyncio.Task[None]], deadline: float) -> None:
        """Start sending from the backlog while fewer than ``max_in_flight`` batches are open."""
        while self.backlog and self.in_flight < self.cfg.max_in_flight:
            b = self.backlog.popleft()
            self.backlog_records -= len(b.numbers)
            self.sent_records += len(b.numbers)
            self.in_flight += 1
            task = asyncio.create_task(self.deliver(sender, b, deadline))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    # -- the run --------------------------------------------------------------------------
    def rate_at(self, t: float) -> float:
        s = self.cfg.spike
        if s is not None and s.start_s <= t < s.end_s:
            return self.cfg.rate * s.factor
        return self.cfg.rate

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        cfg.out.mkdir(parents=True, exist_ok=True)
        samples_file = open(cfg.out / "samples.jsonl", "w", encoding="utf-8")
        tasks: set[asyncio.Task[None]] = set()
        sender = Sender(
            cfg.url,
            cfg.key,
            concurrency=cfg.max_in_flight,
            on_attempt=self.on_attempt,
            seed=cfg.seed,
            # an SDK keeps its batches until they are acknowledged: the bound is the deadline
            # (DRAIN_S after the run), not a handful of tries that a minute-long spike outlasts
            max_attempts=MAX_ATTEMPTS,
        )
        cpu_prev: tuple[float, float] | None = None
        try:
            self.t0 = time.monotonic()
            end = self.t0 + cfg.duration_s
            deadline = end + DRAIN_S
            next_sample = self.t0 + cfg.sample_s
            last = self.t0
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                elapsed = now - self.t0
                if self.backlog_records < MAX_BACKLOG_RECORDS:
                    self.mix.produce(int(time.time() * 1000), self.rate_at(elapsed) * (now - last))
                last = now
                for b in self.mix.due(int(time.time() * 1000)):
                    self.backlog.append(b)
                    self.backlog_records += len(b.numbers)
                self.launch(sender, tasks, deadline)
                if now >= next_sample:
                    cpu_prev = await self.sample(sender, samples_file, cpu_prev, now)
                    while next_sample <= now:  # a starved loop skips slots instead of sampling in bursts
                        next_sample += cfg.sample_s
                await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - now)))
            # what is still owed goes out, then everything open is awaited (retries included)
            while self.backlog and time.monotonic() < deadline:
                self.launch(sender, tasks, deadline)
                await asyncio.sleep(TICK_S)
            if tasks:
                await asyncio.wait(list(tasks), timeout=max(1.0, deadline - time.monotonic()))
            cpu_prev = await self.sample(sender, samples_file, cpu_prev, time.monotonic())
        finally:
            samples_file.close()
            for t in tasks:
                t.cancel()
            await sender.close()
        # measured after the run, so that it never competes with the server for the CPU
        calibration = min(CALIBRATION_RECORDS, max(20_000, self.acked_records))
        bytes_per_record = await asyncio.to_thread(
            state_bytes_per_record, cfg.profiles, cfg.seed, calibration
        )
        return await self.finish(bytes_per_record)

    async def sample(
        self, sender: Sender, f: Any, cpu_prev: tuple[float, float] | None, now: float
    ) -> tuple[float, float] | None:
        server: ServerSample = await scrape(sender.client)
        iv, self.interval = self.interval, Interval()
        t = now - self.t0
        span = self.cfg.sample_s if not self.samples else t - self.samples[-1]["t"]
        span = max(span, 1e-3)
        lat = np.array(iv.latencies_ms) if iv.latencies_ms else None
        requests = sum(iv.statuses.values())
        cpu_pct = None
        if server.cpu_seconds is not None:
            if cpu_prev is not None and now > cpu_prev[0]:
                cpu_pct = 100.0 * (server.cpu_seconds - cpu_prev[1]) / (now - cpu_prev[0])
            cpu_prev = (now, server.cpu_seconds)
        row = {
            "t": round(t, 3),
            "target_events_per_s": self.rate_at(t - span / 2),
            "acked_events_per_s": round(iv.acked / span, 1),
            "requests": requests,
            "ok": iv.statuses.get(200, 0),
            "shed": iv.statuses.get(503, 0) + iv.statuses.get(429, 0),
            "errors": requests - iv.statuses.get(200, 0) - iv.statuses.get(503, 0) - iv.statuses.get(429, 0),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat is not None else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 2) if lat is not None else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat is not None else None,
            "in_flight": self.in_flight,
            "backlog_records": self.backlog_records,
            "server_up": server.ok,
            "rss_mb": round(server.rss_bytes / 1e6, 2) if server.rss_bytes is not None else None,
            "cpu_pct": round(cpu_pct, 1) if cpu_pct is not None else None,
            "db_size_mb": round(server.db_size_bytes / 1e6, 2) if server.db_size_bytes is not None else None,
            "queue_records": server.queue_records,
            "shedding": server.shedding,
            "shed_requests_total": server.shed_requests,
            # the driver's machine: on a shared host, latency follows the load (os.getloadavg)
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        self.samples.append(row)
        f.write(json.dumps(row) + "\n")
        f.flush()
        if self.on_sample is not None:
            self.on_sample(row)
        return cpu_prev

    # -- the end --------------------------------------------------------------------------
    async def verify(self) -> tuple[str | None, int | None, int | None]:
        """(how, lost acknowledged records, acknowledged records stored more than once).

        The acknowledged numbers go to the database as runs of consecutive numbers (a few
        thousand rows even for a day at thousands of records a second), and PostgreSQL joins
        them with the app's records of this run: nothing per record crosses the wire.
        """
        if not self.cfg.database_url:
            return None, None, None
        numbers = np.flatnonzero(self.acked)
        if len(numbers) == 0:
            return "database", 0, 0
        breaks = np.flatnonzero(np.diff(numbers) != 1)
        lows = np.concatenate(([numbers[0]], numbers[breaks + 1]))
        highs = np.concatenate((numbers[breaks], [numbers[-1]]))
        conn = await asyncpg.connect(self.cfg.database_url)
        try:
            app_id = await conn.fetchval(
                "SELECT app_id FROM unmo.api_keys WHERE key_hash = $1",
                hashlib.sha256(self.cfg.key.encode()).digest(),
            )
            if app_id is None:
                raise LookupError("--database-url: this database holds no app with that key")
            await conn.execute("CREATE TEMPORARY TABLE soak_acked (lo bigint, hi bigint)")
            await conn.copy_records_to_table(
                "soak_acked", records=list(zip(lows.tolist(), highs.tolist(), strict=True))
            )
            row = await conn.fetchrow(
                "WITH stored AS (SELECT substr(record_id, $3)::bigint AS n, count(*) AS c FROM unmo.records "
                "                WHERE app_id = $1 AND record_id LIKE $2 GROUP BY 1) "
                "SELECT count(*) FILTER (WHERE s.c IS NULL) AS lost, count(*) FILTER (WHERE s.c > 1) AS dup "
                "FROM soak_acked a CROSS JOIN LATERAL generate_series(a.lo, a.hi) AS g(n) "
                "LEFT JOIN stored s ON s.n = g.n",
                app_id,
                self.run_id + "-%",
                len(self.run_id) + 2,
                timeout=3600,
            )
        finally:
            await conn.close()
        return "database", int(row["lost"]), int(row["dup"])

    async def finish(self, bytes_per_record: float) -> dict[str, Any]:
        cfg = self.cfg
        how, lost, dup = await self.verify()
        attempts = sum(self.statuses.values())
        ok = self.statuses.get(200, 0)
        shed = self.statuses.get(503, 0) + self.statuses.get(429, 0)
        lat = np.array(self.latencies_ms) if self.latencies_ms else None
        duration = self.samples[-1]["t"] if self.samples else cfg.duration_s
        v = verdict(
            [s["t"] for s in self.samples],
            [s["rss_mb"] for s in self.samples],
            cfg.duration_s,
            self.acked_records / max(duration, 1e-9) * 3600.0,
            bytes_per_record,
        )
        result: dict[str, Any] = {
            "uptime": round(ok / attempts, 6) if attempts else 0.0,
            "p95_ms": round(float(np.percentile(lat, 95)), 2) if lat is not None else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat is not None else None,
            "error_rate": round((attempts - ok - shed) / attempts, 6) if attempts else 0.0,
            "rss_slope_mb_per_h": round(v.rss_slope_mb_per_h, 2)
            if v.rss_slope_mb_per_h is not None
            else None,
            "leak": v.leak,
        }
        result["leak_judged"] = v.judged
        if cfg.spike is not None:
            result["shed_started_s"] = round(self.first_shed, 1) if self.first_shed is not None else None
            result["shed_stopped_s"] = round(self.last_shed, 1) if self.last_shed is not None else None
            result["lost_acked"] = lost
        result.update(
            {
                "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat is not None else None,
                "duration_s": round(duration, 1),
                "target_events_per_s": cfg.rate,
                "events_per_s": round(self.acked_records / max(duration, 1e-9), 1),
                "requests": attempts,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "shed_rate": round(shed / attempts, 6) if attempts else 0.0,
                "acked_records": self.acked_records,
                "unacked_records": self.failed_records,
                "delivered": round(self.delivered_batches / self.batches, 6) if self.batches else 0.0,
                "lost_acked": lost,
                "duplicated_acked": dup,
                "verified": how,
                "expected_state_mb_per_h": round(v.expected_mb_per_h, 2),
                "leak_threshold_mb_per_h": round(v.threshold_mb_per_h, 2),
                "state_bytes_per_record": round(bytes_per_record, 1),
                "warmup_s": round(v.warmup_s, 1),
                "errors_by_kind": dict(self.errors),
                "profiles": [p.name for p in cfg.profiles],
                "run_id": self.run_id,
                "spike": (
                    {"factor": cfg.spike.factor, "seconds": cfg.spike.seconds, "start_s": cfg.spike.start_s}
                    if cfg.spike
                    else None
                ),
                "out": str(cfg.out),
            }
        )
        return result
