"""A batch is answered once its COMMIT returns, so that COMMIT must wait for the WAL on disk whatever the
database's own ``synchronous_commit`` says (unmo.ingest.writer.ingest_settings)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from tests.support import TestDatabase, fresh_database
from unmo.config import Limits
from unmo.ingest.writer import Writer, ingest_settings


async def _show(url: str, settings: dict[str, str] | None = None) -> str:
    conn = await asyncpg.connect(url, server_settings=settings or {})
    try:
        return str(await conn.fetchval("SHOW synchronous_commit"))
    finally:
        await conn.close()


async def _alter(db: TestDatabase, value: str) -> None:
    await db._admin(f"ALTER DATABASE {db.name} SET synchronous_commit = {value}")


def test_a_database_that_commits_asynchronously_is_overridden_on_every_ingest_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go(db: TestDatabase) -> None:
        await _alter(db, "off")
        assert await _show(db.url) == "off"   # the trap: a connection left alone commits before the WAL flush
        with caplog.at_level(logging.WARNING, logger="unmo.writer"):
            settings = await ingest_settings(db.url)
        assert settings["synchronous_commit"] == "on"
        assert "synchronous_commit is off" in caplog.text
        pool = await asyncpg.create_pool(db.url, min_size=1, max_size=1, server_settings=settings)
        writer = Writer(pool, Limits(), database_url=db.url, connection_settings=settings)
        try:
            for _ in range(2):   # the pool's RESET ALL on release goes back to the connection's own settings
                async with pool.acquire() as conn:
                    assert await conn.fetchval("SHOW synchronous_commit") == "on"
            for db_thread in writer._dbs:   # the connections that commit the flushes decided ahead
                assert await db_thread.run(lambda c: c.fetchval("SHOW synchronous_commit")) == "on"
        finally:
            await writer.close()
            await pool.close()

    with fresh_database() as db:
        asyncio.run(go(db))


def test_a_durable_setting_of_the_operator_is_kept() -> None:
    async def go(db: TestDatabase) -> None:
        await _alter(db, "local")   # waits for the local disk, not for standbys: durable here, and chosen
        settings = await ingest_settings(db.url)
        assert "synchronous_commit" not in settings
        assert await _show(db.url, settings) == "local"

    with fresh_database() as db:
        asyncio.run(go(db))
