"""Where the database is: a flag, ``UNMO_DATABASE_URL``, or the embedded PostgreSQL."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def unmo_home() -> Path:
    """``$UNMO_HOME``, default ``./.unmo``: the embedded database and local state live here."""
    return Path(os.environ.get("UNMO_HOME") or ".unmo").absolute()


def configured_database_url(flag: str | None) -> str | None:
    """The database URL from the flag or the environment, or None for the embedded one."""
    return flag or os.environ.get("UNMO_DATABASE_URL") or None


# The report folder's pause between passes (unmo.reports.rollup.Folder).  Each fold upserts the rollup rows of
# every group its records touch, whatever their number: 5 s instead of 1 s shares those upserts among five
# times the records, 0.25-0.57 us a record less of PostgreSQL's CPU under `unmo load`, for a report asked
# under that load 0.20-0.71 s instead of 0.17-0.38 s (it folds the tail left first; docs/reports.md).
REPORT_FOLD_S = 5.0


def report_fold_seconds() -> float:
    """``$UNMO_REPORT_FOLD_S``: seconds between the background report folder's passes, 0 turns it off (reports
    then fold their app's records themselves before reading); default REPORT_FOLD_S."""
    raw = os.environ.get("UNMO_REPORT_FOLD_S", "")
    if raw == "":
        return REPORT_FOLD_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"UNMO_REPORT_FOLD_S: expected seconds (0: off), got {raw[:40]!r}") from None
    if not 0 <= value <= 3600:
        raise ValueError(f"UNMO_REPORT_FOLD_S: expected 0..3600 seconds, got {raw[:40]!r}")
    return value


@dataclass
class Limits:
    """Every size and rate an outsider controls (docs/api.md, Limits)."""

    max_body_bytes: int = 5 * 1024 * 1024  # after decompression
    max_wire_bytes: int = 5 * 1024 * 1024  # as sent (gzip cannot be larger than the inflated body)
    max_records: int = 10_000
    max_record_bytes: int = 32 * 1024
    max_properties_bytes: int = 8 * 1024
    max_future_ms: int = 24 * 3_600_000
    # group commit
    queue_max_records: int = 200_000
    flush_max_records: int = 50_000
    flush_delay_ms: float = 2.0
    default_app_rate: int = 2_000_000  # records/s per app and process unless the app sets its own


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    workers: int = 1
    pool_size: int = 4
    limits: Limits = field(default_factory=Limits)
    report_fold_s: float = field(default_factory=report_fold_seconds)
    # a worker of `unmo serve --workers N` (set by the supervisor, unmo.server.run): its number, the
    # number of workers, and the directory of their sockets (unmo.server.peers)
    worker_index: int = 0
    worker_count: int = 1
    worker_dir: str | None = None
