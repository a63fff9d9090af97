"""The apps a load run sends to, and the check that the database holds exactly what was acknowledged.

Every record id of a run reads ``ld<run><process>-<request no>-<record no>``,
so one GROUP BY over the run's prefix gives, per request, how many rows are
stored and how many distinct ids they have.  The run is verified when:

* every acknowledged request has exactly its ``accepted`` rows, once each,
  under the app whose key sent it;
* no request answered with anything but 200 has a row (a refusal stores nothing);
* nothing else of the run is stored, except possibly the rows of requests that
  got no answer at all (timeout, connection lost), which the server may or may
  not have committed.
"""

from __future__ import annotations

import re

import asyncpg

from unmo.apps import create_app, hash_key
from unmo.errors import ValidationError
from unmo.load.workload import REQ_DIGITS

_TABLE = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


async def app_ids_for_keys(conn: asyncpg.Connection, keys: list[str]) -> list[int]:
    """The app of each key (looked up by its hash, as the server does)."""
    out = []
    for i, key in enumerate(keys):
        app_id = await conn.fetchval(
            "SELECT app_id FROM unmo.api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key))
        if app_id is None:
            raise ValidationError(f"--key #{i + 1}: no app has this key (it starts {key[:8]!r})")
        out.append(int(app_id))
    return out


async def create_load_apps(conn: asyncpg.Connection, run_id: str, count: int) -> list[str]:
    """``count`` new apps named ``load-<run>-<n>``; their sdk keys."""
    keys = []
    for n in range(count):
        created = await create_app(conn, f"load-{run_id}-{n + 1}")
        keys.append(str(created["sdk_key"]))
    return keys


async def verify_stored(
    conn: asyncpg.Connection,
    *,
    table: str,
    app_ids: list[int],
    prefix: str,
    acked: dict[str, tuple[int, int]],
    refused: list[str],
    unanswered: list[str],
) -> str | None:
    """None when ``table`` holds exactly the acknowledged records of the run, else what is wrong."""
    if not _TABLE.match(table):
        raise ValidationError(f"--verify-table: expected schema.table in lower case, got {table!r}")
    key_len = len(prefix) + 2 + REQ_DIGITS  # ld<run><process>- + request no; prefix is 'ld<run>'
    rows = await conn.fetch(
        f"SELECT app_id, left(record_id, $3) AS req, count(*) AS n, count(DISTINCT record_id) AS d "
        f"FROM {table} WHERE app_id = ANY($1::bigint[]) AND record_id LIKE $2 GROUP BY 1, 2",
        app_ids, prefix + "%", key_len + 1,
    )
    stored: dict[str, tuple[int, int, int]] = {}
    for r in rows:
        req = r["req"].rstrip("-")
        if req in stored:
            return f"request {req}: stored under two apps"
        stored[req] = (int(r["app_id"]), int(r["n"]), int(r["d"]))
    problems: list[str] = []
    for req, (app, accepted) in acked.items():
        got = stored.pop(req, None)
        if got is None:
            if accepted:
                problems.append(f"request {req}: acknowledged {accepted} records, none stored")
            continue
        app_id, n, d = got
        if app_id != app_ids[app]:
            problems.append(f"request {req}: stored under app {app_id}, sent for app {app_ids[app]}")
        if n != accepted or d != n:
            problems.append(f"request {req}: acknowledged {accepted} records, stored {n} rows ({d} distinct)")
    refused_set = set(refused)
    maybe = set(unanswered)
    for req in stored:
        if req in refused_set:
            problems.append(f"request {req}: answered with an error, yet {stored[req][1]} rows are stored")
        elif req not in maybe:
            problems.append(f"request {req}: {stored[req][1]} rows stored that no request of the run sent")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return problems[0] + more
    return None
