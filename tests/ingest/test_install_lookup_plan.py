"""The install look-up (INSTALLS_BY_IDS) probes the GIN index whatever PostgreSQL knows of unmo.installs.

A new table has no statistics (nor has any table where autovacuum is off), and a plan made then scanned
unmo.installs whole for every identifier; asyncpg's prepared statement kept that plan while the table grew
(docs/operations.md, "2026-12-02: two workers, and waits in the first five minutes")."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.support import fresh_database
from unmo.ingest.writer import INGEST_SETTINGS, INSTALLS_BY_IDS, SERVER_SETTINGS


def _generic_plan(url: str, settings: dict[str, str]) -> str:
    async def go() -> str:
        conn = await asyncpg.connect(url, server_settings=settings)
        try:
            await conn.execute("SET plan_cache_mode = force_generic_plan")   # the plan a prepared statement keeps
            stmt = await conn.prepare(INSTALLS_BY_IDS)
            rows = await conn.fetch(f"EXPLAIN EXECUTE {stmt.get_name()}('{{1}}', '{{1,2,3}}')")
            return "\n".join(r[0] for r in rows)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_the_ingest_connections_never_scan_installs_whole() -> None:
    with fresh_database() as db:   # migrated, never analyzed: unmo.installs has no statistics
        assert "Seq Scan on installs" in _generic_plan(db.url, SERVER_SETTINGS)   # the trap, as PostgreSQL plans it
        plan = _generic_plan(db.url, INGEST_SETTINGS)
        assert "Seq Scan on installs" not in plan
        assert "installs_device_hashes" in plan
