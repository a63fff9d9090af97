"""GET /v1/reports/cohorts: installs, retention and revenue on day N against a recomputation that joins each
open and event to its device's install."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest

from tests.reports import data
from tests.reports.conftest import get_report
from tests.support import now_ms, post_batch

DAY = data.DAY


def body_of(resp) -> dict:
    assert resp.status_code == 200, resp.text
    return json.loads(resp.text, parse_float=Decimal)


def keyed(body: dict, group_by: tuple[str, ...]) -> dict:
    out = {}
    for row in body["rows"]:
        key = (row["date"], *(row[d] for d in group_by))
        assert key not in out, f"two rows for {key}"
        days = {n: (None if v is None else {**v, "retention": None if v["retention"] is None
                                             else float(v["retention"])})
                for n, v in row["days"].items()}
        out[key] = {"installs": row["installs"], "revenue": row["revenue"], "days": days}
    return out


def _without_complete(rows: dict) -> dict:
    return {k: {**v, "days": {n: (None if d is None else {x: y for x, y in d.items() if x != "complete"})
                             for n, d in v["days"].items()}} for k, v in rows.items()}


def _complete(rows: dict) -> dict:
    return {(k, n): d["complete"] for k, v in rows.items() for n, d in v["days"].items() if d is not None}


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata", "Australia/Adelaide"])
@pytest.mark.parametrize("group_by", [("network", "campaign"), ("platform",), ("network", "platform"), ()],
                         ids=lambda g: ",".join(g) or "none")
def test_cohorts_match_the_records(server, database, traffic_app, tz, group_by):
    a = traffic_app
    days = (0, 1, 3, 7)
    before = dt.datetime.now(dt.UTC)
    body = body_of(get_report(server, "cohorts", a["secret_key"], **{
        "from": a["from"], "to": a["to"], "group_by": ",".join(group_by), "tz": tz, "days": "7,0,3,1"}))
    after = dt.datetime.now(dt.UTC)
    assert body["days"] == list(days)
    got = keyed(body, group_by)
    want = data.cohorts(database, a["app_id"], a["from"], a["to"], tz, group_by, days, after)
    assert _without_complete(got) == _without_complete(want)
    # "complete" turns true at a fixed instant: the answer was made between `before` and `after`
    early = data.cohorts(database, a["app_id"], a["from"], a["to"], tz, group_by, days, before)
    for key, complete in _complete(got).items():
        assert complete in (_complete(want)[key], _complete(early)[key]), key
    assert any(_complete(got).values()) and not all(_complete(got).values())
    t = body["totals"]
    assert t["installs"] == sum(r["installs"] for r in body["rows"]) > 0
    for n in map(str, days):
        assert t["days"][n]["retained"] == sum(r["days"][n]["retained"] for r in body["rows"] if r["days"][n])
    assert t["days"]["1"]["retained"] > 0 and t["days"]["7"]["revenue"]
    labels = {r.get("network") for r in body["rows"]}
    if "network" in group_by:
        assert {"organic", "unattributed", "meta"} <= labels


def test_a_device_counts_once_a_day_however_many_batches_it_sends(server, database):
    app = data.create_app(database)
    t = now_ms() - 5 * DAY
    dev = {"idfa": "loyal", "platform": "ios"}
    post_batch(server.url, app["sdk_key"], [
        {"type": "click", "id": "c", "ts": t - 60_000, "device": dev, "campaign": {"network": "meta", "campaign": "x"}},
        {"type": "install", "id": "i", "ts": t, "device": dev}])
    for i, offset in enumerate([DAY + 1, DAY + 2, 2 * DAY - 1, 2 * DAY, 3 * DAY + 5]):
        ev = {"type": "event", "id": f"e{i}", "ts": t + offset, "device": dev, "name": "buy", "revenue": 1.25}
        assert post_batch(server.url, app["sdk_key"], [ev]).status_code == 200
    day = dt.datetime.fromtimestamp(t / 1000, dt.UTC).date().isoformat()
    body = body_of(get_report(server, "cohorts", app["secret_key"], **{"from": day, "to": day, "days": "0,1,2,3"}))
    (row,) = body["rows"]
    assert (row["network"], row["campaign"], row["installs"]) == ("meta", "x", 1)
    assert {n: d["retained"] for n, d in row["days"].items()} == {"0": 0, "1": 1, "2": 1, "3": 1}
    assert {n: d["revenue"].get("USD", 0) for n, d in row["days"].items()} == {
        "0": 0, "1": Decimal("3.75"), "2": Decimal("5"), "3": Decimal("6.25")}
    assert row["revenue"] == {"USD": Decimal("6.25")}
    assert row["days"]["1"]["retention"] == 1.0


def test_cohorts_csv_parses_back(server, traffic_app):
    a = traffic_app
    params = {"from": a["from"], "to": a["to"], "days": "0,1,7", "tz": "Asia/Kolkata"}
    body = body_of(get_report(server, "cohorts", a["secret_key"], **params))
    r = get_report(server, "cohorts", a["secret_key"], **params, format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text, newline="")))
    head = table[0]
    cur = body["currencies"]
    assert cur == ["EUR", "USD"]
    assert head == ["date", "network", "campaign", "installs", "revenue_EUR", "revenue_USD",
                    *[c for n in (0, 1, 7) for c in (f"day{n}_retained", f"day{n}_retention", f"day{n}_revenue_EUR",
                                                      f"day{n}_revenue_USD")]]
    assert len(table) == len(body["rows"]) + 1
    for row, cells in zip(body["rows"], table[1:], strict=True):
        got = dict(zip(head, cells, strict=True))
        assert got["date"] == row["date"] and int(got["installs"]) == row["installs"]
        for c in cur:
            assert Decimal(got[f"revenue_{c}"]) == row["revenue"].get(c, 0)
        for n in ("0", "1", "7"):
            day = row["days"][n]
            if day is None:  # the unattributed row: no install, no day N
                assert row["network"] == "unattributed" and got[f"day{n}_retained"] == ""
                continue
            assert int(got[f"day{n}_retained"]) == day["retained"]
            assert float(got[f"day{n}_retention"]) == float(day["retention"])
            for c in cur:
                assert Decimal(got[f"day{n}_revenue_{c}"]) == day["revenue"].get(c, 0)
