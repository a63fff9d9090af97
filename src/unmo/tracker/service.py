"""The tracker process: its database pool and background tasks.

Background tasks (each survives database outages by logging and trying again):
- onboarding: every ``onboarding_check_s``, customers whose apps accepted a record go live;
- probes: every ``probe_interval_s``, each ingest server's ``/readyz``; old probes are pruned hourly;
- surveys: the automatic survey of customers live for ``survey_delay_s``;
- outbox: feedback deliveries to the ticketing webhook, with retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from unmo.ingest.writer import SERVER_SETTINGS
from unmo.tracker import customers, probes, surveys
from unmo.tracker.feedback import Deliverer
from unmo.tracker.settings import TrackerSettings

log = logging.getLogger("unmo.tracker")


class TrackerMetrics:
    """Prometheus metrics of the tracker process (prometheus-client)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("unmo_tracker_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.request_seconds = Histogram("unmo_tracker_request_seconds", "HTTP request latency", ["route"],
                                         registry=r)
        self.probes = Counter("unmo_tracker_probes", "Ingest /readyz probes by result", ["result"], registry=r)
        self.deliveries = Counter("unmo_tracker_webhook_attempts", "Webhook delivery attempts", registry=r)
        self.customers = Gauge("unmo_tracker_customers", "Customers by status", ["status"], registry=r)
        self.outbox_pending = Gauge("unmo_tracker_outbox_pending", "Feedback deliveries not yet accepted",
                                    registry=r)
        self.streams = Gauge("unmo_tracker_feed_streams", "Open live-feed connections", registry=r)
        self.loop_errors = Counter("unmo_tracker_task_errors", "Background task failures", ["task"], registry=r)


class Tracker:
    """Everything one tracker process holds."""

    def __init__(self, settings: TrackerSettings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.metrics = TrackerMetrics()
        self.pool: asyncpg.Pool | None = None
        self.deliverer: Deliverer | None = None
        self.http: httpx.AsyncClient | None = None
        self.streams = 0
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def startup(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.database_url, min_size=1, max_size=6, command_timeout=60,
            server_settings=SERVER_SETTINGS | {"application_name": "unmo-tracker"},
        )
        s = self.settings
        self.deliverer = Deliverer(self.pool, s.webhook_url, s.webhook_secret, retry_base_s=s.webhook_retry_base_s,
                                   retry_max_s=s.webhook_retry_max_s, timeout_s=s.webhook_timeout_s)
        self.http = httpx.AsyncClient()
        self._spawn("onboarding", self._onboarding, s.onboarding_check_s)
        if s.ingest_urls:
            self._spawn("probes", self._probe, s.probe_interval_s)
        self._spawn("surveys", self._surveys, min(5.0, max(0.2, s.survey_delay_s / 10)))
        self._spawn("outbox", self._outbox, min(1.0, s.webhook_retry_base_s / 2))
        self._spawn("housekeeping", self._housekeeping, 3600.0)
        log.info("tracker ready", extra={"host": s.host, "port": s.port, "ingest_urls": s.ingest_urls})

    async def shutdown(self) -> None:
        # Let each task finish its round (a webhook delivery in flight completes and is logged), then
        # cancel what is still running after the webhook timeout.
        self.stopping.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=self.settings.webhook_timeout_s + 2.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.deliverer is not None:
            await self.deliverer.close()
        if self.http is not None:
            await self.http.aclose()
        if self.pool is not None:
            await self.pool.close()
        log.info("tracker stopped")

    def _spawn(self, name: str, fn: Callable[[], Awaitable[None]], every_s: float) -> None:
        async def loop() -> None:
            while not self.stopping.is_set():
                t0 = time.monotonic()
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database may be down: try again next round
                    self.metrics.loop_errors.labels(name).inc()
                    log.warning("background task failed", extra={"task": name, "error": exc.__class__.__name__})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), max(0.05, every_s - (time.monotonic() - t0)))

        self._tasks.append(asyncio.create_task(loop(), name=f"unmo-tracker-{name}"))

    async def _onboarding(self) -> None:
        assert self.pool is not None
        async with self.pool.acquire(timeout=5.0) as conn:
            for cid in await customers.check_onboarding(conn):
                log.info("customer live", extra={"customer_id": cid})

    async def _probe(self) -> None:
        assert self.pool is not None and self.http is not None
        s = self.settings
        results = await probes.probe_all(self.http, s.ingest_urls, min(5.0, max(0.5, s.probe_interval_s / 2)))
        for r in results:
            self.metrics.probes.labels("ok" if r["ok"] else "failed").inc()
        async with self.pool.acquire(timeout=5.0) as conn:
            await probes.store(conn, results)

    async def _surveys(self) -> None:
        assert self.pool is not None
        async with self.pool.acquire(timeout=5.0) as conn:
            for sid in await surveys.create_due(conn, self.settings.survey_delay_s):
                log.info("survey created", extra={"survey_id": sid})

    async def _outbox(self) -> None:
        assert self.deliverer is not None
        while not self.stopping.is_set() and (n := await self.deliverer.run_once(self.stopping)) > 0:
            self.metrics.deliveries.inc(n)

    async def _housekeeping(self) -> None:
        assert self.pool is not None
        async with self.pool.acquire(timeout=5.0) as conn:
            await probes.prune(conn, self.settings.probe_retention_days)
