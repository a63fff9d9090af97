"""tools/scripts/create-pilot-customer.sh end to end: create, send a test event, onboarding time measured."""

from __future__ import annotations

import os
import re
import subprocess
import uuid

from tests.support import ROOT
from tests.tracker.conftest import ADMIN_TOKEN

SCRIPT = ROOT / "tools" / "scripts" / "create-pilot-customer.sh"


def run_script(tracker_url: str, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UNMO_TRACKER_URL": tracker_url, "UNMO_ADMIN_TOKEN": token}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_onboarding_end_to_end_is_under_a_minute(tracker, server, api):
    company = f"TechStart Mobile {uuid.uuid4().hex[:6]}"
    r = run_script(tracker.url, "--company", company, "--vertical", "gaming", "--provider", "appsflyer",
                   "--events-per-day", "50000", "--integration", "sdk", "--platforms", "ios,android",
                   "--send-test-event")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"customer {company}" in out and f"ingest URL: {server.url}" in out
    assert len(re.findall(r"sdk key:    sdk_\S+", out)) == 2 and len(re.findall(r"secret key: sec_\S+", out)) == 2
    assert "--- sdk ios ---" in out and "--- sdk android ---" in out and "--- s2s" not in out
    assert "--- test event ---\ncurl -sS -X POST" in out
    assert "click-window 7d" in out
    assert "customer status: live" in out
    seconds = float(re.search(r"onboarding time: ([\d.]+) s", out).group(1))
    assert 0 <= seconds < 60
    listed = {c["company"]: c for c in api.get("/v1/customers").json()["customers"]}
    assert listed[company]["status"] == "live"
    assert abs(listed[company]["onboarding_seconds"] - seconds) < 0.01


def test_the_kit_curl_sends_a_test_event(tracker, api):
    company = f"Curl Check {uuid.uuid4().hex[:6]}"
    r = run_script(tracker.url, "--company", company, "--vertical", "fintech", "--provider", "branch",
                   "--events-per-day", "75000", "--integration", "hybrid", "--platforms", "android", "--json")
    assert r.returncode == 0, r.stderr
    import json

    kit = json.loads(r.stdout.strip().splitlines()[-1])["kit"]
    assert set(kit["snippets"]) == {"sdk_android", "s2s_android"}
    sent = subprocess.run(["bash", "-c", kit["test_event"]["curl"]], capture_output=True, text=True, timeout=30)
    assert sent.returncode == 0 and json.loads(sent.stdout)["accepted"] == 1, sent.stdout + sent.stderr
    got = api.get(f"/v1/customers/{kit['customer_id']}").json()
    assert got["status"] == "live" and got["onboarding_seconds"] is not None


def test_bad_flags_give_one_line_and_status_2(tracker, capsys, monkeypatch):
    base = ["--company", "X Bad Flags", "--vertical", "gaming", "--provider", "appsflyer", "--events-per-day", "5",
            "--integration", "sdk", "--platforms", "ios"]
    # through the script: argparse's complaint and the tracker's refusal, one line each
    r = run_script(tracker.url, *base[:2])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "the following arguments are required: --vertical" in r.stderr
    r = run_script(tracker.url, *base, token="wrong-token-1234567890")
    assert r.returncode == 2 and "401" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # the rest in process (the script execs exactly this command)
    from unmo.cli import main

    monkeypatch.setenv("UNMO_TRACKER_URL", tracker.url)
    monkeypatch.setenv("UNMO_ADMIN_TOKEN", ADMIN_TOKEN)
    cases = [
        ([*base[:3], "games", *base[4:]], "argument --vertical: invalid choice: 'games'"),
        ([*base[:-1], "ios,web"], "platforms: expected ios or android, got 'web'"),
        ([*base[:7], "many", *base[8:]], "argument --events-per-day: invalid int value: 'many'"),
        ([*base[:7], "-5", *base[8:]], "--events-per-day: expected 0 or more, got -5"),
        ([*base, "--colour", "red"], "unrecognized arguments: --colour red"),
        ([*base, "--tracker-url", "tracker.local"], "UNMO_TRACKER_URL: expected an http:// or https:// URL"),
    ]
    for args, message in cases:
        assert main(["tracker", "onboard", *args]) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert main(["tracker", "onboard", *base, "--tracker-url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    with tracker.client() as api:
        assert not [c for c in api.get("/v1/customers").json()["customers"] if c["company"] == "X Bad Flags"]
