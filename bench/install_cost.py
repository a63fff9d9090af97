"""What storing and finding installs costs PostgreSQL, for the ways of indexing their identifiers that
unmo has used (docs/performance.md, "Storing an install").

    .venv/bin/python -m bench.install_cost DATABASE_URL [--rounds 150] [--installs 190] [--lookup-installs 1000000]

DATABASE_URL must hold unmo's schema (``unmo migrate``); everything is done in a scratch schema
``bench_install_cost``, dropped at the end.

*Storing*: one table per variant, shaped like ``unmo.installs`` (``LIKE ... INCLUDING DEFAULTS``) with
the indexes the variant names; each round COPYs ``--installs`` rows (the load's share of a
3,800-record flush) into every variant in turn, in random order, each in its own transaction with its
commit, as the writer does.  Variants:

* ``0005``: the b-tree indexes, the GIN index as created (fastupdate on) and migration 0005's trigger
  (``INSERT ... SELECT DISTINCT ... ON CONFLICT DO NOTHING`` into an ``install_ids`` table);
* ``0005, plain trigger, no GIN``: the trigger without ``ON CONFLICT``, and no GIN index;
* ``0006``: the b-tree indexes and the GIN index with fastupdate off, no trigger (this version);
* ``b-trees only``: the b-tree indexes, nothing for the identifiers.

*Finding*: ``--lookup-installs`` installs over 3 apps, 2 identifiers each, with both an ``install_ids``
table and the GIN index (fastupdate off); then, for 11,000 / 1,000 / 100 identifiers of which half
belong to app 1, the writer's look-up of 0005 (through ``install_ids``) and of 0006
(``INSTALLS_BY_IDS``: one GIN probe an identifier), three times each, with JIT off as the writer's
connections have it.

Prints one JSON object: per variant the median milliseconds of a COPY and microseconds per install;
per look-up size and way the milliseconds of each run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import time
from typing import Any

import asyncpg

from unmo.ingest.writer import INSTALLS_BY_IDS, SERVER_SETTINGS

SCHEMA = "bench_install_cost"
BTREES = ("PRIMARY KEY (device_key, app_id, record_id)", "(app_id, record_id)", "(app_id, ts)", "(app_id, seq)")
IDS_TABLE = ("CREATE TABLE {s}.{name} (app_id bigint NOT NULL, hash bigint NOT NULL, seq bigint NOT NULL, "
             "ord integer NOT NULL, PRIMARY KEY (app_id, hash, seq, ord))")
TRIGGER = """INSERT INTO {s}.{ids} (app_id, hash, seq, ord)
    SELECT DISTINCT n.app_id, h, n.seq, n.ord FROM stored n
    CROSS JOIN LATERAL unnest(n.device_hashes) AS h{conflict};"""
# name -> (GIN index: None, "on" or "off" for fastupdate; trigger: None, "0005" or "plain")
VARIANTS: dict[str, tuple[str | None, str | None]] = {
    "0005": ("on", "0005"),
    "0005, plain trigger, no GIN": (None, "plain"),
    "0006": ("off", None),
    "b-trees only": (None, None),
}
# migration 0005's look-up (writer.py before 0006)
OLD_LOOKUP = ("SELECT i.* FROM {s}.installs i WHERE i.app_id = $1 AND (i.seq, i.ord) IN "
              "(SELECT seq, ord FROM {s}.install_ids WHERE app_id = $1 AND hash = ANY($2::bigint[])) "
              "ORDER BY i.seq, i.ord")


async def _make_variant(conn: asyncpg.Connection, n: int, gin: str | None, trigger: str | None) -> str:
    table = f"v{n}"
    await conn.execute(f"CREATE TABLE {SCHEMA}.{table} (LIKE unmo.installs INCLUDING DEFAULTS)")
    await conn.execute(f"ALTER TABLE {SCHEMA}.{table} ADD {BTREES[0]}")
    for cols in BTREES[1:]:
        await conn.execute(f"CREATE INDEX ON {SCHEMA}.{table} {cols}")
    if gin is not None:
        await conn.execute(f"CREATE INDEX ON {SCHEMA}.{table} USING gin (device_hashes) WITH (fastupdate = {gin})")
    if trigger is not None:
        ids = f"ids{n}"
        await conn.execute(IDS_TABLE.format(s=SCHEMA, name=ids))
        body = TRIGGER.format(s=SCHEMA, ids=ids, conflict="\n    ON CONFLICT DO NOTHING" if trigger == "0005" else "")
        await conn.execute(f"CREATE FUNCTION {SCHEMA}.f{n}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                           f"{body} RETURN NULL; END $$")
        await conn.execute(f"CREATE TRIGGER t AFTER INSERT ON {SCHEMA}.{table} REFERENCING NEW TABLE AS stored "
                           f"FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.f{n}()")
    return table


def _rows(columns: list[str], seq: int, n: int, rng: random.Random) -> list[tuple[Any, ...]]:
    now = dt.datetime.now(dt.UTC)
    out = []
    for o in range(n):
        row = {
            "device_key": rng.getrandbits(63), "app_id": 1, "record_id": f"ld1-{seq}-{o}", "received_at": now,
            "seq": seq, "ord": o * 20, "ts": now,
            "device_hashes": [rng.getrandbits(63) for _ in range(rng.choice((2, 2, 4)))],
            "status": rng.choice(("attributed", "organic")), "touch": "click", "match": "device_id",
            "touch_id": f"t{seq}-{o}", "touch_ts": now, "network": "net-1", "campaign": "camp-3", "adset": "as",
            "ad": "ad-4", "site": "site-9", "ctit_s": 12.5, "rejected": "[]",
        }
        out.append(tuple(row[c] for c in columns))
    return out


async def storing(conn: asyncpg.Connection, rounds: int, installs: int) -> dict[str, Any]:
    columns = [r[0] for r in await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'unmo.installs'::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum")]
    tables = {name: await _make_variant(conn, n, *spec) for n, (name, spec) in enumerate(VARIANTS.items())}
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    rng, seq, names = random.Random(1), 0, list(VARIANTS)
    warm = min(10, rounds // 10)
    for r in range(rounds + warm):
        rng.shuffle(names)
        for name in names:
            seq += 1
            rows = _rows(columns, seq, installs, rng)
            t = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table(tables[name], schema_name=SCHEMA, records=rows, columns=columns)
            if r >= warm:
                times[name].append(time.perf_counter() - t)
    return {name: {"copy_ms": round(statistics.median(t) * 1e3, 3),
                   "us_per_install": round(statistics.median(t) * 1e6 / installs, 1)} for name, t in times.items()}


async def finding(conn: asyncpg.Connection, n_installs: int) -> dict[str, Any]:
    s = SCHEMA
    await conn.execute(f"CREATE TABLE {s}.installs (LIKE unmo.installs INCLUDING DEFAULTS)")
    await conn.execute(f"""INSERT INTO {s}.installs (device_key, app_id, record_id, received_at, seq, ord, ts,
        device_hashes, status) SELECT g, 1 + g % 3, 'i' || g, now(), g / 50, g % 50, now(),
        ARRAY[(random() * 9e18)::bigint, (random() * 9e18)::bigint], 'organic' FROM generate_series(1, $1) g""",
                       n_installs)
    await conn.execute(f"CREATE INDEX ON {s}.installs (app_id, seq)")
    await conn.execute(f"CREATE INDEX ON {s}.installs USING gin (device_hashes) WITH (fastupdate = off)")
    await conn.execute(IDS_TABLE.format(s=s, name="install_ids"))
    await conn.execute(f"INSERT INTO {s}.install_ids SELECT app_id, h, seq, ord FROM {s}.installs, "
                       "unnest(device_hashes) h")
    await conn.execute(f"VACUUM ANALYZE {s}.installs")
    await conn.execute(f"ANALYZE {s}.install_ids")
    ways = {"0005 install_ids": (OLD_LOOKUP.format(s=s), 1),
            "0006 GIN probes": (INSTALLS_BY_IDS.replace("unmo.installs", f"{s}.installs"), [1])}
    rng = random.Random(2)
    out: dict[str, Any] = {}
    for n in (11_000, 1_000, 100):
        present = [r[0] for r in await conn.fetch(
            f"SELECT device_hashes[1] FROM {s}.installs WHERE app_id = 1 ORDER BY random() LIMIT $1", n // 2)]
        hashes = present + [rng.getrandbits(62) for _ in range(n - len(present))]
        res: dict[str, list[float]] = {w: [] for w in ways}
        for _ in range(3):
            for way, (query, app) in ways.items():
                t = time.perf_counter()
                rows = await conn.fetch(query, app, hashes)
                res[way].append(round((time.perf_counter() - t) * 1e3, 1))
                assert len(rows) == len(present), (way, len(rows), len(present))
        out[f"{n} identifiers"] = res
    return out


async def main(url: str, rounds: int, installs: int, lookup_installs: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url, server_settings=SERVER_SETTINGS)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
        return {"storing": await storing(conn, rounds, installs),
                "finding": await finding(conn, lookup_installs) if lookup_installs else None}
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("database_url")
    p.add_argument("--rounds", type=int, default=150)
    p.add_argument("--installs", type=int, default=190, help="installs per COPY")
    p.add_argument("--lookup-installs", type=int, default=1_000_000, help="0: skip the look-ups")
    a = p.parse_args()
    print(json.dumps(asyncio.run(main(a.database_url, a.rounds, a.installs, a.lookup_installs)), indent=1))
