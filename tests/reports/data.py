"""Generated traffic for the report tests, and the reports recomputed from the stored records.

The recomputation reads ``unmo.records`` and ``unmo.installs`` only (never the
rollups) and does the arithmetic in plain Python, days from zoneinfo (not from
PostgreSQL), so the rollups, the SQL that reads them and the time-zone handling
are all checked against an independent account of the same records.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
import zoneinfo
from collections import defaultdict
from decimal import Decimal
from typing import Any

from tests.support import now_ms, post_batch

DAY = 86_400_000
CAMPAIGNS = [
    ("meta", "spring", "broad", "video-1", "fb-feed"),
    ("meta", "spring", "lookalike", "video-2", "ig-stories"),
    ("tiktok", "launch", "gen-z", "ugc-1", None),
    ("google", "uac", None, None, None),
    ("applovin", "=HYPERLINK(\"x\")", "a,b", "quote\"d", "site\nnewline"),  # CSV hostile
]
BLOCKED_NET = "10.66."
REVENUES = [0.99, 4.99, 19.99, 0.1, 99.0, 2.5]
# local midnights near which records are put, for each zone the tests read (Nov: Adelaide is +10:30)
BOUNDARY_ZONES = ("UTC", "Asia/Kolkata", "Australia/Adelaide", "Asia/Kathmandu")


def _camp(c: tuple[str | None, ...]) -> dict[str, str]:
    return {k: v for k, v in zip(("network", "campaign", "adset", "ad", "site"), c, strict=True) if v is not None}


def traffic(seed: int, devices: int = 160, prefix: str = "") -> list[dict[str, Any]]:
    """Clicks, impressions, installs, reinstalls, opens and events of ``devices`` devices over the last ~10 days,
    with records a few milliseconds either side of local midnights, CTIT-rejected and blocklisted clicks,
    organic installs and unattributed events."""
    rnd = random.Random(seed)
    now = now_ms()
    recs: list[dict[str, Any]] = []
    n = 0

    def rid(kind: str) -> str:
        nonlocal n
        n += 1
        return f"{prefix}{kind}-{n}"

    midnights = []
    for zone in BOUNDARY_ZONES:
        z = zoneinfo.ZoneInfo(zone)
        today = dt.datetime.fromtimestamp(now / 1000, z).date()
        for back in (3, 5, 7):
            m = dt.datetime.combine(today - dt.timedelta(days=back), dt.time(), z)
            midnights.append(int(m.timestamp() * 1000))
    for i in range(devices):
        platform = rnd.choice(["ios", "android"])
        dev = {"idfa" if platform == "ios" else "gaid": f"{prefix}dev-{i}", "platform": platform,
               "ip": f"203.0.113.{i % 250}"}
        if i % 4 == 0:
            install = rnd.choice(midnights) + rnd.choice([-1, 0, 1, -60_000, 60_000])
        else:
            install = now - rnd.randrange(DAY, 9 * DAY)
        r = rnd.random()
        if r < 0.55:  # a click wins, maybe behind a too-fast (CTIT) click and a blocklisted one
            c = rnd.choice(CAMPAIGNS)
            recs.append({"type": "click", "id": rid("c"), "ts": install - rnd.randrange(60_000, 2 * DAY),
                         "device": dev, "campaign": _camp(c)})
            if rnd.random() < 0.3:
                fast = rnd.choice(CAMPAIGNS)
                recs.append({"type": "click", "id": rid("fast"), "ts": install - rnd.randrange(1_000, 9_000),
                             "device": dev, "campaign": _camp(fast)})
            if rnd.random() < 0.2:
                blocked = rnd.choice(CAMPAIGNS)
                recs.append({"type": "click", "id": rid("blk"), "ts": install - rnd.randrange(20_000, 50_000),
                             "device": {**dev, "ip": BLOCKED_NET + f"1.{i % 250}"}, "campaign": _camp(blocked)})
        elif r < 0.7:  # an impression wins
            c = rnd.choice(CAMPAIGNS)
            recs.append({"type": "impression", "id": rid("m"), "ts": install - rnd.randrange(60_000, DAY // 2),
                         "device": dev, "campaign": _camp(c)})
        # else organic, though a stray click of another device may exist
        if rnd.random() < 0.3:
            c = rnd.choice(CAMPAIGNS)
            recs.append({"type": "click", "id": rid("c"), "ts": install - rnd.randrange(0, 3 * DAY),
                         "device": {"idfa": f"{prefix}other-{i}", "platform": "ios"}, "campaign": _camp(c)})
        recs.append({"type": "install", "id": rid("i"), "ts": install, "device": dev})
        if rnd.random() < 0.15:  # a reinstall: within the 1-day re-attribution window, or re-attributed after it
            recs.append({"type": "install", "id": rid("ri"), "ts": install + rnd.randrange(DAY // 2, 2 * DAY),
                         "device": dev})
        for _ in range(rnd.randrange(0, 12)):
            ts = install + rnd.randrange(0, 9 * DAY)
            if ts > now:
                continue
            if rnd.random() < 0.5:
                recs.append({"type": "open", "id": rid("o"), "ts": ts, "device": dev})
            else:
                ev: dict[str, Any] = {"type": "event", "id": rid("e"), "ts": ts, "device": dev, "name": "purchase"}
                if rnd.random() < 0.6:
                    ev["revenue"] = rnd.choice(REVENUES)
                    if rnd.random() < 0.3:
                        ev["currency"] = "EUR"
                recs.append(ev)
    for j in range(25):  # events and opens of devices with no install
        ts = rnd.choice(midnights) + rnd.choice([-1, 0, 1]) if j % 3 == 0 else now - rnd.randrange(0, 9 * DAY)
        dev = {"idfa": f"{prefix}ghost-{j}", "platform": rnd.choice(["ios", "android"])}
        if j % 2:
            recs.append({"type": "event", "id": rid("ue"), "ts": ts, "device": dev, "name": "purchase",
                         "revenue": rnd.choice(REVENUES)})
        else:
            recs.append({"type": "open", "id": rid("uo"), "ts": ts, "device": dev})
    recs.sort(key=lambda rec: rec["ts"])
    return recs


def send(url: str, key: str, recs: list[dict[str, Any]], size: int = 500) -> None:
    """Send in ts order, in batches (attribution is decided from what came before)."""
    for i in range(0, len(recs), size):
        r = post_batch(url, key, recs[i:i + size])
        assert r.status_code == 200, r.text
        assert not r.json()["errors"], r.json()["errors"][:3]


def create_app(database: Any) -> dict[str, Any]:
    """A fresh app with IP blocklist 10.66.0.0/16 and a 1-day re-attribution window from its first moment
    (one transaction: no server process can load it without them)."""
    from unmo.apps import create_app as create

    async def go(conn: Any) -> dict[str, Any]:
        async with conn.transaction():
            app: dict[str, Any] = await create(conn, f"reports-{uuid.uuid4().hex[:10]}")
            await conn.execute("UPDATE unmo.apps SET ip_blocklist = '{10.66.0.0/16}', "
                               "reattribution_window_ms = $2 WHERE app_id = $1", app["app_id"], DAY)
        return app

    return database.call(go)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ recomputation
COUNTERS = ("clicks", "impressions", "installs", "reattributions", "reinstalls", "organic_installs", "opens",
            "events", "ctit_rejected_touches", "blocklisted_touches")
CAMPAIGN_DIMS = ("network", "campaign", "adset", "ad", "site")


def micros(value: float) -> int:
    return round(value * 1e6)


def money(m: int) -> Decimal:
    return Decimal(m) / Decimal(1_000_000)


def stored(database: Any, app_id: int) -> tuple[list[Any], list[Any]]:
    records = database.fetch("SELECT * FROM unmo.records WHERE app_id = $1 ORDER BY seq, ord", app_id)
    installs = database.fetch("SELECT * FROM unmo.installs WHERE app_id = $1", app_id)
    return records, installs


def _day(ts: dt.datetime, tz: str) -> str:
    return ts.astimezone(zoneinfo.ZoneInfo(tz)).date().isoformat()


def _labels(rec: Any, group_by: tuple[str, ...], source: str | None) -> tuple[Any, ...]:
    labelled = any(d in CAMPAIGN_DIMS for d in group_by)
    out = []
    for d in group_by:
        if d in CAMPAIGN_DIMS and labelled and source is not None:
            out.append(source)
        else:
            out.append(rec[d])
    return tuple(out)


def _source(rec: Any) -> str | None:
    if rec["network"] is not None:
        return None
    return "unattributed" if rec["outcome"] == 5 else "organic"


def daily(database: Any, app_id: int, start: str, end: str, tz: str, group_by: tuple[str, ...]) -> dict[Any, Any]:
    """(date, *labels) -> {column: value, "revenue": {currency: Decimal}}, from the records alone."""
    records, installs = stored(database, app_id)
    out: dict[Any, Any] = defaultdict(lambda: {**dict.fromkeys(COUNTERS, 0), "revenue": defaultdict(int)})

    def row(rec: Any, day: str, source: str | None) -> Any:
        return out[(day, *_labels(rec, group_by, source))]

    by_id = {(r["kind"], r["record_id"]): r for r in records}
    for r in records:
        day = _day(r["ts"], tz)
        if not start <= day <= end:
            continue
        k, o = r["kind"], r["outcome"]
        x = row(r, day, _source(r) if k >= 3 else None)
        if k == 1:
            x["clicks"] += 1
        if k == 2:
            x["impressions"] += 1
        if k <= 2 and o == 6:
            x["blocklisted_touches"] += 1
        if k == 3:
            x["installs"] += o in (1, 2, 4)
            x["reattributions"] += o == 4
            x["reinstalls"] += o == 3
            x["organic_installs"] += o == 2
        if k == 4:
            x["opens"] += 1
        if k == 5:
            x["events"] += 1
            if r["revenue"] is not None:
                x["revenue"][r["currency"]] += micros(r["revenue"])
    for inst in installs:
        day = _day(inst["ts"], tz)
        if not start <= day <= end:
            continue
        install_rec = by_id[(3, inst["record_id"])]
        for rej in json.loads(inst["rejected"]) if isinstance(inst["rejected"], str) else inst["rejected"]:
            if rej["reason"] != "ctit_anomaly":
                continue
            touch = by_id[(1, rej["touch_id"])]
            # the touch's campaign, the install's platform
            labels = tuple(touch[d] if d in CAMPAIGN_DIMS else install_rec[d] for d in group_by)
            out[(day, *labels)]["ctit_rejected_touches"] += 1
    return {k: {**v, "revenue": {c: money(m) for c, m in v["revenue"].items()}} for k, v in out.items()}


def cohorts(database: Any, app_id: int, start: str, end: str, tz: str, group_by: tuple[str, ...],
            days: tuple[int, ...], now: dt.datetime) -> dict[Any, Any]:
    """(date, *labels) -> {"installs", "revenue", "days": {N: {...}}}: each open/event joined to its device's
    install (one identifier per device in the generated traffic), day N = whole 24 h since the install."""
    records, _ = stored(database, app_id)
    labelled = any(d in CAMPAIGN_DIMS for d in group_by)
    primary: dict[str, Any] = {}
    out: dict[Any, Any] = {}

    def entry(key: tuple[Any, ...], cohort: bool) -> Any:
        if key not in out:
            out[key] = {"installs": 0, "revenue": defaultdict(int), "cohort": cohort,
                        "active": defaultdict(set), "by_dn": defaultdict(lambda: defaultdict(int))}
        return out[key]

    for r in records:  # stored order = decision order
        device = r["idfa"] or r["gaid"]
        if r["kind"] == 3 and r["outcome"] in (1, 2, 4):
            primary[device] = r
            day = _day(r["ts"], tz)
            if start <= day <= end:
                entry((day, *_labels(r, group_by, _source(r))), True)["installs"] += 1
        elif r["kind"] in (4, 5):
            inst = primary.get(device)
            if inst is None:
                assert r["outcome"] == 5
                day = _day(r["ts"], tz)
                if labelled and start <= day <= end:  # its own row, on the day of the open or event
                    e = entry((day, *_labels(r, group_by, "unattributed")), False)
                    if r["kind"] == 5 and r["revenue"] is not None:
                        e["revenue"][r["currency"]] += micros(r["revenue"])
                continue
            day = _day(inst["ts"], tz)
            if not start <= day <= end:
                continue
            dn = max(0, (r["ts"] - inst["ts"]) // dt.timedelta(days=1))
            e = entry((day, *_labels(r, group_by, _source(r))), True)
            e["active"][dn].add(device)
            if r["kind"] == 5 and r["revenue"] is not None:
                m = micros(r["revenue"])
                e["revenue"][r["currency"]] += m
                e["by_dn"][dn][r["currency"]] += m
    result = {}
    for key, e in out.items():
        row: dict[str, Any] = {"installs": e["installs"], "revenue": {c: money(m) for c, m in e["revenue"].items()}}
        if not e["cohort"]:
            row["days"] = dict.fromkeys(str(n) for n in days)
        else:
            day_end = dt.datetime.combine(dt.date.fromisoformat(key[0]) + dt.timedelta(days=1), dt.time(),
                                          zoneinfo.ZoneInfo(tz))
            row["days"] = {}
            for n in days:
                cumulative: dict[str, int] = defaultdict(int)
                for dn, by in e["by_dn"].items():
                    if dn <= n:
                        for c, m in by.items():
                            cumulative[c] += m
                retained = len(e["active"].get(n, ()))
                row["days"][str(n)] = {
                    "retained": retained,
                    "retention": retained / e["installs"] if e["installs"] else None,
                    "revenue": {c: money(m) for c, m in cumulative.items()},
                    "complete": now >= day_end + dt.timedelta(days=n + 1),
                }
        result[key] = row
    return result
