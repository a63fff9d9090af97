"""``unmo simulate`` against a real server: every pilot profile at 100 % agreement, and a wrong app caught.

Scales are chosen so that the three pilots together run in well under a minute on
the CI machine; the seeds are fixed so that each run has the rules it is meant
to exercise (asserted below), while identities are fresh every run.
"""

from __future__ import annotations

import json
import time

import pytest

from unmo.apps import WINDOWS, set_app
from unmo.cli import main
from unmo.sim.profile import load_profile

PILOTS = [
    # profile, days, scale, seed, rules the run must contain (all eight rules across the three)
    (
        "techstart",
        2,
        0.03,
        17,
        {
            "referrer",
            "device_click",
            "probabilistic_click",
            "device_impression",
            "ctit_anomaly",
            "reinstall",
            "reattribution",
            "organic",
        },
    ),
    (
        "ecomgrowth",
        3,
        0.03,
        12,
        {"referrer", "device_click", "probabilistic_click", "reinstall", "reattribution", "organic"},
    ),
    (
        "financetrack",
        2,
        0.04,
        16,
        {
            "referrer",
            "device_click",
            "probabilistic_click",
            "device_impression",
            "ctit_anomaly",
            "ip_blocklist",
            "reinstall",
            "reattribution",
            "organic",
        },
    ),
]


def configure(database, app, profile_name, **override):
    """Give the app the settings the profile's truth assumes (what `unmo apps set` does)."""
    p = load_profile(profile_name)
    s = p.settings()
    changes = {column: getattr(s, column) for column, *_ in WINDOWS.values()}
    changes["ip_blocklist"] = list(s.ip_blocklist)
    changes.update(override)
    database.call(lambda conn: set_app(conn, app["name"], changes))


def simulate(capsys, server, app, *argv):
    code = main(["simulate", "--url", server.url, "--key", app["secret_key"], "--json", *argv])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


@pytest.mark.parametrize(("name", "days", "scale", "seed", "rules"), PILOTS, ids=[p[0] for p in PILOTS])
def test_pilot_profile_agrees_with_the_truth(database, server, app, capsys, name, days, scale, seed, rules):
    configure(database, app, name)
    code, out = simulate(
        capsys,
        server,
        app,
        "--profile",
        name,
        "--days",
        str(days),
        "--scale",
        str(scale),
        "--seed",
        str(seed),
    )
    assert out["mismatches"] == [] and out["error_samples"] == []
    assert (code, out["agreement"], out["exact_agreement"], out["errors"], out["ambiguous"]) == (
        0,
        1.0,
        1.0,
        0,
        0,
    )
    assert rules <= set(out["by_rule"]), out["by_rule"]
    assert all(r["agreement"] == 1.0 for r in out["by_rule"].values())
    assert out["installs"] == sum(r["installs"] for r in out["by_rule"].values()) >= 80
    assert out["verified_get"] == min(200, out["installs"])
    # every accepted record is in the database: what was sent, minus nothing
    stored = database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", app["app_id"])
    assert stored == out["records_sent"]


def test_an_app_whose_settings_differ_from_the_profile_is_caught(database, server, app, capsys):
    # the profile expects probabilistic matching; this app has it off: those installs come back organic
    configure(database, app, "ecomgrowth", probabilistic_window_ms=0)
    code, out = simulate(
        capsys, server, app, "--profile", "ecomgrowth", "--days", "1", "--scale", "0.03", "--seed", "12"
    )
    assert code == 1
    assert out["by_rule"]["probabilistic_click"]["agreement"] == 0.0
    assert out["by_rule"]["referrer"]["agreement"] == 1.0
    assert out["agreement"] < 1.0
    wrong = out["mismatches"][0]
    assert (wrong["rule"], wrong["expected"]["match"], wrong["got"]["status"]) == (
        "probabilistic_click",
        "probabilistic",
        "organic",
    )


def test_the_sdk_key_cannot_read_results_back(database, server, app, capsys):
    configure(database, app, "ecomgrowth")
    code = main(
        [
            "simulate",
            "--url",
            server.url,
            "--key",
            app["sdk_key"],
            "--json",
            "--profile",
            "ecomgrowth",
            "--days",
            "0.2",
            "--scale",
            "0.02",
            "--seed",
            "3",
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1
    assert any("needs the app's secret key" in e for e in out["error_samples"])


def test_paced_speed_sends_history_at_its_scaled_time(database, server, app, capsys):
    # 0.03 days (43 minutes) of history at 600x: about 4 seconds, in waves of 10 simulated minutes
    configure(database, app, "ecomgrowth")
    t0 = time.monotonic()
    code, out = simulate(
        capsys,
        server,
        app,
        "--profile",
        "ecomgrowth",
        "--days",
        "0.03",
        "--scale",
        "0.5",
        "--speed",
        "600x",
        "--seed",
        "5",
    )
    elapsed = time.monotonic() - t0
    assert (code, out["agreement"], out["errors"]) == (0, 1.0, 0)
    assert out["installs"] > 5
    assert 0.03 * 86400 / 600 - 1 <= elapsed < 60
