"""`unmo` commands as a user runs them: real subprocesses on the test database."""

import json
import os
import subprocess
import sys
import uuid

import pytest


def unmo(database, *args, env=None):
    return subprocess.run([sys.executable, "-m", "unmo", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "UNMO_DATABASE_URL": database.url, **(env or {})})


def test_apps_create_json_list_show_and_set(database):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    r = unmo(database, "apps", "create", name, "--platform", "android", "--json")
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert set(created) == {"app_id", "sdk_key", "secret_key"}
    assert created["sdk_key"].startswith("sdk_") and created["secret_key"].startswith("sec_")
    # only hashes are stored
    stored = database.fetch("SELECT key_hash, key_prefix FROM unmo.api_keys WHERE app_id = $1", created["app_id"])
    assert len(stored) == 2
    assert all(created["sdk_key"].encode() not in bytes(r["key_hash"]) for r in stored)

    r = unmo(database, "apps", "list")
    assert r.returncode == 0 and name in r.stdout
    r = unmo(database, "apps", "set", name, "--click-window", "3d", "--min-ctit", "0", "--probabilistic-window", "0",
             "--reattribution-window", "2y", "--ip-blocklist", "10.0.0.0/8, 192.0.2.7", "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(unmo(database, "apps", "show", name, "--json").stdout)
    assert shown["settings"] == {"click_window": "3d", "impression_window": "1d", "probabilistic_window": "0",
                                 "reattribution_window": "2y", "min_ctit": "0",
                                 "ip_blocklist": ["10.0.0.0/8", "192.0.2.7/32"]}
    assert [k["kind"] for k in shown["keys"]] == ["sdk", "secret"]
    assert created["sdk_key"] not in r.stdout + json.dumps(shown)


@pytest.mark.parametrize(("args", "message"), [
    (["apps", "set", "{name}", "--click-window", "31d"], "click-window: expected 1h .. 30d, got '31d'"),
    (["apps", "set", "{name}", "--impression-window", "30m"], "impression-window: expected 1h .. 7d, got '30m'"),
    (["apps", "set", "{name}", "--min-ctit", "2h"], "min-ctit: expected 0 .. 1h, got '2h'"),
    (["apps", "set", "{name}", "--reattribution-window", "soon"], "reattribution-window: expected a duration"),
    (["apps", "set", "{name}", "--ip-blocklist", "10.0.0.0/33"], "ip-blocklist: expected CIDRs like 10.0.0.0/8"),
    (["apps", "set", "{name}"], "nothing to change"),
    (["apps", "set", "no-such-app", "--min-ctit", "5s"], "app: no app named 'no-such-app'"),
    (["apps", "create", "{name}"], "name: an app named"),
    (["apps", "create", "bad/name"], "name: expected 1-64 letters"),
    (["apps", "create", "x", "--platform", "windows"], "invalid choice: 'windows'"),
    (["serve", "--port", "70000"], "--port: expected 0..65535, got 70000"),
    (["serve", "--workers", "zero"], "invalid int value: 'zero'"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(database, args, message):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert unmo(database, "apps", "create", name).returncode == 0
    before = database.fetch("SELECT * FROM unmo.apps WHERE name = $1", name)
    r = unmo(database, *[a.format(name=name) for a in args])
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, f"expected one line, got {r.stderr!r}"
    assert message in r.stderr
    assert database.fetch("SELECT * FROM unmo.apps WHERE name = $1", name) == before


def test_migrate_is_idempotent(database):
    r = unmo(database, "migrate")
    assert r.returncode == 0 and "schema is up to date" in r.stdout


def test_python_dash_m_and_help():
    r = subprocess.run([sys.executable, "-m", "unmo", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for command in ("serve", "migrate", "apps"):
        assert command in r.stdout
