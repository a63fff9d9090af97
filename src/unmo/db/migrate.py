"""Numbered SQL migrations, applied in order once each and recorded.

Each component keeps its files in its own folder (``unmo/migrations`` for the
ingest core, ``unmo/tracker/migrations`` for the tracker), named
``NNNN_words.sql``.  A migration runs in one transaction with its record, under
an advisory lock, so several processes starting at once apply it exactly once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from importlib import resources
from typing import NamedTuple

import asyncpg

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x756E6D6F  # 'unmo'

COMPONENTS = {"core": "unmo.migrations", "tracker": "unmo.tracker.migrations"}


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


def load(package: str) -> list[Migration]:
    found = []
    for entry in resources.files(package).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(
            f"{package}: migrations must be numbered 0001, 0002, ... without gaps, got {versions}"
        )
    return found


async def migrate(conn: asyncpg.Connection, components: dict[str, str] | None = None) -> list[str]:
    """Apply what is missing of each component; returns the names applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS public.unmo_schema_migrations (
                   component text NOT NULL,
                   version integer NOT NULL,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (component, version))"""
        )
        for component, package in (components or COMPONENTS).items():
            done = {
                r["version"]
                for r in await conn.fetch(
                    "SELECT version FROM public.unmo_schema_migrations WHERE component = $1", component
                )
            }
            for m in load(package):
                if m.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO public.unmo_schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                        component,
                        m.version,
                        m.name,
                    )
                applied.append(f"{component}/{m.name}")
        await ensure_partitions(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied


async def ensure_partitions(
    conn: asyncpg.Connection, *, today: dt.date | None = None, days_ahead: int = 2
) -> list[str]:
    """Create the daily records partitions from today to ``days_ahead`` days on (UTC)."""
    today = today or dt.datetime.now(dt.UTC).date()
    created = []
    for offset in range(days_ahead + 1):
        day = today + dt.timedelta(days=offset)
        name = f"records_{day:%Y%m%d}"
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'unmo' AND c.relname = $1",
            name,
        )
        if exists:
            continue
        nxt = day + dt.timedelta(days=1)
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS unmo.{name} PARTITION OF unmo.records "
            f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') TO ('{nxt.isoformat()} 00:00:00+00')"
        )
        created.append(name)
    return created


def migrate_url(url: str) -> list[str]:
    """Connect to ``url``, apply what is missing (every component), disconnect: what commands run first."""

    async def go() -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    return asyncio.run(go())
