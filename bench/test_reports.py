"""Reports: what they cost the write path, and how fast a 30-day report reads at 10 million records.

Write path: Writer.flush (the group commit `unmo serve` runs: lock, kernel, COPY,
commit) of 10,000-record batches of the load driver's traffic, for two apps
flushed in turn, one storing the reports' columns (``rollup.record_columns``)
and one storing NULL there; after each round the first app's records are
folded into the rollups (``rollup.fold``, the background folder's work), timed
apart.  End to end: ``unmo load`` against two ``unmo serve``, with and without
the background folder, in turn.  Ratios land in the session's findings.

Read path: one app with UNMO_BENCH_REPORT_RECORDS records (default 10,000,000)
over 30 days, generated in SQL (generate_series, see FILL) straight into
unmo.records with the reports' columns; ``rollup.fold`` folds them all at once
(timed), then GET /v1/reports/daily and /cohorts over the 30 days through a
real server.  Each benchmark checks the report against counts taken from
unmo.records.

    ./run bench bench/test_reports.py -s
    ./run bench bench/test_reports.py -s -k flush                            # the write path only
    UNMO_BENCH_REPORT_RECORDS=1000000 ./run bench bench/test_reports.py -s   # a quicker look
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import statistics
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from tests.support import TestDatabase, fresh_database

from unmo.config import Limits
from unmo.db.migrate import ensure_partitions
from unmo.ingest.batch import decode_body
from unmo.ingest.writer import Submission, Writer
from unmo.load.workload import Workload, build_templates, new_run_id
from unmo.reports import rollup

BATCH = 10_000
ROUNDS = int(os.environ.get("UNMO_BENCH_FLUSH_ROUNDS", "30"))
E2E_ROUNDS = int(os.environ.get("UNMO_BENCH_E2E_ROUNDS", "3"))
E2E_SECONDS = float(os.environ.get("UNMO_BENCH_E2E_SECONDS", "10"))
RECORDS = int(os.environ.get("UNMO_BENCH_REPORT_RECORDS", "10000000"))
DAYS = 30


# ------------------------------------------------------------------ write path
@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def quiet_database() -> Iterator[TestDatabase]:
    """A database of its own: the session's ``server`` (started by other suites) folds every app of the
    session's database in the background, which would fold these apps' records before the test times it."""
    with fresh_database() as db:
        yield db


def test_flush_of_10k_records_with_and_without_report_columns(benchmark, quiet_database, findings, loop,
                                                                monkeypatch):
    """Two apps on one writer, flushed in turn (the order alternating every round), one storing the report
    columns (``rollup.record_columns``) and one storing NULL there: both see the same machine at the same
    moments.  After each round the first app's new records are folded (``rollup.fold``, what the background
    folder does), timed apart: the fold's cost per record."""
    database = quiet_database
    apps = {True: database.create_app(), False: database.create_app()}
    templates = build_templates(Workload(batch_size=BATCH, devices=100_000, templates=4), f"rb{new_run_id()}-",
                                seed=5)
    real = rollup.record_columns

    def no_report_columns(_state: Any, kind: Any, _d: Any) -> tuple[None, None]:
        return None, None  # unmo.ingest.rows.encode_records stores NULL

    async def make_pool() -> asyncpg.Pool:  # inside the loop: the tests' helpers leave no current loop
        return await asyncpg.create_pool(database.url, min_size=1, max_size=2)

    pool = loop.run_until_complete(make_pool())
    writer = Writer(pool, Limits())
    counter = iter(range(1, 10**9))

    def submission(report: bool) -> tuple[tuple[bool, list[Submission]], dict[str, Any]]:
        n = next(counter)
        now = int(time.time() * 1000)
        batch = decode_body(templates[n % len(templates)].render(n), msgpack=False, received_ms=now,
                            limits=Limits()).batch
        return (report, [Submission(apps[report]["app_id"], batch, now, loop.create_future())]), {}

    def flush(report: bool, subs: list[Submission]) -> None:
        monkeypatch.setattr(rollup, "record_columns", real if report else no_report_columns)
        loop.run_until_complete(writer.flush(subs))
        assert subs[0].future.result().accepted == BATCH

    async def fold(app_id: int) -> rollup.Folded:
        async with pool.acquire() as conn:
            done = await rollup.fold(conn, app_id)
            assert done is not None
            return done

    seconds: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}  # this process only: immune to other load
    fold_s: list[float] = []
    fold_records = 0
    for r in range(ROUNDS + 3):  # the first 3 rounds warm both apps (kernel state, plans, pages)
        for report in ((False, True) if r % 2 else (True, False)):
            args, _ = submission(report)
            started, cpu_started = time.perf_counter(), time.process_time()
            flush(*args)
            if r >= 3:
                seconds[report].append(time.perf_counter() - started)
                cpu[report].append(time.process_time() - cpu_started)
        started = time.perf_counter()
        done = loop.run_until_complete(fold(apps[True]["app_id"]))
        if r >= 3:
            fold_s.append(time.perf_counter() - started)
            fold_records += done.records
    benchmark.pedantic(flush, setup=lambda: submission(True), rounds=3, iterations=1)
    loop.run_until_complete(fold(apps[True]["app_id"]))

    async def check(app_id: int) -> tuple[int, int, int]:
        async with pool.acquire() as conn:
            stored = await conn.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", app_id)
            clicks = await conn.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1 AND kind = 1", app_id)
            rolled = await conn.fetchval("SELECT coalesce(sum(clicks), 0) FROM unmo.report_rollup WHERE app_id = $1 "
                                         "AND grain = 0 AND level = 0", app_id)
            return stored, clicks, rolled

    for report, rounds in ((True, ROUNDS + 6), (False, ROUNDS + 3)):
        stored, clicks, rolled = loop.run_until_complete(check(apps[report]["app_id"]))
        assert stored == rounds * BATCH
        assert rolled == (clicks if report else 0)
    loop.run_until_complete(pool.close())
    median = {k: statistics.median(v) for k, v in seconds.items()}
    # the ratio of each round's pair, then their median: a round's two flushes saw the same machine
    pairs = statistics.median(a / b for a, b in zip(seconds[True], seconds[False], strict=True))
    cpu_median = {k: statistics.median(v) for k, v in cpu.items()}
    fold_per_record_us = sum(fold_s) / fold_records * 1e6
    findings.add("flush of 10k records without report columns (interleaved), s", median[False], "s")
    findings.add("flush of 10k records with report columns (interleaved), s", median[True], "s")
    findings.ratio("report columns: flush time with / without", "flush of 10k records with report columns "
                   "(interleaved), s", "flush of 10k records without report columns (interleaved), s")
    findings.add("report columns: median of the rounds' with / without ratios", pairs, "x")
    findings.add("flush of 10k records, writer CPU without report columns, s", cpu_median[False], "s")
    findings.add("flush of 10k records, writer CPU with report columns, s", cpu_median[True], "s")
    findings.add("report fold of one flush's 10k records (median), s", statistics.median(fold_s), "s")
    findings.add("report fold, wall clock per record folded, us", fold_per_record_us, "us")
    benchmark.extra_info.update({"median_without_s": median[False], "median_with_s": median[True],
                                 "median_pair_ratio": pairs, "fold_per_record_us": fold_per_record_us})
    print(json.dumps({"flush_10k_without_s": median[False], "flush_10k_with_s": median[True],
                      "ratio_of_medians": median[True] / median[False], "median_pair_ratio": pairs,
                      "cpu_without_s": cpu_median[False], "cpu_with_s": cpu_median[True],
                      "fold_10k_median_s": statistics.median(fold_s), "fold_per_record_us": fold_per_record_us,
                      "rounds": ROUNDS}))


@pytest.mark.timeout(1800)
def test_end_to_end_throughput_with_and_without_the_folder(findings):
    """``unmo load`` (closed loop, 8 connections, 1,000-record batches) against two ``unmo serve``, one with
    the background report folder (every 5 s, the default) and one without (UNMO_REPORT_FOLD_S=0), each on
    a fresh database of its own in the same PostgreSQL, driven in turn (the order alternating every round),
    E2E_ROUNDS rounds of E2E_SECONDS each: what folding costs the ingest path end to end on this machine,
    where servers, driver, database and folder share 2 cores."""
    from tests.support import ServerProcess, TestDatabase

    from bench.drive import drive, make_keys
    from unmo.load.verify import app_ids_for_keys

    dbs = {folder: TestDatabase() for folder in (True, False)}
    for db in dbs.values():
        db.create()
    servers: dict[bool, ServerProcess] = {}
    rates: dict[bool, list[float]] = {True: [], False: []}

    async def lag_of(conn: asyncpg.Connection) -> int:  # commits not folded yet
        ids = await app_ids_for_keys(conn, keys[True])
        return int(await conn.fetchval(
            "SELECT max(l.seq - coalesce(w.seq, 0)) FROM unmo.app_log l LEFT JOIN unmo.report_watermark w "
            "USING (app_id) WHERE l.app_id = ANY($1::bigint[])", list(ids)))

    try:
        servers[True] = ServerProcess(dbs[True].url).start()
        servers[False] = ServerProcess(dbs[False].url, env={"UNMO_REPORT_FOLD_S": "0"}).start()
        keys = {folder: make_keys(dbs[folder].url) for folder in servers}
        for folder, srv in servers.items():  # warm-up: kernel state, plans, pages
            drive(srv.url, dbs[folder].url, keys=keys[folder], seconds=3)
        lags = []
        for r in range(E2E_ROUNDS):
            for folder in ((False, True) if r % 2 else (True, False)):
                result = drive(servers[folder].url, dbs[folder].url, keys=keys[folder], seconds=E2E_SECONDS)
                rates[folder].append(result.events_per_s)
                if folder:
                    lags.append(dbs[True].call(lag_of))
    finally:
        for srv in servers.values():
            srv.stop()
        for db in dbs.values():
            db.drop()
    median = {k: statistics.median(v) for k, v in rates.items()}
    findings.add("end to end with the report folder, records/s (median)", median[True], "/s")
    findings.add("end to end without the report folder, records/s (median)", median[False], "/s")
    findings.add("report folder: end-to-end throughput with / without", median[True] / median[False], "x")
    print(json.dumps({"with_folder": rates[True], "without_folder": rates[False],
                      "ratio": median[True] / median[False], "folder_lag_commits_after_each_run": lags}))


# ------------------------------------------------------------------ read path
# One row per record i.  Devices install evenly over the 30 days (device d: install record 20d + 12);
# opens and events pick a device installed before them, recent ones more often (retention decays);
# 20 % of installs organic, 4 % of opens/events from devices without an install; clicks spread over
# 240 campaigns and 300 sites.  The records carry install_ms as the writer stores it (no CTIT
# rejections); rollup.fold then folds them all, as the background folder does 5 seconds' worth.
FILL = """
CREATE FUNCTION pg_temp.gen(app bigint, n bigint, t0 timestamptz) RETURNS TABLE (
    i bigint, kind smallint, ts timestamptz, dev bigint, install_ts timestamptz, day_n integer,
    network text, campaign text, adset text, ad text, site text, platform text, outcome smallint,
    revenue double precision, currency text)
LANGUAGE sql AS $$
    WITH base AS (
        SELECT i, i % 20 AS slot, abs(hashint8extended(i, 1)) AS h, abs(hashint8extended(i, 2)) AS h2,
               n / 20 AS devices, 30 * 86400.0 AS span
        FROM generate_series(0, n - 1) AS i),
    k AS (
        SELECT *, CASE WHEN slot < 9 THEN 1 WHEN slot < 12 THEN 2 WHEN slot = 12 THEN 3 WHEN slot < 16 THEN 4
                       ELSE 5 END::smallint AS kind,
               (h % 1000000) / 1000000.0 AS u
        FROM base),
    d AS (
        SELECT *,
               CASE WHEN kind = 3 THEN i / 20
                    WHEN kind >= 4 AND h % 25 = 0 THEN -1 - (h % 100000)       -- no install: unattributed
                    WHEN kind >= 4 THEN floor(least(devices - 1, devices * u * sqrt((h2 % 1000000) / 1000000.0)))
                    ELSE NULL END::bigint AS dev,
               t0 + make_interval(secs => u * span) AS t_any
        FROM k),
    t AS (
        SELECT *, CASE WHEN dev >= 0 THEN t0 + make_interval(secs => dev * span / devices) END AS its,
               CASE WHEN dev >= 0 THEN dev % 240 ELSE h % 240 END AS c
        FROM d)
    SELECT i, kind,
           CASE WHEN kind = 3 THEN its WHEN kind >= 4 AND dev >= 0 THEN greatest(t_any, its) ELSE t_any END,
           dev, its,
           CASE WHEN kind >= 4 AND dev >= 0 THEN floor(extract(epoch FROM greatest(t_any, its) - its) / 86400)::int
           END,
           CASE WHEN kind <= 2 OR (dev >= 0 AND dev % 5 <> 0) THEN 'net' || (c % 8) END,
           CASE WHEN kind <= 2 OR (dev >= 0 AND dev % 5 <> 0) THEN 'net' || (c % 8) || '-camp' || (c % 40) END,
           CASE WHEN kind <= 2 OR (dev >= 0 AND dev % 5 <> 0) THEN 'adset' || (c % 120) END,
           CASE WHEN kind <= 2 OR (dev >= 0 AND dev % 5 <> 0) THEN 'ad' || c END,
           CASE WHEN kind <= 2 THEN 'site' || (h2 % 300)
                WHEN dev >= 0 AND dev % 5 <> 0 THEN 'site' || ((c * 7) % 300) END,
           CASE WHEN coalesce(dev, h) % 2 = 0 THEN 'ios' ELSE 'android' END,
           CASE WHEN kind <= 2 THEN (CASE WHEN h % 100 = 0 THEN 6 ELSE 0 END)
                WHEN dev < 0 THEN 5 WHEN dev % 5 = 0 THEN 2 ELSE 1 END::smallint,
           CASE WHEN kind = 5 AND h % 10 < 3 THEN ((h / 16) % 5000) / 100.0 END,
           CASE WHEN kind = 5 AND h % 10 < 3 THEN (CASE WHEN (h / 1024) % 10 = 0 THEN 'EUR' ELSE 'USD' END) END
    FROM t
$$;

CREATE TEMP TABLE gen_rows AS SELECT * FROM pg_temp.gen($1, $2, $3);

INSERT INTO unmo.records (device_key, app_id, received_at, seq, ord, kind, record_id, ts, idfa, platform,
                          network, campaign, adset, ad, site, revenue, currency, outcome, install_ms)
SELECT hashint8extended(coalesce(dev, i), 7), $1, ts, 1, i, kind, 'g' || i, ts,
       CASE WHEN dev IS NOT NULL THEN 'dev-' || dev END, platform, network, campaign, adset, ad, site,
       revenue, currency, outcome,
       CASE WHEN kind >= 4 AND dev >= 0 THEN (extract(epoch FROM install_ts) * 1000)::bigint END
FROM gen_rows;

UPDATE unmo.app_log SET seq = 1 WHERE app_id = $1;
"""


@pytest.fixture(scope="module")
def big_app(database, findings) -> dict[str, Any]:
    """One app with RECORDS records over the last 30 days, and their rollups."""
    app = database.create_app()
    t0 = dt.datetime.combine(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DAYS), dt.time(), dt.UTC)

    async def fill() -> dict[str, Any]:
        conn = await asyncpg.connect(database.url)
        try:
            for k in range(DAYS + 1):
                await ensure_partitions(conn, today=t0.date() + dt.timedelta(days=k), days_ahead=0)
            started = time.perf_counter()
            await conn.execute("SET work_mem = '256MB'")
            # asyncpg runs a multi-statement string only without parameters: substitute the literals
            sql = FILL.replace("$1", str(app["app_id"])).replace("$2", str(RECORDS)).replace(
                "$3", f"'{t0.isoformat()}'::timestamptz")
            await conn.execute(sql)
            fill_s = time.perf_counter() - started
            started = time.perf_counter()
            done = await rollup.fold(conn, app["app_id"])  # the folder's own fold, on a month at once
            assert done is not None and done.records == RECORDS
            fold_s = time.perf_counter() - started
            for table in ("records", "report_rollup", "cohort_rollup", "report_active"):
                await conn.execute(f"VACUUM ANALYZE unmo.{table}")  # one by one: not in a transaction block
            sizes = {t: await conn.fetchval(f"SELECT count(*) FROM unmo.{t} WHERE app_id = $1", app["app_id"])
                     for t in ("records", "report_rollup", "cohort_rollup")}
            truth = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE kind = 1) AS clicks, count(*) FILTER (WHERE kind = 3) AS installs, "
                "count(*) FILTER (WHERE kind = 5) AS events, "
                "sum(round(revenue * 1000000.0)) FILTER (WHERE currency = 'USD') AS usd "
                "FROM unmo.records WHERE app_id = $1 AND ts >= $2 AND ts < $3",
                app["app_id"], t0, t0 + dt.timedelta(days=DAYS))
            return {"fill_s": fill_s, "fold_s": fold_s, "sizes": sizes, "truth": dict(truth)}
        finally:
            await conn.close()

    info = asyncio.run(fill())
    assert info["sizes"]["records"] == RECORDS
    findings.add(f"reports: fill {RECORDS:,} records in SQL, s", info["fill_s"], "s")
    findings.add(f"reports: fold of {RECORDS:,} records (a month) at once, s", info["fold_s"], "s")
    findings.add("reports: rollup rows (daily, all levels) for those records", info["sizes"]["report_rollup"],
                 "rows")
    findings.add("reports: rollup rows (cohorts, all levels) for those records", info["sizes"]["cohort_rollup"],
                 "rows")
    print(json.dumps({"records": RECORDS, **info, "truth": {k: str(v) for k, v in info["truth"].items()}}))
    return {**app, "from": str(t0.date()), "to": str(t0.date() + dt.timedelta(days=DAYS - 1)), **info}


def _get(server: Any, key: str, kind: str, **params: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/v1/reports/{kind}", params=params, headers={"Authorization": f"Bearer {key}"},
                  timeout=120)
    assert r.status_code == 200, r.text
    return json.loads(r.text, parse_float=Decimal)  # type: ignore[no-any-return]


@pytest.mark.timeout(7200)  # the first one fills the database (minutes at 10 million records)
@pytest.mark.parametrize(("group_by", "tz", "days"), [
    ("network,campaign", "UTC", DAYS),
    ("network,campaign", "Asia/Kolkata", DAYS),
    ("network,campaign,adset,platform", "Asia/Kathmandu", DAYS),
    ("network,site", "UTC", 1),   # a drill-down below the campaign grain: the full grain, one day
])
def test_daily_report(benchmark, server, big_app, findings, group_by, tz, days):
    a = big_app
    end = str(dt.date.fromisoformat(a["from"]) + dt.timedelta(days=days - 1))
    body = benchmark.pedantic(_get, args=(server, a["secret_key"], "daily"),
                              kwargs={"from": a["from"], "to": end, "group_by": group_by, "tz": tz},
                              rounds=5, warmup_rounds=1)
    totals, truth = body["totals"], a["truth"]
    if tz == "UTC" and days == DAYS:  # the same 30 UTC days as the counts taken from the records
        assert (totals["clicks"], totals["installs"], totals["events"]) == (
            truth["clicks"], truth["installs"], truth["events"])
        assert totals["revenue"]["USD"] == Decimal(truth["usd"]) / 1_000_000
    elif days == DAYS:  # the zone's 30 days are shifted by its offset: nearly the same records
        assert abs(totals["clicks"] - truth["clicks"]) < truth["clicks"] * 0.05
    else:
        assert 0 < totals["clicks"] < truth["clicks"] / days * 2
    findings.add(f"daily report, {days} day(s), {RECORDS:,} records, by {group_by} ({tz}), s",
                 findings.seconds(benchmark), "s")
    benchmark.extra_info["rows"] = len(body["rows"])


@pytest.mark.timeout(7200)
@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])
def test_cohort_report_over_30_days(benchmark, server, big_app, findings, tz):
    a = big_app
    body = benchmark.pedantic(_get, args=(server, a["secret_key"], "cohorts"),
                              kwargs={"from": a["from"], "to": a["to"], "group_by": "network,campaign",
                                      "days": "0,1,7,30", "tz": tz}, rounds=5, warmup_rounds=1)
    if tz == "UTC":
        assert body["totals"]["installs"] == a["truth"]["installs"]
    retained = [body["totals"]["days"][n]["retained"] for n in ("0", "1", "7")]
    assert retained[0] > 0 and all(r > 0 for r in retained)
    assert body["totals"]["revenue"]["USD"] > 0 and body["totals"]["days"]["30"]["revenue"]["USD"] > 0
    findings.add(f"cohort report, 30 days, {RECORDS:,} records, by network,campaign, days 0,1,7,30 ({tz}), s",
                 findings.seconds(benchmark), "s")
    benchmark.extra_info["rows"] = len(body["rows"])
