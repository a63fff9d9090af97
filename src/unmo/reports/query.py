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
from unmo.reports import levels, rollup
from unmo.reports.rollup import (
    DAILY_COUNTERS,
    GRAIN_CAMPAIGN,
    GRAIN_COLUMNS,
    GRAIN_FULL,
    SOURCE_LABELS,
    SOURCE_UNATTRIBUTED,
)

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


def _labels(source: int, dims: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    label = SOURCE_LABELS.get(source)
    return {d: (label if label is not None and d in CAMPAIGN_DIMENSIONS else v) for d, v in zip(dims, values,
                                                                                            strict=True)}


async def _fetch(conn: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
    # a report is read-only and bounded in time: it never holds up the ingest path for long
    async with conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
        # sums by group are hash aggregates in memory: the planner, which cannot know how many rollup rows
        # a bucket holds, would otherwise sort tens of thousands of rows by their text columns under the
        # database's collation, several times slower (measured: bench/test_reports.py)
        # (and no JIT: the cost that disabling sorts adds would make PostgreSQL compile every report query
        # with LLVM, seconds for a query that runs in milliseconds; PostgreSQL docs, "When to JIT?")
        await conn.execute("SET LOCAL work_mem = '64MB'; SET LOCAL enable_sort = off; SET LOCAL jit = off")
        return list(await conn.fetch(sql, *args))


def _check_rows(n: int, limit: int = MAX_ROWS) -> None:
    if n > limit:
        raise TooLargeError(f"report: more than {MAX_ROWS} rows; narrow from/to or group_by")


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(("" if v is None else v) for v in key)


@dataclass
class _Plan:
    """What to read for a report: the grain, the dimension columns, the buckets of each local day."""

    grain: int
    dims: list[str]
    labelled: bool
    starts: list[dt.datetime]
    pieces: levels.Pieces

    @classmethod
    def make(cls, p: ReportParams) -> _Plan:
        grain = GRAIN_CAMPAIGN if set(p.group_by) <= set(GRAIN_COLUMNS[GRAIN_CAMPAIGN]) else GRAIN_FULL
        try:
            starts = levels.day_starts(p.start, p.end, p.tz)
        except levels.UnalignedZoneError as exc:
            raise ParameterError("tz", str(exc).removeprefix("tz: ")) from None
        return cls(grain, list(p.group_by), any(d in CAMPAIGN_DIMENSIONS for d in p.group_by), starts,
                   levels.pieces(starts, hours=grain == GRAIN_CAMPAIGN, days=True))

    def args(self, app_id: int) -> list[Any]:
        """$1..$6 of _sql: app, pieces, grain."""
        pc = self.pieces
        return [app_id, pc.level, pc.bucket, pc.sign, pc.day, self.grain]

    def sql(self, rollup: str, sums: dict[str, str], where: str = "") -> str:
        """Per local day (index), source, dimensions and currency: ``sums`` (name -> expression of the row
        ``{t}``) over the rollup's pieces; ``where`` (of ``{t}``) keeps some rows only."""
        src = "r.source" if self.labelled else "0"
        dims = "".join(f", r.{d}" for d in self.dims)
        cols = ", ".join(f"sum(({expr.format(t='r')}) * p.sign) AS {name}" for name, expr in sums.items())
        return (f"SELECT p.day AS day, {src} AS source{dims}, r.currency, {cols} "
                f"FROM unnest($2::smallint[], $3::timestamptz[], $4::integer[], $5::integer[]) "
                f"AS p(level, bucket, sign, day) JOIN unmo.{rollup} r ON r.app_id = $1 AND r.grain = $6 "
                f"AND r.level = p.level AND r.bucket = p.bucket{where.format(t='r')} "
                f"GROUP BY 1, 2{dims}, r.currency LIMIT {MAX_ROWS * 4 + 1}")


async def catch_up(conn: asyncpg.Connection, app_id: int) -> None:
    """Fold the app's records committed so far into the rollups (waiting for a fold of it under way):
    a report reads every record whose batch was answered before the report started."""
    await rollup.fold(conn, app_id, wait=True)


async def _daily_rows(conn: asyncpg.Connection, app_id: int, plan: _Plan, where: str = "") -> list[asyncpg.Record]:
    sums = {c: f"{{t}}.{c}" for c in DAILY_COUNTERS}
    records = await _fetch(conn, plan.sql("report_rollup", sums, where), *plan.args(app_id))
    _check_rows(len(records), MAX_ROWS * 4)
    return records


async def daily(conn: asyncpg.Connection, app_id: int, p: ReportParams) -> Report:
    """Per local day and group: clicks, impressions, installs, ..., revenue per currency (docs/reports.md)."""
    plan = _Plan.make(p)
    await catch_up(conn, app_id)
    nd = len(plan.dims)
    # record layout of _Plan.sql: day, source, dims..., currency, DAILY_COUNTERS...
    first = 3 + nd
    count_at = [first + DAILY_COUNTERS.index(c) for c in DAILY_COLUMNS]
    revenue_at = first + DAILY_COUNTERS.index("revenue_micros")
    acc: dict[tuple[Any, ...], tuple[list[int], dict[str, int]]] = {}
    currencies: set[str] = set()
    for r in await _daily_rows(conn, app_id, plan):
        v = tuple(r)
        counts = [v[i] for i in count_at]
        revenue = int(v[revenue_at] or 0)
        if not revenue and not any(counts):
            continue  # a group the day's edges took out again (the complement of a partial day)
        key = v[:2 + nd]
        e = acc.get(key)
        if e is None:
            e = acc[key] = ([0] * len(counts), {})
        totals = e[0]
        for j, x in enumerate(counts):
            totals[j] += x
        currency = v[2 + nd]
        if currency is not None:
            currencies.add(currency)
            e[1][currency] = e[1].get(currency, 0) + revenue
    _check_rows(len(acc))
    columns = list(DAILY_COLUMNS.values())
    grand = [0] * len(columns)
    grand_revenue: dict[str, int] = {}
    rows = []
    for key in sorted(acc, key=_sort_key):
        counts, revenue_by = acc[key]
        for j, x in enumerate(counts):
            grand[j] += x
        for c, m in revenue_by.items():
            grand_revenue[c] = grand_revenue.get(c, 0) + m
        rows.append({"date": (p.start + dt.timedelta(days=key[0])).isoformat(),
                     **_labels(key[1], plan.dims, key[2:]), **dict(zip(columns, counts, strict=True)),
                     "revenue": {c: money(m) for c, m in sorted(revenue_by.items())}})
    summary: dict[str, Any] = {**dict(zip(columns, grand, strict=True)),
                               "revenue": {c: money(m) for c, m in sorted(grand_revenue.items())}}
    return Report("daily", app_id, p, rows, sorted(currencies), summary)


async def cohorts(conn: asyncpg.Connection, app_id: int, p: ReportParams, *, now: dt.datetime | None = None) -> Report:
    """Per local install day and group: installs, revenue to date, and for each day N after the install the
    devices active that day (retained, retention) and the revenue through day N (docs/reports.md)."""
    now = now or dt.datetime.now(dt.UTC)
    plan = _Plan.make(p)
    await catch_up(conn, app_id)
    dims = plan.dims
    nd = len(dims)
    # installs (new installs, as in the daily report) and, as its own row, what unattributed events brought
    keep = f" AND ({{t}}.installs > 0 OR {{t}}.source = {SOURCE_UNATTRIBUTED})" if plan.labelled else \
        " AND {t}.installs > 0"
    installs = await _daily_rows(conn, app_id, plan, keep)
    # day N's retained devices and the revenue through day N, per cohort group, summed in the database
    sums = {"revenue_micros": "{t}.revenue_micros"}
    for n in p.days:
        sums[f"retained_{n}"] = f"CASE WHEN {{t}}.day_n = {n} THEN {{t}}.retained ELSE 0 END"
        sums[f"revenue_{n}"] = f"CASE WHEN {{t}}.day_n <= {n} THEN {{t}}.revenue_micros ELSE 0 END"
    # rows without a currency hold retention, needed at the asked days only: skipping the other days'
    # (most cohort rows) halves the work; the filter is per group and day N, so the day edges' signed
    # buckets keep matching
    days_sql = ",".join(map(str, p.days))
    active = await _fetch(conn, plan.sql("cohort_rollup", sums,
                                         f" AND ({{t}}.currency IS NOT NULL OR {{t}}.day_n IN ({days_sql}))"),
                          *plan.args(app_id))
    _check_rows(len(active), MAX_ROWS * 4)

    acc: dict[tuple[Any, ...], dict[str, Any]] = {}
    currencies: set[str] = set()

    def entry(key: tuple[Any, ...]) -> dict[str, Any]:
        e = acc.get(key)
        if e is None:
            e = acc[key] = {"installs": 0, "revenue": {}, "retained": dict.fromkeys(p.days, 0),
                            "through": {n: {} for n in p.days}}
        return e

    for r in installs:
        v = tuple(r)
        key = v[:2 + nd]
        # (the filter keeps whole rows of a source-2 group, but of other groups only those with installs:
        # only their installs add up)
        if not (r["installs"] if key[1] != SOURCE_UNATTRIBUTED
                else r["opens"] or r["events"] or r["revenue_micros"]):
            continue  # nothing, or taken out again by a partial day's complement
        e = entry(key)
        e["installs"] += r["installs"]
        currency = v[2 + nd]
        if key[1] == SOURCE_UNATTRIBUTED and currency is not None:
            currencies.add(currency)
            e["revenue"][currency] = e["revenue"].get(currency, 0) + int(r["revenue_micros"])
    for r in active:
        v = tuple(r)
        key = v[:2 + nd]
        currency = v[2 + nd]
        retained = {n: r[f"retained_{n}"] for n in p.days}
        total = int(r["revenue_micros"] or 0)
        if not any(retained.values()) and not total and not any(r[f"revenue_{n}"] for n in p.days):
            continue  # nothing, or taken out again by a partial day's complement
        e = entry(key)
        for n, k in retained.items():
            e["retained"][n] += k
        if currency is not None:
            currencies.add(currency)
            e["revenue"][currency] = e["revenue"].get(currency, 0) + total
            for n in p.days:
                e["through"][n][currency] = e["through"][n].get(currency, 0) + int(r[f"revenue_{n}"])
    _check_rows(len(acc))

    rows: list[dict[str, Any]] = []
    total_installs = 0
    total_revenue: dict[str, int] = {}
    total_days: dict[int, dict[str, Any]] = {n: {"retained": 0, "revenue": {}} for n in p.days}
    for key in sorted(acc, key=_sort_key):
        e = acc[key]
        source = key[1]
        row: dict[str, Any] = {"date": (p.start + dt.timedelta(days=key[0])).isoformat(),
                               **_labels(source, dims, key[2:]), "installs": e["installs"],
                               "revenue": {c: money(m) for c, m in sorted(e["revenue"].items()) if m}}
        for c, m in e["revenue"].items():
            total_revenue[c] = total_revenue.get(c, 0) + m
        days: dict[str, Any] = {}
        if source == SOURCE_UNATTRIBUTED:
            # no install, so no day after it: the row holds the day's revenue of unattributed events
            days = dict.fromkeys(str(n) for n in p.days)
        else:
            total_installs += e["installs"]
            day_end = plan.starts[key[0] + 1]
            for n in p.days:
                retained = e["retained"][n]
                through = {c: m for c, m in sorted(e["through"][n].items()) if m}
                days[str(n)] = {
                    "retained": retained,
                    "retention": retained / e["installs"] if e["installs"] else None,
                    "revenue": {c: money(m) for c, m in through.items()},
                    # every install of the day has lived through its whole day N
                    "complete": now >= day_end + dt.timedelta(days=n + 1),
                }
                t = total_days[n]
                t["retained"] += retained
                for c, m in through.items():
                    t["revenue"][c] = t["revenue"].get(c, 0) + m
        row["days"] = days
        rows.append(row)
    totals = {
        "installs": total_installs,
        "revenue": {c: money(m) for c, m in sorted(total_revenue.items()) if m},
        "days": {str(n): {"retained": t["retained"],
                          "retention": t["retained"] / total_installs if total_installs else None,
                          "revenue": {c: money(m) for c, m in sorted(t["revenue"].items())}}
                 for n, t in total_days.items()},
    }
    return Report("cohorts", app_id, p, rows, sorted(currencies), totals)
