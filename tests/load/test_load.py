"""``unmo load`` against a real server and database (spec: tools.md "unmo load")."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.support import run
from unmo.load.verify import verify_stored

KEYS = {"events_per_s", "requests", "statuses", "p50_ms", "p95_ms", "p99_ms", "acked_records", "verified"}


def unmo_load(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "unmo", "load", *args], capture_output=True, text=True,
                          timeout=timeout)


def last_json(out: str) -> dict[str, object]:
    return json.loads(out.strip().splitlines()[-1])


def test_closed_loop_is_verified_against_the_database(server, database):
    p = unmo_load("--url", server.url, "--database-url", database.url, "--duration", "2s", "--concurrency", "4",
                  "--batch-size", "200", "--apps", "2", "--devices", "1000", "--json")
    assert p.returncode == 0, p.stderr
    result = last_json(p.stdout)
    assert set(result) == KEYS
    assert result["verified"] is True
    assert result["statuses"] == {"200": result["requests"]}
    assert result["acked_records"] == 200 * result["requests"] > 0
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["events_per_s"] > 0
    # the two created apps both got records, exactly the acknowledged number in all
    rows = database.fetch("SELECT a.name, count(*) AS n FROM unmo.records r JOIN unmo.apps a USING (app_id) "
                          "WHERE a.name LIKE 'load-%' GROUP BY a.name")
    assert len(rows) == 2 and sum(r["n"] for r in rows) == result["acked_records"]


def test_open_loop_with_a_key_and_no_database(server, app):
    p = unmo_load("--url", server.url, "--key", app["sdk_key"], "--duration", "1s", "--rate", "2000",
                  "--batch-size", "100", "--json")
    assert p.returncode == 0, p.stderr
    result = last_json(p.stdout)
    assert set(result) == KEYS
    assert result["verified"] is None
    # 2000 events/s in batches of 100 for 1 s: 20 requests scheduled on the timer
    assert 18 <= result["requests"] <= 21
    assert result["statuses"] == {"200": result["requests"]}


def test_timeline_has_a_line_per_request_at_its_scheduled_send(server, app, tmp_path):
    path = tmp_path / "timeline.csv"
    p = unmo_load("--url", server.url, "--key", app["sdk_key"], "--duration", "1s", "--rate", "2000",
                  "--batch-size", "100", "--json", "--timeline", str(path))
    assert p.returncode == 0, p.stderr
    result = last_json(p.stdout)
    header, *lines = path.read_text().splitlines()
    assert header == "sent_s,latency_ms,status,process"
    rows = [line.split(",") for line in lines]
    assert len(rows) == result["requests"] > 0
    sent = np.array([float(r[0]) for r in rows])
    latency = np.array([float(r[1]) for r in rows])
    # an open loop at 20 requests a second: sends scheduled 50 ms apart from the start, whatever the answers did
    assert abs(sent[0]) < 0.001 and np.allclose(np.diff(sent), 0.05, atol=0.001)
    assert (latency > 0).all()
    assert abs(float(np.percentile(latency, 50)) - result["p50_ms"]) < 0.02   # the latencies the result is made of
    assert {r[2] for r in rows} == {"200"} and {r[3] for r in rows} == {"0"}


def test_copy_ceiling_mode_is_verified_and_cleans_up(database):
    p = unmo_load("--copy-ceiling", "--database-url", database.url, "--duration", "1s", "--batch-size", "500",
                  "--json")
    assert p.returncode == 0, p.stderr
    result = last_json(p.stdout)
    assert set(result) == KEYS
    assert result["verified"] is True and result["acked_records"] == 500 * result["statuses"]["COPY"] > 0
    assert database.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'unmo_load'") == 0


def test_verification_notices_missing_and_unacknowledged_rows(server, database, app):
    p = unmo_load("--url", server.url, "--key", app["sdk_key"], "--database-url", database.url, "--duration", "1s",
                  "--concurrency", "1", "--batch-size", "10", "--json")
    assert p.returncode == 0 and last_json(p.stdout)["verified"] is True, p.stderr
    row = database.fetch("SELECT record_id FROM unmo.records WHERE app_id = $1 LIMIT 1", app["app_id"])[0]
    req = row["record_id"][: len(row["record_id"]) - 6]  # ld<run><process>-<request no>
    prefix = req[:10]

    def check(acked, refused=()):
        return run(_verify(database.url, app["app_id"], prefix, req, acked, list(refused)))

    assert check({req: (0, 11)}).startswith(f"request {req}: acknowledged 11 records, stored 10 rows")
    assert "no request of the run sent" in check({})
    assert "answered with an error" in check({}, refused=[req])


async def _verify(url, app_id, prefix, req, acked, refused):
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        # the run's other requests are "unanswered": they may be stored, so only `req` is judged
        others = [r["k"] for r in await conn.fetch(
            "SELECT DISTINCT left(record_id, length(record_id) - 6) AS k FROM unmo.records "
            "WHERE app_id = $1 AND record_id LIKE $2", app_id, prefix + "%")]
        return await verify_stored(conn, table="unmo.records", app_ids=[app_id], prefix=prefix, acked=acked,
                                   refused=refused, unanswered=[k for k in others if k != req])
    finally:
        await conn.close()


def test_bad_flags_exit_2_with_one_line(server):
    for args, fragment in [
        (["--url", server.url, "--key", "k", "--duration", "soon"], "--duration"),
        (["--url", server.url, "--key", "k", "--concurrency", "0"], "--concurrency"),
        (["--url", server.url, "--key", "k", "--concurrency", "2", "--rate", "100"], "not allowed with"),
        (["--url", server.url, "--key", "k", "--batch-size", "20000"], "--batch-size"),
        (["--url", server.url], "--key"),
        (["--url", "ftp://x", "--key", "k"], "url"),
        (["--url", server.url, "--key", "k", "--apps", "3"], "--apps 3"),
        (["--copy-ceiling"], "--database-url"),
        (["--copy-ceiling", "--database-url", "postgresql://x/y", "--timeline", "t.csv"], "--timeline"),
        (["--url", server.url, "--key", "k", "--timeline", "/nonexistent/dir/t.csv"], "--timeline"),
    ]:
        p = unmo_load(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (args, p.stderr)
