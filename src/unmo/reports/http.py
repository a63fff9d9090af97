"""GET /v1/reports/daily and GET /v1/reports/cohorts (secret key; docs/reports.md).

The handlers take the ingest server's pool and key cache from
``request.app.state.ingest`` (unmo.server.app).  One report runs at a time per
server process (others wait up to REPORT_WAIT_S, then 503): a report holds one
database connection for up to a few hundred milliseconds, and the ingest path
must always find a free one in the pool.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from unmo.reports import query, render
from unmo.server.auth import SECRET, AuthError

REPORT_WAIT_S = 10.0
_json = msgspec.json.Encoder()
_gates: dict[int, asyncio.Semaphore] = {}
# the database is down or out of connections (a bug in a query is a 500, logged, not this)
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
)


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return Response(_json.encode({"error": message, **extra}), status_code=status, media_type="application/json",
                    headers=headers)


def _gate() -> asyncio.Semaphore:
    # one per event loop: a semaphore belongs to the loop it was first awaited on
    loop = asyncio.get_running_loop()
    gate = _gates.get(id(loop))
    if gate is None:
        gate = _gates[id(loop)] = asyncio.Semaphore(1)
    return gate


async def daily_report(request: Request) -> Response:
    """GET /v1/reports/daily."""
    return await _report(request, cohort=False)


async def cohort_report(request: Request) -> Response:
    """GET /v1/reports/cohorts."""
    return await _report(request, cohort=True)


async def _report(request: Request, *, cohort: bool) -> Response:
    ing = request.app.state.ingest
    try:
        principal = await ing.auth(request, (SECRET,))
    except AuthError as exc:
        return _error(exc.status, str(exc), exc.headers)
    values = dict(request.query_params)
    for name, _value in request.query_params.multi_items():
        if len(request.query_params.getlist(name)) > 1:
            return _error(400, f"{name}: given more than once", parameter=name)
    fmt = values.get("format", "json")
    if fmt not in ("json", "csv"):
        return _error(400, f"format: expected json or csv, got {fmt[:40]!r}", parameter="format")
    try:
        params = query.parse_params(values, cohort=cohort, allowed=("format",))
    except query.ParameterError as exc:
        return _error(400, str(exc), parameter=exc.parameter)
    gate = _gate()
    try:
        await asyncio.wait_for(gate.acquire(), REPORT_WAIT_S)
    except TimeoutError:
        return _error(503, "report: another report is running, retry shortly", {"Retry-After": "2"})
    try:
        async with ing.pool.acquire(timeout=5.0) as conn:
            if cohort:
                report = await query.cohorts(conn, principal.app_id, params)
            else:
                report = await query.daily(conn, principal.app_id, params)
    except query.TooLargeError as exc:
        return _error(400, str(exc), limit="rows")
    except asyncpg.exceptions.InvalidParameterValueError:
        # zoneinfo knows the zone but this PostgreSQL's tz database does not
        return _error(400, f"tz: this database does not know the time zone {params.tz!r}", parameter="tz")
    except asyncpg.exceptions.QueryCanceledError:
        return _error(503, f"report: took longer than {query.STATEMENT_TIMEOUT_MS // 1000} s, narrow from/to "
                           "or group_by", {"Retry-After": "10"})
    except _UNAVAILABLE:
        return _error(503, "database: unavailable", {"Retry-After": "1"})
    finally:
        gate.release()
    headers = {"Cache-Control": "no-store"}
    if fmt == "csv":
        name = f"unmo-{report.kind}-{params.start}-{params.end}.csv"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return Response(render.to_csv(report), media_type="text/csv; charset=utf-8; header=present", headers=headers)
    return Response(render.to_json(report), media_type="application/json", headers=headers)
