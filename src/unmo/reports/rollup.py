"""Report rollups, kept by the ingest path (docs/reports.md).

The writer calls :func:`apply` once per app and flush, inside the transaction
that stores the records, right after the kernel decided them
(unmo.ingest.writer): the rollups are exactly as durable as the records, and
they are written once, by the process that commits the records (a catch-up
replay of another process's records never touches them).

Per-row work is numpy; Python loops run per distinct group, per revenue event
and per distinct inherited install of the flush, so the rollups add little to a
flush (measured in bench/test_reports.py).  The app's ``app_log`` row is locked
for the whole flush, so two processes never upsert the same app's rollup rows
at once: no lock waits, no deadlocks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import numpy as np

from unmo.hashing import xxh64
from unmo.ingest.batch import Batch, to_signed
from unmo.kernel import AppKernel, Decisions
from unmo.model import Kind, Outcome

QUARTER_MS = 15 * 60_000
DAY_MS = 86_400_000

# rollup ``source``: what the group columns mean
SOURCE_CAMPAIGN = 0        # a touch's own campaign, or the campaign an install/open/event is attributed to
SOURCE_ORGANIC = 1         # installs without a winning touch, and the opens/events of their devices
SOURCE_UNATTRIBUTED = 2    # opens/events of devices with no known install
SOURCE_LABELS = {SOURCE_ORGANIC: "organic", SOURCE_UNATTRIBUTED: "unattributed"}

PLATFORMS: tuple[str | None, ...] = (None, "ios", "android")
REJECT_CTIT = 1            # unmo.kernel.REASON_NAMES: 1 ctit_anomaly
_GROUP_SEED = 0x7E_9087    # XXH64 seed of group keys (stored: never change it)
_NONE = "\x00"             # stands for NULL in a group key (NUL never reaches a stored text)

DAILY_COUNTERS = (
    "clicks", "impressions", "installs", "reattributions", "reinstalls", "organic_installs",
    "opens", "events", "revenue_micros", "ctit_rejected", "blocklisted",
)
COHORT_COUNTERS = ("opens", "events", "revenue_micros", "retained")
GROUP_COLUMNS = ("network", "campaign", "adset", "ad", "site", "platform", "currency")

Group = tuple[int, tuple[str | None, ...], str | None, str | None]  # source, campaign, platform, currency
_group_keys: dict[Group, int] = {}


def group_key(source: int, campaign: tuple[str | None, ...], platform: str | None, currency: str | None) -> int:
    """The signed XXH64 of a group: the narrow primary-key column of the rollup tables."""
    g = (source, campaign, platform, currency)
    key = _group_keys.get(g)
    if key is None:
        text = "\x1f".join([str(source), *(_NONE if v is None else v for v in (*campaign, platform, currency))])
        key = to_signed(xxh64(text, _GROUP_SEED))
        if len(_group_keys) > 200_000:  # bounded: campaign names come from outsiders
            _group_keys.clear()
        _group_keys[g] = key
    return key


def micros(revenue: float) -> int:
    """Revenue in millionths of the currency unit, rounded half to even: integers add up exactly in any
    order (floats do not), and PostgreSQL's ``round(revenue * 1000000.0)`` on float8 gives the same."""
    return round(revenue * 1e6)


def _upsert_sql(table: str, key_columns: tuple[str, ...], key_types: tuple[str, ...],
                counters: tuple[str, ...]) -> str:
    columns = (*key_columns, "source", *GROUP_COLUMNS, *counters)
    types = (*key_types, "smallint", *["text"] * len(GROUP_COLUMNS),
             *["numeric" if c == "revenue_micros" else "bigint" for c in counters])
    arrays = ", ".join(f"${i + 2}::{t}[]" for i, t in enumerate(types))
    updates = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in counters)
    conflict = ", ".join(("app_id", *[c for c in key_columns]))
    return (f"INSERT INTO unmo.{table} AS r (app_id, {', '.join(columns)}) "
            f"SELECT $1, * FROM unnest({arrays}) "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}")


_DAILY_SQL = _upsert_sql("report_rollup", ("bucket", "group_key"), ("timestamptz", "bigint"), DAILY_COUNTERS)
_COHORT_SQL = _upsert_sql("report_cohort", ("bucket", "group_key", "day_n"), ("timestamptz", "bigint", "integer"),
                          COHORT_COUNTERS)
_ACTIVE_SQL = (
    "INSERT INTO unmo.report_active (app_id, device_key, install_ms, day_n) "
    "SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::integer[]) "
    "ON CONFLICT DO NOTHING RETURNING device_key, install_ms, day_n"
)


class _Rows:
    """Contributions to a rollup: key columns (int64) and counters, concatenated then summed by group."""

    def __init__(self, counters: tuple[str, ...]) -> None:
        self.counters = counters
        self.keys: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.revenue: list[tuple[int, int]] = []  # (contribution index, micros): exact Python integers

    def add(self, keys: np.ndarray, values: np.ndarray) -> int:
        start = sum(len(k) for k in self.keys)
        self.keys.append(keys)
        self.values.append(values)
        return start

    def sum(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        keys = np.concatenate(self.keys)
        values = np.concatenate(self.values)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        totals = np.zeros((len(uniq), values.shape[1]), dtype=np.int64)
        for j in range(values.shape[1]):
            totals[:, j] = np.bincount(inverse, weights=values[:, j], minlength=len(uniq)).astype(np.int64)
        revenue = [0] * len(uniq)
        for pos, amount in self.revenue:
            revenue[int(inverse[pos])] += amount
        return uniq, totals, revenue


def _bucket_times(quarters: np.ndarray) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(q * (QUARTER_MS // 1000), dt.UTC) for q in quarters.tolist()]


def _labels(state: AppKernel, uniq: np.ndarray, currencies: list[str | None],
            col: int) -> tuple[list[int], list[int], list[list[str | None]]]:
    """Group keys, sources and the text columns of the distinct groups (source, camp, plat, cur from ``col``)."""
    keys: list[int] = []
    sources: list[int] = []
    texts: list[list[str | None]] = [[] for _ in GROUP_COLUMNS]
    empty: tuple[str | None, ...] = (None,) * 5
    for source, camp, plat, cur in uniq[:, col:col + 4].tolist():
        campaign = state.campaigns[camp] if camp >= 0 else empty
        platform = PLATFORMS[plat]
        currency = currencies[cur]
        keys.append(group_key(source, campaign, platform, currency))
        sources.append(source)
        for j, v in enumerate((*campaign, platform, currency)):
            texts[j].append(v)
    return keys, sources, texts


async def apply(conn: asyncpg.Connection, app_id: int, state: AppKernel, batch: Batch, d: Decisions) -> None:
    """Add the flush's new records of one app to the report rollups (inside the flush's transaction)."""
    assert d.camp is not None and d.inst is not None, "Decisions from AppKernel.decide"
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
    values = np.stack([
        k == Kind.CLICK, k == Kind.IMPRESSION, new_install, is_install & (o == Outcome.REATTRIBUTED),
        is_install & (o == Outcome.REINSTALL), is_install & (o == Outcome.ORGANIC), k == Kind.OPEN,
        k == Kind.EVENT, np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool),
        touch & (o == Outcome.IP_BLOCKLIST),
    ], axis=1).astype(np.int64)
    daily = _Rows(DAILY_COUNTERS)
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
    await _write(conn, _DAILY_SQL, app_id, state, daily, currencies, day_n=False)

    # -- cohorts: opens and events that inherit an install, by that install's bucket and day after it
    crow = np.flatnonzero(keep & ((kind == Kind.OPEN) | (kind == Kind.EVENT)) & (inst >= 0))
    if len(crow) == 0:
        return
    slots, slot_of = np.unique(inst[crow], return_inverse=True)
    install_ms = np.fromiter((state.native.install_info(s)[0] for s in slots.tolist()), dtype=np.int64,
                             count=len(slots))[slot_of.reshape(-1)]
    # day N = the N-th whole 24 h after the install (AppsFlyer's and Adjust's cohort days); a record
    # stamped before its install (device clock) counts on day 0
    day_n = np.maximum((ts[crow] - install_ms) // DAY_MS, 0)
    ckeys = np.stack([install_ms // QUARTER_MS, source[crow], camp[crow], plat[crow], cur[crow], day_n], axis=1)
    cohort = _Rows(COHORT_COUNTERS)
    cvalues = np.zeros((len(crow), len(COHORT_COUNTERS)), dtype=np.int64)
    cvalues[:, 0] = kind[crow] == Kind.OPEN
    cvalues[:, 1] = kind[crow] == Kind.EVENT
    cohort.add(ckeys, cvalues)
    cpos = np.full(batch.n, -1, dtype=np.int64)
    cpos[crow] = np.arange(len(crow))
    cohort.revenue = [(int(cpos[row]), amount) for row, amount in revenue_rows if cpos[row] >= 0]

    # retained: the first record of a device on day N of its install counts it, once across all flushes
    device = np.asarray(batch.device_key, dtype=np.int64)[crow]
    seen, first = np.unique(np.stack([device, install_ms, day_n], axis=1), axis=0, return_index=True)
    inserted = await conn.fetch(_ACTIVE_SQL, app_id, seen[:, 0].tolist(), seen[:, 1].tolist(), seen[:, 2].tolist())
    if inserted:
        new = {(r[0], r[1], r[2]) for r in inserted}
        hit = [i for i, key in enumerate(map(tuple, seen.tolist())) if key in new]
        rk = ckeys[first[hit]].copy()
        rk[:, 4] = 0  # retention is counted on the group's row without currency
        rvalues = np.zeros((len(hit), len(COHORT_COUNTERS)), dtype=np.int64)
        rvalues[:, 3] = 1
        cohort.add(rk, rvalues)
    await _write(conn, _COHORT_SQL, app_id, state, cohort, currencies, day_n=True)


async def _write(conn: asyncpg.Connection, sql: str, app_id: int, state: AppKernel, rows: _Rows,
                 currencies: list[str | None], *, day_n: bool) -> None:
    uniq, totals, revenue = rows.sum()
    keys, sources, texts = _labels(state, uniq, currencies, 1)
    args: list[Any] = [_bucket_times(uniq[:, 0]), keys]
    if day_n:
        args.append(uniq[:, 5].tolist())
    args += [sources, *texts]
    for j, name in enumerate(rows.counters):
        args.append(revenue if name == "revenue_micros" else totals[:, j].tolist())
    await conn.execute(sql, app_id, *args)
