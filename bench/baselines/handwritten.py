"""The ingest server a team would write by hand: the baseline unmo is measured against.

Starlette + stdlib ``json`` + per-record validation in Python + ``executemany``
INSERT on a default asyncpg pool, one transaction per request, answered after
commit (so it is as durable as unmo).  Keys are unmo's (``unmo.api_keys``,
SHA-256), so ``unmo load`` drives it unchanged; records go into a table of
their own, ``handwritten.records``, with the primary key a team would add to
drop duplicate ids (``ON CONFLICT DO NOTHING``).  It does no attribution: it
does less work than unmo, which only makes the ratio conservative.

    python bench/baselines/handwritten.py --port 8090 --database-url URL [--workers 1]
    unmo load --url http://127.0.0.1:8090 --database-url URL --verify-table handwritten.records
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS handwritten;
CREATE TABLE IF NOT EXISTS handwritten.records (
    app_id bigint NOT NULL, record_id text NOT NULL, type text NOT NULL, ts timestamptz NOT NULL,
    idfa text, gaid text, oaid text, idfv text, android_id text, ip inet, ua text, platform text,
    os text, os_version text, model text, network text, campaign text, adset text, ad text, site text,
    referrer text, name text, revenue double precision, currency text, properties jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, record_id)
);
"""
INSERT = """
INSERT INTO handwritten.records (app_id, record_id, type, ts, idfa, gaid, oaid, idfv, android_id, ip, ua,
    platform, os, os_version, model, network, campaign, adset, ad, site, referrer, name, revenue, currency,
    properties)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
    $23, $24, $25)
ON CONFLICT DO NOTHING
"""
TYPES = {"click", "impression", "install", "open", "event"}
DEVICE = ("idfa", "gaid", "oaid", "idfv", "android_id", "ip", "ua", "platform", "os", "os_version", "model")
CAMPAIGN = ("network", "campaign", "adset", "ad", "site")
MAX_BODY = 5 * 1024 * 1024

pool: asyncpg.Pool | None = None
keys: dict[bytes, int] = {}


def parse_ts(value: object) -> dt.datetime:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        if value < 946_684_800_000:
            raise ValueError
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError
        return parsed
    raise ValueError


def optional_str(obj: dict, name: str, where: str, limit: int = 256) -> str | None:
    value = obj.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise ValueError(f"{where}.{name}: expected a string")
    return value


def validate(i: int, rec: object, app_id: int) -> tuple:
    """One record -> the INSERT's row; ValueError names the field."""
    where = f"batch[{i}]"
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected an object")
    kind = rec.get("type")
    if kind not in TYPES:
        raise ValueError(f"{where}.type: expected one of click, impression, install, open, event")
    rid = rec.get("id")
    if not isinstance(rid, str) or not 1 <= len(rid) <= 128:
        raise ValueError(f"{where}.id: expected a string of 1 to 128 characters")
    try:
        ts = parse_ts(rec.get("ts"))
    except ValueError:
        raise ValueError(f"{where}.ts: expected RFC 3339 timestamp or epoch milliseconds") from None
    device = rec.get("device") or {}
    if not isinstance(device, dict):
        raise ValueError(f"{where}.device: expected an object")
    dev = [optional_str(device, f, where + ".device", 1024 if f == "ua" else 256) for f in DEVICE]
    if dev[7] not in (None, "ios", "android"):
        raise ValueError(f"{where}.device.platform: expected ios or android")
    campaign = rec.get("campaign") or {}
    if not isinstance(campaign, dict):
        raise ValueError(f"{where}.campaign: expected an object")
    camp = [optional_str(campaign, f, where + ".campaign") for f in CAMPAIGN]
    if kind in ("click", "impression") and not camp[0]:
        raise ValueError(f"{where}.campaign.network: required for a {kind}")
    name = optional_str(rec, "name", where)
    if kind == "event" and not name:
        raise ValueError(f"{where}.name: required for an event")
    revenue = rec.get("revenue")
    if revenue is not None and (isinstance(revenue, bool) or not isinstance(revenue, int | float)):
        raise ValueError(f"{where}.revenue: expected a number")
    props = rec.get("properties")
    if props is not None and not isinstance(props, dict):
        raise ValueError(f"{where}.properties: expected an object")
    return (app_id, rid, kind, ts, *dev, *camp, optional_str(rec, "referrer", where, 1024), name,
            float(revenue) if revenue is not None else None, optional_str(rec, "currency", where),
            json.dumps(props) if props is not None else None)


async def app_for(request: Request) -> int | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    digest = hashlib.sha256(header[7:].strip().encode()).digest()
    if digest not in keys:
        assert pool is not None
        app_id = await pool.fetchval(
            "SELECT app_id FROM unmo.api_keys WHERE key_hash = $1 AND revoked_at IS NULL", digest)
        if app_id is None:
            return None
        keys[digest] = app_id
    return keys[digest]


async def batch(request: Request) -> JSONResponse:
    app_id = await app_for(request)
    if app_id is None:
        return JSONResponse({"error": "unknown key"}, 401)
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"error": "body too large"}, 413)
    try:
        doc = json.loads(body)
    except ValueError:
        return JSONResponse({"error": "body: not valid JSON"}, 400)
    if not isinstance(doc, dict) or not isinstance(doc.get("batch"), list):
        return JSONResponse({"error": 'body: expected an object with a "batch" array'}, 400)
    rows, errors = [], []
    for i, rec in enumerate(doc["batch"]):
        try:
            rows.append(validate(i, rec, app_id))
        except ValueError as exc:
            errors.append({"index": i, "error": str(exc)})
    if rows:
        assert pool is not None
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(INSERT, rows)
    return JSONResponse({"accepted": len(rows), "duplicates": 0, "errors": errors},
                        200 if rows or not errors else 400)


@contextlib.asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["HANDWRITTEN_DATABASE_URL"])  # the defaults: 10 connections
    try:
        yield
    finally:
        await pool.close()


app = Starlette(routes=[Route("/v1/batch", batch, methods=["POST"])], lifespan=lifespan)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    async def create() -> None:
        conn = await asyncpg.connect(args.database_url)
        try:
            await conn.execute(SCHEMA)
        finally:
            await conn.close()

    import asyncio

    asyncio.run(create())
    os.environ["HANDWRITTEN_DATABASE_URL"] = args.database_url
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run("handwritten:app", host=args.host, port=args.port, workers=args.workers, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
