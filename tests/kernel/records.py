"""Builders of wire records (dicts as in /work/shared/spec/ingest-api.md) for the kernel tests."""

from __future__ import annotations

from typing import Any

from tests.kernel.engines import Engine
from tests.kernel.reference import Out

T0 = 1_790_000_000_000  # 2026-09-21T...Z: any fixed time after 2000 will do
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

IOS_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")          # ios 17.1 iphone
ANDROID_UA = ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Mobile Safari/537.36")                            # android 14.0 sm-s918b
PIXEL_UA = ("Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/119.0.0.0 Mobile Safari/537.36")                              # android 13.0 pixel 7

IDFA_1 = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
IDFA_2 = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
GAID_1 = "38400000-8cf0-11bd-b23e-10b96e40000d"
GAID_2 = "cdda802e-fb9c-47ad-9866-0794d394c912"
IDFV_1 = "E621E1F8-C36C-495A-93FC-0C247A3E6E5F"
ZERO = "00000000-0000-0000-0000-000000000000"


def touch(kind: str, rid: str, ts: int, *, network: str = "net", campaign: str = "camp",
          adset: str | None = None, ad: str | None = None, site: str | None = None, **device: Any) -> dict[str, Any]:
    c = {"network": network, "campaign": campaign, "adset": adset, "ad": ad, "site": site}
    return {"type": kind, "id": rid, "ts": ts, "device": device,
            "campaign": {k: v for k, v in c.items() if v is not None}}


def click(rid: str, ts: int, **kw: Any) -> dict[str, Any]:
    return touch("click", rid, ts, **kw)


def impression(rid: str, ts: int, **kw: Any) -> dict[str, Any]:
    return touch("impression", rid, ts, **kw)


def install(rid: str, ts: int, *, referrer: str | None = None, **device: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"type": "install", "id": rid, "ts": ts, "device": device}
    if referrer is not None:
        r["referrer"] = referrer
    return r


def event(rid: str, ts: int, *, name: str = "purchase", **device: Any) -> dict[str, Any]:
    return {"type": "event", "id": rid, "ts": ts, "name": name, "revenue": 4.99, "currency": "USD",
            "device": device}


def open_(rid: str, ts: int, **device: Any) -> dict[str, Any]:
    return {"type": "open", "id": rid, "ts": ts, "device": device}


def feed(engine: Engine, *records: dict[str, Any], at: int | None = None, sent_at: int | None = None) -> list[Out]:
    """One batch of ``records``, received at ``at`` (default: a second after its latest ts)."""
    if at is None:
        at = max(int(r["ts"]) for r in records) + SECOND
    return engine.feed(list(records), at, sent_at)


def one(engine: Engine, record: dict[str, Any], **kw: Any) -> Out:
    return feed(engine, record, **kw)[0]
