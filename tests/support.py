"""Helpers the tests share: a real PostgreSQL, a real ingest server on loopback, HTTP clients.

The database is ``UNMO_TEST_DATABASE_URL`` when set (CI: this machine's
PostgreSQL), else the embedded PostgreSQL under ``.unmo-test/``.  Each test
session works in a database of its own, created fresh and dropped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class TestDatabase:
    """A fresh database for one test session on the test PostgreSQL server."""

    __test__ = False  # not a pytest test class

    @classmethod
    def existing(cls, url: str) -> TestDatabase:
        """Helpers over a database that exists already (nothing created or dropped)."""
        db = cls.__new__(cls)
        db.embedded, db.admin_url, db.url = None, url, url
        db.name = urlsplit(url).path.lstrip("/")
        return db

    def __init__(self) -> None:
        self.embedded: Any = None
        base = os.environ.get("UNMO_TEST_DATABASE_URL")
        if not base:
            from unmo.db.embedded import EmbeddedPostgres

            self.embedded = EmbeddedPostgres(ROOT / ".unmo-test")
            base = self.embedded.start()
        self.admin_url = base
        self.name = f"unmo_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.url = with_database(base, self.name)

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create(self) -> None:
        from unmo.db.migrate import migrate

        async def go() -> None:
            await self._admin(f'CREATE DATABASE "{self.name}"')
            conn = await asyncpg.connect(self.url)
            try:
                await migrate(conn)
            finally:
                await conn.close()

        run(go())

    def drop(self) -> None:
        run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        if self.embedded is not None:
            self.embedded.stop()

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def go() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.url)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return run(go())  # type: ignore[no-any-return]

    def fetchval(self, sql: str, *args: Any) -> Any:
        rows = self.fetch(sql, *args)
        return rows[0][0] if rows else None

    def call(self, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        async def go() -> Any:
            conn = await asyncpg.connect(self.url)
            try:
                return await fn(conn)
            finally:
                await conn.close()

        return run(go())

    def create_app(self, name: str | None = None, platform: str | None = None) -> dict[str, Any]:
        from unmo.apps import create_app

        return self.call(lambda conn: create_app(conn, name or f"app-{uuid.uuid4().hex[:10]}", platform))  # type: ignore[no-any-return]


@contextlib.contextmanager
def fresh_database() -> Iterator[TestDatabase]:
    """A database of its own for the block (the tests' and the benchmarks' ``database`` fixtures)."""
    db = TestDatabase()
    db.create()
    try:
        yield db
    finally:
        db.drop()


class ServerProcess:
    """``unmo serve`` as a real subprocess on a free loopback port."""

    def __init__(
        self,
        database_url: str,
        *,
        workers: int = 1,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.database_url = database_url
        self.workers = workers
        self.extra = extra or []
        self.env = env or {}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ROOT / "test-artifacts" / f"serve-{self.port}.log"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.log_path.parent.mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "unmo",
                    "serve",
                    "--port",
                    str(self.port),
                    "--database-url",
                    self.database_url,
                    "--workers",
                    str(self.workers),
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unmo serve exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"unmo serve not ready after {timeout}s; log: {self.log_path}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig) if sig == signal.SIGKILL else self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def now_ms() -> int:
    return int(time.time() * 1000)


def post_batch(url: str, key: str, records: list[dict[str, Any]], **kw: Any) -> httpx.Response:
    body = {"batch": records, **kw.pop("envelope", {})}
    return httpx.post(
        url + "/v1/batch",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=kw.pop("timeout", 30.0),
        **kw,
    )
