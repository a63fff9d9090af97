"""``unmo report daily|cohorts``: the same figures as the HTTP API, as a table, CSV or JSON; bad flags exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.reports.conftest import get_report
from tests.support import ROOT


def unmo(database, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "unmo", *args, "--database-url", database.url], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", ["daily", "cohorts"])
def test_json_and_csv_are_what_the_api_answers(server, database, traffic_app, kind):
    a = traffic_app
    flags = ["--app", a["name"], "--from", a["from"], "--to", a["to"], "--group-by", "network,platform",
             "--tz", "Asia/Kolkata"]
    params = {"from": a["from"], "to": a["to"], "group_by": "network,platform", "tz": "Asia/Kolkata"}
    if kind == "cohorts":
        flags += ["--days", "0,2"]
        params["days"] = "0,2"
    r = unmo(database, "report", kind, *flags, "--format", "json")
    assert r.returncode == 0, r.stderr
    api = get_report(server, kind, a["secret_key"], **params)
    if kind == "daily":
        assert r.stdout.strip() == api.text
    else:  # "complete" may turn true between the two reads; everything else is equal
        import json

        def strip(text: str) -> dict:
            body = json.loads(text)
            for row in body["rows"]:
                for day in row["days"].values():
                    if day is not None:
                        day.pop("complete")
            return body

        assert strip(r.stdout) == strip(api.text)
    r = unmo(database, "report", kind, *flags, "--format", "csv")
    assert r.returncode == 0, r.stderr
    api_csv = get_report(server, kind, a["secret_key"], **params, format="csv").text
    assert r.stdout.replace("\r\n", "\n") == api_csv.replace("\r\n", "\n")


def test_the_default_is_a_table_with_totals(database, traffic_app):
    a = traffic_app
    r = unmo(database, "report", "daily", "--app", a["name"], "--from", a["from"], "--to", a["to"])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "daily report" in out
    for word in ("date", "network", "campaign", "installs", "revenue_USD", "total", "organic", "meta", "spring"):
        assert word in out, word


@pytest.mark.parametrize(("args", "text"), [
    (["daily", "--from", "2026-02-30", "--to", "2026-03-01"], "--from: expected a date YYYY-MM-DD, got '2026-02-30'"),
    (["daily", "--from", "2026-03-01", "--to", "2026-02-01"], "--to: expected a date on or after from"),
    (["daily", "--from", "2026-03-01", "--to", "2026-03-02", "--group-by", "country"], "--group-by:"),
    (["cohorts", "--from", "2026-03-01", "--to", "2026-03-02", "--days", "1,x"], "--days:"),
    (["daily", "--from", "2026-03-01", "--to", "2026-03-02", "--tz", "Nowhere/City"], "--tz:"),
    (["daily", "--from", "2026-03-01", "--to", "2026-03-02", "--format", "xml"], "--format"),
])
def test_bad_flags_are_one_line_and_exit_2(database, traffic_app, args, text):
    kind, *rest = args
    r = unmo(database, "report", kind, "--app", traffic_app["name"], *rest)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and text in r.stderr, r.stderr


def test_an_unknown_app_exits_2(database):
    r = unmo(database, "report", "daily", "--app", "no-such-app", "--from", "2026-03-01", "--to", "2026-03-02")
    assert r.returncode == 2 and "no app named 'no-such-app'" in r.stderr
