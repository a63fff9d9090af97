"""The durable writer: group commit of accepted records, with the database as arbiter.

Requests hand their decoded batch to ``Writer.submit`` and wait.  One flusher
task per process takes everything queued (up to ``flush_max_records``, or what
came within ``flush_delay_ms``) and commits it in one transaction:

1. lock the ``app_log`` rows of the apps in the flush (``FOR UPDATE``, in app
   order) and advance their ``seq``, in one statement, so that only one process
   decides for an app at a time;
2. bring each app's in-memory kernel state up to the locked ``seq``: replay
   what other processes committed since (``records.seq > state.seq``);
3. look up in the database the installs of devices the state does not hold
   (older than the windows kept in memory), then run the kernel: dedup and
   attribution decided exactly as one process would;
4. one binary COPY of all new records, one of the install results;
5. COMMIT, and only then answer every request of the flush.

A failed flush rolls back everything: nothing of those requests is stored, they
are answered 503 (``Retry-After``), and the apps' states are dropped and rebuilt
from the database on next use.  See docs/architecture.md.

That is a flush decided under its locks.  Once this process has found that it
alone writes an app, the app's flushes are decided *ahead*: steps 2-3 and the
COPY encoding run while the previous flush's records are copied, before the
locks; the transaction (run by one of the writer's threads, each with its own
connection) copies first, takes the locks once the flush before it holds
them, checks that the state is still the one decided on and that
``app_log.seq`` did not move, and commits.  Two such flushes are in the
database at once, the newer copying while the older commits.  When either
check fails, the flush's copies roll back, it stores nothing and is decided
again under its locks (``Writer._run``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import numpy as np

from unmo._native import PrefaultedTable, encode_copy, prefault_table
from unmo.apps import AppSettings, load_settings
from unmo.config import Limits
from unmo.errors import DatabaseUnavailableError, OverloadedError, UnmoError
from unmo.ingest.batch import Batch
from unmo.ingest.rows import RECORD_COLUMNS, REPLAY_COLUMNS, batch_from_copy, encode_records
from unmo.kernel import GRACE_MS, AppKernel, Decisions, batch_order, signed_hashes, to_ms
from unmo.model import CAMPAIGN_FIELDS, Kind
from unmo.pgcopy import ColType
from unmo.reports import rollup as report_rollup

log = logging.getLogger("unmo.writer")
_T = TypeVar("_T")
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


@dataclass
class _AppWork:
    """One app's part of a flush, decided: what to store and what to answer."""

    state: AppKernel
    seq: int  # the app_log.seq it commits as
    subs: list[Submission]
    batch: Batch
    d: Decisions
    stream: bytes | None  # binary COPY of the new records
    installs: bytes | None  # binary COPY rows of its install results (_install_rows), no header or trailer


class _Conflict(Exception):
    """A flush decided ahead found its app's state changed underneath it (nothing was stored)."""


# A replay (warm-up, catch-up) parses its COPY once this much of it has arrived, at most REPLAY_CHUNK rows
# a batch (what it holds at once: the bytes and the batch's columns)
REPLAY_BUFFER_BYTES = 4 << 20
REPLAY_CHUNK = 100_000
# What every connection of the ingest path and the tracker sets.  No JIT: their statements are short, and
# PostgreSQL's estimate for INSTALLS_BY_IDS (a default selectivity per probe) is big enough to have each
# look-up compiled first, 50 ms a time.
SERVER_SETTINGS = {"jit": "off"}
# The ingest path's connections (pool and writer threads) never scan a table whole: every statement they run
# has an index made for it.  Without this, INSTALLS_BY_IDS probed unmo.installs with a sequential scan per
# identifier whenever PostgreSQL planned it on statistics from a smaller table (or none: a new table, or
# autovacuum off): a plan asyncpg's prepared statement then kept while the table grew.  Measured in a soak at
# 2,000 records/s: 0.2-3.3 s per look-up of 30-330 identifiers, 7-8 ms each, for minutes, against 0.6 ms
# (docs/operations.md, "2026-12-02: two workers, and waits in the first five minutes").
INGEST_SETTINGS = SERVER_SETTINGS | {"enable_seqscan": "off"}


async def ingest_settings(database_url: str) -> dict[str, str]:
    """INGEST_SETTINGS for this database, with ``synchronous_commit = on`` added where the database's own
    setting is ``off``.  A flush is answered once its COMMIT returns; with ``synchronous_commit = off``
    (in postgresql.conf, or set on the database or the role: a common tuning for bulk loads) that return
    comes before the commit's WAL is on disk, and a crash of PostgreSQL's machine right after the answer
    loses acknowledged records.  The other values (``local``, ``remote_write``, ``on``, ``remote_apply``)
    all wait for the local disk and are kept as the operator chose them.  Settings sent when connecting
    outrank the database's, the role's and the server's (and survive the pool's RESET ALL).  ``fsync``
    cannot be overridden by a client: with it off, this says so in the log at startup."""
    conn = await asyncpg.connect(database_url, timeout=10.0,
                                 server_settings=SERVER_SETTINGS | {"application_name": "unmo-serve"})
    try:
        sync_commit, fsync = await conn.fetchrow(
            "SELECT current_setting('synchronous_commit'), current_setting('fsync')")
    finally:
        await conn.close()
    settings = dict(INGEST_SETTINGS)
    if sync_commit == "off":
        settings["synchronous_commit"] = "on"
        log.warning("PostgreSQL's synchronous_commit is off for this database: the ingest connections set it on, "
                    "so that a batch is answered only once its records are on disk")
    if fsync != "on":
        log.error("PostgreSQL runs with fsync = off: a crash of its machine can lose records unmo has "
                  "acknowledged, and corrupt the database (turn fsync on in postgresql.conf)")
    return settings


# The installs of the apps $1 sharing an identifier with $2: one probe of the GIN index on device_hashes per
# identifier (`device_hashes && $2` over the whole array costs the app's installs times the identifiers:
# migrations 0005 and 0006).  OFFSET 0 keeps the app's condition out of the probe, so that PostgreSQL
# never ANDs it with an (app_id, ...) b-tree, which would read all of the app's installs per identifier.
INSTALLS_BY_IDS = (
    "SELECT DISTINCT ON (i.app_id, i.seq, i.ord) i.* FROM unnest($2::bigint[]) AS h(x) CROSS JOIN LATERAL "
    "(SELECT * FROM unmo.installs n WHERE n.device_hashes && ARRAY[h.x] OFFSET 0) AS i "
    "WHERE i.app_id = ANY($1::bigint[]) ORDER BY i.app_id, i.seq, i.ord"
)
_COMMITTED_SEQS = "SELECT app_id, seq FROM unmo.app_log WHERE app_id = ANY($1::bigint[])"
_LOCK_AND_ADVANCE = (
    "UPDATE unmo.app_log a SET seq = a.seq + 1 FROM (SELECT app_id FROM unmo.app_log WHERE app_id = ANY($1::bigint[]) "
    "ORDER BY app_id FOR UPDATE) l WHERE a.app_id = l.app_id RETURNING a.app_id, a.seq - 1 AS seq"
)

# An app's flushes are decided ahead only once this process has found, this many flushes in a row, that
# nobody else had written the app since its own last commit; after another process wrote it, they are
# decided under the lock for CONTENDED_S at least.  A flush decided ahead that finds another process's
# commit stores nothing and costs a rebuild of the app's state from the database, so two processes
# sharing an app (--workers, replicas without affinity) must not keep trying.
EXCLUSIVE_FLUSHES = 3
CONTENDED_S = 30.0
# Flushes decided ahead that may be in the database at once: the newer copies its records while the one
# before it copies or commits, and a queue that would make one flush is split between them
# (docs/architecture.md, "The writer's pipeline").
IN_FLIGHT = 2
# Where a writer announces that it is about to write an app another process may be deciding ahead (before it
# warms up or catches up the app's state, or writes it while not yet its only writer): that process then decides
# the app under its lock (CONTENDED_S) instead of finding the first commit under the lock and warming the whole
# app up again (docs/architecture.md, "Several processes, one truth").  Advisory: a lost announcement costs what
# it did before.
WRITERS_CHANNEL = "unmo_writers"


class _DatabaseThread:
    """A thread with an event loop and a connection of its own that runs the transactions of flushes
    decided ahead.

    The serving loop is busy with CPU work most of the time (decoding requests, deciding the next
    flush), and each statement of a flush's transaction waited behind that work before the next one
    was sent: 30-100 ms per round trip under load, the database idle in its transaction meanwhile.
    Here each round trip waits at most for the interpreter lock, which the serving thread hands over
    every few milliseconds (sys.getswitchinterval)."""

    def __init__(self, database_url: str, settings: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.settings = INGEST_SETTINGS if settings is None else settings
        self.loop = asyncio.new_event_loop()
        self.conn: asyncpg.Connection | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="unmo-writer-db", daemon=True)
        self.thread.start()

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._run(work), self.loop))

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        if self.conn is None or self.conn.is_closed():
            self.conn = await asyncpg.connect(
                self.database_url, command_timeout=60,
                server_settings=self.settings | {"application_name": "unmo-serve-writer"},
            )
        try:
            return await work(self.conn)
        except _CONNECTION_ERRORS:
            conn, self.conn = self.conn, None
            conn.terminate()
            raise

    def close(self) -> None:
        async def stop() -> None:
            if self.conn is not None:
                await self.conn.close(timeout=5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()   # its self-pipe's sockets; a loop left open warns when collected


class _LockOrder:
    """The order in which flushes in flight take their apps' locks: a flush copies its records first and
    waits for the one before it to hold its locks (``after``) before asking for its own; ``locked`` is
    set once it holds them, or has ended without (thread-safe futures: each flush is on its own thread)."""

    def __init__(self, after: concurrent.futures.Future[None] | None) -> None:
        self.after = after
        self.locked: concurrent.futures.Future[None] = concurrent.futures.Future()

    def release(self) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.locked.set_result(None)


async def _replay(conn: asyncpg.Connection, state: AppKernel, query: str, *args: Any) -> int:
    """Replay stored records (``query`` over REPLAY_COLUMNS, in (seq, ord) order) into ``state``, streamed
    as binary COPY and parsed natively into the kernel's columns (batch_from_copy), at most REPLAY_CHUNK
    rows at a time: a warm-up reads a week of an app's records, which held at once as asyncpg rows took
    712 bytes each (tracemalloc, 656,000 rows of the load's records).  In order, chunk after chunk, it
    leaves the state one call would.  Returns the records replayed."""
    buf = bytearray()
    header = True
    done = False
    n = 0

    def parse(final: bool) -> None:
        nonlocal header, done, n
        while buf and not done and (final or len(buf) >= REPLAY_BUFFER_BYTES):
            end, done, batch, received, stored = batch_from_copy(buf, header, REPLAY_CHUNK)
            if end == 0:
                break  # not one whole row yet
            header = False
            del buf[:end]
            state.replay_records(batch, received, stored)
            n += batch.n

    async def sink(data: bytes) -> None:
        buf.extend(data)
        parse(False)

    await conn.copy_from_query(query, *args, output=sink, format="binary")
    parse(True)
    if not done or buf:
        raise UnmoError(f"replay: the COPY of stored records ended {'early' if not done else 'with extra bytes'}")
    return n


def _by_app(subs: list[Submission]) -> dict[int, list[Submission]]:
    by_app: dict[int, list[Submission]] = {}
    for s in subs:
        by_app.setdefault(s.app_id, []).append(s)
    return by_app


def _describe(exc: BaseException) -> str:
    """An error for the log without its data: a database error's message and detail quote the row
    (device ids, IP addresses), so only its class, SQLSTATE and the table and constraint are kept."""
    if isinstance(exc, asyncpg.PostgresError):
        where = [f"{k} {v}" for k, v in (("table", getattr(exc, "table_name", None)),
                                         ("constraint", getattr(exc, "constraint_name", None))) if v]
        return " ".join([exc.__class__.__name__, f"SQLSTATE {exc.sqlstate}", *where])
    return exc.__class__.__name__


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

    def __init__(
        self, pool: asyncpg.Pool, limits: Limits, metrics: Any = None, database_url: str | None = None,
        connection_settings: dict[str, str] | None = None,
    ) -> None:
        self.pool = pool
        # with a URL, flushes decided ahead are committed by threads of their own (_DatabaseThread), one a
        # flush in flight (IN_FLIGHT), taken in turn, connected with ``connection_settings`` (ingest_settings:
        # the pool's)
        self._dbs = ([_DatabaseThread(database_url, connection_settings) for _ in range(IN_FLIGHT)]
                     if database_url else [])
        self._db_turn = 0
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
        self._contended: dict[int, float] = {}  # app_id -> time.monotonic() until which it is
        self._exclusive: dict[int, int] = {}  # app_id -> flushes in a row that found no other writer
        self._prefaulting: asyncio.Future[PrefaultedTable | None] | None = None
        self._listen_url = database_url
        self._listener: asyncpg.Connection | None = None
        self._listen_after = 0.0  # time.monotonic() before which a lost listener is not opened again
        self._token = f"{os.getpid()}.{id(self):x}"  # this writer's announcements, which it ignores

    # -- lifecycle ------------------------------------------------------
    async def start(self, warm: bool = True) -> None:
        async with self.pool.acquire() as conn:
            await self.refresh_settings(conn)
            if warm:
                for app_id in list(self.settings):
                    await self.warm(conn, app_id)
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="unmo-writer")

    async def close(self) -> None:
        """Commit everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._probe_task is not None:
            self._probe_task.cancel()
        if self._listener is not None:
            with contextlib.suppress(TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self._listener.close(timeout=5)
        for db in self._dbs:
            await asyncio.to_thread(db.close)

    async def _listen(self) -> None:
        """Hear other writers' announcements (WRITERS_CHANNEL) on a connection of its own, opened again when it
        was lost.  Only with a database URL (the commit threads' setup)."""
        if self._listen_url is None or (self._listener is not None and not self._listener.is_closed()):
            return
        if time.monotonic() < self._listen_after:
            return
        try:
            # called from the locked-flush path: a database that does not answer must not hold it for long,
            # nor be asked again at every flush
            conn = await asyncpg.connect(self._listen_url, timeout=2, command_timeout=10,
                                         server_settings=SERVER_SETTINGS | {"application_name": "unmo-serve-listen"})
            await conn.add_listener(WRITERS_CHANNEL, self._heard)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._listen_after = time.monotonic() + CONTENDED_S
            log.warning("not listening for other writers: %s", exc.__class__.__name__)
            return
        self._listener = conn

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        """Another writer is about to write the app: decide its flushes under the lock for a while."""
        app, _, token = payload.partition(" ")
        if token == self._token or not app.isdigit():
            return
        self._contend(int(app))

    def _contend(self, app_id: int) -> None:
        """Another process writes the app: its flushes are decided under the lock for CONTENDED_S, and its run
        of exclusive flushes starts again."""
        self._contended[app_id] = time.monotonic() + CONTENDED_S
        self._exclusive[app_id] = 0

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
        # The commit of one flush overlaps the deciding of the next: while flush N is in the database
        # (COPY, COMMIT), flush N+1 is decided in memory on top of N's decisions (ahead of its locks:
        # N may still fail) and goes to the database too, on a connection of its own: it copies its
        # records while N copies or commits, then waits for the apps' locks (held by N until its
        # commit) and checks that nothing changed underneath (the app's state is the same object,
        # app_log.seq the one it was decided against).  When N failed or another process wrote the
        # app, N+1's copies roll back and its requests are decided again under the locks, after N's.
        # At most IN_FLIGHT flushes are under way, settled oldest first; what is queued is shared
        # between the free places, so that both of PostgreSQL's cores copy.  Only this task decides: a
        # flush decided under its locks (a new app, one another process writes, a retry) is awaited
        # before anything else is decided.
        inflight: list[tuple[asyncio.Task[list[Submission] | None], _LockOrder | None]] = []  # oldest first
        copying = asyncio.Event()
        try:
            while True:
                while inflight and inflight[0][0].done():
                    await self._settle(inflight.pop(0)[0])  # at once: a retry must not wait for the next request
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if self._queued_records < self.limits.flush_max_records and not self._closing:
                    await asyncio.sleep(self.limits.flush_delay_ms / 1000.0)
                if inflight and inflight[-1][1] is None:
                    while inflight:  # a flush decided under its locks ends before the next is decided
                        await self._settle(inflight.pop(0)[0])
                limit = self.limits.flush_max_records
                free = IN_FLIGHT - len(inflight)
                if free > 1 and self._dbs and self._can_decide_ahead(self._queue):
                    limit = min(limit, -(-self._queued_records // free))  # this flush's share of the queue
                take: list[Submission] = []
                count = 0
                while self._queue and (not take or count + self._queue[0].batch.n <= limit):
                    s = self._queue.pop(0)
                    take.append(s)
                    count += s.batch.n
                self._queued_records -= count
                self._in_flush += count
                self._set_queue_gauge()
                if inflight:
                    # decide once the previous flush's records are being copied: before that, this task
                    # would hold up the start of its transaction
                    await copying.wait()
                ahead = await self._decide_ahead(take)
                retried = False
                while inflight and (len(inflight) >= IN_FLIGHT or ahead is None):
                    retried = await self._settle(inflight.pop(0)[0]) or retried
                if retried and ahead is not None:
                    # an earlier flush was decided again: what this one decided on top of it is void
                    for s in take:
                        self.states.pop(s.app_id, None)
                    ahead = None
                    while inflight:
                        await self._settle(inflight.pop(0)[0])
                order = None
                if ahead is not None:
                    # the flush before it, while still under way, takes its locks first
                    order = _LockOrder(inflight[-1][1].locked if inflight and inflight[-1][1] else None)
                copying = asyncio.Event()
                task = asyncio.create_task(self._commit(take, ahead, copying, order), name="unmo-flush")
                task.add_done_callback(lambda _task: self._wake.set())
                inflight.append((task, order))
        finally:
            while inflight:
                await self._settle(inflight.pop(0)[0])

    async def _settle(self, task: asyncio.Task[list[Submission] | None]) -> bool:
        """Wait for a flush; when it was decided ahead and did not commit, decide and commit its requests
        again under the locks (in this task: nothing else decides meanwhile).  True when it did so."""
        retry = await task
        if retry is None:
            return False
        try:
            await self._flush_safely(retry)
        finally:
            self._done(retry)
        return True

    async def _commit(
        self, subs: list[Submission], ahead: dict[int, _AppWork] | None, copying: asyncio.Event,
        order: _LockOrder | None = None,
    ) -> list[Submission] | None:
        """Commit a flush; returns its requests when it was decided ahead and stored nothing."""
        if ahead is None:
            try:
                await self._flush_safely(subs)
            finally:
                self._done(subs)
                copying.set()
            return None
        try:
            await self.flush(subs, ahead, copying, order)
        except Exception as exc:  # whatever it was, the retry under the locks reports it
            copying.set()
            if order is not None:
                order.release()
            if not isinstance(exc, _Conflict):
                log.warning("flush decided ahead failed, deciding again: %s", exc.__class__.__name__)
            for s in subs:
                self.states.pop(s.app_id, None)
            if self.metrics is not None:
                self.metrics.flushes.labels("again").inc()
            return subs
        self._done(subs)
        return None

    def _done(self, subs: list[Submission]) -> None:
        self._in_flush -= sum(s.batch.n for s in subs)
        self._set_queue_gauge()

    def _set_queue_gauge(self) -> None:
        # records waiting for their commit: queued and in the flushes under way (a scrape between two
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
                log.error("flush failed: %s", _describe(exc), extra={"app_id": subs[0].app_id},
                          exc_info=not isinstance(exc, asyncpg.PostgresError))
                self._fail(subs, UnmoError("server: could not store the batch, nothing was stored"), exc)
                return
            log.warning("flush of %d requests failed, retrying one by one: %s", len(subs), _describe(exc))
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

    def _prepare_growth(self, state: AppKernel) -> None:
        """When an app's dedup set is half-way to growing, have its next table's memory mapped and touched on
        another thread (Kernel.seen_growth_bytes, prefault_table): the first touch of fresh memory is the
        slow part of a growth, and it held this thread up to 200 ms a doubling (docs/kernel.md, "Memory")."""
        if self._prefaulting is not None:
            return
        nbytes = state.native.seen_growth_bytes()
        if not nbytes:
            return
        fut = asyncio.get_running_loop().run_in_executor(None, prefault_table, nbytes)
        self._prefaulting = fut

        def adopt(done: asyncio.Future[PrefaultedTable | None]) -> None:
            self._prefaulting = None
            if not done.cancelled() and done.exception() is None and (table := done.result()) is not None:
                table.adopt()  # in the loop's thread: the kernel's tables are touched under the lock only

        fut.add_done_callback(adopt)

    # -- deciding ahead of the lock ---------------------------------------
    def _can_decide_ahead(self, subs: list[Submission]) -> bool:
        """Every app of the flush has a state that this process alone has been writing lately."""
        now = time.monotonic()
        for s in subs:
            if (s.app_id not in self.states or self._contended.get(s.app_id, 0.0) > now
                    or self._exclusive.get(s.app_id, 0) < EXCLUSIVE_FLUSHES):
                return False
        return True

    async def _decide_ahead(self, subs: list[Submission]) -> dict[int, _AppWork] | None:
        """Decide a flush before taking its locks (while the previous flush commits), or None when
        its apps are not all eligible.  Each app's state then reflects this flush: ``state.seq`` is the
        seq it will commit as, and its transaction checks that it does (``flush``)."""
        if not self._can_decide_ahead(subs):
            return None
        by_app = _by_app(subs)
        work: dict[int, _AppWork] = {}
        try:
            for app_id in sorted(by_app):
                state = self.states[app_id]
                work[app_id] = await self._decide(None, state, app_id, state.seq + 1, by_app[app_id])
                state.seq += 1
        except Exception:
            # nothing was written: the states hold decisions that will never commit, rebuild them
            log.warning("deciding ahead failed; deciding again under the locks", exc_info=True)
            for s in subs:
                self.states.pop(s.app_id, None)
            return None
        return work

    # -- one flush ----------------------------------------------------------
    async def flush(
        self, subs: list[Submission], ahead: dict[int, _AppWork] | None = None, copying: asyncio.Event | None = None,
        order: _LockOrder | None = None,
    ) -> None:
        """One group commit.  ``ahead``: the flush's apps decided already (``_decide_ahead``); its
        transaction raises _Conflict, storing nothing, when a state changed underneath them.
        ``copying`` is set when the records' COPY starts: the writer decides the next flush meanwhile."""
        t0 = time.perf_counter()
        if ahead is not None and self._dbs:
            # decided already: only database work is left, done by one of the writer's threads (the flushes
            # in flight take them in turn, so no two of them share one)
            db = self._dbs[self._db_turn]
            self._db_turn = (self._db_turn + 1) % len(self._dbs)
            loop = asyncio.get_running_loop()
            signal = None if copying is None else (lambda: loop.call_soon_threadsafe(copying.set))
            answers, committed = await db.run(lambda conn: self._store(conn, subs, ahead, signal, order))
        else:
            async with self.pool.acquire() as conn:
                answers, committed = await self._store(conn, subs, ahead, None if copying is None else copying.set,
                                                       order)
        if ahead is None:
            for app_id, seq in committed.items():
                held = self.states.get(app_id)
                if held is not None:
                    held.seq = seq
        self.last_flush_ms = (time.perf_counter() - t0) * 1000
        if self.metrics is not None:
            self.metrics.commit_seconds.observe(self.last_flush_ms / 1000)
            self.metrics.flushes.labels("ahead" if ahead is not None else "locked").inc()
        for s in subs:
            if not s.future.done():
                s.future.set_result(answers[id(s)])

    async def _store(
        self,
        conn: asyncpg.Connection,
        subs: list[Submission],
        ahead: dict[int, _AppWork] | None,
        copying: Callable[[], object] | None,
        order: _LockOrder | None = None,
    ) -> tuple[dict[int, Outcome], dict[int, int]]:
        """The flush's transaction; returns the answers by id(submission) and the seq of each app."""
        try:
            return await self._transaction(conn, subs, ahead, copying, order)
        finally:
            if order is not None:
                order.release()

    async def _transaction(
        self,
        conn: asyncpg.Connection,
        subs: list[Submission],
        ahead: dict[int, _AppWork] | None,
        copying: Callable[[], object] | None,
        order: _LockOrder | None,
    ) -> tuple[dict[int, Outcome], dict[int, int]]:
        by_app = _by_app(subs)
        app_ids = sorted(by_app)
        answers: dict[int, Outcome] = {}
        committed: dict[int, int] = {}
        if ahead is None:
            await self._sync_states(conn, app_ids)
        async with conn.transaction():
            if ahead is not None:
                # decided already: copy first, then wait for the apps' locks (the previous flush's commit,
                # which holds them) and check; a conflict rolls the copies back.  So the COPY of this flush
                # runs while the previous one copies or commits, on a connection of its own (Writer._dbs).
                if copying is not None:
                    copying()
                await self._copy(conn, ahead.values())
                copying = None
                if order is not None and order.after is not None:
                    await asyncio.wrap_future(order.after)  # the flush before this one holds its locks
            # lock the apps' rows in app order (two processes never deadlock) and advance their seq
            locked = await conn.fetch(_LOCK_AND_ADVANCE, app_ids)
            if order is not None:
                order.release()
            seqs = {r["app_id"]: r["seq"] for r in locked}
            works: dict[int, _AppWork] = {}
            for app_id in app_ids:
                if app_id not in seqs:
                    raise UnmoError(f"app {app_id}: missing from app_log")
                seq = seqs[app_id] + 1
                if ahead is not None:
                    w = ahead[app_id]
                    if self.states.get(app_id) is not w.state or w.seq != seq:
                        # an earlier flush failed, or another process wrote the app: decide again
                        self._contend(app_id)
                        raise _Conflict(app_id)
                else:
                    state = await self._state_for(conn, app_id, seqs[app_id])
                    w = await self._decide(conn, state, app_id, seq, by_app[app_id])
                works[app_id] = w
                committed[app_id] = seq
            if ahead is None:
                if copying is not None:
                    copying()
                await self._copy(conn, works.values())
            for app_id, w in works.items():
                for s, o in zip(w.subs, await self._finish(conn, app_id, w), strict=True):
                    answers[id(s)] = o
        return answers, committed

    async def _copy(self, conn: asyncpg.Connection, works: Iterable[_AppWork]) -> None:
        """The flush's rows: its records and its install results (both encoded when deciding), the
        installs of all its apps in one COPY."""
        installs = []
        for w in works:
            if w.stream is not None:
                await conn.copy_to_table(
                    "records", schema_name="unmo", source=memoryview(w.stream), columns=RECORD_COLUMNS,
                    format="binary",
                )
            if w.installs is not None:
                installs.append(w.installs)
        if installs:
            await conn.copy_to_table(
                "installs", schema_name="unmo", source=memoryview(b"".join((_COPY_HEADER, *installs, _COPY_TRAILER))),
                columns=INSTALL_COLUMNS, format="binary",
            )

    async def _sync_states(self, conn: asyncpg.Connection, app_ids: list[int]) -> None:
        """Before a flush's transaction: bring the apps' states up to what is committed, warming a state
        this process lacks and replaying what other processes wrote.  Both read records by the thousand
        or million, and the transaction holds the apps' app_log rows, which every process writing them
        waits for: done here, they hold up no one, and the locked ``_state_for`` has only the commits
        made meanwhile to replay (a second worker that caught up 1.2M records under the lock held the
        app for 8.9 s)."""
        for row in await conn.fetch(_COMMITTED_SEQS, app_ids):
            app_id, seq_db = row["app_id"], row["seq"]
            held = self.states.get(app_id)
            if held is None or held.seq < seq_db or self._exclusive.get(app_id, 0) < EXCLUSIVE_FLUSHES:
                # this process is new to the app, behind on it, or not its only writer lately: a process that has
                # been writing it alone stops deciding it ahead, before this one's warm-up or catch-up (seconds,
                # for a big app) and its first commit, which a flush decided ahead would find under the lock
                await conn.execute("SELECT pg_notify($1, $2)", WRITERS_CHANNEL, f"{app_id} {self._token}")
                await self._listen()
            # -1: the locked _state_for, finding the state current, counts this flush back to 0, as when the
            # warm-up or catch-up happens under the lock
            await self._bring_up(conn, app_id, seq_db, exclusive_after=-1)

    async def _bring_up(self, conn: asyncpg.Connection, app_id: int, seq_db: int, exclusive_after: int) -> bool:
        """Warm the app's state when this process holds none, or replay what other processes committed
        since it; True when it did either (the app's run of exclusive flushes then restarts at
        ``exclusive_after``), False when the state was current."""
        state = self.states.get(app_id)
        if state is None:
            if app_id not in self.settings:
                await self.refresh_settings(conn)
            await self.warm(conn, app_id, seq_db)
        elif state.seq < seq_db:
            # another process wrote the app: its flushes are decided under the lock for a while
            self._contended[app_id] = time.monotonic() + CONTENDED_S
            await self.catch_up(conn, state, app_id, seq_db)
        else:
            return False
        self._exclusive[app_id] = exclusive_after
        return True

    async def _state_for(self, conn: asyncpg.Connection, app_id: int, seq_db: int) -> AppKernel:
        if not await self._bring_up(conn, app_id, seq_db, exclusive_after=0):
            self._exclusive[app_id] = self._exclusive.get(app_id, 0) + 1
        return self.states[app_id]

    async def _decide(
        self, conn: asyncpg.Connection | None, state: AppKernel, app_id: int, seq: int, subs: list[Submission]
    ) -> _AppWork:
        """The kernel's decisions for one app's requests and the rows to store, in memory.  ``conn``: the
        flush's transaction, or None when deciding ahead (lookups then use a connection of their own)."""
        if len(subs) == 1:
            batch = subs[0].batch
        else:
            batch = Batch()
            for s in subs:
                batch.extend(s.batch)
        received = np.concatenate([np.full(s.batch.n, s.received_ms, dtype=np.int64) for s in subs])
        unknown = state.unknown_devices(batch)
        if unknown:
            if conn is not None:
                await self._load_installs(conn, state, app_id, unknown)
            else:
                async with self.pool.acquire() as lookup:
                    await self._load_installs(lookup, state, app_id, unknown)
        # each request is a batch of its own, decided in arrival order (spec: across batches,
        # arrival order; inside one, stable ts order); `ord` stores that order for replays
        order = batch_order(batch.arrays()["ts"], [sub.batch.n for sub in subs])
        d = state.decide(batch, received, order)
        assert d.camp is not None
        self._prepare_growth(state)
        keep = d.dup == 0
        ord_ = np.empty(batch.n, dtype=np.int32)
        ord_[order] = np.arange(batch.n, dtype=np.int32)
        stream = None
        if keep.any():
            # reports (shared edit): the columns the rollups need, folded later off this path (docs/reports.md)
            install_ms, ctit_rejected = report_rollup.record_columns(state, batch.arrays()["kind"], d)
            stream, _n = encode_records(
                batch,
                app_id=app_id,
                seq=seq,
                keep=keep,
                ord_=ord_,
                received=received,
                outcome=d.outcome,
                camp=d.camp,
                campaigns=state.campaigns,
                install_ms=install_ms,
                ctit_rejected=ctit_rejected,
            )
        installs = _install_rows(app_id, seq, batch, received, ord_, d.results) if d.results else None
        return _AppWork(state, seq, subs, batch, d, stream, installs)

    async def _finish(self, conn: asyncpg.Connection, app_id: int, w: _AppWork) -> list[Outcome]:
        """Inside the flush's transaction: the answers of the app's requests."""
        batch, d = w.batch, w.d
        results = await self._results_with_duplicates(conn, app_id, batch, d)
        outs = []
        start = 0
        kinds, index = batch.arrays()["kind"], batch.arrays()["index"]
        for s in w.subs:
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
                    installs.append({"index": int(index[row]), "id": batch.record_id[row], **r})
            outs.append(
                Outcome(accepted=s.batch.n - dups, duplicates=dups, installs=installs, by_kind=by_kind)
            )
            start = end
        return outs

    async def _results_with_duplicates(
        self, conn: asyncpg.Connection, app_id: int, batch: Batch, d: Decisions
    ) -> dict[int, dict[str, Any]]:
        """Results of every install row; a duplicate carries its original's result."""
        results = dict(d.results)
        dup_rows = np.flatnonzero((d.dup != 0) & (batch.kind == Kind.INSTALL)).tolist()
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
        await _replay(
            conn, state,
            f"SELECT {REPLAY_COLUMNS} FROM unmo.records WHERE app_id = $1 AND seq <= $2 "
            "AND received_at >= $3 AND (received_at >= $4 OR (kind <= 2 AND ts >= $5)) ORDER BY seq, ord",
            app_id,
            seq,
            _ts(min(touch_from - GRACE_MS, dedup_from)),
            _ts(dedup_from),
            _ts(touch_from),
        )
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
        replayed = await _replay(
            conn, state,
            f"SELECT {REPLAY_COLUMNS} FROM unmo.records WHERE app_id = $1 AND seq > $2 AND seq <= $3 "
            "ORDER BY seq, ord",
            app_id,
            state.seq,
            seq_db,
        )
        for row in await conn.fetch(
            "SELECT * FROM unmo.installs WHERE app_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq, ord",
            app_id,
            state.seq,
            seq_db,
        ):
            state.replay_install(row)
        if self.metrics is not None:
            self.metrics.catch_up_records.inc(replayed)
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
            found = await conn.fetch(INSTALLS_BY_IDS, [app_id], signed_hashes(wanted))
            for row in found:
                rows[(row["seq"], row["ord"])] = row
            wanted = state.lookup_hashes(found, asked)
            if not wanted:
                break
            asked.update(wanted)
        state.replay_lookup([rows[k] for k in sorted(rows)])
        got = {h & 0xFFFFFFFFFFFFFFFF for row in rows.values() for h in row["device_hashes"]}
        state.mark_absent([h for h in hashes if h not in got])


# a binary COPY stream's header and trailer, as the encoder writes them around its rows
_EMPTY_COPY = encode_copy(0, [(ColType.INT8, np.zeros(0, dtype=np.int64), None)])
_COPY_HEADER, _COPY_TRAILER = _EMPTY_COPY[:-2], _EMPTY_COPY[-2:]
_ARRAY_HEAD = struct.Struct(">iiiii")    # int8[]: dimensions, has-nulls flag, element type, length, lower bound
_INT8_OID = 20
_INT8_ELEMENT = np.dtype([("len", ">i4"), ("value", ">i8")])


# the start of an int8[] of k elements is _ARRAY_HEADS[k]; an empty one has no dimensions at all
_ARRAY_HEADS = [_ARRAY_HEAD.pack(0, 0, _INT8_OID, 0, 0)[:12]] + [
    _ARRAY_HEAD.pack(1, 0, _INT8_OID, k, 1) for k in range(1, 6)]


def _int8_arrays(dev: np.ndarray) -> list[bytes]:
    """Each row's non-zero hashes (uint64, as signed) as a one-dimensional int8[] without NULLs in
    PostgreSQL's binary form (array_send), all rows' elements encoded in one pass."""
    keep = dev != 0
    counts = keep.sum(axis=1).tolist()
    elements = np.empty(int(keep.sum()), dtype=_INT8_ELEMENT)
    elements["len"] = 8
    elements["value"] = dev[keep].view(np.int64)      # row by row, in column order
    data = elements.tobytes()
    out, at = [], 0
    for k in counts:
        out.append(_ARRAY_HEADS[k] + data[at:at + 12 * k])
        at += 12 * k
    return out


def _install_rows(
    app_id: int, seq: int, batch: Batch, received: np.ndarray, ord_: np.ndarray, results: dict[int, dict[str, Any]]
) -> bytes:
    """The unmo.installs rows of a flush's install results (INSTALL_COLUMNS), binary COPY rows without the
    stream's header and trailer, so that the installs of several apps go in one COPY.  Numbers and times
    are written from the batch's columns, not from a Python object each (datetime, int) as asyncpg's
    copy_records_to_table would need."""
    rows = np.fromiter(results, dtype=np.int64, count=len(results))
    res = list(results.values())
    n = len(rows)
    dev = np.ascontiguousarray(batch.dev[rows])
    touch_ms = np.zeros(n, dtype=np.int64)
    touch_null = np.ones(n, dtype=np.uint8)
    ctit = np.zeros(n, dtype=np.float64)
    ctit_null = np.ones(n, dtype=np.uint8)
    for i, r in enumerate(res):
        if r["touch_ts"] is not None:
            touch_ms[i], touch_null[i] = _parse_ms(r["touch_ts"]), 0
        if r["ctit_s"] is not None:
            ctit[i], ctit_null[i] = r["ctit_s"], 0
    text = ColType.TEXT
    stream = encode_copy(n, [
        (ColType.INT8, batch.device_key[rows], None),
        (ColType.INT8, np.full(n, app_id, dtype=np.int64), None),
        (text, [batch.record_id[row] for row in rows.tolist()], None),
        (ColType.TIMESTAMPTZ_MS, received[rows], None),
        (ColType.INT8, np.full(n, seq, dtype=np.int64), None),
        (ColType.INT4, ord_[rows], None),
        (ColType.TIMESTAMPTZ_MS, batch.ts[rows], None),
        # a text column's values are written as they are: here each array's binary form
        (text, _int8_arrays(dev), None),
        (text, [r["status"] for r in res], None),
        (text, [r["touch"] for r in res], None),
        (text, [r["match"] for r in res], None),
        (text, [r["touch_id"] for r in res], None),
        (ColType.TIMESTAMPTZ_MS, touch_ms, touch_null),
        *[(text, [r[f] for r in res], None) for f in CAMPAIGN_FIELDS],
        (ColType.FLOAT8, ctit, ctit_null),
        (ColType.JSONB, ["[]" if not r["rejected"] else json.dumps(r["rejected"]) for r in res], None),
    ])
    return stream[len(_COPY_HEADER):-len(_COPY_TRAILER)]


def _parse_ms(text: str) -> int:
    return to_ms(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
