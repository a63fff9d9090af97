"""``unmo soak`` against real servers: a 60-second run with its report, and a spike that makes it shed.

Both runs go at once (two servers on the session's database, two soak processes),
so the module costs about a minute of wall time.  The spike's server is started
with ``--max-queue 1000``, the smallest queue it allows, so that ten times the
base rate really overflows it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from tests.support import ServerProcess
from unmo.sim.profile import load_profile
from unmo.soak.leak import MIN_JUDGED_S, verdict
from unmo.soak.run import Soak, SoakConfig
from unmo.soak.scrape import parse_metrics

SPEC_KEYS = {"uptime", "p95_ms", "p99_ms", "error_rate", "rss_slope_mb_per_h", "leak"}
SPIKE_KEYS = {"shed_started_s", "shed_stopped_s", "lost_acked"}
SAMPLE_KEYS = {
    "t",
    "target_events_per_s",
    "acked_events_per_s",
    "requests",
    "ok",
    "shed",
    "errors",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "rss_mb",
    "cpu_pct",
    "db_size_mb",
    "queue_records",
    "shedding",
}


@pytest.fixture(scope="module")
def runs(database, tmp_path_factory):
    out = tmp_path_factory.mktemp("soak")
    plain_srv = ServerProcess(database.url).start()
    spike_srv = ServerProcess(database.url, extra=["--max-queue", "1000"]).start()
    plain_app, spike_app = database.create_app(), database.create_app()
    common = ["--database-url", database.url, "--json", "--seed", "7"]
    jobs = {
        "plain": (plain_srv, plain_app, ["--duration", "60s", "--rate", "200", "--sample", "5s"]),
        "spike": (
            spike_srv,
            spike_app,
            [
                "--duration",
                "36s",
                "--rate",
                "800",
                "--spike",
                "10x:10s",
                "--sample",
                "2s",
                "--batch-size",
                "500",
            ],
        ),
    }
    procs = {}
    try:
        for name, (srv, app, argv) in jobs.items():
            procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "unmo",
                    "soak",
                    "--url",
                    srv.url,
                    "--key",
                    app["secret_key"],
                    "--out",
                    str(out / name),
                    *argv,
                    *common,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        results = {}
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=300)
            assert stdout.strip(), stderr
            srv, app, _argv = jobs[name]
            metrics = httpx.get(srv.url + "/metrics", timeout=10).text
            results[name] = {
                "code": proc.returncode,
                "result": json.loads(stdout.strip().splitlines()[-1]),
                "out": out / name,
                "app": app,
                "stderr": stderr,
                "metrics": metrics,
            }
        yield results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        plain_srv.stop()
        spike_srv.stop()


def test_soak_writes_its_report_and_the_spec_keys(runs, database):
    r = runs["plain"]
    res = r["result"]
    assert r["code"] == 0, r["stderr"]
    assert SPEC_KEYS <= set(res) and not SPIKE_KEYS - {"lost_acked"} & set(res)
    # a connection error now and then is retried (and counted); every batch got through
    assert res["uptime"] >= 0.99 and res["error_rate"] <= 0.01 and res["delivered"] == 1.0, res["statuses"]
    assert 0 < res["p95_ms"] <= res["p99_ms"]
    assert isinstance(res["leak"], bool) and res["leak_judged"] is False  # a minute is too short to judge
    assert isinstance(res["rss_slope_mb_per_h"], float)
    assert res["expected_state_mb_per_h"] > 0 and res["state_bytes_per_record"] > 50
    # the open loop kept its rate, and every acknowledged record is stored exactly once
    assert 0.9 * 200 <= res["events_per_s"] <= 1.1 * 200
    assert (res["lost_acked"], res["duplicated_acked"], res["verified"]) == (0, 0, "database")
    stored = database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", r["app"]["app_id"])
    assert stored == res["acked_records"]
    out = r["out"]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert 11 <= len(samples) <= 14
    assert all(SAMPLE_KEYS <= set(s) for s in samples)
    assert all(s["rss_mb"] and s["rss_mb"] > 10 for s in samples)
    assert samples[-1]["db_size_mb"] > 1
    html = (out / "report.html").read_text()
    assert "unmo soak report" in html
    assert r["app"]["secret_key"] not in html  # the key is never written into a report, only its prefix
    for png in ("latency.png", "memory.png", "throughput.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f'src="{png}"' in html
    assert json.loads((out / "result.json").read_text()) == res


def test_spike_sheds_with_503_and_loses_nothing(runs, database):
    r = runs["spike"]
    res = r["result"]
    assert r["code"] == 0, r["stderr"]
    assert SPEC_KEYS | SPIKE_KEYS <= set(res)
    spike = res["spike"]
    assert spike == {"factor": 10.0, "seconds": 10.0, "start_s": 11}
    # the server shed: 503 with Retry-After while its queue was full, from the spike on
    assert res["statuses"].get("503", 0) > 0
    assert spike["start_s"] - 1 <= res["shed_started_s"] <= res["shed_stopped_s"]
    assert res["shed_stopped_s"] < res["duration_s"]
    # ... and the driver retried as told, so every batch was acknowledged in the end, stored exactly once
    assert (res["delivered"], res["unacked_records"], res["lost_acked"], res["duplicated_acked"]) == (
        1.0,
        0,
        0,
        0,
    )
    stored = database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", r["app"]["app_id"])
    assert stored == res["acked_records"]
    # the server counted the same shed requests the driver saw (what an autoscaler reads)
    shed = parse_metrics(r["metrics"]).shed_requests
    assert shed == res["statuses"]["503"] + res["statuses"].get("429", 0)
    samples = [json.loads(line) for line in (r["out"] / "samples.jsonl").read_text().splitlines()]
    during = [s for s in samples if spike["start_s"] <= s["t"] <= spike["start_s"] + spike["seconds"] + 2]
    assert max(s["target_events_per_s"] for s in during) == 8000
    assert sum(s["shed"] for s in samples) == res["statuses"]["503"]
    assert all(s["in_flight"] <= 64 for s in samples)  # --max-in-flight holds under a spike too


def test_parse_metrics_sums_labels():
    text = (
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 1.5e+08\n"
        '# TYPE unmo_shed_requests counter\nunmo_shed_requests_total{reason="queue"} 3.0\n'
        'unmo_shed_requests_total{reason="rate"} 2.0\n# TYPE unmo_shedding gauge\nunmo_shedding 1.0\n'
    )
    s = parse_metrics(text)
    assert (s.rss_bytes, s.shed_requests, s.shedding, s.db_size_bytes) == (1.5e8, 5.0, 1.0, None)


def test_leak_verdict_compares_the_slope_with_the_expected_state():
    hours = [i * 60.0 for i in range(121)]  # two hours, a sample a minute
    grow = [100 + 50 * t / 3600 for t in hours]  # 50 MB/h
    # 1M records/h at 40 bytes each: 40 MB/h expected; threshold 40 + max(20, 10) = 60 MB/h
    v = verdict(hours, grow, 7200, 1_000_000, 40.0)
    assert (round(v.rss_slope_mb_per_h, 3), v.expected_mb_per_h, v.threshold_mb_per_h) == (50.0, 40.0, 60.0)
    assert (v.leak, v.judged, v.warmup_s) == (False, True, 600.0)
    assert verdict(hours, [100 + 90 * t / 3600 for t in hours], 7200, 1_000_000, 40.0).leak is True
    # the warm-up is left out: a jump in the first 10 % does not count
    jump = [m + (0 if t >= 600 else -80) for t, m in zip(hours, grow, strict=True)]
    assert round(verdict(hours, jump, 7200, 1_000_000, 40.0).rss_slope_mb_per_h, 3) == 50.0
    short = [t / 30 for t in hours]  # 4 minutes (24 s of warm-up): too short to judge
    assert short[-1] - 24 < MIN_JUDGED_S
    v = verdict(short, [100 + t for t in short], 240, 0, 40.0)
    assert (v.leak, v.judged, v.rss_slope_mb_per_h > v.threshold_mb_per_h) == (False, False, True)


def test_the_database_check_finds_a_lost_and_a_doubled_record(runs, database):
    """The check that proves "nothing acknowledged is lost" fails when something is."""
    r = runs["plain"]
    res = r["result"]
    run_id = res["run_id"]
    app_id = r["app"]["app_id"]
    rows = database.fetch("SELECT record_id FROM unmo.records WHERE app_id = $1", app_id)
    numbers = sorted(int(row["record_id"].split("-", 1)[1]) for row in rows)
    assert len(numbers) == res["acked_records"]
    soak = Soak(
        SoakConfig(
            url="http://127.0.0.1:9",
            key=r["app"]["secret_key"],
            duration_s=60,
            rate=1,
            profiles=[load_profile("techstart")],
            database_url=database.url,
        )
    )
    soak.run_id = run_id
    soak.mark_acked(numbers)
    assert asyncio.run(soak.verify()) == ("database", 0, 0)
    lost, doubled = f"{run_id}-{numbers[10]}", f"{run_id}-{numbers[20]}"
    database.fetch("DELETE FROM unmo.records WHERE app_id = $1 AND record_id = $2", app_id, lost)
    database.fetch(
        "INSERT INTO unmo.records SELECT * FROM unmo.records WHERE app_id = $1 AND record_id = $2",
        app_id,
        doubled,
    )
    assert asyncio.run(soak.verify()) == ("database", 1, 1)
