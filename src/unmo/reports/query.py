"""The daily and the cohort report, read from the rollups (docs/reports.md).

Both reports sum 15-minute rollup buckets into the local days of the asked time
zone (PostgreSQL's ``AT TIME ZONE``, the same tz database Python's zoneinfo
reads), so a report over 30 days reads a few thousand rollup rows per group,
never the records.  Parameters are validated here, once, for the HTTP API and
the command line alike.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from unmo.errors import ValidationError, cut
from unmo.reports.rollup import DAILY_COUNTERS, SOURCE_CAMPAIGN, SOURCE_LABELS, SOURCE_UNATTRIBUTED

DIMENSIONS = ("network", "campaign", "adset", "ad", "site", "platform")
CAMPAIGN_DIMENSIONS = DIMENSIONS[:5]
DEFAULT_GROUP_BY = ("network", "campaign")
DEFAULT_DAYS = (0, 1, 7, 30)
MAX_RANGE_DAYS = 366
MAX_DAY_N = 730             # cohort days: two years, the longest re-attribution window
MAX_DAYS_VALUES = 32
MAX_ROWS = 200_000          # rows of one report answer (JSON or CSV)
EARLIEST = dt.date(2000, 1, 1)   # no record is older (unmo.ingest.batch.MIN_TS_MS)
STATEMENT_TIMEOUT_MS = 30_000

# What the daily report shows, in order: rollup counter -> column name.
DAILY_COLUMNS = {
    "clicks": "clicks",
    "impressions": "impressions",
    "installs": "installs",
    "reattributions": "reattributions",
    "reinstalls": "reinstalls",
    "organic_installs": "organic_installs",
    "opens": "opens",
    "events": "events",
    "ctit_rejected": "ctit_rejected_touches",
    "blocklisted": "blocklisted_touches",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TZ = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")


class ParameterError(ValidationError):
    """A report parameter that cannot be used; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.detail = message


class TooLargeError(ValidationError):
    """The answer would exceed MAX_ROWS rows."""


@dataclass(frozen=True)
class ReportParams:
    """Validated parameters of a report: local dates ``start``..``end`` (inclusive) in ``tz``."""

    start: dt.date
    end: dt.date
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    tz: str = "UTC"
    days: tuple[int, ...] = DEFAULT_DAYS

    def to_json(self, cohort: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"from": self.start.isoformat(), "to": self.end.isoformat(), "tz": self.tz,
                               "group_by": list(self.group_by)}
        if cohort:
            out["days"] = list(self.days)
        return out


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def parse_date(parameter: str, text: str | None) -> dt.date:
    if text is None:
        raise ParameterError(parameter, "required, a date YYYY-MM-DD")
    if not _DATE.match(text):
        raise ParameterError(parameter, f"expected a date YYYY-MM-DD, got {cut(text)}")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ParameterError(parameter, f"expected a date YYYY-MM-DD, got {cut(text)}") from None
    if day < EARLIEST:
        raise ParameterError(parameter, f"expected a date from {EARLIEST} on, got {cut(text)}")
    return day


def parse_group_by(text: str | None) -> tuple[str, ...]:
    if text is None:
        return DEFAULT_GROUP_BY
    if not text.strip():
        return ()
    out: list[str] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if part not in DIMENSIONS:
            raise ParameterError("group_by", f"expected a comma-separated list of {', '.join(DIMENSIONS)}, "
                                             f"got {cut(part)} in {cut(text)}")
        if part in out:
            raise ParameterError("group_by", f"{part} given twice in {cut(text)}")
        out.append(part)
    return tuple(out)


def parse_tz(text: str | None) -> str:
    if text is None or text == "":
        return "UTC"
    if len(text) > 64 or not _TZ.match(text) or text not in _zones():
        raise ParameterError("tz", f"expected an IANA time zone like Europe/Berlin or Asia/Kolkata, got {cut(text)}")
    return text


def parse_days(text: str | None) -> tuple[int, ...]:
    if text is None:
        return DEFAULT_DAYS
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or len(part) > 4 or int(part) > MAX_DAY_N:
            raise ParameterError("days", f"expected whole numbers 0..{MAX_DAY_N} separated by commas, got {cut(part)}"
                                         f" in {cut(text)}")
        out.add(int(part))
    if len(out) > MAX_DAYS_VALUES:
        raise ParameterError("days", f"expected at most {MAX_DAYS_VALUES} values, got {len(out)}")
    return tuple(sorted(out))


def parse_params(values: Mapping[str, str], *, cohort: bool, allowed: tuple[str, ...] = ()) -> ReportParams:
    """Validate report parameters (query string or command line); raises ParameterError naming the first bad one.

    ``allowed`` names extra parameters the caller handles itself (``format``)."""
    known = {"from", "to", "group_by", "tz", *allowed} | ({"days"} if cohort else set())
    for name in values:
        if name not in known:
            raise ParameterError(name, f"unknown parameter (expected {', '.join(sorted(known))})")
    start = parse_date("from", values.get("from"))
    end = parse_date("to", values.get("to"))
    if end < start:
        raise ParameterError("to", f"expected a date on or after from ({start}), got {cut(values.get('to'))}")
    span = (end - start).days + 1
    if span > MAX_RANGE_DAYS:
        raise ParameterError("to", f"expected at most {MAX_RANGE_DAYS} days from {start}, got {span} days "
                                   f"({start}..{end})")
    return ReportParams(start=start, end=end, group_by=parse_group_by(values.get("group_by")),
                        tz=parse_tz(values.get("tz")), days=parse_days(values.get("days")) if cohort else DEFAULT_DAYS)


# --------------------------------------------------------------------------- reports
@dataclass
class Report:
    """A report ready to render: rows of plain values, the currencies seen, totals."""

    kind: str                       # "daily" or "cohorts"
    app_id: int
    params: ReportParams
    rows: list[dict[str, Any]]
    currencies: list[str]
    totals: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"report": self.kind, "app_id": self.app_id, **self.params.to_json(self.kind == "cohorts"),
                "currencies": self.currencies, "rows": self.rows, "totals": self.totals}


def money(micros: int) -> Decimal:
    """Micros -> the exact decimal amount, without trailing zeros (``4990000`` -> ``4.99``)."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return Decimal(sign + text)


def _label_sql(group_by: tuple[str, ...]) -> tuple[str, list[str]]:
    """The source expression and the dimension columns to group by."""
    if any(d in CAMPAIGN_DIMENSIONS for d in group_by):
        return "source", list(group_by)
    return f"{SOURCE_CAMPAIGN}", list(group_by)


def _range_sql(table: str) -> str:
    # the local days from..to of zone $2, as an exact bucket range (an index range scan) plus the local date
    # of each bucket (a zone whose midnight does not exist on a DST day must not pull the previous day in)
    return (f"FROM unmo.{table} WHERE app_id = $1 "
            "AND bucket >= ($3::date::timestamp AT TIME ZONE $2) "
            "AND bucket < (($4::date + 1)::timestamp AT TIME ZONE $2) "
            "AND (bucket AT TIME ZONE $2)::date BETWEEN $3::date AND $4::date")


def _labels(source: int, dims: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    label = SOURCE_LABELS.get(source)
    return {d: (label if label is not None and d in CAMPAIGN_DIMENSIONS else v) for d, v in zip(dims, values,
                                                                                            strict=True)}


async def _fetch(conn: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
    # a report is read-only and bounded in time: it never holds up the ingest path for long
    async with conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        return list(await conn.fetch(sql, *args))


def _check_rows(n: int, limit: int = MAX_ROWS) -> None:
    if n > limit:
        raise TooLargeError(f"report: more than {MAX_ROWS} rows; narrow from/to or group_by")


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(("" if v is None else v) for v in key)


async def daily(conn: asyncpg.Connection, app_id: int, p: ReportParams) -> Report:
    """Per local day and group: clicks, impressions, installs, ..., revenue per currency (docs/reports.md)."""
    source, dims = _label_sql(p.group_by)
    dim_sql = "".join(f", {d}" for d in dims)
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in DAILY_COUNTERS if c != "revenue_micros")
    sql = (f"SELECT (bucket AT TIME ZONE $2)::date AS day, {source} AS source{dim_sql}, currency, {sums}, "
           f"sum(revenue_micros) AS revenue_micros {_range_sql('report_rollup')} "
           f"GROUP BY 1, 2{dim_sql}, currency LIMIT {MAX_ROWS * 4 + 1}")
    records = await _fetch(conn, sql, app_id, p.tz, p.start, p.end)
    _check_rows(len(records), MAX_ROWS * 4)
    acc: dict[tuple[Any, ...], dict[str, Any]] = {}
    currencies: set[str] = set()
    for r in records:
        key = (r["day"], r["source"], *[r[d] for d in dims])
        row = acc.get(key)
        if row is None:
            row = acc[key] = {"date": r["day"].isoformat(), **_labels(r["source"], dims, key[2:]),
                              **dict.fromkeys(DAILY_COLUMNS.values(), 0), "revenue": {}}
        for counter, column in DAILY_COLUMNS.items():
            row[column] += r[counter]
        if r["currency"] is not None:
            currencies.add(r["currency"])
            row["revenue"][r["currency"]] = row["revenue"].get(r["currency"], 0) + int(r["revenue_micros"])
    _check_rows(len(acc))
    rows = [acc[k] for k in sorted(acc, key=_sort_key)]
    totals: dict[str, Any] = {**dict.fromkeys(DAILY_COLUMNS.values(), 0), "revenue": {}}
    for row in rows:
        for column in DAILY_COLUMNS.values():
            totals[column] += row[column]
        for c, m in row["revenue"].items():
            totals["revenue"][c] = totals["revenue"].get(c, 0) + m
        row["revenue"] = {c: money(m) for c, m in sorted(row["revenue"].items())}
    totals["revenue"] = {c: money(m) for c, m in sorted(totals["revenue"].items())}
    return Report("daily", app_id, p, rows, sorted(currencies), totals)


def _local_midnight_utc(day: dt.date, tz: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), zoneinfo.ZoneInfo(tz)).astimezone(dt.UTC)


async def cohorts(conn: asyncpg.Connection, app_id: int, p: ReportParams, *, now: dt.datetime | None = None) -> Report:
    """Per local install day and group: installs, revenue to date, and for each day N after the install the
    devices active that day (retained, retention) and the revenue through day N (docs/reports.md)."""
    now = now or dt.datetime.now(dt.UTC)
    source, dims = _label_sql(p.group_by)
    labelled = source == "source"
    dim_sql = "".join(f", {d}" for d in dims)
    # installs (new installs, as in the daily report) and, as its own row, the revenue of unattributed events
    base = (f"SELECT (bucket AT TIME ZONE $2)::date AS day, {source} AS source{dim_sql}, currency, "
            f"sum(installs)::bigint AS installs, sum(revenue_micros) AS revenue_micros "
            f"{_range_sql('report_rollup')} AND (installs > 0 "
            f"{f'OR source = {SOURCE_UNATTRIBUTED}' if labelled else ''}) "
            f"GROUP BY 1, 2{dim_sql}, currency LIMIT {MAX_ROWS * 4 + 1}")
    last = p.days[-1] if p.days else 0
    activity = (f"SELECT (bucket AT TIME ZONE $2)::date AS day, {source} AS source{dim_sql}, currency, "
                f"least(day_n, $5) AS dn, sum(retained)::bigint AS retained, sum(revenue_micros) AS revenue_micros "
                f"{_range_sql('report_cohort')} "
                f"GROUP BY 1, 2{dim_sql}, currency, least(day_n, $5) LIMIT {MAX_ROWS * 40 + 1}")
    installs = await _fetch(conn, base, app_id, p.tz, p.start, p.end)
    _check_rows(len(installs), MAX_ROWS * 4)
    active = await _fetch(conn, activity, app_id, p.tz, p.start, p.end, last + 1)
    _check_rows(len(active), MAX_ROWS * 40)

    acc: dict[tuple[Any, ...], dict[str, Any]] = {}
    currencies: set[str] = set()

    def entry(r: asyncpg.Record) -> dict[str, Any]:
        key = (r["day"], r["source"], *[r[d] for d in dims])
        e = acc.get(key)
        if e is None:
            e = acc[key] = {"day": r["day"], "source": r["source"], "labels": _labels(r["source"], dims, key[2:]),
                            "installs": 0, "revenue": {}, "retained": {}, "by_dn": {}}
        return e

    for r in installs:
        e = entry(r)
        e["installs"] += r["installs"]
        if r["source"] == SOURCE_UNATTRIBUTED and r["currency"] is not None:
            currencies.add(r["currency"])
            e["revenue"][r["currency"]] = e["revenue"].get(r["currency"], 0) + int(r["revenue_micros"])
    for r in active:
        e = entry(r)
        dn = r["dn"]
        e["retained"][dn] = e["retained"].get(dn, 0) + r["retained"]
        if r["currency"] is not None:
            currencies.add(r["currency"])
            m = int(r["revenue_micros"])
            e["revenue"][r["currency"]] = e["revenue"].get(r["currency"], 0) + m
            by = e["by_dn"].setdefault(dn, {})
            by[r["currency"]] = by.get(r["currency"], 0) + m
    _check_rows(len(acc))

    rows: list[dict[str, Any]] = []
    total_installs = 0
    total_revenue: dict[str, int] = {}
    total_days: dict[int, dict[str, Any]] = {n: {"retained": 0, "revenue": {}} for n in p.days}
    for key in sorted(acc, key=_sort_key):
        e = acc[key]
        row: dict[str, Any] = {"date": e["day"].isoformat(), **e["labels"], "installs": e["installs"],
                               "revenue": {c: money(m) for c, m in sorted(e["revenue"].items())}}
        for c, m in e["revenue"].items():
            total_revenue[c] = total_revenue.get(c, 0) + m
        days: dict[str, Any] = {}
        if e["source"] == SOURCE_UNATTRIBUTED:
            # no install, so no day after it: the row holds the day's revenue of unattributed events
            days = dict.fromkeys(str(n) for n in p.days)
        else:
            total_installs += e["installs"]
            day_end = _local_midnight_utc(e["day"] + dt.timedelta(days=1), p.tz)
            cumulative: dict[str, int] = {}
            dn_seen = 0
            for n in p.days:
                while dn_seen <= n:
                    for c, m in e["by_dn"].get(dn_seen, {}).items():
                        cumulative[c] = cumulative.get(c, 0) + m
                    dn_seen += 1
                retained = e["retained"].get(n, 0)
                days[str(n)] = {
                    "retained": retained,
                    "retention": retained / e["installs"] if e["installs"] else None,
                    "revenue": {c: money(m) for c, m in sorted(cumulative.items())},
                    # every install of the day has lived through its whole day N
                    "complete": now >= day_end + dt.timedelta(days=n + 1),
                }
                t = total_days[n]
                t["retained"] += retained
                for c, m in cumulative.items():
                    t["revenue"][c] = t["revenue"].get(c, 0) + m
        row["days"] = days
        rows.append(row)
    totals = {
        "installs": total_installs,
        "revenue": {c: money(m) for c, m in sorted(total_revenue.items())},
        "days": {str(n): {"retained": t["retained"],
                          "retention": t["retained"] / total_installs if total_installs else None,
                          "revenue": {c: money(m) for c, m in sorted(t["revenue"].items())}}
                 for n, t in total_days.items()},
    }
    return Report("cohorts", app_id, p, rows, sorted(currencies), totals)
