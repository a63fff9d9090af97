"""Prometheus metrics of an ingest process (prometheus-client).

With ``--workers N`` every worker writes to ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics`` sums them (prometheus-client's multiprocess mode), so one scrape
sees the whole server.  ``unmo_queue_records`` and ``unmo_shedding`` are what an
autoscaler acts on (docs/deploy.md).
"""

from __future__ import annotations

import os
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

# Batch latency buckets, ms; the tracker's per-minute histogram uses the same edges.
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 35, 50, 85, 100, 150, 250, 500, 1000, 2500, 5000)
LATENCY_BUCKETS_S = tuple(b / 1000 for b in LATENCY_BUCKETS_MS)  # the histograms' (Prometheus: seconds)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry() if not self.multiprocess else None
        reg = self.registry
        if reg is not None:
            # process_resident_memory_bytes, process_cpu_seconds_total: what `unmo soak` samples
            ProcessCollector(registry=reg)
            # python_gc_*: collections and objects collected per generation (see unmo.server.app.tune_gc)
            GCCollector(registry=reg)
        # with several workers a gauge is the sum over the live ones (prometheus-client multiprocess mode)
        mode: Literal["livesum", "max"] = "livesum"
        self.records = Counter(
            "unmo_records",
            "Records by type and outcome (accepted, duplicate, rejected)",
            ["type", "outcome"],
            registry=reg,
        )
        self.requests = Counter(
            "unmo_requests", "HTTP requests by route and status", ["route", "status"], registry=reg
        )
        self.batch_seconds = Histogram(
            "unmo_batch_seconds",
            "POST /v1/batch latency, receipt to answer",
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.commit_seconds = Histogram(
            "unmo_commit_seconds",
            "Group commit latency (one flush)",
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.queue_depth = Gauge(
            "unmo_queue_records", "Records waiting for group commit", registry=reg, multiprocess_mode=mode
        )
        self.shedding = Gauge(
            "unmo_shedding", "1 while the server answers 503 to shed load", registry=reg, multiprocess_mode=mode
        )
        self.pool_in_use = Gauge(
            "unmo_db_pool_in_use", "Database connections in use", registry=reg, multiprocess_mode=mode
        )
        self.pool_size = Gauge("unmo_db_pool_size", "Database connections open", registry=reg, multiprocess_mode=mode)
        self.catch_up_records = Counter(
            "unmo_catch_up_records", "Records replayed from other processes' commits", registry=reg
        )
        self.db_size = Gauge(
            "unmo_db_size_bytes", "Size of the database (pg_database_size)", registry=reg, multiprocess_mode="max"
        )
        self.flushes = Counter(
            "unmo_flushes",
            "Group commits by how they were decided: ahead (while the previous one committed), under the"
            " locks, or again after the one decided ahead was void",
            ["decided"],
            registry=reg,
        )
        self.gc_seconds = Histogram(
            "unmo_gc_full_seconds",
            "Duration of the periodic full garbage collection (unmo.server.app.tune_gc)",
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.forwarded = Counter(
            "unmo_forwarded_batches",
            "With --workers: batches handed to the worker that owns their app (sent), taken from another"
            " worker (received), or stored by the worker that received them because the owner could not be"
            " asked (stored_here)",
            ["outcome"],
            registry=reg,
        )
        self.shed = Counter("unmo_shed_requests", "Requests answered 503 or 429", ["reason"], registry=reg)

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
