"""A real tracker process (``unmo tracker``) beside the session's real ingest server, and a real
webhook receiver (http.server in a thread) that can be told to fail."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import ROOT, ServerProcess, TestDatabase, free_port

ADMIN_TOKEN = "test-admin-token-" + uuid.uuid4().hex
WEBHOOK_SECRET = "whsec-" + uuid.uuid4().hex


class Receiver:
    """Records every POST; answers ``fail_next`` requests with 500 before it answers 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                    receiver.requests.append({"headers": dict(self.headers), "body": body, "failed": failing,
                                              "at": time.time()})
                self.send_response(500 if failing else 200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "ticketing is down"}' if failing else b'{"ticket": "T-1"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tickets"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def for_delivery(self, delivery_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["headers"].get("X-Unmo-Delivery") == delivery_id]


class TrackerProcess:
    """``unmo tracker`` as a real subprocess on a free loopback port."""

    def __init__(self, database_url: str, ingest_urls: list[str], webhook_url: str | None, *,
                 survey_delay: str = "1s", probe_interval: str = "300ms") -> None:
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "unmo", "tracker", "--port", str(self.port), "--database-url",
                     database_url, "--probe-interval", probe_interval, "--survey-delay", survey_delay,
                     "--webhook-retry", "200ms"]
        for u in ingest_urls:
            self.args += ["--ingest-url", u]
        self.env = {**os.environ, "UNMO_ADMIN_TOKEN": ADMIN_TOKEN}
        if webhook_url:
            self.env.update(UNMO_TRACKER_WEBHOOK_URL=webhook_url, UNMO_TRACKER_WEBHOOK_SECRET=WEBHOOK_SECRET)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ROOT / "test-artifacts" / f"tracker-{self.port}.log"

    def start(self, timeout: float = 30.0) -> TrackerProcess:
        self.log_path.parent.mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unmo tracker exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"unmo tracker not up after {timeout}s; log: {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture(scope="session")
def tracker(database: TestDatabase, server: ServerProcess, receiver: Receiver) -> Iterator[TrackerProcess]:
    proc = TrackerProcess(database.url, [server.url], receiver.url).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def api(tracker: TrackerProcess) -> Iterator[httpx.Client]:
    with tracker.client() as c:
        yield c


def new_customer(api: httpx.Client, **overrides: Any) -> dict[str, Any]:
    """Create a customer with a unique company name; returns {"customer", "kit"}."""
    body = {"company": f"Test Co {uuid.uuid4().hex[:8]}", "vertical": "gaming", "provider": "appsflyer",
            "events_per_day": 1000, "integration": "sdk", "platforms": ["ios"], **overrides}
    r = api.post("/v1/customers", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def wait_for(fn: Any, timeout: float = 15.0, every: float = 0.1) -> Any:
    """Poll ``fn`` until it returns something truthy (bounded in time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value {value!r}")
        time.sleep(every)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
