"""Reading the server's ``/metrics`` (Prometheus text format, parsed by prometheus-client)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

# name in the exposition -> field of ServerSample.  Counters are exposed with a "_total" sample.
WANTED = {
    "process_resident_memory_bytes": "rss_bytes",
    "process_cpu_seconds_total": "cpu_seconds",
    "unmo_db_size_bytes": "db_size_bytes",
    "unmo_queue_records": "queue_records",
    "unmo_shedding": "shedding",
    "unmo_shed_requests_total": "shed_requests",
}


@dataclass
class ServerSample:
    """What one scrape said (None: the server does not expose it, e.g. RSS with ``--workers``)."""

    ok: bool
    rss_bytes: float | None = None
    cpu_seconds: float | None = None
    db_size_bytes: float | None = None
    queue_records: float | None = None
    shedding: float | None = None
    shed_requests: float | None = None


def parse_metrics(text: str) -> ServerSample:
    """Sum each wanted sample over its labels (several workers, several shed reasons)."""
    sample = ServerSample(True)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            attr = WANTED.get(s.name)
            if attr is not None:
                setattr(sample, attr, (getattr(sample, attr) or 0.0) + float(s.value))
    return sample


async def scrape(client: httpx.AsyncClient) -> ServerSample:
    try:
        response = await client.get("/metrics", timeout=5.0)
    except (httpx.TransportError, httpx.TimeoutException):
        return ServerSample(False)
    if response.status_code != 200:
        return ServerSample(False)
    return parse_metrics(response.text)
