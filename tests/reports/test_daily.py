"""GET /v1/reports/daily: every column against a recomputation from the stored records, time zones with
half-hour and 45-minute offsets, the day boundary, CSV, keys and tenants."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zoneinfo
from decimal import Decimal

import httpx
import pytest

from tests.reports import data
from tests.reports.conftest import get_report
from tests.support import now_ms, post_batch

GROUPINGS = [
    ("network", "campaign"),
    ("network", "campaign", "adset", "ad", "site", "platform"),
    ("platform",),
    (),
    ("site", "network"),
]
ZONES = ["UTC", "Asia/Kolkata", "Australia/Adelaide", "Asia/Kathmandu"]


def keyed(body: dict, group_by: tuple[str, ...]) -> dict:
    out = {}
    for row in body["rows"]:
        key = (row["date"], *(row[d] for d in group_by))
        assert key not in out, f"two rows for {key}"
        out[key] = {c: row[c] for c in data.COUNTERS} | {"revenue": row["revenue"]}
    return out


def report_json(resp: httpx.Response) -> dict:
    assert resp.status_code == 200, resp.text
    return json.loads(resp.text, parse_float=Decimal)


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("group_by", GROUPINGS, ids=lambda g: ",".join(g) or "none")
def test_every_column_matches_the_stored_records(server, database, traffic_app, tz, group_by):
    a = traffic_app
    body = report_json(get_report(server, "daily", a["secret_key"], **{
        "from": a["from"], "to": a["to"], "group_by": ",".join(group_by), "tz": tz}))
    assert body["tz"] == tz and body["group_by"] == list(group_by)
    got = keyed(body, group_by)
    want = data.daily(database, a["app_id"], a["from"], a["to"], tz, group_by)
    assert got == want
    # every kind of figure is really there to be checked
    totals = body["totals"]
    for column in data.COUNTERS:
        assert totals[column] > 0, column
        assert totals[column] == sum(r[column] for r in body["rows"])
    assert set(totals["revenue"]) == {"EUR", "USD"} and body["currencies"] == ["EUR", "USD"]
    if "network" in group_by:
        labels = {r["network"] for r in body["rows"]}
        assert {"organic", "unattributed", "meta", "tiktok"} <= labels


def test_a_narrow_range_holds_only_its_days(server, database, traffic_app):
    a = traffic_app
    day = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=4)).isoformat()
    body = report_json(get_report(server, "daily", a["secret_key"], **{"from": day, "to": day,
                                                                      "tz": "Asia/Kolkata"}))
    assert body["rows"] and {r["date"] for r in body["rows"]} == {day}
    assert keyed(body, ("network", "campaign")) == data.daily(database, a["app_id"], day, day, "Asia/Kolkata",
                                                              ("network", "campaign"))


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Australia/Adelaide", "Asia/Kathmandu", "America/New_York"])
def test_the_local_midnight_splits_the_day_to_the_millisecond(server, database, zone):
    app = data.create_app(database)
    z = zoneinfo.ZoneInfo(zone)
    day = dt.datetime.fromtimestamp(now_ms() / 1000, z).date() - dt.timedelta(days=2)
    midnight = int(dt.datetime.combine(day, dt.time(), z).timestamp() * 1000)
    camp = {"network": "edge", "campaign": zone}
    recs = [{"type": "click", "id": f"b{i}", "ts": midnight + off, "device": {"idfa": f"b{i}"}, "campaign": camp}
            for i, off in enumerate((-900_001, -1, 0, 1, 899_999))]
    assert post_batch(server.url, app["sdk_key"], recs).status_code == 200
    body = report_json(get_report(server, "daily", app["secret_key"], **{
        "from": str(day - dt.timedelta(days=1)), "to": str(day), "tz": zone}))
    clicks = {r["date"]: r["clicks"] for r in body["rows"]}
    assert clicks == {str(day - dt.timedelta(days=1)): 2, str(day): 3}
    # in UTC the same five clicks fall on one day unless UTC midnight is among them
    utc = report_json(get_report(server, "daily", app["secret_key"], **{
        "from": str(day - dt.timedelta(days=2)), "to": str(day + dt.timedelta(days=1))}))
    assert sum(r["clicks"] for r in utc["rows"]) == 5


def test_csv_is_rfc4180_with_a_header_and_the_same_figures(server, traffic_app):
    a = traffic_app
    params = {"from": a["from"], "to": a["to"], "group_by": "network,campaign,adset,ad,site,platform",
              "tz": "Australia/Adelaide"}
    body = report_json(get_report(server, "daily", a["secret_key"], **params))
    r = get_report(server, "daily", a["secret_key"], **params, format="csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.text.endswith("\r\n") and "\r\n" in r.text
    table = list(csv.reader(io.StringIO(r.text, newline="")))
    head = table[0]
    assert head == ["date", "network", "campaign", "adset", "ad", "site", "platform", "clicks", "impressions",
                    "installs", "reattributions", "reinstalls", "organic_installs", "opens", "events",
                    "revenue_EUR", "revenue_USD", "ctit_rejected_touches", "blocklisted_touches"]
    assert len(table) == len(body["rows"]) + 1
    for row, cells in zip(body["rows"], table[1:], strict=True):
        got = dict(zip(head, cells, strict=True))
        assert got["date"] == row["date"]
        for d in ("network", "campaign", "adset", "ad", "site", "platform"):
            value = row[d] or ""
            # a cell a spreadsheet would run as a formula is quoted with a leading apostrophe
            assert got[d] == ("'" + value if value[:1] in ("=", "+", "-", "@") else value)
        for c in data.COUNTERS:
            assert int(got[c]) == row[c]
        for cur in ("EUR", "USD"):
            assert Decimal(got[f"revenue_{cur}"]) == row["revenue"].get(cur, 0)
    sites = {dict(zip(head, c, strict=True))["site"] for c in table[1:]}
    assert "site\nnewline" in sites  # a line break inside a quoted field survives
    assert any(dict(zip(head, c, strict=True))["campaign"].startswith("'=HYPERLINK") for c in table[1:])


def test_revenue_adds_up_exactly(server, database):
    app = data.create_app(database)
    t = now_ms() - 3_600_000
    recs = [{"type": "event", "id": f"p{i}", "ts": t, "device": {"idfa": "payer"}, "name": "purchase",
             "revenue": 0.1} for i in range(10)]
    recs.append({"type": "event", "id": "refund", "ts": t, "device": {"idfa": "payer"}, "name": "refund",
                 "revenue": -0.3, "currency": "eur"})
    assert post_batch(server.url, app["sdk_key"], recs).status_code == 200
    day = dt.datetime.fromtimestamp(t / 1000, dt.UTC).date().isoformat()
    r = get_report(server, "daily", app["secret_key"], **{"from": day, "to": day})
    assert '"revenue":{"EUR":-0.3,"USD":1}' in r.text  # not 0.9999999999999999
    csv_text = get_report(server, "daily", app["secret_key"], **{"from": day, "to": day, "format": "csv"}).text
    assert csv_text.splitlines()[1].split(",")[-4:-2] == ["-0.3", "1"]


def test_a_resent_batch_counts_once(server, database):
    app = data.create_app(database)
    recs = data.traffic(7, devices=20, prefix="again-")
    data.send(server.url, app["sdk_key"], recs)
    day0 = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=13)).isoformat()
    day1 = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    before = get_report(server, "daily", app["secret_key"], **{"from": day0, "to": day1}).json()
    resent = post_batch(server.url, app["sdk_key"], recs[:300]).json()
    assert resent["duplicates"] == min(300, len(recs))
    after = get_report(server, "daily", app["secret_key"], **{"from": day0, "to": day1}).json()
    assert after == before


def test_only_the_secret_key_reads_reports(server, traffic_app):
    a = traffic_app
    params = {"from": a["from"], "to": a["to"]}
    for kind in ("daily", "cohorts"):
        r = get_report(server, kind, a["sdk_key"], **params)
        assert r.status_code == 403 and "sdk key" in r.json()["error"]
        assert get_report(server, kind, "sec_not_a_key_at_all_123456", **params).status_code == 401
        r = httpx.get(f"{server.url}/v1/reports/{kind}", params=params)
        assert r.status_code == 401 and "WWW-Authenticate" in r.headers
        basic = httpx.get(f"{server.url}/v1/reports/{kind}", params=params, auth=(a["secret_key"], ""))
        assert basic.status_code == 200


def test_one_app_never_sees_another_apps_numbers(server, database, traffic_app):
    a = traffic_app
    params = {"from": a["from"], "to": a["to"], "group_by": "network,campaign,platform"}
    before = get_report(server, "daily", a["secret_key"], **params).json()
    other = data.create_app(database)
    # the same devices, record ids and campaigns, in another app
    data.send(server.url, other["sdk_key"], data.traffic(int(a["app_id"]) % 1000, devices=40))
    after = get_report(server, "daily", a["secret_key"], **params).json()
    assert after["rows"] == before["rows"]
    theirs = report_json(get_report(server, "daily", other["secret_key"], **params))
    assert keyed(theirs, ("network", "campaign", "platform")) == data.daily(
        database, other["app_id"], a["from"], a["to"], "UTC", ("network", "campaign", "platform"))
    assert 0 < theirs["totals"]["installs"] < before["totals"]["installs"]


def test_refolding_everything_at_once_changes_no_figure(server, database, traffic_app):
    """Reports read the rollups (days, hours, quarters) that the background folder and the reports' own
    catch-up built in many small folds: rebuilding the app's rollups in one fold of all its records must
    give the same answers, in every zone and at both grains."""
    from unmo.reports import rollup

    a = traffic_app
    asks = [("daily", {"tz": tz, "group_by": g}) for tz in ZONES for g in ("network,campaign", "site,platform")]
    asks += [("cohorts", {"tz": tz, "days": "0,1,2,5", "group_by": "network,ad"}) for tz in ("UTC", "Asia/Kathmandu")]

    def answers() -> list[dict]:
        out = []
        for kind, extra in asks:
            body = report_json(get_report(server, kind, a["secret_key"], **{"from": a["from"], "to": a["to"]},
                                          **extra))
            for row in body["rows"]:
                for day in (row.get("days") or {}).values():
                    if day:
                        day.pop("complete")
            out.append(body)
        return out

    before = answers()
    stored = database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", a["app_id"])

    async def rebuild(conn):
        async with conn.transaction():  # under the app's watermark lock: no folder sees the rollups empty
            await conn.execute("SELECT seq FROM unmo.report_watermark WHERE app_id = $1 FOR UPDATE", a["app_id"])
            for table in ("report_rollup", "cohort_rollup", "report_active"):
                await conn.execute(f"DELETE FROM unmo.{table} WHERE app_id = $1", a["app_id"])
            await conn.execute("UPDATE unmo.report_watermark SET seq = 0 WHERE app_id = $1", a["app_id"])
            return await rollup.fold(conn, a["app_id"])

    folded = database.call(rebuild)
    assert folded.records == stored and not folded.behind
    assert answers() == before


def test_two_server_processes_keep_one_set_of_figures(database):
    """Both processes store records and fold them for the same app; the figures are those of the records,
    each device counted once a day in the cohorts although its records went through both."""
    from tests.support import ServerProcess

    app = data.create_app(database)
    recs = data.traffic(11, devices=60, prefix="two-")
    a, b = ServerProcess(database.url).start(), ServerProcess(database.url).start()
    try:
        for i in range(0, len(recs), 100):  # in ts order, alternating between the two servers
            r = post_batch((a if (i // 100) % 2 else b).url, app["sdk_key"], recs[i:i + 100])
            assert r.status_code == 200, r.text
        day0 = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=13)).isoformat()
        day1 = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
        for srv in (a, b):
            body = report_json(get_report(srv, "daily", app["secret_key"], **{"from": day0, "to": day1,
                                                                             "tz": "Asia/Kolkata"}))
            assert keyed(body, ("network", "campaign")) == data.daily(
                database, app["app_id"], day0, day1, "Asia/Kolkata", ("network", "campaign"))
        got = report_json(get_report(a, "cohorts", app["secret_key"], **{"from": day0, "to": day1,
                                                                         "days": "0,1,2,3"}))
        want = data.cohorts(database, app["app_id"], day0, day1, "UTC", ("network", "campaign"), (0, 1, 2, 3),
                            dt.datetime.now(dt.UTC))
        for row in got["rows"]:
            key = (row["date"], row["network"], row["campaign"])
            assert row["installs"] == want[key]["installs"]
            for n in ("0", "1", "2", "3"):
                if row["days"][n] is not None:
                    assert row["days"][n]["retained"] == want[key]["days"][n]["retained"], (key, n)
    finally:
        a.stop()
        b.stop()
