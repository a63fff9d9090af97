"""Workers of one ``unmo serve --workers N`` hand each app's batches to one of them, its owner.

Every worker accepts connections on the shared socket, so the requests of one app reach all of them.
Any number of processes may write an app correctly (docs/architecture.md: the app_log lock, replays of
each other's commits), but two processes writing one app both decide under its lock and each replays
everything the other commits: with one app, two workers did less than one (docs/performance.md).
Here the worker that received a request authenticates and decodes it as before (the decode is the
largest part of a request's CPU), then, when another worker owns the app (:func:`owner_of`), sends it the decoded
batch over a Unix socket of the server's own and answers with what the owner's writer returns.  Each
app is then decided and committed by one process, and the decoding is spread over all of them.

A request that cannot reach the owner (restarting, stopping, its socket gone) is stored by the worker
that received it, through its own writer, as before: forwarding only chooses the writer, never
whether a batch is stored.  When the connection breaks after the batch was sent, the owner may have
committed it: storing it again here finds its records by id and answers them as duplicates, which is
what a client's retry would have got (spec: idempotent by record id).

The frames (``FRAME``: request id and length, then a pickle) go only between processes of one server,
through sockets in a directory the supervisor creates for them alone (mode 0700; each worker gets
its path on its command line, unmo.server.run).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import pickle
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from unmo.errors import DatabaseUnavailableError, OverloadedError, UnmoError
from unmo.ingest.batch import Batch
from unmo.ingest.writer import Outcome

log = logging.getLogger("unmo.peers")

FRAME = struct.Struct("<QQ")        # request id, payload bytes
MAX_FRAME = 1 << 30                 # a decoded batch is about the size of its body (Limits.max_body_bytes)
CONNECT_TIMEOUT_S = 1.0
STOP_WAIT_S = 30.0                  # what a stopping owner waits for the batches it took (unmo.server.run.GRACEFUL_S)

Submit = Callable[[int, Batch, int], Awaitable[Outcome]]


class PeerUnavailable(Exception):
    """The owner could not be asked, or its answer was lost: store the batch here."""


def owner_of(app_id: int, workers: int) -> int:
    """The worker (0 .. workers-1) that writes the app; the same in every worker of a server."""
    digest = hashlib.blake2b(app_id.to_bytes(8, "little", signed=True), digest_size=8).digest()
    return int.from_bytes(digest, "little") % workers


def socket_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"worker-{index}.sock")


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, Any]:
    head = await reader.readexactly(FRAME.size)
    rid, size = FRAME.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"peer frame: {size} bytes")
    return rid, pickle.loads(await reader.readexactly(size))  # noqa: S301 - from this server's own workers only


class _Parts:
    """A pickler's output as the pieces it writes: its frames of up to 64 KiB, and big buffers (a batch's
    COPY segment, its columns) as they are.  ``pickle.dumps`` would copy a batch into one new object of
    about its body's size, which a worker allocates and frees per request: fresh memory each time, 12 µs
    a page on this project's VM (docs/performance.md), about 1 ms per 1000-record batch."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.size = 0

    def write(self, data: Any) -> None:
        self.parts.append(data)
        self.size += memoryview(data).nbytes


def _write_frame(writer: asyncio.StreamWriter, rid: int, value: Any) -> None:
    out = _Parts()
    pickle.Pickler(out, protocol=5).dump(value)
    writer.writelines((FRAME.pack(rid, out.size), *out.parts))


class OwnerServer:
    """The owner's side: takes batches from the other workers and submits them to this worker's writer."""

    def __init__(self, path: str, submit: Submit, on_batch: Callable[[], None] | None = None) -> None:
        self.path = path
        self.submit = submit
        self.on_batch = on_batch
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: set[asyncio.StreamWriter] = set()
        self._closing = False

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by a worker that died; this one takes its place
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)

    async def stop(self) -> None:
        """Stop taking batches (later ones are answered "unavailable": their worker stores them), wait
        for those taken to be answered, close the connections."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_WAIT_S)
        for w in list(self._conns):
            w.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        lock = asyncio.Lock()
        try:
            while True:
                try:
                    rid, (app_id, batch, received_ms) = await _read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                task = asyncio.create_task(self._answer(writer, lock, rid, app_id, batch, received_ms))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except Exception:
            log.warning("peer connection failed", exc_info=True)
        finally:
            self._conns.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, lock: asyncio.Lock, rid: int, app_id: int, batch: Batch,
                      received_ms: int) -> None:
        answer: tuple[Any, ...]
        if self._closing:
            answer = ("unavailable",)
        else:
            if self.on_batch is not None:
                self.on_batch()
            try:
                answer = ("ok", await self.submit(app_id, batch, received_ms))
            except DatabaseUnavailableError as exc:
                answer = ("database", str(exc), exc.retry_after)
            except OverloadedError as exc:
                answer = ("overloaded", str(exc), exc.retry_after)
            except UnmoError as exc:
                answer = ("error", str(exc))
            except Exception:  # what would have been a 500 in the worker that received the request
                log.exception("storing a batch handed over by another worker failed")
                answer = ("error", "server: could not store the batch")
        async with lock:
            if writer.is_closing():
                return
            _write_frame(writer, rid, answer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()


class _Channel:
    """One connection to an owner; the answers come back in any order, matched by request id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.waiting: dict[int, asyncio.Future[tuple[Any, ...]]] = {}
        self.lock = asyncio.Lock()
        self.task = asyncio.create_task(self._read(), name="unmo-peer-answers")

    async def _read(self) -> None:
        try:
            while True:
                rid, answer = await _read_frame(self.reader)
                fut = self.waiting.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(answer)
        except Exception as exc:  # closed, broken or garbled: every batch waiting on it is stored by its worker
            self.writer.close()
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(PeerUnavailable(f"owner connection lost: {exc.__class__.__name__}"))
            self.waiting.clear()

    @property
    def broken(self) -> bool:
        return self.task.done() or self.writer.is_closing()

    async def ask(self, rid: int, app_id: int, batch: Batch, received_ms: int) -> tuple[Any, ...]:
        fut: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        try:
            try:
                async with self.lock:
                    _write_frame(self.writer, rid, (app_id, batch, received_ms))
                    await self.writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise PeerUnavailable(f"owner connection lost: {exc.__class__.__name__}") from exc
            return await fut
        finally:
            self.waiting.pop(rid, None)   # answered, failed or cancelled: nothing waits on it any more

    async def close(self) -> None:
        self.writer.close()
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


class Peers:
    """A worker's view of the others: who owns an app, and the way to hand it a batch."""

    def __init__(self, directory: str, index: int, workers: int) -> None:
        self.directory = directory
        self.index = index
        self.workers = workers
        self._channels: dict[int, _Channel] = {}
        self._connecting: dict[int, asyncio.Lock] = {}
        self._next_id = 0

    def owner(self, app_id: int) -> int:
        return owner_of(app_id, self.workers)

    async def _channel(self, owner: int) -> _Channel:
        ch = self._channels.get(owner)
        if ch is not None and not ch.broken:
            return ch
        lock = self._connecting.setdefault(owner, asyncio.Lock())
        async with lock:
            ch = self._channels.get(owner)
            if ch is not None and not ch.broken:
                return ch
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(socket_path(self.directory, owner)), CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise PeerUnavailable(f"owner worker {owner}: {exc.__class__.__name__}") from exc
            ch = self._channels[owner] = _Channel(reader, writer)
            return ch

    async def submit(self, owner: int, app_id: int, batch: Batch, received_ms: int) -> Outcome:
        """The owner's answer, raising what its writer raised; PeerUnavailable when there was none."""
        self._next_id += 1
        rid = self._next_id  # taken before any await: another request may take the next one meanwhile
        channel = await self._channel(owner)
        answer = await channel.ask(rid, app_id, batch, received_ms)
        kind = answer[0]
        if kind == "ok":
            outcome: Outcome = answer[1]
            return outcome
        if kind == "database":
            raise DatabaseUnavailableError(answer[1], retry_after=answer[2])
        if kind == "overloaded":
            raise OverloadedError(answer[1], retry_after=answer[2])
        if kind == "error":
            raise UnmoError(answer[1])
        raise PeerUnavailable(f"owner worker {owner}: {kind}")

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
