"""`unmo serve --workers N`: each app's batches are committed by one worker, its owner
(unmo.server.peers); a worker that cannot ask the owner stores the batch itself."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ServerProcess, now_ms, post_batch
from unmo.config import Limits
from unmo.errors import OverloadedError
from unmo.ingest.batch import decode_body
from unmo.ingest.writer import Writer
from unmo.server.peers import OwnerServer, Peers, PeerUnavailable, owner_of, socket_path


def _batch(ids: list[str], now: int) -> Any:
    body = json.dumps({"batch": [{"type": "event", "id": i, "ts": now - 1000, "name": "level_up",
                                  "device": {"gaid": f"{n:08x}-0000-4000-8000-00000000000a"}}
                                 for n, i in enumerate(ids)]}).encode()
    return decode_body(body, msgpack=False, received_ms=now, limits=Limits()).batch


def test_batches_handed_to_the_owner_come_back_with_their_own_answers(database: Any, app: dict[str, Any]) -> None:
    """Over one connection, many batches in flight at once: each request gets the answer to its own batch
    (answers are matched by request id, in whatever order the owner's flushes commit them); what the
    owner's writer raises reaches the worker that asked; a stopped owner is not asked."""
    app_id = int(app["app_id"])
    directory = tempfile.mkdtemp(prefix="unmo-peers-")

    async def scenario() -> None:
        pool = await asyncpg.create_pool(database.url, min_size=1, max_size=2)
        writer = Writer(pool, Limits())
        await writer.start()
        owner = OwnerServer(socket_path(directory, 1), writer.submit)
        await owner.start()
        peers = Peers(directory, 0, 2)
        try:
            now = now_ms()
            sizes = [1 + (7 * k) % 23 for k in range(40)]
            outs = await asyncio.wait_for(asyncio.gather(*(
                peers.submit(1, app_id, _batch([f"p-{k}-{i}" for i in range(n)], now), now)
                for k, n in enumerate(sizes))), timeout=60)
            assert [o.accepted for o in outs] == sizes
            assert all(o.duplicates == 0 and o.by_kind == {"event": {"accepted": o.accepted}} for o in outs)
            # again: stored once, so every record is a duplicate now
            again = await peers.submit(1, app_id, _batch([f"p-3-{i}" for i in range(sizes[3])], now), now)
            assert (again.accepted, again.duplicates) == (0, sizes[3])
            stored = await pool.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", app_id)
            assert stored == sum(sizes)

            await writer.close()  # the owner's writer refuses from now on: the asker gets the same error
            with pytest.raises(OverloadedError, match="shutting down") as refused:
                await peers.submit(1, app_id, _batch(["late"], now), now)
            assert refused.value.retry_after == 1.0

            await owner.stop()    # gone: the asker is told to store the batch itself
            assert not os.path.exists(socket_path(directory, 1))
            with pytest.raises(PeerUnavailable):
                await peers.submit(1, app_id, _batch(["later"], now), now)
        finally:
            await peers.close()
            await owner.stop()
            await pool.close()

    try:
        asyncio.run(scenario())
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_owner_of_spreads_apps_and_agrees_everywhere() -> None:
    owners = [owner_of(app_id, 4) for app_id in range(-2000, 2000, 7)]
    assert owners == [owner_of(app_id, 4) for app_id in range(-2000, 2000, 7)]
    counts = [owners.count(k) for k in range(4)]
    assert min(counts) > len(owners) / 4 * 0.8, counts


def _two_apps_with_different_owners(database: Any) -> list[dict[str, Any]]:
    apps: dict[int, dict[str, Any]] = {}
    while len(apps) < 2:
        a = database.create_app()
        apps.setdefault(owner_of(int(a["app_id"]), 2), a)
    return [apps[0], apps[1]]


def _records(tag: str, n: int, now: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        dev = {"gaid": f"{abs(hash((tag, i))) % 10**8:08d}-1111-4000-8000-000000000000"}
        out.append({"type": "click", "id": f"{tag}-c{i}", "ts": now - 60_000, "device": dev,
                    "campaign": {"network": "meta", "campaign": "spring"}})
        out.append({"type": "install", "id": f"{tag}-i{i}", "ts": now - 30_000, "device": dev})
    return out


def _send(url: str, jobs: list[tuple[str, list[dict[str, Any]]]]) -> list[httpx.Response]:
    # a connection per request, so that the kernel hands them to either worker
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda job: post_batch(url, job[0], job[1]), jobs))


def _metric(url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples with these labels (all of them when none are given)."""
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_each_app_is_written_by_its_owner_worker(database: Any) -> None:
    apps = _two_apps_with_different_owners(database)
    now = now_ms()
    jobs = [(a["sdk_key"], _records(f"w{k}-{j}", 10, now)) for j in range(30) for k, a in enumerate(apps)]
    with ServerProcess(database.url, workers=2) as srv:
        # ready means one worker answered /readyz; until the other listens too, batches for the apps it
        # owns are stored by the worker that got them (the next test), which this one is not about
        _wait_for_sockets(_worker_dir(srv))
        answers = _send(srv.url, jobs)
        assert [r.status_code for r in answers] == [200] * len(jobs), [r.text for r in answers if r.status_code != 200]
        for r in answers:  # the answers are the batches' own: ten clicks and ten attributed installs
            body = r.json()
            assert body["accepted"] == 20 and body["duplicates"] == 0
            assert len(body["installs"]) == 10 and {i["status"] for i in body["installs"]} == {"attributed"}
        # whichever worker got the connections, the app the other one owns was handed over
        sent = _metric(srv.url, "unmo_forwarded_batches_total", outcome="sent")
        assert sent > 0 and sent == _metric(srv.url, "unmo_forwarded_batches_total", outcome="received")
        assert _metric(srv.url, "unmo_forwarded_batches_total", outcome="stored_here") == 0
        # one writer per app: no worker replayed the other's commits
        assert _metric(srv.url, "unmo_catch_up_records_total") == 0
    for a in apps:
        rows = database.fetch("SELECT record_id, count(*) AS n FROM unmo.records WHERE app_id = $1 GROUP BY 1",
                              int(a["app_id"]))
        assert len(rows) == 30 * 20 and {r["n"] for r in rows} == {1}


def _worker_dir(srv: ServerProcess) -> Path:
    assert srv.proc is not None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == srv.proc.pid:
                argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
                return Path(argv[10].decode())   # python -m unmo.server.run fd host port pool queue index n DIR
        except (OSError, IndexError, ValueError):
            continue
    raise AssertionError("no worker of the server found")


def _wait_for_sockets(directory: Path, workers: int = 2) -> None:
    deadline = time.monotonic() + 30
    while len(list(directory.glob("worker-*.sock"))) < workers:  # every worker has started
        assert time.monotonic() < deadline, "worker sockets missing"
        time.sleep(0.1)


def test_a_worker_that_cannot_ask_the_owner_stores_the_batch_itself(database: Any) -> None:
    apps = _two_apps_with_different_owners(database)
    now = now_ms()
    with ServerProcess(database.url, workers=2) as srv:
        directory = _worker_dir(srv)
        _wait_for_sockets(directory)
        for sock in directory.glob("worker-*.sock"):
            sock.unlink()    # neither worker can reach the other now
        jobs = [(a["sdk_key"], _records(f"u{k}-{j}", 5, now)) for j in range(20) for k, a in enumerate(apps)]
        answers = _send(srv.url, jobs)
        assert [r.status_code for r in answers] == [200] * len(jobs)
        assert all(r.json()["accepted"] == 10 for r in answers)
        assert _metric(srv.url, "unmo_forwarded_batches_total", outcome="stored_here") > 0
        assert _metric(srv.url, "unmo_forwarded_batches_total", outcome="sent") == 0
    for a in apps:
        n = database.fetchval("SELECT count(*) FROM unmo.records WHERE app_id = $1", int(a["app_id"]))
        distinct = database.fetchval("SELECT count(DISTINCT record_id) FROM unmo.records WHERE app_id = $1",
                                     int(a["app_id"]))
        assert n == distinct == 20 * 10
