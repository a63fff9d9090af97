"""Replicas behind a real nginx on loopback, configured by deploy/nginx/unmo.conf, while
replicas are killed with SIGKILL and restarted (docs/deploy.md, "Load balancer").

Several `unmo serve` processes on one database decide exactly as one (the database is the
arbiter), so killing one must lose nothing that was acknowledged, store nothing twice, and
change no attribution, whichever replica answers the retries.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.deploy.lb import Nginx, nginx_binary
from tests.deploy.traffic import Ack, AppTraffic, Progress, build, device_ids, run_worker
from tests.support import ROOT, ServerProcess, TestDatabase, now_ms

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs it)")


class Cluster:
    """Two replicas and the balancer; replicas can be killed and brought back on their port."""

    def __init__(self, database: TestDatabase) -> None:
        self.database = database
        self.replicas = [ServerProcess(database.url).start(), ServerProcess(database.url).start()]
        self.lb = Nginx([f"127.0.0.1:{r.port}" for r in self.replicas]).start()

    def served(self, i: int) -> float:
        """Records replica i has decided on since it started (its /metrics)."""
        try:
            text = httpx.get(self.replicas[i].url + "/metrics", timeout=5).text
        except httpx.HTTPError:
            return 0.0
        return sum(float(v) for v in re.findall(r"^unmo_records_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))

    def kill(self, i: int) -> None:
        self.replicas[i].signal(signal.SIGKILL)
        self.replicas[i].wait(10)

    def restart(self, i: int) -> None:
        time.sleep(0.5)  # traffic meanwhile goes to the other replica
        self.replicas[i] = ServerProcess(self.database.url, port=self.replicas[i].port).start(timeout=60)

    def kill_and_restart(self, i: int) -> None:
        self.kill(i)
        self.restart(i)

    def stop(self) -> None:
        self.lb.stop()
        for r in self.replicas:
            r.stop()


@pytest.fixture(scope="module")
def cluster(database: TestDatabase) -> Iterator[Cluster]:
    c = Cluster(database)
    try:
        yield c
    finally:
        c.stop()


def test_nginx_accepts_the_shipped_config() -> None:
    r = Nginx(["127.0.0.1:9", "127.0.0.1:10"]).check()
    assert r.returncode == 0, r.stderr


def test_balancer_without_replicas_answers_503_with_retry_after() -> None:
    with Nginx(["127.0.0.1:9", "127.0.0.1:11"]) as lb:  # nothing listens there
        r = httpx.post(lb.url + "/v1/batch", json={"batch": []}, headers={"Authorization": "Bearer sdk_x"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "retry" in r.json()["error"]


def test_balancer_answers_with_unmo_json_and_hides_metrics(cluster: Cluster, database: TestDatabase) -> None:
    app = database.create_app()
    lb = cluster.lb.url
    assert httpx.get(lb + "/readyz", timeout=5).json()["status"] == "ready"
    assert httpx.get(lb + "/metrics", timeout=5).status_code == 404
    # unmo's own error answers pass through unchanged
    r = httpx.post(lb + "/v1/batch", content=b"{not json", headers={"Authorization": f"Bearer {app['sdk_key']}",
                                                                     "Content-Type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    assert httpx.post(lb + "/v1/batch", json={"batch": []}).status_code == 401
    # beyond the balancer's own body limit: a JSON 413 naming the limit, like unmo's
    big = b'{"batch": [' + b" " * (7 * 1024 * 1024) + b"]}"
    r = httpx.post(lb + "/v1/batch", content=big, headers={"Authorization": f"Bearer {app['sdk_key']}",
                                                           "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["limit"] == "body_bytes"


def test_own_traffic_survives_replica_kills(cluster: Cluster, database: TestDatabase) -> None:
    rng = random.Random(int(os.environ.get("UNMO_TEST_SEED", "1")))
    t0 = now_ms() - 6 * 3_600_000
    apps: list[tuple[dict[str, Any], AppTraffic]] = []
    for tag in ("ka", "kb"):
        a = database.create_app()
        # both keys of the app: their headers hash to different replicas more often than not,
        # so one app is decided by both replicas at once (catch-up), not only after a failover
        apps.append((a, build(tag, [a["sdk_key"], a["secret_key"]], devices=600, workers=3, group=10, t0=t0)))
    jobs = [(app, w) for _a, app in apps for w in range(3)]
    progress = Progress(total=sum(len(app.rounds[w]) for app, w in jobs))
    acks: list[Ack] = []
    # no worker goes past 85 % of its rounds before the second kill: both kills hit traffic
    second_kill = threading.Event()
    threads = [threading.Thread(target=run_worker, args=(cluster.lb.url, app, w, progress, acks, 0.1,
                                                         rng.randrange(1 << 30), (0.85, second_kill)),
                                daemon=True)
               for app, w in jobs]
    for t in threads:
        t.start()
    kills: list[float] = []
    # kill the busier replica at 25 % of the rounds, then the other one at 60 %
    first = max((0, 1), key=cluster.served)
    try:
        for at, victim in ((0.25, first), (0.60, 1 - first)):
            deadline = time.monotonic() + 90
            while progress.fraction() < at and time.monotonic() < deadline and any(t.is_alive() for t in threads):
                time.sleep(0.02)
            kills.append(progress.fraction())
            cluster.kill(victim)
            if len(kills) == 2:
                second_kill.set()
            cluster.restart(victim)
    finally:
        second_kill.set()
    for t in threads:
        t.join(120)
    assert not progress.failures, progress.failures[:5]
    assert progress.done == progress.total
    assert all(0 < k < 1 for k in kills), f"a kill happened outside the traffic: {kills}"

    for a, app in apps:
        rows = database.fetch("SELECT record_id, count(*) AS n FROM unmo.records WHERE app_id = $1 "
                              "GROUP BY record_id", a["app_id"])
        stored = {r["record_id"]: r["n"] for r in rows}
        assert set(stored) == app.ids, "every acknowledged record is stored, and nothing else"
        assert max(stored.values()) == 1, "a record was stored twice"
        installs = {r["record_id"]: r for r in database.fetch(
            "SELECT record_id, status, touch_id, match, touch, rejected FROM unmo.installs WHERE app_id = $1",
            a["app_id"])}
        assert set(installs) == set(app.expected)
        for iid, e in app.expected.items():
            row = installs[iid]
            rejected = [x["touch_id"] for x in (json.loads(row["rejected"]) if isinstance(row["rejected"], str)
                                                 else row["rejected"])]
            assert (row["status"], row["touch_id"], row["match"], row["touch"], rejected) == \
                (e.status, e.touch_id, e.match, e.touch, e.rejected), iid
    # what the clients were told: every install's answer is the right one, first try or retry
    answered = {i["id"]: i for ack in acks for i in ack.body["installs"]}
    for _a, app in apps:
        for iid, e in app.expected.items():
            got = answered[iid]
            assert (got["status"], got["touch_id"], [x["touch_id"] for x in got["rejected"]]) == \
                (e.status, e.touch_id, e.rejected), iid
    sent = sum(len(ack.records) for ack in acks)
    assert sum(ack.body["accepted"] + ack.body["duplicates"] for ack in acks) == sent
    assert sum(ack.body["accepted"] for ack in acks) <= sent

    # an SDK that never saw its answer sends the batch again: all duplicates, original results
    a, app = apps[0]
    ack = next(k for k in acks if k.body["installs"] and k.records[0]["id"].startswith(app.tag))
    key = a["sdk_key"]
    again = httpx.post(cluster.lb.url + "/v1/batch", json={"batch": ack.records},
                       headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == len(ack.records)
    assert [(i["id"], i["touch_id"], i["status"]) for i in again.json()["installs"]] == \
        [(i["id"], i["touch_id"], i["status"]) for i in ack.body["installs"]]

    # nothing secret in the balancer's access log: no key, no device id (HTTP Basic and a
    # device lookup in the query string included)
    r = httpx.get(cluster.lb.url + "/v1/attribution", params={"device": device_ids("ka", 1)},
                  auth=(a["secret_key"], ""), timeout=10)
    assert r.status_code == 200 and r.json()["touch_id"] == "ka-c-1"
    time.sleep(0.2)
    log = cluster.lb.access_log.read_text()
    assert '"path":"/v1/attribution"' in log
    for secret in (a["sdk_key"], a["secret_key"], device_ids("ka", 1), device_ids("ka", 1).upper()):
        assert secret not in log
    upstreams = [json.loads(line)["upstream"] for line in log.splitlines() if '"path":"/v1/batch"' in line]
    assert len({u.split(",")[0] for u in upstreams}) >= 2, "both replicas served batches"
    # the kills hit traffic: nginx sent some requests on to the other replica
    assert any("," in u for u in upstreams) or progress.retries > 0


def test_simulator_through_the_balancer_survives_a_replica_kill(cluster: Cluster, database: TestDatabase) -> None:
    """`unmo simulate` drives a day of TechStart's traffic through nginx; the replica serving
    it is killed mid-run and restarted; the simulator must still agree with its ground truth."""
    app = database.create_app()
    seed = int(os.environ.get("UNMO_TEST_SEED", "1")) % 1000
    before = [cluster.served(0), cluster.served(1)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "unmo", "simulate", "--profile", "techstart", "--days", "1", "--scale", "0.2",
         "--seed", str(seed), "--url", cluster.lb.url, "--key", app["secret_key"], "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        # wait until one replica has taken a good part of the run, then kill that one
        deadline = time.monotonic() + 60
        victim = None
        while time.monotonic() < deadline and proc.poll() is None:
            gained = [cluster.served(i) - before[i] for i in (0, 1)]
            if max(gained) >= 1500:
                victim = gained.index(max(gained))
                break
            time.sleep(0.05)
        assert victim is not None, "the simulator's traffic never reached a replica"
        assert proc.poll() is None, "the simulation ended before the kill"
        cluster.kill_and_restart(victim)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0, (result.get("mismatches"), result.get("error_samples"), err[-2000:])
    assert result["agreement"] == 1.0 and result["errors"] == 0
    assert result["installs"] > 100
    rows = database.fetch("SELECT record_id, count(*) AS n FROM unmo.records WHERE app_id = $1 GROUP BY record_id",
                          app["app_id"])
    assert max(r["n"] for r in rows) == 1, "a record was stored twice"
    # records_sent counts the profile's deliberate late re-sends again; the distinct ids of the
    # same seed's plan are what must be stored
    assert len(rows) == _simulated_distinct_ids(seed), "every record the simulator had acknowledged is stored"


def _simulated_distinct_ids(seed: int) -> int:
    """Distinct record ids of `unmo simulate --profile techstart --days 1 --scale 0.2 --seed SEED`
    (the plan is a function of the seed; only the ids' salt changes between runs)."""
    from unmo.sim.cli import profiles_from
    from unmo.sim.simulate import Simulation

    sim = Simulation(profiles_from(["techstart"])[0], url="http://127.0.0.1:9", key="sec_unused", days=1.0,
                     scale=0.2, speed=0.0, seed=seed)
    _traffic, plan, _expected = sim.build()
    return len({r.wire["id"] for wave in plan for phase in wave.lanes for batches in phase.values()
                for b in batches for r in b.recs})
