"""Delivering batches to POST /v1/batch the way a well-behaved SDK or server does.

A batch is retried until it is acknowledged, within bounds: after ``503`` or
``429`` it waits what ``Retry-After`` says (at most ``max_retry_after_s``), after
a connection error or a timeout it backs off exponentially with jitter (AWS
Architecture Blog, "Exponential Backoff And Jitter"), and it gives up after
``max_attempts`` tries or when ``deadline`` passes.  A timed-out batch may have
been committed; sending it again is safe because record ids deduplicate and a
duplicate install answers its original result (ingest-api.md, Duplicates).
SDK batches carry ``sent_at`` at every try, so the server's clock-skew correction
sees when this copy left the device.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from unmo.errors import cut

_encode = msgspec.json.Encoder().encode
GZIP_ABOVE = 16 * 1024


@dataclass
class Attempt:
    """One HTTP try: what came back and how long it took."""

    status: int  # HTTP status; 0 for a connection error or timeout
    latency_s: float
    at: float  # time.monotonic() when it was answered
    records: int
    error: str = ""


@dataclass
class Delivery:
    """The end of a batch's tries."""

    ok: bool
    body: dict[str, Any] | None
    attempts: list[Attempt] = field(default_factory=list)
    error: str = ""


def iso_now(skew_ms: int = 0) -> int:
    """``sent_at`` as epoch milliseconds on a clock ``skew_ms`` off."""
    return int(time.time() * 1000) + skew_ms


class Sender:
    """An HTTP/1.1 keep-alive client for one key, with bounded retries."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        concurrency: int = 8,
        timeout_s: float = 30.0,
        max_attempts: int = 10,
        max_retry_after_s: float = 30.0,
        on_attempt: Callable[[Attempt], None] | None = None,
        seed: int = 0,
    ) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            # idle connections are dropped before the server's keep-alive timeout (uvicorn: 5 s)
            # closes them, so that a batch is never sent on a connection the server is closing
            limits=httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0
            ),
        )
        self.max_attempts = max_attempts
        self.max_retry_after_s = max_retry_after_s
        self.on_attempt = on_attempt
        self.rng = random.Random(seed)

    async def close(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _retry_after(self, response: httpx.Response) -> float:
        text = response.headers.get("retry-after", "1")
        try:
            wait = float(text)
        except ValueError:
            wait = 1.0  # an HTTP-date; unmo sends seconds, other proxies may not
        return min(max(wait, 0.0), self.max_retry_after_s) * (1.0 + 0.2 * self.rng.random())

    async def post(
        self,
        records: list[dict[str, Any]],
        *,
        sent_at_skew_ms: int | None = None,
        deadline: float | None = None,
    ) -> Delivery:
        """POST one batch until it is answered 200 (or 400 with per-record errors), within the bounds."""
        delivery = Delivery(False, None)
        backoff = 0.25
        for attempt in range(self.max_attempts):
            envelope: dict[str, Any] = {"batch": records}
            if sent_at_skew_ms is not None:
                envelope["sent_at"] = iso_now(sent_at_skew_ms)
            body = _encode(envelope)
            headers = {}
            if len(body) > GZIP_ABOVE:
                body = gzip.compress(body, compresslevel=1)
                headers["Content-Encoding"] = "gzip"
            t0 = time.monotonic()
            wait = 0.0
            try:
                response = await self.client.post("/v1/batch", content=body, headers=headers)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                now = time.monotonic()
                a = Attempt(0, now - t0, now, len(records), f"{exc.__class__.__name__}: {cut(str(exc), 80)}")
                wait = min(backoff, 10.0) * (0.5 + self.rng.random())
                backoff *= 2
            else:
                now = time.monotonic()
                status = response.status_code
                a = Attempt(status, now - t0, now, len(records))
                parsed = None
                if status in (200, 400) and response.headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    parsed = response.json()
                if status == 200 or (status == 400 and isinstance(parsed, dict) and parsed.get("errors")):
                    # 400 with per-record errors: no record was good; the answer says which and why
                    delivery.attempts.append(a)
                    if self.on_attempt:
                        self.on_attempt(a)
                    delivery.ok = status == 200
                    delivery.body = parsed
                    if not delivery.ok:
                        delivery.error = f"HTTP 400: {cut(parsed.get('errors') if parsed else None, 200)}"
                    return delivery
                if status in (429, 503):
                    wait = self._retry_after(response)
                    a.error = f"HTTP {status}"
                elif status >= 500:
                    a.error = f"HTTP {status}: {cut(response.text, 120)}"
                    wait = min(backoff, 10.0) * (0.5 + self.rng.random())
                    backoff *= 2
                else:
                    a.error = f"HTTP {status}: {cut(response.text, 200)}"
                    delivery.attempts.append(a)
                    if self.on_attempt:
                        self.on_attempt(a)
                    delivery.error = a.error
                    return delivery  # 400, 401, 403, 413, 415: sending it again cannot help
            delivery.attempts.append(a)
            if self.on_attempt:
                self.on_attempt(a)
            delivery.error = a.error or f"HTTP {a.status}"
            if attempt + 1 == self.max_attempts:
                break
            if deadline is not None and time.monotonic() + wait > deadline:
                delivery.error += " (deadline passed)"
                break
            await asyncio.sleep(wait)
        delivery.error = f"gave up after {len(delivery.attempts)} tries: {delivery.error}"
        return delivery

    async def get_json(self, path: str) -> tuple[int, Any]:
        """GET with a few retries on 503 and connection errors; (status, parsed body or None)."""
        for attempt in range(5):
            try:
                response = await self.client.get(path)
            except (httpx.TransportError, httpx.TimeoutException):
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            if response.status_code == 503 and attempt < 4:
                await asyncio.sleep(self._retry_after(response))
                continue
            try:
                return response.status_code, response.json()
            except ValueError:
                return response.status_code, None
        return 0, None
