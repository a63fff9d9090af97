"""``unmo tracker report``: the week's results in Markdown and HTML, each criterion with target and verdict;
and the figures' arithmetic (histogram quantiles, ISO weeks, savings projection)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from tests.support import ROOT
from unmo.errors import ValidationError
from unmo.server.metrics import LATENCY_BUCKETS_MS
from unmo.tracker.agreement import mask
from unmo.tracker.customers import app_name
from unmo.tracker.figures import iso_week, quantile, week_label
from unmo.tracker.pricing import savings


def unmo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "unmo", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_weekly_report_files(database, tracker, tmp_path):
    week = week_label(iso_week(None, dt.datetime.now(dt.UTC)))
    r = unmo("tracker", "report", "--week", week, "--out", str(tmp_path), "--database-url", database.url)
    assert r.returncode == 0, r.stderr
    md = (tmp_path / f"unmo-pilot-report-{week}.md").read_text()
    page = (tmp_path / f"unmo-pilot-report-{week}.html").read_text()
    assert md.startswith(f"# unmo pilot programme: results of week {week}")
    for label, target in (("Customers live", "at least 5"), ("New customers this week", "at least 3"),
                          ("Average onboarding time", "at most 5.0 min"),
                          ("Satisfaction (CSAT 4-5)", "at least 90.0 %"),
                          ("P95 batch latency", "at most 100.0 ms"), ("Uptime", "at least 99.90 %"),
                          ("MRR", "at least $10,000"), ("Cost savings validated", "at least 100.00 %")):
        line = next(x for x in md.splitlines() if x.startswith(f"| {label} |"))
        assert f"| {target} |" in line
        assert line.rstrip().endswith(("| PASS |", "| FAIL |", "| n/a |"))
        assert label in page
    assert "judged criteria pass" in md and "<table>" in page


def test_report_of_a_past_week_and_bad_weeks(database, tmp_path, capsys):
    from unmo.cli import main

    assert main(["tracker", "report", "--week", "2020-W10", "--out", str(tmp_path), "--database-url",
                 database.url, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"week": "2020-W10"' in out
    assert '"customers_live": {"value": 0' in out  # nobody existed then
    for bad in ("2026-48", "2026-W54", "last week"):
        assert main(["tracker", "report", "--week", bad, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err == f"unmo: week: expected an ISO week like 2026-W48, got {bad!r}\n"


def test_tracker_refuses_bad_settings(monkeypatch, capsys):
    from unmo.cli import main

    monkeypatch.setenv("UNMO_ADMIN_TOKEN", "t" * 20)
    for args, message in (
        (["--ingest-url", "ftp://x"], "ingest-url: expected an http:// or https:// URL, got 'ftp://x'"),
        (["--probe-interval", "often"], "probe-interval: expected a duration like 10s, 5m, 24h or 7d, got 'often'"),
        (["--port", "70000"], "--port: expected 0..65535, got 70000"),
        (["--webhook-url", "http://127.0.0.1:1/x"], "UNMO_TRACKER_WEBHOOK_SECRET: a webhook needs a signing secret"),
    ):
        assert main(["tracker", *args]) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    monkeypatch.setenv("UNMO_ADMIN_TOKEN", "short")
    assert main(["tracker"]) == 2
    assert "UNMO_ADMIN_TOKEN: expected a secret of at least 16 characters" in capsys.readouterr().err


def test_quantile_interpolates_inside_buckets_as_prometheus_does():
    buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    assert quantile(buckets, 0.95) is None
    i50 = LATENCY_BUCKETS_MS.index(50)
    buckets[i50] = 100  # all 100 batches in (35, 50] ms
    assert quantile(buckets, 0.5) == pytest.approx(42.5)
    assert quantile(buckets, 0.95) == pytest.approx(35 + 15 * 0.95)
    buckets[-1] = 100  # half of them over 5 s: the quantile reads the highest finite bound
    assert quantile(buckets, 0.99) == 5000.0
    assert quantile(buckets, 0.25) == pytest.approx(35 + 15 * 0.5)


def test_iso_weeks():
    w = iso_week("2026-W01", dt.datetime.now(dt.UTC))
    assert w.start == dt.datetime(2025, 12, 29, tzinfo=dt.UTC) and w.days == 7
    assert week_label(w) == "2026-W01"
    now = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)  # a Saturday
    assert iso_week(None, now).start == dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    with pytest.raises(ValidationError):
        iso_week("2026-W99", now)


def test_savings_projection():
    s = savings(installs=100, price=0.07, plan_price=100, elapsed_days=2, month_days=30)
    assert s["projected_installs"] == 1500 and s["provider_cost"] == 105.0 and s["saved"] == 5.0
    assert s["percent"] == pytest.approx(4.8) and s["validated"]
    s = savings(installs=100, price=0.07, plan_price=100, elapsed_days=0.01, month_days=30)
    assert s["projected_installs"] == 3000  # less than a day of data counts as one day
    assert savings(0, 0.07, 100, 5, 30)["percent"] is None


def test_app_names_and_masks():
    assert app_name("TechStart Mobile", "ios", 7) == "TechStart Mobile ios c7"
    assert app_name("Ünïcode & Co. (EU)", "android", 12) == "n code Co. EU android c12"
    assert len(app_name("x" * 100, "android", 123456)) == 64
    assert mask("6d92078a-8246-4ba4-ae5b-76104861e7dc") == "6d92...e7dc"
    assert mask("abc") == "ab..."


def test_ingest_urls_from_flags_and_environment(monkeypatch):
    from unmo.cli import build_parser
    from unmo.tracker.settings import ingest_urls_from

    args = build_parser().parse_args(["tracker", "--ingest-url", "http://a:8080/", "http://b",
                                      "--ingest-url", "http://c,https://d", "--ingest-url", "http://a:8080"])
    assert ingest_urls_from(args.ingest_url) == ["http://a:8080", "http://b", "http://c", "https://d"]
    monkeypatch.setenv("UNMO_INGEST_URLS", "https://ingest.example.com, http://10.0.0.2:8080")
    assert ingest_urls_from(None) == ["https://ingest.example.com", "http://10.0.0.2:8080"]
    monkeypatch.delenv("UNMO_INGEST_URLS")
    assert ingest_urls_from(None) == []
