"""Report rollups, kept by the ingest path (docs/reports.md).

The writer calls :func:`apply` once per app and flush, inside the transaction
that stores the records, right after the kernel decided them
(unmo.ingest.writer): the rollups are exactly as durable as the records, and
they are written once, by the process that commits the records (a catch-up
replay of another process's records never touches them).

A flush sums its records per 15-minute bucket and group in numpy and appends
the sums to ``report_delta`` and ``cohort_delta`` with one binary COPY each
(no index lookups, no row locks).  About every FOLD_EVERY_S seconds per app, a
flush also folds the app's deltas into ``report_rollup`` and ``cohort_rollup``
(quarters, hours and UTC days; see migrations/0002_reports.sql) in one
set-based statement.  The app's ``app_log`` row is locked for the whole flush,
so two processes never write the same app's rollups at once.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import numpy as np

from unmo.hashing import xxh64
from unmo.ingest.batch import Batch, to_signed
from unmo.kernel import AppKernel, Decisions
from unmo.model import Kind, Outcome
from unmo.pgcopy import ColType, encode

QUARTER_MS = 15 * 60_000
DAY_MS = 86_400_000
FOLD_EVERY_S = 30.0

# rollup ``source``: what the group columns mean
SOURCE_CAMPAIGN = 0        # a touch's own campaign, or the campaign an install/open/event is attributed to
SOURCE_ORGANIC = 1         # installs without a winning touch, and the opens/events of their devices
SOURCE_UNATTRIBUTED = 2    # opens/events of devices with no known install
SOURCE_LABELS = {SOURCE_ORGANIC: "organic", SOURCE_UNATTRIBUTED: "unattributed"}

GRAIN_FULL = 0             # network, campaign, adset, ad, site, platform: quarters and UTC days
GRAIN_CAMPAIGN = 1         # network, campaign, adset, platform: quarters, hours and UTC days
GRAIN_COLUMNS = {GRAIN_FULL: ("network", "campaign", "adset", "ad", "site", "platform"),
                 GRAIN_CAMPAIGN: ("network", "campaign", "adset", "platform")}
LEVEL_QUARTER, LEVEL_HOUR, LEVEL_DAY = 0, 1, 2

PLATFORMS: tuple[str | None, ...] = (None, "ios", "android")
REJECT_CTIT = 1            # unmo.kernel.REASON_NAMES: 1 ctit_anomaly
_GROUP_SEED = 0x7E_9087    # XXH64 seed of group keys (stored: never change it)
_NONE = "\x00"             # stands for NULL in a group key (NUL never reaches a stored text)

DAILY_COUNTERS = (
    "clicks", "impressions", "installs", "reattributions", "reinstalls", "organic_installs",
    "opens", "events", "revenue_micros", "ctit_rejected", "blocklisted",
)
COHORT_COUNTERS = ("opens", "events", "revenue_micros", "retained")
LABEL_COLUMNS = ("network", "campaign", "adset", "ad", "site", "platform", "currency")

Campaign = tuple[str | None, ...]
_keys: dict[tuple[int, Campaign, str | None, str | None], tuple[int, int]] = {}
_folded_at: dict[int, float] = {}   # app_id -> time.monotonic() this process last folded the app's deltas


def _hash(parts: tuple[Any, ...]) -> int:
    text = "\x1f".join(_NONE if v is None else str(v) for v in parts)
    return to_signed(xxh64(text, _GROUP_SEED))


def group_keys(source: int, campaign: Campaign, platform: str | None, currency: str | None) -> tuple[int, int]:
    """The signed XXH64 of a group at the full and at the campaign grain: narrow primary-key columns."""
    g = (source, campaign, platform, currency)
    keys = _keys.get(g)
    if keys is None:
        keys = (_hash((GRAIN_FULL, source, *campaign, platform, currency)),
                _hash((GRAIN_CAMPAIGN, source, campaign[0], campaign[1], campaign[2], platform, currency)))
        if len(_keys) > 200_000:  # bounded: campaign names come from outsiders
            _keys.clear()
        _keys[g] = keys
    return keys


def micros(revenue: float) -> int:
    """Revenue in millionths of the currency unit, rounded half to even: integers add up exactly in any
    order (floats do not), and PostgreSQL's ``round(revenue * 1000000.0)`` on float8 gives the same."""
    return round(revenue * 1e6)


def _group_rows(cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of int64 key columns: (first index of each distinct row, row -> distinct index).

    One int64 composite key and one sort, instead of numpy's row-wise unique (several times slower)."""
    n = len(cols[0])
    key = np.zeros(n, dtype=np.int64)
    size = 1
    for col in cols:
        uniq, code = np.unique(col, return_inverse=True)
        size *= max(len(uniq), 1)
        if size >= 1 << 62:  # cannot happen for one flush's columns; stay correct anyway
            _, first, inverse = np.unique(np.stack(cols, axis=1), axis=0, return_index=True, return_inverse=True)
            return first, inverse.reshape(-1)
        key = key * len(uniq) + code.reshape(-1)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


class _Sums:
    """Contributions to a delta table: key columns and counters per row, summed per distinct key."""

    def __init__(self, counters: tuple[str, ...]) -> None:
        self.counters = counters
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.revenue: list[tuple[int, int]] = []  # (contribution index, micros): exact Python integers
        self.n = 0

    def add(self, keys: np.ndarray, values: np.ndarray) -> int:
        start = self.n
        self.keys.append(keys)
        self.values.append(values)
        self.n += len(keys)
        return start

    def sum(self) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        keys = np.concatenate(self.keys)
        values = np.concatenate(self.values)
        first, inverse = _group_rows([keys[:, j] for j in range(keys.shape[1])])
        totals = np.zeros((len(first), values.shape[1]), dtype=np.int64)
        for j in range(values.shape[1]):
            totals[:, j] = np.bincount(inverse, weights=values[:, j], minlength=len(first)).astype(np.int64)
        revenue: list[int | None] = [None] * len(first)
        for pos, amount in self.revenue:
            g = int(inverse[pos])
            revenue[g] = (revenue[g] or 0) + amount
        return keys[first], totals, [None if r is None else str(r) for r in revenue]


_rows: dict[tuple[int, Campaign, int, str | None], tuple[Any, ...]] = {}


def _copy_columns(state: AppKernel, groups: np.ndarray, currencies: list[str | None],
                  ) -> list[tuple[int, Any, Any]]:
    """bucket, group_key, camp_key[, day_n], source and the label columns of distinct groups
    (group columns: quarter, source, camp, plat, cur[, day_n]); Python runs once per distinct label set,
    not once per bucket, and that from a cache."""
    first, inverse = _group_rows([groups[:, 1], groups[:, 2], groups[:, 3], groups[:, 4]])
    empty: Campaign = (None,) * 5
    infos = []
    for source, ref, plat, cur in groups[first, 1:5].tolist():
        campaign = state.campaigns[ref] if ref >= 0 else empty
        key = (source, campaign, plat, currencies[cur])
        info = _rows.get(key)
        if info is None:
            if len(_rows) > 200_000:  # bounded: campaign names come from outsiders
                _rows.clear()
            info = _rows[key] = (*group_keys(source, campaign, PLATFORMS[plat], currencies[cur]), *campaign,
                                 PLATFORMS[plat], currencies[cur])
        infos.append(info)
    full, camp, *labels = zip(*infos, strict=True)  # one tuple per column
    cols: list[tuple[int, Any, Any]] = [
        (ColType.TIMESTAMPTZ_MS, np.ascontiguousarray(groups[:, 0] * QUARTER_MS), None),
        (ColType.INT8, np.asarray(full, dtype=np.int64)[inverse], None),
        (ColType.INT8, np.asarray(camp, dtype=np.int64)[inverse], None),
    ]
    if groups.shape[1] > 5:
        cols.append((ColType.INT4, np.ascontiguousarray(groups[:, 5], dtype=np.int32), None))
    cols.append((ColType.INT2, np.ascontiguousarray(groups[:, 1], dtype=np.int16), None))
    for col in labels:
        values = np.empty(len(col), dtype=object)
        values[:] = col
        cols.append((ColType.TEXT, values[inverse].tolist(), None))
    return cols


async def _copy(conn: asyncpg.Connection, table: str, columns: tuple[str, ...], app_id: int, state: AppKernel,
                sums: _Sums, currencies: list[str | None]) -> None:
    groups, totals, revenue = sums.sum()
    n = len(groups)
    cols = [(ColType.INT8, np.full(n, app_id, dtype=np.int64), None), *_copy_columns(state, groups, currencies)]
    for j, name in enumerate(sums.counters):
        cols.append((ColType.TEXT, revenue, None) if name == "revenue_micros"
                    else (ColType.INT8, np.ascontiguousarray(totals[:, j]), None))
    await conn.copy_to_table(table, schema_name="unmo", source=memoryview(encode(n, cols)), columns=list(columns),
                             format="binary")


_DELTA_COLUMNS = ("app_id", "bucket", "group_key", "camp_key", "source", *LABEL_COLUMNS, *DAILY_COUNTERS)
_COHORT_DELTA_COLUMNS = ("app_id", "bucket", "group_key", "camp_key", "day_n", "source", *LABEL_COLUMNS,
                         *COHORT_COUNTERS)
_ACTIVE_SQL = (
    "INSERT INTO unmo.report_active (app_id, device_key, install_ms, day_n) "
    "SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::integer[]) "
    "ON CONFLICT DO NOTHING RETURNING device_key, install_ms, day_n"
)


def _fold_sql(delta: str, rollup: str, counters: tuple[str, ...], extra_key: tuple[str, ...]) -> str:
    """One statement: take the app's deltas out, sum them once per bucket and group, and add the sums to
    the rollup at every level and grain (the coarser ones summed from the first sums, not the deltas)."""
    key = "".join(f", {k}" for k in extra_key)
    first = ", ".join(f"coalesce(sum({c}::numeric), 0) AS {c}" if c == "revenue_micros" else f"sum({c}) AS {c}"
                      for c in counters)
    labels = ", ".join(f"min({c}) AS {c}" for c in LABEL_COLUMNS)
    updates = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in counters)
    columns = ", ".join(("app_id", "level", "bucket", "grain", "group_key", *extra_key, "source", *LABEL_COLUMNS,
                         *counters))
    conflict = ", ".join(("app_id", "grain", "level", "bucket", "group_key", *extra_key))
    parts = [f"agg AS MATERIALIZED (SELECT app_id, bucket, group_key, camp_key{key}, min(source) AS source, "
             f"{labels}, {first} FROM moved GROUP BY app_id, bucket, group_key, camp_key{key})"]
    sums = ", ".join(f"sum({c})" for c in counters)
    for name, level, grain, bucket, gkey in (
        ("q_full", LEVEL_QUARTER, GRAIN_FULL, "bucket", "group_key"),
        ("d_full", LEVEL_DAY, GRAIN_FULL, "date_bin('1 day', bucket, timestamptz '2000-01-01 00:00+00')",
         "group_key"),
        ("q_camp", LEVEL_QUARTER, GRAIN_CAMPAIGN, "bucket", "camp_key"),
        ("h_camp", LEVEL_HOUR, GRAIN_CAMPAIGN, "date_bin('1 hour', bucket, timestamptz '2000-01-01 00:00+00')",
         "camp_key"),
        ("d_camp", LEVEL_DAY, GRAIN_CAMPAIGN, "date_bin('1 day', bucket, timestamptz '2000-01-01 00:00+00')",
         "camp_key"),
    ):
        dims = GRAIN_COLUMNS[grain]
        grain_labels = ", ".join(f"min({c})" if c in dims or c == "currency" else "NULL" for c in LABEL_COLUMNS)
        parts.append(
            f"{name} AS (INSERT INTO unmo.{rollup} AS r ({columns}) "
            f"SELECT app_id, {level}, {bucket}, {grain}, {gkey}{key}, min(source), {grain_labels}, {sums} "
            f"FROM agg GROUP BY app_id, {bucket}, {gkey}{key} "
            # in bucket order: a report reads each bucket's rows from a few heap pages, not one page each
            f"ORDER BY 3 ON CONFLICT ({conflict}) DO UPDATE SET {updates})")
    return (f"WITH moved AS (DELETE FROM unmo.{delta} WHERE app_id = $1 RETURNING *), " + ", ".join(parts)
            + " SELECT count(*) FROM moved")


FOLD_DAILY_SQL = _fold_sql("report_delta", "report_rollup", DAILY_COUNTERS, ())
FOLD_COHORT_SQL = _fold_sql("cohort_delta", "cohort_rollup", COHORT_COUNTERS, ("day_n",))


async def fold(conn: asyncpg.Connection, app_id: int) -> int:
    """Fold the app's deltas into the rollups (in the caller's transaction); returns the delta rows folded.

    Safe beside concurrent flushes: the DELETE takes only rows committed before it started, and a
    concurrent fold of the same rows waits for this one and then finds them gone."""
    # Hash the deltas by group instead of sorting them (the planner cannot know how many there are), and
    # no JIT: disabling sorts adds 1e10 to the plan's cost, which would make PostgreSQL compile these
    # short statements with LLVM every time (measured: 2 s of compiling for an empty fold; PostgreSQL
    # docs, "When to JIT?").  For these two statements only: the flush's own run with the session's.
    await conn.execute("SET LOCAL enable_sort = off; SET LOCAL jit = off; SET LOCAL work_mem = '64MB'")
    try:
        n = int(await conn.fetchval(FOLD_DAILY_SQL, app_id))
        return n + int(await conn.fetchval(FOLD_COHORT_SQL, app_id))
    finally:
        await conn.execute("RESET enable_sort; RESET jit; RESET work_mem")


async def apply(conn: asyncpg.Connection, app_id: int, state: AppKernel, batch: Batch, d: Decisions) -> None:
    """Add the flush's new records of one app to the report rollups (inside the flush's transaction)."""
    assert d.camp is not None and d.inst is not None and d.inst_ms is not None, "Decisions from AppKernel.decide"
    keep = d.dup == 0
    if batch.n == 0 or not keep.any():
        return
    kind = np.asarray(batch.kind, dtype=np.int64)
    ts = np.asarray(batch.ts, dtype=np.int64)
    outcome = np.asarray(d.outcome, dtype=np.int64)
    camp = np.asarray(d.camp, dtype=np.int64)
    inst = np.asarray(d.inst, dtype=np.int64)
    platform_names = np.asarray(batch.platform, dtype=object)
    plat = np.zeros(batch.n, dtype=np.int64)
    for code, name in enumerate(PLATFORMS):
        if name is not None:
            plat[platform_names == name] = code
    source = np.where(camp >= 0, SOURCE_CAMPAIGN,
                      np.where(outcome == Outcome.UNATTRIBUTED, SOURCE_UNATTRIBUTED, SOURCE_ORGANIC))

    # revenue: events only; the row goes to its currency's group
    currencies: list[str | None] = [None]
    codes: dict[str, int] = {}
    cur = np.zeros(batch.n, dtype=np.int64)
    revenue_rows: list[tuple[int, int]] = []
    for row in np.flatnonzero(keep & (kind == Kind.EVENT)).tolist():
        value = batch.revenue[row]
        if value is None:
            continue
        currency = batch.currency[row] or "USD"
        if currency not in codes:
            codes[currency] = len(currencies)
            currencies.append(currency)
        cur[row] = codes[currency]
        revenue_rows.append((row, micros(value)))

    # -- per day: every kept record, plus one contribution per CTIT-rejected touch
    rows = np.flatnonzero(keep)
    k, o = kind[rows], outcome[rows]
    is_install = k == Kind.INSTALL
    new_install = is_install & ((o == Outcome.ATTRIBUTED) | (o == Outcome.ORGANIC) | (o == Outcome.REATTRIBUTED))
    touch = (k == Kind.CLICK) | (k == Kind.IMPRESSION)
    zero = np.zeros(len(rows), dtype=bool)
    values = np.stack([
        k == Kind.CLICK, k == Kind.IMPRESSION, new_install, is_install & (o == Outcome.REATTRIBUTED),
        is_install & (o == Outcome.REINSTALL), is_install & (o == Outcome.ORGANIC), k == Kind.OPEN,
        k == Kind.EVENT, zero, zero, touch & (o == Outcome.IP_BLOCKLIST),
    ], axis=1).astype(np.int64)
    daily = _Sums(DAILY_COUNTERS)
    daily.add(np.stack([ts[rows] // QUARTER_MS, source[rows], camp[rows], plat[rows], cur[rows]], axis=1), values)
    position = np.full(batch.n, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    daily.revenue = [(int(position[row]), amount) for row, amount in revenue_rows]
    ctit = [(row, c) for row, c, reason in d.rejected if reason == REJECT_CTIT and c >= 0]
    if ctit:
        r = np.array([row for row, _ in ctit], dtype=np.int64)
        extra = np.zeros((len(ctit), len(DAILY_COUNTERS)), dtype=np.int64)
        extra[:, DAILY_COUNTERS.index("ctit_rejected")] = 1
        daily.add(np.stack([ts[r] // QUARTER_MS, np.zeros(len(r), dtype=np.int64),
                            np.array([c for _, c in ctit], dtype=np.int64), plat[r], np.zeros(len(r), dtype=np.int64)],
                           axis=1), extra)
    await _copy(conn, "report_delta", _DELTA_COLUMNS, app_id, state, daily, currencies)

    # -- cohorts: opens and events that inherit an install, by that install's bucket and day after it
    crow = np.flatnonzero(keep & ((kind == Kind.OPEN) | (kind == Kind.EVENT)) & (inst >= 0))
    if len(crow):
        await _cohorts(conn, app_id, state, batch, crow, kind, ts, d.inst_ms, source, camp, plat, cur,
                       revenue_rows, currencies)
    now = time.monotonic()
    if now - _folded_at.get(app_id, 0.0) >= FOLD_EVERY_S:
        await fold(conn, app_id)
        _folded_at[app_id] = now


async def _cohorts(conn: asyncpg.Connection, app_id: int, state: AppKernel, batch: Batch, crow: np.ndarray,
                   kind: np.ndarray, ts: np.ndarray, inst_ms: np.ndarray, source: np.ndarray, camp: np.ndarray,
                   plat: np.ndarray, cur: np.ndarray, revenue_rows: list[tuple[int, int]],
                   currencies: list[str | None]) -> None:
    install_ms = inst_ms[crow]
    # day N = the N-th whole 24 h after the install (AppsFlyer's and Adjust's cohort days); a record
    # stamped before its install (device clock) counts on day 0
    day_n = np.maximum((ts[crow] - install_ms) // DAY_MS, 0)
    ckeys = np.stack([install_ms // QUARTER_MS, source[crow], camp[crow], plat[crow], cur[crow], day_n], axis=1)
    cohort = _Sums(COHORT_COUNTERS)
    cvalues = np.zeros((len(crow), len(COHORT_COUNTERS)), dtype=np.int64)
    cvalues[:, 0] = kind[crow] == Kind.OPEN
    cvalues[:, 1] = kind[crow] == Kind.EVENT
    cohort.add(ckeys, cvalues)
    cpos = np.full(batch.n, -1, dtype=np.int64)
    cpos[crow] = np.arange(len(crow))
    cohort.revenue = [(int(cpos[row]), amount) for row, amount in revenue_rows if cpos[row] >= 0]

    # retained: the first record of a device on day N of its install counts it, once across all flushes
    device = np.asarray(batch.device_key, dtype=np.int64)[crow]
    first, _ = _group_rows([device, install_ms, day_n])
    seen_dev, seen_ms, seen_day = device[first], install_ms[first], day_n[first]
    inserted = await conn.fetch(_ACTIVE_SQL, app_id, seen_dev.tolist(), seen_ms.tolist(), seen_day.tolist())
    if inserted:
        new = {(r[0], r[1], r[2]) for r in inserted}
        hit = [i for i, key in enumerate(zip(seen_dev.tolist(), seen_ms.tolist(), seen_day.tolist(), strict=True))
               if key in new]
        rk = ckeys[first[hit]].copy()
        rk[:, 4] = 0  # retention is counted on the group's row without currency
        rvalues = np.zeros((len(hit), len(COHORT_COUNTERS)), dtype=np.int64)
        rvalues[:, 3] = 1
        cohort.add(rk, rvalues)
    await _copy(conn, "cohort_delta", _COHORT_DELTA_COLUMNS, app_id, state, cohort, currencies)
