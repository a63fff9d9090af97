"""The ingest server's ASGI application (spec: ingest-api.md; docs/api.md)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from unmo import __version__
from unmo.apps import AppSettings, load_settings
from unmo.config import Limits, ServerSettings
from unmo.errors import DatabaseUnavailableError, OverloadedError, UnmoError
from unmo.ingest.batch import DEVICE_SEEDS, Batch, decode_body, device_hash, normalize_device_id
from unmo.ingest.body import BodyError, LimitError, inflate
from unmo.ingest.stats import StatsRecorder
from unmo.ingest.writer import (
    INSTALLS_BY_IDS,
    RESULT_COLUMNS,
    Outcome,
    Writer,
    ingest_settings,
    stored_result,
)
from unmo.kernel import signed_hashes
from unmo.reports.http import cohort_report, daily_report
from unmo.reports.rollup import Folder
from unmo.server.auth import SDK, SECRET, AuthError, KeyCache
from unmo.server.metrics import Metrics
from unmo.server.openapi import openapi_document
from unmo.server.peers import OwnerServer, Peers, PeerUnavailable, socket_path
from unmo.server.ratelimit import RateLimiter

log = logging.getLogger("unmo.server")
_json = msgspec.json.Encoder()

# Python's cyclic GC, tuned for a server whose hot path allocates tens of thousands of short-lived
# containers per 1000-record batch.  With the default thresholds (700, 10, 10) the objects of the
# requests in flight survive young collections and are traversed again by the older ones: 15 % of the
# serving process's CPU in a py-spy profile under load.  At start-up, what is loaded is moved out of
# the collector's sight (gc.freeze), young collections run every GC_THRESHOLD allocations, older ones
# only rarely, and a full collection runs every GC_FULL_EVERY_S seconds so that cyclic garbage that
# lived long enough to reach the old generation is still freed.  Measured (docs/performance.md, "What
# changed in the serving path"): 16.5 -> 13 us of server CPU per record; a full collection takes 2.5 ms.
GC_THRESHOLD = (200_000, 1000, 1000)
GC_FULL_EVERY_S = 60.0


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json", headers=headers)


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return json_response({"error": message, **extra}, status, headers)


class Ingest:
    """Everything one server process holds: pool, writer, keys, metrics."""

    def __init__(self, settings: ServerSettings, database_url: str) -> None:
        self.settings = settings
        self.limits: Limits = settings.limits
        self.database_url = database_url
        self.metrics = Metrics()
        self.pool: asyncpg.Pool | None = None
        self.writer: Writer | None = None
        self.keys: KeyCache | None = None
        self.stats: StatsRecorder | None = None
        self.folder: Folder | None = None
        self.peers: Peers | None = None            # with --workers: the other workers (unmo.server.peers)
        self.owner_server: OwnerServer | None = None
        self._peer_note_at = 0.0
        self.rates = RateLimiter(self.limits.default_app_rate)
        self._bg: list[asyncio.Task[None]] = []
        self.db_size_at = 0.0

    async def startup(self) -> None:
        connection_settings = await ingest_settings(self.database_url)  # never synchronous_commit = off
        self.pool = await asyncpg.create_pool(
            self.database_url,
            min_size=min(2, self.settings.pool_size),  # asyncpg refuses min_size > max_size (--pool-size 1)
            max_size=self.settings.pool_size,
            command_timeout=60,
            server_settings=connection_settings | {"application_name": "unmo-serve"},
        )
        # UNMO_COMMIT_THREAD=0: commit every flush from the serving loop on the shared pool, as before the
        # writer had a connection and thread of its own (the untuned setup of docs/performance.md)
        commit_thread = os.environ.get("UNMO_COMMIT_THREAD", "1") != "0"
        self.writer = Writer(self.pool, self.limits, self.metrics, self.database_url if commit_thread else None,
                             connection_settings)
        await self.writer.start()
        if self.settings.worker_dir is not None and self.settings.worker_count > 1:
            forwarded = self.metrics.forwarded
            self.owner_server = OwnerServer(socket_path(self.settings.worker_dir, self.settings.worker_index),
                                            self.writer.submit, lambda: forwarded.labels("received").inc())
            await self.owner_server.start()
            self.peers = Peers(self.settings.worker_dir, self.settings.worker_index, self.settings.worker_count)
        self.keys = KeyCache(self.pool)
        await self.keys.start()
        self.stats = StatsRecorder(self.pool, f"{self.settings.host}:{self.settings.port}")
        await self.stats.start()
        if self.settings.report_fold_s > 0:  # reports (docs/reports.md): rollups kept off the write path
            self.folder = Folder(self.database_url, self.settings.report_fold_s)
            self.folder.start()
        async with self.pool.acquire() as conn:
            self._load_rates(await load_settings(conn))
        self._bg.append(asyncio.create_task(self._settings_loop(), name="unmo-settings"))
        tune_gc()
        self._bg.append(asyncio.create_task(self._gc_loop(), name="unmo-gc"))
        log.info("ingest ready", extra={"host": self.settings.host, "port": self.settings.port})

    async def shutdown(self) -> None:
        for t in self._bg:
            t.cancel()
        if self.folder is not None:  # first: a fold under way is rolled back, never waited for
            await self.folder.stop()
        if self.owner_server is not None:  # the batches other workers handed over are committed first
            await self.owner_server.stop()
        if self.peers is not None:
            await self.peers.close()
        if self.writer is not None:
            await self.writer.close()
        if self.stats is not None:
            await self.stats.close()
        if self.keys is not None:
            await self.keys.close()
        if self.pool is not None:
            await self.pool.close()
        log.info("ingest stopped")

    def _load_rates(self, settings: dict[int, tuple[AppSettings, int | None]]) -> None:
        for app_id, (_s, rate) in settings.items():
            self.rates.rates[app_id] = rate

    async def _gc_loop(self) -> None:
        """The full collections the raised thresholds (tune_gc) no longer trigger on their own."""
        while True:
            await asyncio.sleep(GC_FULL_EVERY_S)
            t0 = time.perf_counter()
            gc.collect()
            self.metrics.gc_seconds.observe(time.perf_counter() - t0)

    async def _settings_loop(self) -> None:
        """Pick up `unmo apps set` changes and keep partitions ahead of the clock."""
        from unmo.db.migrate import ensure_partitions

        assert self.pool is not None and self.writer is not None
        while True:
            await asyncio.sleep(5.0)
            try:
                # one connection for all of it: with --pool-size 1 a second acquire would wait on the first
                async with self.pool.acquire(timeout=2.0) as conn:
                    settings = await load_settings(conn)
                    self.writer.apply_settings(settings)
                    self._load_rates(settings)
                    await ensure_partitions(conn)
            except Exception:  # noqa: S112 - database down; the writer reports it
                continue

    # -- request helpers ------------------------------------------------
    async def submit(self, app_id: int, batch: Batch, received_ms: int) -> Outcome:
        """Commit a decoded batch: through the writer of the worker that owns the app (unmo.server.peers),
        or through this one's when it owns it, runs alone, or the owner cannot be asked."""
        assert self.writer is not None
        peers = self.peers
        if peers is not None:
            owner = peers.owner(app_id)
            if owner != peers.index:
                try:
                    outcome = await peers.submit(owner, app_id, batch, received_ms)
                except PeerUnavailable as exc:
                    now = time.monotonic()
                    if now >= self._peer_note_at:  # once in a while: a restarting owner misses many batches
                        self._peer_note_at = now + 10.0
                        log.info("batches stored here: the app's worker could not be asked", extra={"reason": str(exc)})
                    self.metrics.forwarded.labels("stored_here").inc()
                else:
                    self.metrics.forwarded.labels("sent").inc()
                    return outcome
        return await self.writer.submit(app_id, batch, received_ms)

    async def auth(self, request: Request, allow: tuple[str, ...]) -> Any:
        assert self.keys is not None
        return await self.keys.authenticate(request.headers.get("authorization"), allow=allow)

    async def read_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limits.max_wire_bytes:
            raise LimitError("body_bytes", f"body: larger than {self.limits.max_wire_bytes} bytes")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limits.max_wire_bytes:
                raise LimitError("body_bytes", f"body: larger than {self.limits.max_wire_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            return inflate(body, self.limits.max_body_bytes)
        if encoding not in ("identity", ""):
            raise BodyError(f"content-encoding: expected gzip or identity, got {encoding!r}", status=415)
        if len(body) > self.limits.max_body_bytes:
            raise LimitError("body_bytes", f"body: larger than {self.limits.max_body_bytes} bytes")
        return body


def _is_msgpack(request: Request) -> bool | None:
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype in ("application/json", "text/plain", ""):
        return False
    if ctype in ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack"):
        return True
    return None


async def post_batch(request: Request) -> Response:
    ing: Ingest = request.app.state.ingest
    t0 = time.perf_counter()
    received_ms = int(time.time() * 1000)
    m = ing.metrics
    try:
        principal = await ing.auth(request, (SDK, SECRET))
    except AuthError as exc:
        return error(exc.status, str(exc), exc.headers)
    msgpack = _is_msgpack(request)
    if msgpack is None:
        return error(
            415,
            f"content-type: expected application/json or application/msgpack, got "
            f"{request.headers.get('content-type')!r}",
        )
    try:
        body = await ing.read_body(request)
        decoded = decode_body(body, msgpack=msgpack, received_ms=received_ms, limits=ing.limits)
    except LimitError as exc:
        return error(413, str(exc), limit=exc.limit)
    except BodyError as exc:
        return error(exc.status, str(exc))
    batch = decoded.batch
    wait = ing.rates.check(principal.app_id, max(batch.n, 1))
    if wait > 0:
        m.shed.labels("rate").inc()
        return error(
            429,
            f"rate: app over its limit of {ing.rates.rates.get(principal.app_id) or ing.rates.default_rate}"
            " records/s, nothing was stored",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )
    assert ing.writer is not None and ing.stats is not None
    kinds: dict[str, dict[str, int]] = {}
    if decoded.errors:
        m.records.labels("invalid", "rejected").inc(len(decoded.errors))
    if batch.n:
        try:
            outcome = await ing.submit(principal.app_id, batch, received_ms)
        except OverloadedError as exc:
            reason = "database" if isinstance(exc, DatabaseUnavailableError) else "queue"
            m.shed.labels(reason).inc()
            m.shedding.set(1)
            latency = (time.perf_counter() - t0) * 1000
            ing.stats.batch(principal.app_id, latency, {}, 0, 0, 0, server_error=True)
            return error(503, str(exc), {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
        except UnmoError as exc:
            ing.stats.batch(
                principal.app_id, (time.perf_counter() - t0) * 1000, {}, 0, 0, 0, server_error=True
            )
            return error(500, str(exc))
        m.shedding.set(0)
        kinds = outcome.by_kind
        for name, c in kinds.items():
            for o, n in c.items():
                m.records.labels(name, o).inc(n)
        accepted, duplicates, installs = outcome.accepted, outcome.duplicates, outcome.installs
    else:
        accepted, duplicates, installs = 0, 0, []
    latency = (time.perf_counter() - t0) * 1000
    m.batch_seconds.observe(latency / 1000)
    ing.stats.batch(principal.app_id, latency, kinds, accepted, duplicates, len(decoded.errors))
    status = 400 if decoded.errors and batch.n == 0 else 200
    return json_response(
        {"accepted": accepted, "duplicates": duplicates, "errors": decoded.errors, "installs": installs},
        status,
    )


async def get_install(request: Request) -> Response:
    ing: Ingest = request.app.state.ingest
    try:
        principal = await ing.auth(request, (SECRET,))
    except AuthError as exc:
        return error(exc.status, str(exc), exc.headers)
    record_id = request.path_params["id"]
    if not 1 <= len(record_id) <= 128:
        return error(400, f"id: expected 1 to 128 characters, got {len(record_id)}")
    assert ing.pool is not None
    try:
        async with ing.pool.acquire(timeout=5.0) as conn:
            row = await conn.fetchrow(
                f"SELECT {RESULT_COLUMNS}, ts, received_at FROM unmo.installs WHERE app_id = $1 AND record_id = $2",
                principal.app_id,
                record_id,
            )
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return error(503, "database: unavailable", {"Retry-After": "1"})
    if row is None:
        return error(404, f"install: no install with id {record_id!r}")
    return json_response({"id": record_id, "install_ts": _iso(row["ts"]), **stored_result(row)})


def _iso(value: Any) -> str:
    return str(value.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def device_lookup_hashes(device: str) -> list[int]:
    """Every typed hash a device identifier (of unknown type) could be stored under."""
    v = normalize_device_id(device)
    if v is None:
        return []
    return [device_hash(f, v) for f in DEVICE_SEEDS]


async def get_attribution(request: Request) -> Response:
    ing: Ingest = request.app.state.ingest
    try:
        principal = await ing.auth(request, (SDK, SECRET))
    except AuthError as exc:
        return error(exc.status, str(exc), exc.headers)
    device = request.query_params.get("device")
    if not device or len(device) > 256:
        return error(400, "device: expected a device identifier (idfa, gaid, oaid, idfv or android_id)")
    hashes = device_lookup_hashes(device)
    if not hashes:
        return error(400, "device: the all-zero identifier means no identifier and matches nothing")
    assert ing.pool is not None
    try:
        async with ing.pool.acquire(timeout=5.0) as conn:
            row = await conn.fetchrow(
                f"SELECT {RESULT_COLUMNS}, ts FROM ({INSTALLS_BY_IDS}) AS i ORDER BY seq DESC, ord DESC LIMIT 1",
                [principal.app_id],
                signed_hashes(hashes),
            )
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return error(503, "database: unavailable", {"Retry-After": "1"})
    if row is None:
        return error(404, "device: no install known for this device")
    return json_response(
        {"install_id": row["record_id"], "install_ts": _iso(row["ts"]), **stored_result(row)}
    )


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok", "version": __version__})


async def readyz(request: Request) -> Response:
    ing: Ingest = request.app.state.ingest
    w = ing.writer
    problems = []
    if w is None or ing.pool is None:
        problems.append("starting")
    else:
        if not w.db_ok:
            problems.append("database unavailable")
        else:
            try:
                async with ing.pool.acquire(timeout=1.0) as conn:
                    await conn.fetchval("SELECT 1", timeout=1.0)
            except Exception:
                problems.append("database unavailable")
        if w.shedding:
            problems.append("shedding load")
    if problems:
        return json_response({"status": "unavailable", "problems": problems}, 503, {"Retry-After": "1"})
    return json_response({"status": "ready", "queue_records": w.queued_records if w else 0})


async def metrics(request: Request) -> Response:
    ing: Ingest = request.app.state.ingest
    if ing.pool is not None:
        ing.metrics.pool_size.set(ing.pool.get_size())
        ing.metrics.pool_in_use.set(ing.pool.get_size() - ing.pool.get_idle_size())
        if ing.writer is not None:
            ing.metrics.queue_depth.set(ing.writer.waiting_records)
        now = time.monotonic()
        if now - ing.db_size_at > 10.0:  # pg_database_size walks the data directory: at most every 10 s
            ing.db_size_at = now
            with contextlib.suppress(Exception):
                async with ing.pool.acquire(timeout=1.0) as conn:
                    ing.metrics.db_size.set(
                        await conn.fetchval("SELECT pg_database_size(current_database())", timeout=1.0)
                    )
    body, ctype = ing.metrics.render()
    return Response(body, media_type=ctype)


async def openapi(request: Request) -> Response:
    return json_response(openapi_document())


def create_app(settings: ServerSettings, database_url: str) -> Starlette:
    ingest = Ingest(settings, database_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ingest.startup()
        try:
            yield
        finally:
            await ingest.shutdown()

    routes = [
        Route("/v1/batch", post_batch, methods=["POST"]),
        Route("/v1/installs/{id:path}", get_install, methods=["GET"]),
        Route("/v1/attribution", get_attribution, methods=["GET"]),
        Route("/v1/reports/daily", daily_report, methods=["GET"]),  # reports (docs/reports.md)
        Route("/v1/reports/cohorts", cohort_report, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ingest = ingest
    return app
