"""The durable writer: group commit of accepted records, with the database as arbiter.

Requests hand their decoded batch to ``Writer.submit`` and wait.  One flusher
task per process takes everything queued (up to ``flush_max_records``, or what
came within ``flush_delay_ms``) and commits it in one transaction:

1. lock the ``app_log`` rows of the apps in the flush (``FOR UPDATE``, in app
   order), so that only one process decides for an app at a time;
2. bring each app's in-memory kernel state up to the locked ``seq``: replay
   what other processes committed since (``records.seq > state.seq``);
3. look up in the database the installs of devices the state does not hold
   (older than the windows kept in memory), then run the kernel: dedup and
   attribution decided exactly as one process would;
4. one binary COPY of all new records, the install results, ``seq + 1``;
5. COMMIT, and only then answer every request of the flush.

A failed flush rolls back everything: nothing of those requests is stored, they
are answered 503 (``Retry-After``), and the apps' states are dropped and rebuilt
from the database on next use.  See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np

from unmo.apps import AppSettings, load_settings
from unmo.config import Limits
from unmo.errors import DatabaseUnavailableError, OverloadedError, UnmoError
from unmo.ingest.batch import Batch
from unmo.ingest.rows import RECORD_COLUMNS, REPLAY_COLUMNS, batch_from_rows, encode_records
from unmo.kernel import GRACE_MS, AppKernel, Decisions, batch_order, signed_hashes, to_ms
from unmo.model import CAMPAIGN_FIELDS, Kind
from unmo.reports import rollup as report_rollup

log = logging.getLogger("unmo.writer")
KIND_NAMES = {int(k): k.name.lower() for k in Kind}

INSTALL_COLUMNS = [
    "device_key",
    "app_id",
    "record_id",
    "received_at",
    "seq",
    "ord",
    "ts",
    "device_hashes",
    "status",
    "touch",
    "match",
    "touch_id",
    "touch_ts",
    *CAMPAIGN_FIELDS,
    "ctit_s",
    "rejected",
]
RESULT_COLUMNS = (
    "record_id, status, touch, match, touch_id, touch_ts, network, campaign, adset, ad, site, "
    "ctit_s, rejected"
)
_CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


@dataclass
class Submission:
    app_id: int
    batch: Batch
    received_ms: int
    future: asyncio.Future[Outcome]


@dataclass
class Outcome:
    accepted: int
    duplicates: int
    installs: list[dict[str, Any]] = field(default_factory=list)
    by_kind: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # "click" -> {"accepted": n, "duplicate": n}


def _ts(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def stored_result(row: Any) -> dict[str, Any]:
    """An install result as the API answers it, from a row of unmo.installs."""
    out: dict[str, Any] = {
        "status": row["status"],
        "touch": row["touch"],
        "match": row["match"],
        "touch_id": row["touch_id"],
        "touch_ts": None,
    }
    if row["touch_ts"] is not None:
        out["touch_ts"] = (
            row["touch_ts"].astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
    for f in CAMPAIGN_FIELDS:
        out[f] = row[f]
    out["ctit_s"] = row["ctit_s"]
    rejected = row["rejected"]
    out["rejected"] = rejected if isinstance(rejected, list) else json.loads(rejected)
    return out


class Writer:
    """Group commit of accepted records for one server process."""

    def __init__(self, pool: asyncpg.Pool, limits: Limits, metrics: Any = None) -> None:
        self.pool = pool
        self.limits = limits
        self.metrics = metrics
        self.states: dict[int, AppKernel] = {}
        self.settings: dict[int, AppSettings] = {}
        self._queue: list[Submission] = []
        self._queued_records = 0
        self._in_flush = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.db_ok = True
        self._probe_task: asyncio.Task[None] | None = None
        self.last_flush_ms = 0.0

    # -- lifecycle ------------------------------------------------------
    async def start(self, warm: bool = True) -> None:
        async with self.pool.acquire() as conn:
            await self.refresh_settings(conn)
            if warm:
                for app_id in list(self.settings):
                    await self.warm(conn, app_id)
        self._task = asyncio.create_task(self._run(), name="unmo-writer")

    async def close(self) -> None:
        """Commit everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._probe_task is not None:
            self._probe_task.cancel()

    @property
    def queued_records(self) -> int:
        return self._queued_records

    @property
    def shedding(self) -> bool:
        return self._queued_records >= self.limits.queue_max_records

    async def refresh_settings(self, conn: asyncpg.Connection) -> None:
        self.apply_settings(await load_settings(conn))

    def apply_settings(self, settings: dict[int, tuple[AppSettings, int | None]]) -> None:
        """Take `unmo apps set` changes: records decided from now on use them."""
        for app_id, (app_settings, _rate) in settings.items():
            self.settings[app_id] = app_settings
            state = self.states.get(app_id)
            if state is not None:
                state.configure(app_settings)

    # -- submitting -----------------------------------------------------
    async def submit(self, app_id: int, batch: Batch, received_ms: int) -> Outcome:
        if self._closing:
            raise OverloadedError("server: shutting down", retry_after=1.0)
        if not self.db_ok:
            raise DatabaseUnavailableError("database: unavailable, nothing was stored", retry_after=1.0)
        if self._queued_records + batch.n > self.limits.queue_max_records and self._queue:
            raise OverloadedError(
                f"server: {self._queued_records} records waiting to be committed, nothing was stored",
                retry_after=1.0,
            )
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(Submission(app_id, batch, received_ms, fut))
        self._queued_records += batch.n
        self._wake.set()
        return await fut

    # -- flushing -------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._queued_records < self.limits.flush_max_records and not self._closing:
                await asyncio.sleep(self.limits.flush_delay_ms / 1000.0)
            take: list[Submission] = []
            count = 0
            while self._queue and (
                not take or count + self._queue[0].batch.n <= self.limits.flush_max_records
            ):
                s = self._queue.pop(0)
                take.append(s)
                count += s.batch.n
            self._queued_records -= count
            self._in_flush = count
            self._set_queue_gauge()
            await self._flush_safely(take)
            self._in_flush = 0
            self._set_queue_gauge()

    def _set_queue_gauge(self) -> None:
        # records waiting for their commit: queued and in the flush under way (a scrape between two
        # flushes would otherwise read 0 while the server sheds)
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.waiting_records)

    @property
    def waiting_records(self) -> int:
        return self._queued_records + self._in_flush

    async def _flush_safely(self, subs: list[Submission]) -> None:
        try:
            await self.flush(subs)
        except _CONNECTION_ERRORS as exc:
            self._fail(subs, DatabaseUnavailableError("database: unavailable, nothing was stored"), exc)
            self._start_probe()
        except Exception as exc:  # a bad request must not sink the others of its flush
            if len(subs) == 1:
                log.exception("flush failed", extra={"app_id": subs[0].app_id})
                self._fail(subs, UnmoError("server: could not store the batch, nothing was stored"), exc)
                return
            log.warning("flush of %d requests failed, retrying one by one: %s", len(subs), exc)
            # the failed flush's decisions live on in the kernel states (records marked seen):
            # rebuild them from the database before deciding again
            for s in subs:
                self.states.pop(s.app_id, None)
            for s in subs:
                await self._flush_safely([s])

    def _fail(self, subs: list[Submission], error: Exception, cause: BaseException) -> None:
        log.warning("flush failed: %s", cause.__class__.__name__)
        for s in subs:
            self.states.pop(s.app_id, None)
            if not s.future.done():
                s.future.set_exception(error)

    def _start_probe(self) -> None:
        self.db_ok = False
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.create_task(self._probe(), name="unmo-db-probe")

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                async with self.pool.acquire(timeout=2.0) as conn:
                    await conn.fetchval("SELECT 1", timeout=2.0)
            except Exception:  # noqa: S112 - still down, keep probing
                continue
            log.info("database reachable again")
            self.db_ok = True
            return

    async def flush(self, subs: list[Submission]) -> None:
        t0 = time.perf_counter()
        by_app: OrderedDict[int, list[Submission]] = OrderedDict()
        for s in subs:
            by_app.setdefault(s.app_id, []).append(s)
        app_ids = sorted(by_app)
        answers: dict[int, Outcome] = {}
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetch(
                "SELECT app_id, seq FROM unmo.app_log WHERE app_id = ANY($1::bigint[]) ORDER BY app_id FOR UPDATE",
                app_ids,
            )
            seqs = {r["app_id"]: r["seq"] for r in locked}
            copies: list[bytes] = []
            install_rows: list[tuple[Any, ...]] = []
            committed: dict[int, int] = {}
            for app_id in app_ids:
                if app_id not in seqs:
                    raise UnmoError(f"app {app_id}: missing from app_log")
                seq = seqs[app_id] + 1
                app_subs = by_app[app_id]
                stream, rows, outs = await self._decide_app(conn, app_id, seqs[app_id], seq, app_subs)
                if stream is not None:
                    copies.append(stream)
                install_rows.extend(rows)
                for s, o in zip(app_subs, outs, strict=True):
                    answers[id(s)] = o
                committed[app_id] = seq
            for stream in copies:
                await conn.copy_to_table(
                    "records",
                    schema_name="unmo",
                    source=memoryview(stream),
                    columns=RECORD_COLUMNS,
                    format="binary",
                )
            if install_rows:
                await conn.copy_records_to_table(
                    "installs", schema_name="unmo", records=install_rows, columns=INSTALL_COLUMNS
                )
            await conn.execute(
                "UPDATE unmo.app_log SET seq = seq + 1 WHERE app_id = ANY($1::bigint[])", app_ids
            )
        for app_id, seq in committed.items():
            self.states[app_id].seq = seq
        self.last_flush_ms = (time.perf_counter() - t0) * 1000
        if self.metrics is not None:
            self.metrics.commit_seconds.observe(self.last_flush_ms / 1000)
        for s in subs:
            if not s.future.done():
                s.future.set_result(answers[id(s)])

    async def _state_for(self, conn: asyncpg.Connection, app_id: int, seq_db: int) -> AppKernel:
        state = self.states.get(app_id)
        if state is None:
            if app_id not in self.settings:
                await self.refresh_settings(conn)
            state = await self.warm(conn, app_id, seq_db)
        elif state.seq < seq_db:
            await self.catch_up(conn, state, app_id, seq_db)
        return state

    async def _decide_app(
        self, conn: asyncpg.Connection, app_id: int, seq_db: int, seq: int, subs: list[Submission]
    ) -> tuple[bytes | None, list[tuple[Any, ...]], list[Outcome]]:
        state = await self._state_for(conn, app_id, seq_db)
        if len(subs) == 1:
            batch = subs[0].batch
        else:
            batch = Batch()
            for s in subs:
                batch.extend(s.batch)
        received = np.concatenate([np.full(s.batch.n, s.received_ms, dtype=np.int64) for s in subs])
        unknown = state.unknown_devices(batch)
        if unknown:
            await self._load_installs(conn, state, app_id, unknown)
        # each request is a batch of its own, decided in arrival order (spec: across batches,
        # arrival order; inside one, stable ts order); `ord` stores that order for replays
        order = batch_order(batch.arrays()["ts"], [sub.batch.n for sub in subs])
        d = state.decide(batch, received, order)
        keep = d.dup == 0
        cols = batch.arrays()
        ord_ = np.empty(batch.n, dtype=np.int32)
        ord_[order] = np.arange(batch.n, dtype=np.int32)
        stream = None
        if keep.any():
            # reports (shared edit): the columns the rollups need, folded later off this path (docs/reports.md)
            install_ms, ctit_rejected = report_rollup.record_columns(state, cols["kind"], d)
            stream, _n = encode_records(
                batch,
                app_id=app_id,
                seq=seq,
                keep=keep,
                ord_=ord_,
                received=received,
                outcome=d.outcome,
                campaign=d.campaign,
                install_ms=install_ms,
                ctit_rejected=ctit_rejected,
            )
        install_rows = []
        for row, res in d.results.items():
            hashes = [h for h in batch.dev[row] if h]
            install_rows.append(
                (
                    batch.device_key[row],
                    app_id,
                    batch.record_id[row],
                    _ts(int(received[row])),
                    seq,
                    int(ord_[row]),
                    _ts(batch.ts[row]),
                    signed_hashes(hashes),
                    res["status"],
                    res["touch"],
                    res["match"],
                    res["touch_id"],
                    _ts(_parse_ms(res["touch_ts"])) if res["touch_ts"] else None,
                    *[res[f] for f in CAMPAIGN_FIELDS],
                    res["ctit_s"],
                    json.dumps(res["rejected"]),
                )
            )
        results = await self._results_with_duplicates(conn, app_id, batch, d)
        outs = []
        start = 0
        kinds = cols["kind"]
        for s in subs:
            end = start + s.batch.n
            k, dup = kinds[start:end], d.dup[start:end].astype(bool)
            dups = int(dup.sum())
            accepted_by_kind = np.bincount(k[~dup], minlength=6)
            dup_by_kind = np.bincount(k[dup], minlength=6)
            by_kind: dict[str, dict[str, int]] = {}
            for code, name in KIND_NAMES.items():
                counts = {}
                if accepted_by_kind[code]:
                    counts["accepted"] = int(accepted_by_kind[code])
                if dup_by_kind[code]:
                    counts["duplicate"] = int(dup_by_kind[code])
                if counts:
                    by_kind[name] = counts
            installs = []
            for row in (np.flatnonzero(k == Kind.INSTALL) + start).tolist():
                r = results.get(row)
                if r is not None:
                    installs.append({"index": batch.index[row], "id": batch.record_id[row], **r})
            outs.append(
                Outcome(accepted=s.batch.n - dups, duplicates=dups, installs=installs, by_kind=by_kind)
            )
            start = end
        return stream, install_rows, outs

    async def _results_with_duplicates(
        self, conn: asyncpg.Connection, app_id: int, batch: Batch, d: Decisions
    ) -> dict[int, dict[str, Any]]:
        """Results of every install row; a duplicate carries its original's result."""
        results = dict(d.results)
        dup_rows = [r for r in np.flatnonzero(d.dup).tolist() if batch.kind[r] == Kind.INSTALL]
        if not dup_rows:
            return results
        by_id = {batch.record_id[r]: res for r, res in d.results.items()}
        missing = [batch.record_id[r] for r in dup_rows if batch.record_id[r] not in by_id]
        if missing:
            for row in await conn.fetch(
                f"SELECT {RESULT_COLUMNS} FROM unmo.installs WHERE app_id = $1 AND record_id = ANY($2::text[])",
                app_id,
                missing,
            ):
                by_id[row["record_id"]] = stored_result(row)
        for r in dup_rows:
            res = by_id.get(batch.record_id[r])
            if res is not None:
                results[r] = res
        return results

    # -- loading state --------------------------------------------------
    async def warm(self, conn: asyncpg.Connection, app_id: int, seq: int | None = None) -> AppKernel:
        """Build an app's state from the database: touches within the longest window, installs within
        the re-attribution window, record ids within the dedup window (all up to ``seq``)."""
        settings = self.settings[app_id]
        state = AppKernel(settings)
        if seq is None:
            seq = await conn.fetchval("SELECT seq FROM unmo.app_log WHERE app_id = $1", app_id) or 0
        now = int(time.time() * 1000)
        touch_from = now - settings.longest_touch_window_ms - GRACE_MS
        dedup_from = now - state.native.dedup_window
        rows = await conn.fetch(
            f"SELECT {REPLAY_COLUMNS} FROM unmo.records WHERE app_id = $1 AND seq <= $2 "
            "AND received_at >= $3 AND (received_at >= $4 OR (kind <= 2 AND ts >= $5)) ORDER BY seq, ord",
            app_id,
            seq,
            _ts(min(touch_from - GRACE_MS, dedup_from)),
            _ts(dedup_from),
            _ts(touch_from),
        )
        b, received, stored = batch_from_rows(rows)
        state.replay_records(b, received, stored)
        for row in await conn.fetch(
            "SELECT * FROM unmo.installs WHERE app_id = $1 AND seq <= $2 AND ts >= $3 ORDER BY seq, ord",
            app_id,
            seq,
            _ts(now - settings.reattribution_window_ms - GRACE_MS),
        ):
            state.replay_install(row)
        state.seq = seq
        self.states[app_id] = state
        return state

    async def catch_up(self, conn: asyncpg.Connection, state: AppKernel, app_id: int, seq_db: int) -> None:
        """Replay what other processes committed for the app since ``state.seq``."""
        rows = await conn.fetch(
            f"SELECT {REPLAY_COLUMNS} FROM unmo.records WHERE app_id = $1 AND seq > $2 AND seq <= $3 "
            "ORDER BY seq, ord",
            app_id,
            state.seq,
            seq_db,
        )
        b, received, stored = batch_from_rows(rows)
        state.replay_records(b, received, stored)
        for row in await conn.fetch(
            "SELECT * FROM unmo.installs WHERE app_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq, ord",
            app_id,
            state.seq,
            seq_db,
        ):
            state.replay_install(row)
        if self.metrics is not None:
            self.metrics.catch_up_records.inc(len(rows))
        state.seq = seq_db

    async def _load_installs(
        self, conn: asyncpg.Connection, state: AppKernel, app_id: int, hashes: list[int]
    ) -> None:
        """Installs of devices the in-memory index does not hold (older than its window).

        A device's whole install history is loaded: the rows sharing an identifier with the
        batch, then the rows sharing one with those (a reinstall may share an identifier with
        the batch but not with its primary install), up to 8 rounds; then it is replayed as a
        history of its own and merged in (AppKernel.replay_lookup)."""
        rows: dict[tuple[int, int], Any] = {}
        asked, wanted = set(hashes), list(hashes)
        for _ in range(8):
            found = await conn.fetch(
                "SELECT * FROM unmo.installs WHERE app_id = $1 AND device_hashes && $2::bigint[] ORDER BY seq, ord",
                app_id,
                signed_hashes(wanted),
            )
            for row in found:
                rows[(row["seq"], row["ord"])] = row
            wanted = state.lookup_hashes(found, asked)
            if not wanted:
                break
            asked.update(wanted)
        state.replay_lookup([rows[k] for k in sorted(rows)])
        got = {h & 0xFFFFFFFFFFFFFFFF for row in rows.values() for h in row["device_hashes"]}
        state.mark_absent([h for h in hashes if h not in got])


def _parse_ms(text: str) -> int:
    return to_ms(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
