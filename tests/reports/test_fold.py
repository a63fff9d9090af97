"""The report folder (unmo.reports.rollup.fold, Folder): every record counted exactly once whatever fails or
races, reports up to date right after ingest, and a server that stops at once with a fold under way.

Real PostgreSQL and real ``unmo serve`` processes throughout, on a database of this module's own (the
session's server folds every app of the session's database in the background); a fold is caught half way
by holding a lock its second statement needs (``LOCK TABLE unmo.cohort_rollup``): by then its first
statement has written the daily rollups, uncommitted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests.reports import data
from tests.reports.conftest import get_report
from tests.reports.test_daily import keyed
from tests.support import ServerProcess, TestDatabase, fresh_database
from unmo.reports import rollup

FOLDER_OFF = {"UNMO_REPORT_FOLD_S": "0"}
GROUP_BY = ("network", "campaign", "platform")


@pytest.fixture(scope="module")
def database() -> Iterator[TestDatabase]:
    with fresh_database() as db:
        yield db


def _window() -> tuple[str, str]:
    today = dt.datetime.now(dt.UTC).date()
    return str(today - dt.timedelta(days=13)), str(today + dt.timedelta(days=1))


def _assert_exact(server: Any, database: Any, app: dict[str, Any]) -> None:
    """The daily and cohort reports equal a recomputation from the stored records."""
    start, end = _window()
    resp = get_report(server, "daily", app["secret_key"], **{"from": start, "to": end, "group_by": ",".join(GROUP_BY)})
    assert resp.status_code == 200, resp.text
    got = keyed(json.loads(resp.text, parse_float=Decimal), GROUP_BY)
    assert got == data.daily(database, app["app_id"], start, end, "UTC", GROUP_BY)
    resp = get_report(server, "cohorts", app["secret_key"], **{"from": start, "to": end, "days": "0,1,2,3"})
    assert resp.status_code == 200, resp.text
    want = data.cohorts(database, app["app_id"], start, end, "UTC", ("network", "campaign"), (0, 1, 2, 3),
                        dt.datetime.now(dt.UTC))
    for row in json.loads(resp.text, parse_float=Decimal)["rows"]:
        key = (row["date"], row["network"], row["campaign"])
        assert row["installs"] == want[key]["installs"], key
        assert row["revenue"] == want[key]["revenue"], key
        for n, day in row["days"].items():
            if day is not None:
                assert day["retained"] == want[key]["days"][n]["retained"], (key, n)
                assert day["revenue"] == want[key]["days"][n]["revenue"], (key, n)


def _assert_folded_once(server: Any, database: Any, app: dict[str, Any], folded: int) -> None:
    """The folds counted every stored record once, the watermark reached the app's seq, and the reports
    equal a recomputation."""
    stored = database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", app["app_id"])
    assert folded == stored
    watermark, seq, _rows = _state(database, app["app_id"])
    assert watermark == seq
    _assert_exact(server, database, app)


def _state(database: Any, app_id: int) -> tuple[int, int, int]:
    """(watermark, app_log.seq, rollup rows) of an app."""
    row = database.fetch(
        "SELECT (SELECT seq FROM unmo.report_watermark WHERE app_id = $1), "
        "(SELECT seq FROM unmo.app_log WHERE app_id = $1), "
        "(SELECT count(*) FROM unmo.report_rollup WHERE app_id = $1)", app_id)[0]
    return row[0] or 0, row[1], row[2]


async def _wait_for_lock(watcher: asyncpg.Connection, *, pid: int | None = None, app_name: str | None = None,
                         timeout: float = 20.0) -> int:
    """The pid of the backend (by pid or application_name) once it waits for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await watcher.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND (pid = $1 OR application_name = $2)",
            pid, app_name)
        if found is not None:
            return int(found)
        await asyncio.sleep(0.05)
    raise AssertionError("the fold never waited for the lock")


def test_a_fold_killed_half_way_is_redone_exactly_once(database):
    app = data.create_app(database)
    recs = data.traffic(21, devices=50, prefix="kill-")
    with ServerProcess(database.url, env=FOLDER_OFF) as srv:
        data.send(srv.url, app["sdk_key"], recs)
        assert _state(database, app["app_id"])[0] == 0

        async def go() -> rollup.Folded | None:
            blocker = await asyncpg.connect(database.url)
            watcher = await asyncpg.connect(database.url)
            folder = await asyncpg.connect(database.url)
            try:
                async with blocker.transaction():
                    await blocker.execute("LOCK TABLE unmo.cohort_rollup IN ACCESS EXCLUSIVE MODE")
                    task = asyncio.create_task(rollup.fold(folder, app["app_id"]))
                    pid = await _wait_for_lock(watcher, pid=folder.get_server_pid())
                    # half way: the daily rollups are written, not committed; the connection dies
                    assert await watcher.fetchval("SELECT pg_terminate_backend($1)", pid)
                    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
                        await task
                # nothing of the killed fold stayed
                assert await watcher.fetchval("SELECT seq FROM unmo.report_watermark WHERE app_id = $1",
                                              app["app_id"]) in (None, 0)
                for table in ("report_rollup", "cohort_rollup", "report_active"):
                    assert await watcher.fetchval(f"SELECT count(*) FROM unmo.{table} WHERE app_id = $1",
                                                  app["app_id"]) == 0, table
                return await rollup.fold(watcher, app["app_id"])  # the rerun
            finally:
                for c in (blocker, watcher, folder):
                    if not c.is_closed():
                        c.terminate()

        rerun = database.call(lambda _conn: go())
        assert rerun is not None
        _assert_folded_once(srv, database, app, rerun.records)


def test_a_rolled_back_fold_leaves_nothing(database):
    app = data.create_app(database)
    with ServerProcess(database.url, env=FOLDER_OFF) as srv:
        data.send(srv.url, app["sdk_key"], data.traffic(22, devices=30, prefix="rb-"))

        async def go(conn: asyncpg.Connection) -> None:
            tx = conn.transaction()
            await tx.start()
            done = await rollup.fold(conn, app["app_id"])  # a savepoint in the outer transaction
            assert done is not None and done.records > 0
            await tx.rollback()

        database.call(go)
        assert _state(database, app["app_id"])[0] == 0
        assert _state(database, app["app_id"])[2] == 0
        assert database.fetchval("SELECT count(*) FROM unmo.report_active WHERE app_id = $1", app["app_id"]) == 0
        _assert_exact(srv, database, app)


def test_two_folders_racing_on_one_app_count_every_record_once(database):
    """A holds the app's watermark half way through its fold; B (background, SKIP LOCKED) skips the app at
    once; C (a report's catch-up) waits for A, then folds only what was committed after A's range."""
    app = data.create_app(database)
    recs = data.traffic(23, devices=60, prefix="race-")
    half = len(recs) // 2
    with ServerProcess(database.url, env=FOLDER_OFF) as srv:
        data.send(srv.url, app["sdk_key"], recs[:half])

        async def go() -> tuple[rollup.Folded | None, rollup.Folded | None, rollup.Folded | None, float]:
            blocker, watcher, a, b, c = [await asyncpg.connect(database.url) for _ in range(5)]
            try:
                async with blocker.transaction():
                    await blocker.execute("LOCK TABLE unmo.cohort_rollup IN ACCESS EXCLUSIVE MODE")
                    fold_a = asyncio.create_task(rollup.fold(a, app["app_id"]))
                    await _wait_for_lock(watcher, pid=a.get_server_pid())
                    started = time.monotonic()
                    skipped = await rollup.fold(b, app["app_id"], wait=False, max_commits=rollup.FOLD_MAX_COMMITS)
                    skip_s = time.monotonic() - started
                    fold_c = asyncio.create_task(rollup.fold(c, app["app_id"]))
                    await _wait_for_lock(watcher, pid=c.get_server_pid())  # on the watermark row
                    # more records arrive while both wait: the ingest path never waits for a fold
                    await asyncio.to_thread(data.send, srv.url, app["sdk_key"], recs[half:])
                done_a = await fold_a
                done_c = await fold_c
                return done_a, skipped, done_c, skip_s
            finally:
                for conn in (blocker, watcher, a, b, c):
                    conn.terminate()

        done_a, skipped, done_c, skip_s = database.call(lambda _conn: go())
        assert skipped is None and skip_s < 2.0
        assert done_a is not None and done_c is not None
        assert done_a.records > 0 and done_c.records > 0
        _assert_folded_once(srv, database, app, done_a.records + done_c.records)


def test_a_report_right_after_ingest_sees_everything_without_the_folder(database):
    app = data.create_app(database)
    with ServerProcess(database.url, env=FOLDER_OFF) as srv:
        recs = data.traffic(24, devices=40, prefix="now-")
        data.send(srv.url, app["sdk_key"], recs[: len(recs) // 2])
        _assert_exact(srv, database, app)   # folds the first half
        data.send(srv.url, app["sdk_key"], recs[len(recs) // 2:])
        _assert_exact(srv, database, app)   # and right after, the rest
        watermark, seq, _rows = _state(database, app["app_id"])
        assert watermark == seq


def test_the_background_folder_keeps_up_on_its_own(database):
    app = data.create_app(database)
    with ServerProcess(database.url, env={"UNMO_REPORT_FOLD_S": "0.2"}) as srv:
        data.send(srv.url, app["sdk_key"], data.traffic(25, devices=30, prefix="bg-"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            watermark, seq, _rows = _state(database, app["app_id"])
            if watermark == seq:
                break
            time.sleep(0.1)
        assert watermark == seq > 0
        _assert_exact(srv, database, app)


def test_the_server_stops_at_once_with_a_fold_under_way(database):
    """SIGTERM while the background folder waits half way through a fold: the server exits 0 within a few
    seconds, the fold is rolled back, and the next fold counts everything once.  The log holds no key and no
    device id."""
    app = data.create_app(database)
    recs = data.traffic(26, devices=40, prefix="term-")
    srv = ServerProcess(database.url, env={"UNMO_REPORT_FOLD_S": "0.2"}).start()
    try:
        async def go() -> float:
            blocker = await asyncpg.connect(database.url)
            watcher = await asyncpg.connect(database.url)
            try:
                async with blocker.transaction():
                    await blocker.execute("LOCK TABLE unmo.cohort_rollup IN ACCESS EXCLUSIVE MODE")
                    await asyncio.to_thread(data.send, srv.url, app["sdk_key"], recs)
                    await _wait_for_lock(watcher, app_name="unmo-report-folder")
                    started = time.monotonic()
                    srv.signal(signal.SIGTERM)
                    code = await asyncio.to_thread(srv.wait, 30)
                    assert code == 0
                    return time.monotonic() - started
            finally:
                blocker.terminate()
                watcher.terminate()

        stop_s = database.call(lambda _conn: go())
        assert stop_s < 5.0
    finally:
        srv.stop()
    # the fold under way was rolled back: nothing folded
    assert _state(database, app["app_id"])[0] == 0
    assert database.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'unmo-report-folder' "
                             "AND datname = current_database()") == 0
    log = srv.log_path.read_text(errors="replace")
    assert app["sdk_key"] not in log and app["secret_key"] not in log and "term-dev-" not in log
    with ServerProcess(database.url, env=FOLDER_OFF) as again:
        _assert_exact(again, database, app)
