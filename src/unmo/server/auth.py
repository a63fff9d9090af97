"""API keys on every request: Bearer, or HTTP Basic with the key as user name (Segment's way).

Keys are looked up by their SHA-256 in a cache refreshed from the database every
few seconds (so a revoked key stops working within that time); an unknown key is
looked up once and then remembered as unknown for a while, so that guessing keys
costs the database nothing.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass

import asyncpg

from unmo.apps import hash_key, load_keys

SDK = "sdk"
SECRET = "secret"  # noqa: S105 - the name of a key kind, not a password


@dataclass(frozen=True)
class Principal:
    app_id: int
    kind: str


class AuthError(Exception):
    """401 (no or unknown key), 403 (wrong kind of key) or 503 (keys cannot be checked now)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    @property
    def headers(self) -> dict[str, str]:
        if self.status == 401:
            return {"WWW-Authenticate": 'Bearer realm="unmo"'}
        if self.status == 503:
            return {"Retry-After": "1"}
        return {}


def key_from_header(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return value
    if scheme == "basic" and value:
        try:
            user, _, _password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user or None
    return None


class KeyCache:
    def __init__(self, pool: asyncpg.Pool, refresh_s: float = 2.0, negative_ttl_s: float = 10.0) -> None:
        self.pool = pool
        self.refresh_s = refresh_s
        self.negative_ttl_s = negative_ttl_s
        self._keys: dict[bytes, tuple[int, str]] = {}
        self._unknown: dict[bytes, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.pool.acquire() as conn:
            self._keys = await load_keys(conn)
        self._task = asyncio.create_task(self._refresh_loop(), name="unmo-keys")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                async with self.pool.acquire(timeout=2.0) as conn:
                    self._keys = await load_keys(conn)
            except Exception:  # noqa: S112 - database down: keep the last known keys
                continue

    async def authenticate(self, header: str | None, *, allow: tuple[str, ...]) -> Principal:
        key = key_from_header(header)
        if key is None:
            raise AuthError(
                401, "authorization: expected 'Bearer <key>' or HTTP Basic with the key as user name"
            )
        digest = hash_key(key)
        found = self._keys.get(digest)
        if found is None:
            found = await self._lookup(digest)
        if found is None:
            raise AuthError(401, "authorization: unknown key")
        app_id, kind = found
        if kind not in allow:
            raise AuthError(
                403, f"authorization: a {kind} key may not do this (needs a {' or '.join(allow)} key)"
            )
        return Principal(app_id, kind)

    async def _lookup(self, digest: bytes) -> tuple[int, str] | None:
        now = time.monotonic()
        if self._unknown.get(digest, 0.0) > now:
            return None
        if len(self._unknown) > 100_000:
            self._unknown = {k: t for k, t in self._unknown.items() if t > now}
        try:
            async with self.pool.acquire(timeout=2.0) as conn:
                row = await conn.fetchrow(
                    "SELECT app_id, kind FROM unmo.api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                    digest,
                )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # the key may well be valid: say the database is unavailable, not that the key is unknown
            raise AuthError(503, "database: unavailable, could not check the key") from None
        if row is None:
            self._unknown[digest] = now + self.negative_ttl_s
            return None
        self._keys[digest] = (row["app_id"], row["kind"])
        return self._keys[digest]
