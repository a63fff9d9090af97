"""The tracker's settings: flags first, then the environment, then these defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from unmo.durations import parse_duration_s
from unmo.errors import ConfigError, ValidationError


@dataclass
class TrackerSettings:
    """Everything ``unmo tracker`` can be told (docs/tracker.md, "Running it")."""

    host: str = "127.0.0.1"
    port: int = 8084
    ingest_urls: list[str] = field(default_factory=list)
    admin_token: str = ""
    probe_interval_s: float = 10.0
    survey_delay_s: float = 48 * 3600.0
    onboarding_check_s: float = 1.0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_retry_base_s: float = 2.0      # first retry after this, doubling each time
    webhook_retry_max_s: float = 3600.0    # never wait longer than this between attempts
    webhook_timeout_s: float = 10.0
    default_plan_price: float = 2000.0     # USD per month when a customer is created without one
    max_upload_bytes: int = 20 * 1024 * 1024
    max_upload_rows: int = 200_000
    max_json_bytes: int = 64 * 1024
    max_streams: int = 32                  # concurrent live-feed connections
    probe_retention_days: int = 90


def parse_url(text: str, what: str) -> str:
    """An http(s) URL without a trailing slash; raises ValidationError naming ``what``."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"{what}: expected an http:// or https:// URL, got {text!r}")
    return text.strip().rstrip("/")


def ingest_urls_from(flags: list[str] | None) -> list[str]:
    """``--ingest-url`` values (repeatable, comma-separated allowed), else ``UNMO_INGEST_URLS``."""
    raw = flags or [os.environ.get("UNMO_INGEST_URLS", "")]
    out: list[str] = []
    for item in raw:
        for part in item.split(","):
            if part.strip():
                url = parse_url(part, "ingest-url")
                if url not in out:
                    out.append(url)
    return out


def duration_setting(flag: str | None, env: str, default_s: float, what: str) -> float:
    """Seconds from a flag, else an environment variable, else the default."""
    text = flag if flag is not None else os.environ.get(env)
    if text is None or text == "":
        return default_s
    return parse_duration_s(text, what=what)


def admin_token_from_env() -> str:
    """``UNMO_ADMIN_TOKEN``: at least 16 characters, so that it cannot be guessed by hand."""
    token = os.environ.get("UNMO_ADMIN_TOKEN", "")
    if len(token) < 16:
        raise ConfigError(
            "UNMO_ADMIN_TOKEN: expected a secret of at least 16 characters "
            "(e.g. `export UNMO_ADMIN_TOKEN=$(openssl rand -hex 24)`), "
            + ("it is not set" if not token else f"got {len(token)} characters")
        )
    return token
