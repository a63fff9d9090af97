"""How long a server takes to rebuild an app's state from the database at start.

Fills a fresh database with N touches (plus installs and events, 10:1:5) for one app
straight in SQL, then times Writer.warm (the same code `unmo serve` runs at start) and
reports records/s and the kernel's memory.  Prints one JSON object.

    .venv/bin/python bench/warmup.py --database-url postgresql://postgres@127.0.0.1:5432/postgres --touches 2000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from unmo.apps import create_app
from unmo.config import Limits
from unmo.db.migrate import migrate
from unmo.ingest.writer import Writer

FILL = """
INSERT INTO unmo.records (device_key, app_id, received_at, seq, ord, kind, record_id, ts, gaid, ip, ua,
                          network, campaign, outcome)
SELECT hashtext('d' || (g % $2))::bigint, $1, now() - make_interval(secs => (g % 86400)), 1, g,
       CASE WHEN g % 16 = 0 THEN 3 WHEN g % 16 < 6 THEN 5 ELSE 1 END,
       'r-' || g, now() - make_interval(secs => (g % 86400)), 'gaid-' || (g % $2), '10.0.0.1',
       'Mozilla/5.0 (Linux; Android 14; SM-S918B)', 'net' || (g % 7), 'camp' || (g % 31), 0
FROM generate_series(1, $3) AS g
"""


async def main(url: str, touches: int) -> dict[str, object]:
    name = f"unmo_warmup_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    db_url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    try:
        conn = await asyncpg.connect(db_url)
        await migrate(conn)
        app = await create_app(conn, "warmup")
        total = touches * 16 // 10  # touches are 10 of every 16 records
        t0 = time.perf_counter()
        await conn.execute(FILL, app["app_id"], max(total // 8, 1), total)
        await conn.execute(
            "INSERT INTO unmo.installs (device_key, app_id, record_id, received_at, seq, ord, ts, device_hashes, "
            "status, touch, match, touch_id, touch_ts, network, campaign, ctit_s) "
            "SELECT device_key, app_id, record_id, received_at, seq, ord, ts, ARRAY[hashtext(gaid)::bigint], "
            "'attributed', 'click', 'device', 'r-1', ts, network, campaign, 60.0 "
            "FROM unmo.records WHERE app_id = $1 AND kind = 3", app["app_id"])
        await conn.execute("UPDATE unmo.app_log SET seq = 1 WHERE app_id = $1", app["app_id"])
        await conn.execute("ANALYZE unmo.records")
        fill_s = time.perf_counter() - t0
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        writer = Writer(pool, Limits())
        async with pool.acquire() as c:
            await writer.refresh_settings(c)
            t0 = time.perf_counter()
            state = await writer.warm(c, app["app_id"])
            warm_s = time.perf_counter() - t0
        await pool.close()
        await conn.close()
        k = state.native
        return {"records": total, "touches": k.touches, "installs": k.installs, "record_ids": k.record_ids,
                "fill_s": round(fill_s, 2), "warm_s": round(warm_s, 2),
                "records_per_s": round(total / warm_s), "kernel_bytes": k.memory_bytes()}
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", required=True)
    p.add_argument("--touches", type=int, default=2_000_000)
    a = p.parse_args()
    print(json.dumps(asyncio.run(main(a.database_url, a.touches))))
