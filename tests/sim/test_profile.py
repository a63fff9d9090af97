"""Profiles: the pilots load, files are validated with errors that name the field and the value."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from unmo.cli import main
from unmo.errors import ValidationError
from unmo.sim.profile import BUILTIN, load_profile, parse_profile

MINIMAL = {
    "name": "mygame",
    "title": "My Game",
    "integration": "sdk",
    "events_per_day": 10000,
    "platforms": {"ios": 0.5, "android": 0.5},
    "organic_share": 0.4,
    "networks": [{"name": "meta", "share": 1.0, "campaigns": ["launch"]}],
}


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_profiles_load_and_their_volume_adds_up(name):
    p = load_profile(name)
    assert p.name == name
    assert p.installs_per_day() * p.records_per_install() == pytest.approx(p.events_per_day)
    assert p.installs_per_day(scale=0.5) == pytest.approx(p.installs_per_day() / 2)
    assert p.settings_command("X").startswith("unmo apps set X --click-window 7d")


def test_pilots_match_their_descriptions():
    by = {n: load_profile(n) for n in BUILTIN}
    assert (by["techstart"].integration, by["techstart"].events_per_day) == ("sdk", 50000)
    assert (by["ecomgrowth"].integration, by["ecomgrowth"].events_per_day) == ("s2s", 100000)
    assert (by["financetrack"].integration, by["financetrack"].events_per_day) == ("hybrid", 75000)
    assert set(by["techstart"].platforms) == {"ios", "android"}


def test_a_minimal_file_gets_the_defaults(tmp_path):
    path = tmp_path / "mygame.json"
    path.write_text(json.dumps(MINIMAL))
    p = load_profile(str(path))
    assert p.ctit.within_1h == 0.75 and p.app.min_ctit == "10s" and p.delivery.retry_share == 0.01


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"organic_shar": 0.3}, "profile t: organic_shar: unknown field (a typo?"),
        ({"ctit": {"within_2h": 0.8}}, "profile t: ctit.within_2h: unknown field"),
        ({"organic_share": 1.5}, "profile t: organic_share: expected float <= 1.0"),
        (
            {"platforms": {"ios": 0.5, "android": 0.6}},
            "platforms: expected shares of ios and android that add up to 1",
        ),
        ({"platforms": {"windows": 1.0}}, "platforms: expected ios or android as keys, got 'windows'"),
        (
            {"networks": [{"name": "a", "share": 0.5, "campaigns": ["c"]}]},
            "networks[].share: expected shares of paid",
        ),
        (
            {"networks": [{"name": "a", "share": 1.0, "campaigns": []}]},
            "networks[0].campaigns: expected array of length",
        ),
        ({"integration": "webhook"}, "integration: expected sdk, s2s or hybrid, got 'webhook'"),
        ({"app": {"min_ctit": "2h"}}, "app.min-ctit: expected 0 .. 1h, got '2h'"),
        ({"app": {"click_window": "soon"}}, "app.click-window: expected a duration like 10s"),
        ({"ctit": {"min": "5s"}}, "ctit.min: expected at least app.min_ctit + 10s (20s)"),
        (
            {"fraud": {"blocklisted_click_share": 0.1}},
            "fraud.blocklisted_click_share: expected app.ip_blocklist",
        ),
        (
            {"fraud": {"flooding_network": "meta"}},
            "fraud.flooding_network: expected a network that is not one",
        ),
    ],
)
def test_bad_profiles_name_the_field_and_value(change, message):
    with pytest.raises(ValidationError) as info:
        parse_profile(json.dumps({**MINIMAL, **change}), "profile t")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_not_json_and_missing_file():
    with pytest.raises(ValidationError, match="profile t: not valid JSON"):
        parse_profile("{", "profile t")
    with pytest.raises(ValidationError, match="profile: expected one of techstart, ecomgrowth, financetrack"):
        load_profile("techstrat")
    with pytest.raises(ValidationError, match=re.escape("cannot read '/nonexistent/p.json'")):
        load_profile("/nonexistent/p.json")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--profile", "techstrat"], "profile: expected one of techstart"),
        (
            ["simulate", "--profile", "techstart", "--speed", "fast"],
            "--speed: expected realtime, max or a factor",
        ),
        (
            ["simulate", "--profile", "techstart", "--days", "9"],
            "--days: expected at most 8.50 at --speed max",
        ),
        (
            ["simulate", "--profile", "techstart", "--days", "8", "--speed", "10x"],
            "--days: expected at most 7.73",
        ),
        (["simulate", "--profile", "techstart", "--scale", "0"], "--scale: expected more than 0"),
        (["simulate", "--profile", "techstart", "--days", "0.001"], "--days: expected at least 0.01"),
        (
            ["simulate", "--profile", "techstart", "--url", "localhost:8080"],
            "--url: expected http://HOST:PORT",
        ),
        (["soak", "--spike", "10x"], "--spike: expected FACTORx:DURATION like 10x:60s, got '10x'"),
        (["soak", "--spike", "0.5x:10s"], "--spike: expected a factor above 1"),
        (["soak", "--duration", "1s"], "--duration: expected 5s to 30d, got '1s'"),
        (
            ["soak", "--duration", "30s", "--spike", "10x:60s"],
            "--spike: a 60s spike needs a --duration of at least",
        ),
        (["soak", "--rate", "-5"], "--rate: expected 0 < events per second"),
        (["soak", "--sample", "1h", "--duration", "10m"], "--sample: expected 1s to half of --duration"),
        (["soak", "--profile", "nope"], "profile: expected one of techstart"),
    ],
)
def test_bad_flags_one_line_exit_2(argv, message, capsys):
    base = ["--url", "http://127.0.0.1:9", "--key", "sec_x"]
    if "--url" in argv:
        base = ["--key", "sec_x"]
    assert main([*argv, *base]) == 2
    out = capsys.readouterr()
    assert message in out.err
    assert out.err.count("\n") == 1 and out.out == ""


def test_the_installed_entry_point_says_the_same():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "unmo",
            "simulate",
            "--profile",
            "x.json",
            "--url",
            "http://h:1",
            "--key",
            "sec_x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == "unmo: profile: cannot read 'x.json' (No such file or directory)\n"
