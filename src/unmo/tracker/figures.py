"""What the pilot programme is judged by, per customer and overall (spec: tracker.md).

Everything is computed from what the ingest servers record (``unmo.ingest_minute``:
per app and minute, records by outcome, 5xx answers and a latency histogram over
``unmo.server.metrics.LATENCY_BUCKETS_MS``), the attribution results
(``unmo.installs``), the tracker's own probes, surveys and agreement uploads.

Definitions (docs/tracker.md, "Figures"):
- P95/P99 batch latency: quantiles of the merged per-minute histograms,
  interpolated linearly inside a bucket as Prometheus' ``histogram_quantile``
  does; a quantile in the +Inf bucket reads as the highest finite bound.
- error rate = (rejected records + 5xx answers) / (records received + 5xx
  answers): each 5xx answer counts as one failed unit, its records being unknown.
- throughput = records accepted per day over the window.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from unmo.errors import ValidationError, cut
from unmo.server.metrics import LATENCY_BUCKETS_MS
from unmo.tracker import agreement, pricing, probes, surveys

DAY = dt.timedelta(days=1)

# target of each success criterion; "op" says which side passes (spec: tracker.md "Dashboard and report")
TARGETS: dict[str, dict[str, Any]] = {
    "customers_live": {"label": "Customers live", "target": 5, "op": ">=", "unit": "count"},
    "new_this_week": {"label": "New customers this week", "target": 3, "op": ">=", "unit": "count"},
    "avg_onboarding_s": {"label": "Average onboarding time", "target": 300, "op": "<=", "unit": "seconds"},
    "satisfaction": {"label": "Satisfaction (CSAT 4-5)", "target": 0.90, "op": ">=", "unit": "ratio"},
    "throughput": {"label": "Throughput", "target": None, "op": None, "unit": "records/day"},
    "p95_latency_ms": {"label": "P95 batch latency", "target": 100, "op": "<=", "unit": "ms"},
    "uptime": {"label": "Uptime", "target": 0.999, "op": ">=", "unit": "ratio"},
    "error_rate": {"label": "Error rate", "target": 0.001, "op": "<=", "unit": "ratio"},
    "mrr": {"label": "MRR", "target": 10_000, "op": ">=", "unit": "usd"},
    "cost_savings": {"label": "Cost savings validated", "target": 1.0, "op": ">=", "unit": "ratio"},
    "attribution_agreement": {"label": "Attribution agreement", "target": 0.95, "op": ">=", "unit": "ratio"},
}


@dataclass(frozen=True)
class Window:
    """Half-open time range [start, end)."""

    start: dt.datetime
    end: dt.datetime

    @property
    def days(self) -> float:
        return (self.end - self.start) / DAY


def iso_week(week: str | None, now: dt.datetime) -> Window:
    """``YYYY-Www`` (ISO 8601 week, Monday 00:00 UTC onwards), or the week containing ``now``."""
    if week is None:
        monday = (now.astimezone(dt.UTC) - dt.timedelta(days=now.astimezone(dt.UTC).weekday())).date()
    else:
        try:
            year, w = week.split("-W")
            monday = dt.date.fromisocalendar(int(year), int(w), 1)
        except ValueError:
            raise ValidationError(f"week: expected an ISO week like 2026-W48, got {cut(week)}") from None
    start = dt.datetime.combine(monday, dt.time(), dt.UTC)
    return Window(start, start + 7 * DAY)


def week_label(w: Window) -> str:
    """``YYYY-Www`` of a week window."""
    year, week, _ = w.start.date().isocalendar()
    return f"{year}-W{week:02d}"


def quantile(buckets: list[int], q: float) -> float | None:
    """The q-quantile (ms) of a histogram over LATENCY_BUCKETS_MS (+Inf last), as Prometheus interpolates."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        if seen + count >= rank and count > 0:
            if i >= len(LATENCY_BUCKETS_MS):
                return float(LATENCY_BUCKETS_MS[-1])
            lower = 0.0 if i == 0 else float(LATENCY_BUCKETS_MS[i - 1])
            upper = float(LATENCY_BUCKETS_MS[i])
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])


def judge(key: str, value: float | None) -> bool | None:
    """Whether ``value`` meets the criterion's target (None without a value or a target)."""
    t = TARGETS[key]
    if value is None or t["op"] is None:
        return None
    return bool(value >= t["target"]) if t["op"] == ">=" else bool(value <= t["target"])


def criterion(key: str, value: float | None, **extra: Any) -> dict[str, Any]:
    """One success criterion: label, target, unit, measured value, verdict and extras."""
    return {"key": key, **TARGETS[key], "value": value, "pass": judge(key, value), **extra}


async def ingest_totals(conn: asyncpg.Connection, app_ids: list[int], w: Window) -> dict[str, Any]:
    """Records, errors and latency of ``app_ids`` over ``w`` from unmo.ingest_minute."""
    r = await conn.fetchrow(
        """SELECT coalesce(sum(batches), 0)::bigint AS batches, coalesce(sum(accepted), 0)::bigint AS accepted,
                  coalesce(sum(duplicates), 0)::bigint AS duplicates, coalesce(sum(rejected), 0)::bigint AS rejected,
                  coalesce(sum(server_errors), 0)::bigint AS server_errors,
                  coalesce(sum(latency_sum_ms), 0)::float8 AS latency_sum
           FROM unmo.ingest_minute WHERE app_id = ANY($1) AND minute >= $2 AND minute < $3""",
        app_ids, w.start, w.end,
    )
    assert r is not None
    merged = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for b in await conn.fetch(
        """SELECT i, sum(n)::bigint AS n FROM unmo.ingest_minute m, unnest(m.latency_buckets) WITH ORDINALITY AS t(n, i)
           WHERE app_id = ANY($1) AND minute >= $2 AND minute < $3 GROUP BY i""",
        app_ids, w.start, w.end,
    ):
        if 1 <= b["i"] <= len(merged):
            merged[b["i"] - 1] = b["n"]
    peak = await conn.fetchval(
        """SELECT max(n)::bigint FROM (SELECT sum(accepted) AS n FROM unmo.ingest_minute
           WHERE app_id = ANY($1) AND minute >= $2 AND minute < $3 GROUP BY minute) s""",
        app_ids, w.start, w.end,
    )
    received = r["accepted"] + r["duplicates"] + r["rejected"]
    failed_units = received + r["server_errors"]
    return {
        "batches": r["batches"],
        "accepted": r["accepted"],
        "duplicates": r["duplicates"],
        "rejected": r["rejected"],
        "server_errors": r["server_errors"],
        "records_per_day": r["accepted"] / w.days if w.days > 0 else None,
        "peak_records_per_s": (peak or 0) / 60.0,
        "p50_ms": quantile(merged, 0.50),
        "p95_ms": quantile(merged, 0.95),
        "p99_ms": quantile(merged, 0.99),
        "mean_ms": r["latency_sum"] / r["batches"] if r["batches"] else None,
        "error_rate": (r["rejected"] + r["server_errors"]) / failed_units if failed_units else None,
    }


async def series(conn: asyncpg.Connection, apps: dict[int, list[int]], w: Window,
                 step: dt.timedelta) -> dict[str, Any]:
    """Volume per customer and P95 latency per step over ``w``, for the dashboard charts."""
    all_apps = [a for ids in apps.values() for a in ids]
    owner = {a: cid for cid, ids in apps.items() for a in ids}
    n = max(1, int((w.end - w.start) / step))
    t0 = w.start
    volume = {cid: [0] * n for cid in apps}
    hist = [[0] * (len(LATENCY_BUCKETS_MS) + 1) for _ in range(n)]
    for r in await conn.fetch(
        """SELECT app_id, date_bin($4, minute, $2) AS slot, sum(accepted)::bigint AS accepted
           FROM unmo.ingest_minute WHERE app_id = ANY($1) AND minute >= $2 AND minute < $3 GROUP BY 1, 2""",
        all_apps, w.start, w.end, step,
    ):
        k = int((r["slot"] - t0) / step)
        if 0 <= k < n:
            volume[owner[r["app_id"]]][k] += r["accepted"]
    for r in await conn.fetch(
        """SELECT date_bin($4, minute, $2) AS slot, i, sum(c)::bigint AS c
           FROM unmo.ingest_minute m, unnest(m.latency_buckets) WITH ORDINALITY AS t(c, i)
           WHERE app_id = ANY($1) AND minute >= $2 AND minute < $3 GROUP BY 1, 2""",
        all_apps, w.start, w.end, step,
    ):
        k = int((r["slot"] - t0) / step)
        if 0 <= k < n and 1 <= r["i"] <= len(hist[k]):
            hist[k][r["i"] - 1] += r["c"]
    return {
        "step_s": step.total_seconds(),
        "t": [int((t0 + i * step).timestamp()) for i in range(n)],
        "volume": {str(cid): v for cid, v in volume.items()},
        "p95_ms": [quantile(h, 0.95) for h in hist],
        "p99_ms": [quantile(h, 0.99) for h in hist],
    }


async def statuses_at(conn: asyncpg.Connection, at: dt.datetime) -> dict[int, str]:
    """Each customer's status at ``at`` (from the status log)."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (customer_id) customer_id, status FROM tracker.status_log
           WHERE at <= $1 ORDER BY customer_id, at DESC, id DESC""",
        at,
    )
    return {r["customer_id"]: r["status"] for r in rows}


async def customer_apps_map(conn: asyncpg.Connection) -> dict[int, list[int]]:
    """customer id -> its app ids."""
    rows = await conn.fetch("SELECT customer_id, array_agg(app_id ORDER BY app_id) AS a FROM tracker.customer_apps "
                            "GROUP BY customer_id")
    return {r["customer_id"]: list(r["a"]) for r in rows}


async def cost_savings(conn: asyncpg.Connection, customer: asyncpg.Record, app_ids: list[int],
                       prices: dict[str, float], at: dt.datetime) -> dict[str, Any]:
    """The customer's savings for the month containing ``at``, up to ``at``."""
    start = pricing.month_start(at)
    live_from = max(start, customer["first_record_at"] or at)
    installs = await pricing.attributed_installs(conn, app_ids, start, at)
    month_days = calendar.monthrange(start.year, start.month)[1]
    out = pricing.savings(installs, prices.get(customer["provider"], 0.0), float(customer["plan_price"]),
                          (at - live_from) / DAY, month_days)
    out["provider"] = customer["provider"]
    out["month"] = f"{start:%Y-%m}"
    return out


async def customer_figures(conn: asyncpg.Connection, customer: asyncpg.Record, app_ids: list[int], perf: Window,
                           prices: dict[str, float], at: dt.datetime) -> dict[str, Any]:
    """One customer's row of the dashboard: its figures over ``perf`` and as of ``at``."""
    from unmo.tracker.customers import customer_json

    ingest = await ingest_totals(conn, app_ids, perf)
    run = await agreement.latest_run(conn, customer["customer_id"])
    sat = await surveys.satisfaction(conn, at, customer["customer_id"])
    feedback_n = await conn.fetchval("SELECT count(*) FROM tracker.feedback WHERE customer_id = $1",
                                     customer["customer_id"])
    return {
        **customer_json(customer),
        "app_ids": app_ids,
        "records_per_day": ingest["records_per_day"],
        "accepted": ingest["accepted"],
        "p95_ms": ingest["p95_ms"],
        "p99_ms": ingest["p99_ms"],
        "error_rate": ingest["error_rate"],
        "agreement": None if run is None else {
            "share": run["agreement"], "compared": run["compared"], "agreed": run["agreed"],
            "not_in_unmo": run["not_in_unmo"], "run_id": run["run_id"], "uploaded_at": run["uploaded_at"]},
        "cost_savings": await cost_savings(conn, customer, app_ids, prices, at),
        "satisfaction": sat,
        "feedback": feedback_n,
    }


async def programme(conn: asyncpg.Connection, *, at: dt.datetime, perf: Window, uptime_window: Window,
                    week: Window) -> dict[str, Any]:
    """Every success criterion against its target, and the per-customer table.

    ``perf`` is the window of throughput, latency and error rate, ``uptime_window``
    that of uptime, ``week`` the ISO week that "new this week" counts in; statuses,
    MRR, satisfaction and onboarding are as of ``at``.
    """
    status = await statuses_at(conn, at)
    customers = [c for c in await conn.fetch("SELECT * FROM tracker.customers ORDER BY customer_id")
                 if c["customer_id"] in status]
    apps = await customer_apps_map(conn)
    prices = {p["provider"]: p["price_per_conversion"] for p in await pricing.price_table(conn)}
    rows = []
    for c in customers:
        fig = await customer_figures(conn, c, apps.get(c["customer_id"], []), perf, prices, at)
        fig["status"] = status[c["customer_id"]]
        rows.append(fig)
    live = [r for r in rows if r["status"] == "live"]
    pilot_apps = [a for r in rows if r["status"] != "churned" for a in r["app_ids"]]
    totals = await ingest_totals(conn, pilot_apps, perf)
    onboarded = [r["onboarding_seconds"] for r in rows if r["onboarding_seconds"] is not None
                 and r["first_record_at"] is not None]
    new = [c for c in customers if week.start <= c["created_at"] < week.end]
    sat = await surveys.satisfaction(conn, at)
    up = await probes.uptime(conn, uptime_window.start, uptime_window.end)
    mrr = sum(r["plan_price"] for r in live)
    paying = [r for r in live if r["provider"] != "none"]
    validated = [r for r in paying if r["cost_savings"]["validated"]]
    shares = [(r["agreement"]["agreed"], r["agreement"]["compared"]) for r in rows
              if r["agreement"] and r["agreement"]["compared"]]
    agreed, compared = sum(a for a, _ in shares), sum(c for _, c in shares)
    expected = sum(r["events_per_day"] for r in live)
    criteria = [
        criterion("customers_live", len(live)),
        criterion("new_this_week", len(new), week=week_label(week)),
        criterion("avg_onboarding_s", sum(onboarded) / len(onboarded) if onboarded else None,
                  customers=len(onboarded)),
        criterion("satisfaction", sat["satisfaction"], answers=sat["answers"], nps=sat["nps"]),
        criterion("throughput", totals["records_per_day"], expected_per_day=expected,
                  peak_records_per_s=totals["peak_records_per_s"]),
        criterion("p95_latency_ms", totals["p95_ms"], p99_ms=totals["p99_ms"], batches=totals["batches"]),
        criterion("uptime", up["uptime"], probes=up["probes"], failed=up["failed"]),
        criterion("error_rate", totals["error_rate"], rejected=totals["rejected"],
                  server_errors=totals["server_errors"]),
        criterion("mrr", mrr, live_customers=len(live)),
        criterion("cost_savings", len(validated) / len(paying) if paying else None,
                  validated=len(validated), customers=len(paying),
                  avg_percent=(sum(r["cost_savings"]["percent"] or 0 for r in validated) / len(validated)
                               if validated else None)),
        criterion("attribution_agreement", agreed / compared if compared else None, compared=compared),
    ]
    return {
        "at": at.isoformat(),
        "windows": {"performance": [perf.start.isoformat(), perf.end.isoformat()],
                    "uptime": [uptime_window.start.isoformat(), uptime_window.end.isoformat()],
                    "week": week_label(week)},
        "criteria": criteria,
        "totals": totals,
        "uptime": up,
        "customers": rows,
    }
