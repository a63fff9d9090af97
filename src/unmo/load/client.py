"""A keep-alive HTTP/1.1 client connection for the load driver: pre-encoded requests, httptools responses.

Why not httpx or aiohttp: the driver shares two cores with the server it
measures, so every microsecond it spends per request is taken from the server.
A request here is two ``transport.write`` calls of bytes prepared in advance
and the response is parsed by httptools (the llhttp binding uvicorn uses), the
way wrk and h2load work; docs/performance.md measures the difference.
"""

from __future__ import annotations

import asyncio
from typing import cast
from urllib.parse import urlsplit

import httptools


class HttpStatusError(Exception):
    """The server answered something that is not HTTP/1.1."""


class Target:
    """Where requests go: host, port and the request line + headers for each key."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"url: expected http://HOST[:PORT], got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = (parts.path.rstrip("/") or "") + "/v1/batch"
        self.netloc = parts.netloc

    def head(self, key: str, content_length: int, content_type: str = "application/json") -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.netloc}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {content_length}\r\n\r\n"
        ).encode("latin-1")


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._chunks: list[bytes] = []
        self.closed = False

    @classmethod
    async def open(cls, target: Target) -> Connection:
        loop = asyncio.get_running_loop()
        _transport, conn = await loop.create_connection(cls, target.host, target.port)
        return conn

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpStatusError(f"response: not HTTP/1.1 ({exc})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"connection closed by the server ({exc or 'EOF'})"))

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self._chunks = []

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        self._waiter = None
        if not self.parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self._chunks)))

    # --
    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """Send one pre-encoded request; (status, response body)."""
        if self.closed or self.transport is None:
            raise ConnectionError("connection is closed")
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.transport.write(head)
        self.transport.write(body)
        return await waiter
