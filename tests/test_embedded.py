"""The quick start: `unmo serve` with no database settings runs on an embedded PostgreSQL."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from tests.support import free_port, now_ms, post_batch


def test_serve_on_the_embedded_database_and_stop_it_on_exit(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("UNMO_DATABASE_URL",)}
    env["UNMO_HOME"] = str(tmp_path / "home")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "unmo", "serve", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        else:
            raise AssertionError("not ready: " + log.read_text())
        pgdata = tmp_path / "home" / "pgdata"
        assert (pgdata / "PG_VERSION").exists()
        # other commands find the same embedded database through UNMO_HOME
        r = subprocess.run([sys.executable, "-m", "unmo", "apps", "create", "Quick Start", "--json"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        key = json.loads(r.stdout)["sdk_key"]
        resp = post_batch(url, key, [{"type": "install", "id": "qs-1", "ts": now_ms(), "device": {"idfv": "q"}}])
        assert resp.status_code == 200 and resp.json()["accepted"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()
    assert not (pgdata / "postmaster.pid").exists(), "the embedded PostgreSQL should stop with the server"
