"""Report rollups, kept off the write path (docs/reports.md).

The writer stores with each record the two things the reports need that the
record's other columns do not hold (:func:`record_columns`, in the flush's
binary COPY): ``install_ms``, the ts of the install an open or event inherits
(cohorts), and ``ctit_rejected``, the campaigns of the touches an install
skipped as CTIT anomalies (the daily report counts them under the touch's
campaign).  Nothing else of the reports runs in the flush.

:func:`fold` aggregates an app's records committed since its watermark
(``unmo.report_watermark.seq``: every record with ``records.seq`` up to it is
in the rollups) into ``report_rollup`` and ``cohort_rollup`` (quarters, hours
and UTC days; see migrations/0002_reports.sql), with one set-based statement per
table, and advances the watermark in the same transaction, holding the
watermark row's lock: every record is counted exactly once, whichever process
folds and whatever fails half way (a rolled-back fold leaves rollups and
watermark as they were).  :class:`Folder` folds every app with new commits
about every 5 s in the background of each server process; a report folds
its app's tail itself before it reads (unmo.reports.query), so it is always up
to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import NamedTuple

import asyncpg
import numpy as np

from unmo.config import REPORT_FOLD_S
from unmo.kernel import AppKernel, Decisions
from unmo.model import Kind

log = logging.getLogger("unmo.reports")

FOLD_MAX_COMMITS = 500     # commits of one app per background fold transaction (keeps transactions short)
STOP_WAIT_S = 1.0          # what a stopping folder may wait for its fold to roll back

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

REJECT_CTIT = 1            # unmo.kernel.REASON_NAMES: 1 ctit_anomaly

DAILY_COUNTERS = (
    "clicks", "impressions", "installs", "reattributions", "reinstalls", "organic_installs",
    "opens", "events", "revenue_micros", "ctit_rejected", "blocklisted",
)
COHORT_COUNTERS = ("opens", "events", "revenue_micros", "retained")
LABEL_COLUMNS = ("network", "campaign", "adset", "ad", "site", "platform", "currency")


# --------------------------------------------------------------------------- write path
def record_columns(state: AppKernel, kind: np.ndarray, d: Decisions) -> tuple[np.ndarray, list[str | None]]:
    """``install_ms`` (int64, -1 for NULL) and ``ctit_rejected`` (jsonb text or None) of a decided batch,
    row-aligned with it: what unmo.records stores for the reports (unmo.ingest.rows.encode_records)."""
    assert d.inst is not None, "Decisions from AppKernel.decide"
    # opens and events that inherit an install: its ts (a C loop over the column; -1 elsewhere)
    slots = np.where((kind == Kind.OPEN) | (kind == Kind.EVENT), d.inst, -1)
    install_ms = state.native.install_ts(np.ascontiguousarray(slots, dtype=np.int64))
    ctit: list[str | None] = [None] * len(kind)
    if d.rejected:
        by_row: dict[int, list[int]] = {}
        for row, ref, reason in d.rejected:
            if reason == REJECT_CTIT and ref >= 0:
                by_row.setdefault(row, []).append(ref)
        for row, refs in by_row.items():
            ctit[row] = json.dumps([state.campaigns[ref] for ref in refs])
    return install_ms, ctit


# --------------------------------------------------------------------------- fold
# A group's key: 64 bits of SHA-256 over its grain, source and values (unmo.report_key, migration 0003),
# computed in the fold's statement; the campaign grain passes NULL for ad and site.
_FULL_KEY = "unmo.report_key(0, source, network, campaign, adset, ad, site, platform, currency)"
_CAMP_KEY = "unmo.report_key(1, source, network, campaign, adset, NULL, NULL, platform, currency)"
_SOURCE = f"CASE WHEN network IS NOT NULL THEN {SOURCE_CAMPAIGN} WHEN outcome = 5 THEN {SOURCE_UNATTRIBUTED} " \
          f"ELSE {SOURCE_ORGANIC} END"
# revenue: events only, in the event's currency (USD when it named none), in exact integer millionths:
# round() of float8 is round half to even, as Python's round(revenue * 1e6)
_CURRENCY = "CASE WHEN kind = 5 AND revenue IS NOT NULL THEN coalesce(currency, 'USD') END"
_MICROS = "CASE WHEN kind = 5 AND revenue IS NOT NULL THEN round(revenue * float8 '1000000')::bigint END"
_TAIL_OF_APP = "app_id = $1 AND seq > $2 AND seq <= $3"   # the app's records after its watermark
_TAIL = f"FROM unmo.records WHERE {_TAIL_OF_APP}"
_LABELS = "network, campaign, adset, ad, site, platform"

# Daily: every record by the 15-minute bucket of its ts and its group, plus one ctit_rejected per touch an
# install skipped as a CTIT anomaly, under the touch's campaign, the install's bucket and platform.
# Two steps: ``x`` counts the tail by bucket, group, kind and outcome in one pass over the records, then
# ``moved`` turns those few rows into one row per bucket and group with a column per counter (11 filters
# on each record cost as much as the pass itself).  The CTIT-rejected touches come from the few installs
# that have any (partial index records_ctit, migration 0004), not from a second pass over the tail.
_BUCKET = "date_bin('15 minutes', ts, timestamptz '2000-01-01 00:00+00')"
_DAILY_COUNTS = (
    ("clicks", "kind = 1"), ("impressions", "kind = 2"), ("installs", "kind = 3 AND outcome IN (1, 2, 4)"),
    ("reattributions", "kind = 3 AND outcome = 4"), ("reinstalls", "kind = 3 AND outcome = 3"),
    ("organic_installs", "kind = 3 AND outcome = 2"), ("opens", "kind = 4"), ("events", "kind = 5"),
    ("ctit_rejected", "kind = 0"), ("blocklisted", "kind IN (1, 2) AND outcome = 6"))
_DAILY_INPUT = f"""
x AS (  -- GROUP BY positions: the output's source and currency, not the records' columns of those names
    SELECT {_BUCKET} AS bucket, kind, outcome, {_SOURCE} AS source, {_LABELS}, {_CURRENCY} AS currency,
           count(*) AS n, sum({_MICROS}) AS micros
    {_TAIL} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    UNION ALL  -- as kind 0 the CTIT-rejected touches
    SELECT {_BUCKET}, 0, 0, {SOURCE_CAMPAIGN}, e->>0, e->>1, e->>2, e->>3, e->>4, platform, NULL, count(*), NULL
    FROM unmo.records CROSS JOIN LATERAL jsonb_array_elements(ctit_rejected) AS e
    WHERE {_TAIL_OF_APP} AND ctit_rejected IS NOT NULL
    GROUP BY 1, 5, 6, 7, 8, 9, 10),
moved AS (
    SELECT $1::bigint AS app_id, bucket, {_FULL_KEY} AS group_key, {_CAMP_KEY} AS camp_key, source, {_LABELS},
           currency, {", ".join(f"coalesce(sum(n) FILTER (WHERE {w}), 0)::bigint AS {c}" for c, w in _DAILY_COUNTS)},
           sum(micros) AS revenue_micros
    FROM x GROUP BY bucket, source, {_LABELS}, currency)"""

# Cohorts: opens and events that inherit an install, by the 15-minute bucket of the install's ts, their group
# and day N (the N-th whole 24 h after the install; a record stamped before its install counts on day 0);
# plus `retained`: the first record (in commit order) of a device on day N of its install counts it once,
# in its group without currency, when report_active did not hold that device, install and day yet.
_COHORT_INPUT = f"""
c AS (SELECT device_key, install_ms, seq, ord, kind,
             (greatest((extract(epoch FROM ts) * 1000)::bigint - install_ms, 0) / 86400000)::integer AS day_n,
             to_timestamp((install_ms - install_ms % 900000) / 1000) AS bucket,
             {_SOURCE} AS source, {_LABELS}, {_CURRENCY} AS currency, {_MICROS} AS micros
      {_TAIL} AND kind IN (4, 5) AND install_ms IS NOT NULL),
firsts AS (SELECT DISTINCT ON (device_key, install_ms, day_n) * FROM c
           ORDER BY device_key, install_ms, day_n, seq, ord),
active AS (INSERT INTO unmo.report_active (app_id, device_key, install_ms, day_n)
           SELECT $1, device_key, install_ms, day_n FROM firsts
           ON CONFLICT DO NOTHING RETURNING device_key, install_ms, day_n),
rows AS (  -- the opens and events, and as kind 0 the devices counted retained
    SELECT bucket, day_n, kind, source, {_LABELS}, currency, micros FROM c
    UNION ALL
    SELECT f.bucket, f.day_n, 0, f.source, f.network, f.campaign, f.adset, f.ad, f.site, f.platform, NULL, NULL
    FROM firsts f JOIN active a USING (device_key, install_ms, day_n)),
moved AS (
    SELECT $1::bigint AS app_id, bucket, {_FULL_KEY} AS group_key, {_CAMP_KEY} AS camp_key, day_n, source,
           {_LABELS}, currency, count(*) FILTER (WHERE kind = 4) AS opens, count(*) FILTER (WHERE kind = 5) AS events,
           sum(micros) AS revenue_micros, count(*) FILTER (WHERE kind = 0) AS retained
    FROM rows GROUP BY bucket, day_n, source, {_LABELS}, currency)"""


def _fold_sql(inputs: str, records: str, rollup: str, counters: tuple[str, ...], extra_key: tuple[str, ...]) -> str:
    """One statement: ``inputs`` sums the tail once per bucket and group (``moved``, one row each); add the
    sums to the rollup at every level and grain (the coarser ones summed from ``moved``, not the records).
    It returns ``records``, an expression over ``inputs``: how many records were folded."""
    key = "".join(f", {k}" for k in extra_key)
    first = ", ".join(f"coalesce({c}, 0) AS {c}" if c == "revenue_micros" else c for c in counters)
    labels = ", ".join(LABEL_COLUMNS)
    updates = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in counters)
    columns = ", ".join(("app_id", "level", "bucket", "grain", "group_key", *extra_key, "source", *LABEL_COLUMNS,
                         *counters))
    conflict = ", ".join(("app_id", "grain", "level", "bucket", "group_key", *extra_key))
    parts = [f"agg AS MATERIALIZED (SELECT app_id, bucket, group_key, camp_key{key}, source, {labels}, {first} "
             f"FROM moved)"]
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
    return f"WITH {inputs}, " + ", ".join(parts) + f" SELECT {records}"


FOLD_DAILY_SQL = _fold_sql(_DAILY_INPUT, "(SELECT coalesce(sum(n), 0) FROM x WHERE kind <> 0)", "report_rollup",
                           DAILY_COUNTERS, ())
FOLD_COHORT_SQL = _fold_sql(_COHORT_INPUT, "(SELECT count(*) FROM c)", "cohort_rollup", COHORT_COUNTERS, ("day_n",))


_LOCK_WAIT = "SELECT seq FROM unmo.report_watermark WHERE app_id = $1 FOR UPDATE"
# the row when it is free; whether it exists (locked by another transaction when it exists but was skipped)
_LOCK_SKIP = ("SELECT (SELECT seq FROM unmo.report_watermark WHERE app_id = $1 FOR UPDATE SKIP LOCKED), "
              "EXISTS (SELECT FROM unmo.report_watermark WHERE app_id = $1)")


class Folded(NamedTuple):
    commits: int    # app_log commits folded (the watermark moved by this much)
    records: int    # records folded
    behind: bool    # more commits were there than max_commits allowed


async def fold(conn: asyncpg.Connection, app_id: int, *, wait: bool = True,
               max_commits: int | None = None) -> Folded | None:
    """Fold the app's records committed since its watermark into the rollups and advance the watermark, in
    one transaction of its own, holding the watermark row's lock (``FOR UPDATE``).

    ``wait=False`` skips an app whose watermark another transaction holds (returns None): background
    folders of several processes never queue up behind each other.  ``max_commits`` bounds the commits
    taken in one go."""
    for _attempt in range(2):
        async with conn.transaction():
            if wait:
                lo = await conn.fetchval(_LOCK_WAIT, app_id)
            else:
                lo, present = await conn.fetchrow(_LOCK_SKIP, app_id)
                if lo is None and present:
                    return None  # another transaction holds it
            if lo is not None:
                return await _fold_locked(conn, app_id, lo, max_commits)
        # no row (unmo.apps.create_app makes it; migration 0003 for the apps before it): make it in a
        # transaction of its own, committed at once, so that a concurrent maker waits for that only
        await conn.execute("INSERT INTO unmo.report_watermark (app_id) VALUES ($1) ON CONFLICT DO NOTHING", app_id)
    raise RuntimeError(f"app {app_id}: no report watermark row")


async def _fold_locked(conn: asyncpg.Connection, app_id: int, lo: int, max_commits: int | None) -> Folded:
    """The fold's work, in the caller's transaction, which holds the watermark row (at ``lo``)."""
    # every record with seq <= the committed app_log.seq is committed (one transaction stores both), and
    # the statements below, which start later, see them all
    last = await conn.fetchval("SELECT seq FROM unmo.app_log WHERE app_id = $1", app_id)
    if last is None or last <= lo:
        return Folded(0, 0, False)
    hi = last if max_commits is None else min(last, lo + max_commits)
    # Hash the tail by group instead of sorting it (the planner cannot know how many rows there are), and
    # no JIT: disabling sorts adds 1e10 to the plan's cost, which would make PostgreSQL compile these
    # short statements with LLVM every time (PostgreSQL docs, "When to JIT?").  LOCAL: this transaction.
    await conn.execute("SET LOCAL enable_sort = off; SET LOCAL jit = off; SET LOCAL work_mem = '64MB'")
    records = int(await conn.fetchval(FOLD_DAILY_SQL, app_id, lo, hi))
    await conn.fetchval(FOLD_COHORT_SQL, app_id, lo, hi)
    await conn.execute("UPDATE unmo.report_watermark SET seq = $2 WHERE app_id = $1", app_id, hi)
    return Folded(hi - lo, records, hi < last)


# --------------------------------------------------------------------------- background
class Folder:
    """Folds every app with new commits, about every ``every_s`` seconds, on a connection of its own (never
    one the ingest path waits for).  One per server process; ``stop`` returns within about STOP_WAIT_S: a
    fold under way is cancelled and rolled back (the next pass, here or in another process, redoes it)."""

    def __init__(self, database_url: str, every_s: float = REPORT_FOLD_S) -> None:
        self.database_url = database_url
        self.every_s = every_s
        self.passes = 0
        self.folded_records = 0
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="unmo-report-folder")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_WAIT_S)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # the server rolls back whatever the connection had under way
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=STOP_WAIT_S)

    async def _run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.every_s)
                try:
                    await self.run_once()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                    # the database is down or the connection broke: reconnect on the next pass
                    log.warning("report fold failed: %s", exc.__class__.__name__)
                    await self._drop()
        finally:
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                conn.terminate()

    async def run_once(self) -> int:
        """One pass over the apps with unfolded commits; returns the records folded."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.database_url, timeout=5.0,
                                               server_settings={"application_name": "unmo-report-folder"})
        conn = self._conn
        apps = await conn.fetch(
            "SELECT l.app_id FROM unmo.app_log l LEFT JOIN unmo.report_watermark w USING (app_id) "
            "WHERE l.seq > coalesce(w.seq, 0) ORDER BY l.app_id")
        total = 0
        for (app_id,) in apps:
            while True:
                done = await fold(conn, app_id, wait=False, max_commits=FOLD_MAX_COMMITS)
                if done is None:
                    break  # another process is folding it
                total += done.records
                if not done.behind:
                    break
        self.passes += 1
        self.folded_records += total
        return total

