"""Per app and minute figures the Customer Success Tracker reads (unmo.ingest_minute).

Counted in memory on the request path (a few dict updates per batch) and
upserted every few seconds by a background task, so the ingest path never
waits on them.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field

import asyncpg

from unmo.server.metrics import LATENCY_BUCKETS_MS

log = logging.getLogger("unmo.stats")


@dataclass
class MinuteStats:
    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    server_errors: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    latency_sum_ms: float = 0.0

    def merge(self, other: MinuteStats) -> None:
        self.batches += other.batches
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.server_errors += other.server_errors
        self.latency_sum_ms += other.latency_sum_ms
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        add_counts(self.by_kind, other.by_kind)


def add_counts(into: dict[str, dict[str, int]], counts: dict[str, dict[str, int]]) -> None:
    """{"click": {"accepted": 3}} += {"click": {"accepted": 1, "duplicate": 2}}"""
    for kind, outcomes in counts.items():
        mine = into.setdefault(kind, {})
        for outcome, n in outcomes.items():
            mine[outcome] = mine.get(outcome, 0) + n


class StatsRecorder:
    def __init__(self, pool: asyncpg.Pool, server_name: str | None = None, interval_s: float = 5.0) -> None:
        self.pool = pool
        self.server = server_name or f"{socket.gethostname()}:{os.getpid()}"
        self.interval_s = interval_s
        self._pending: dict[tuple[int, int], MinuteStats] = {}
        self._task: asyncio.Task[None] | None = None

    def _slot(self, app_id: int) -> MinuteStats:
        minute = int(time.time() // 60)
        key = (app_id, minute)
        s = self._pending.get(key)
        if s is None:
            s = self._pending[key] = MinuteStats()
        return s

    def batch(
        self,
        app_id: int,
        latency_ms: float,
        kinds: dict[str, dict[str, int]],
        accepted: int,
        duplicates: int,
        rejected: int,
        server_error: bool = False,
    ) -> None:
        s = self._slot(app_id)
        s.batches += 1
        s.accepted += accepted
        s.duplicates += duplicates
        s.rejected += rejected
        s.server_errors += int(server_error)
        s.buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        s.latency_sum_ms += latency_ms
        add_counts(s.by_kind, kinds)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="unmo-stats")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.flush()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        rows = [
            (
                app_id,
                minute * 60,
                self.server,
                s.batches,
                s.accepted,
                s.duplicates,
                s.rejected,
                s.server_errors,
                json.dumps(s.by_kind),
                s.buckets,
                s.latency_sum_ms,
            )
            for (app_id, minute), s in pending.items()
        ]
        try:
            async with self.pool.acquire(timeout=5.0) as conn:
                await conn.executemany(
                    """INSERT INTO unmo.ingest_minute AS m (app_id, minute, server, batches, accepted, duplicates,
                           rejected, server_errors, by_kind, latency_buckets, latency_sum_ms)
                       VALUES ($1, to_timestamp($2), $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)
                       ON CONFLICT (app_id, minute, server) DO UPDATE SET
                           batches = m.batches + EXCLUDED.batches,
                           accepted = m.accepted + EXCLUDED.accepted,
                           duplicates = m.duplicates + EXCLUDED.duplicates,
                           rejected = m.rejected + EXCLUDED.rejected,
                           server_errors = m.server_errors + EXCLUDED.server_errors,
                           by_kind = unmo.merge_counts(m.by_kind, EXCLUDED.by_kind),
                           latency_buckets = (SELECT array_agg(a + b ORDER BY i) FROM unnest(m.latency_buckets,
                               EXCLUDED.latency_buckets) WITH ORDINALITY AS t(a, b, i)),
                           latency_sum_ms = m.latency_sum_ms + EXCLUDED.latency_sum_ms""",
                    rows,
                )
        except Exception as exc:
            # keep the figures for the next try rather than lose them
            log.warning("could not store ingest stats: %s", exc.__class__.__name__)
            for key, s in pending.items():
                self._pending.setdefault(key, MinuteStats()).merge(s)
