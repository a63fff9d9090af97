"""Two writers on one app (two `--workers`, two replicas): the one that is behind replays the other's
commits before its flush's transaction, not under the app's lock, so the other goes on meanwhile; and
what it replayed, and what was committed while it did, still decides its batch."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from unmo.config import Limits
from unmo.ingest import writer as writer_module
from unmo.ingest.batch import Batch, decode_body
from unmo.ingest.writer import Outcome, Submission, Writer
from unmo.kernel import AppKernel


def _body(ids: list[str], now: int) -> bytes:
    return json.dumps({"batch": [{"type": "event", "id": i, "ts": now - 1000, "name": "open_screen",
                                  "device": {"gaid": f"{n:08x}-0000-4000-8000-000000000001"}}
                                 for n, i in enumerate(ids)]}).encode()


async def _flush(writer: Writer, app_id: int, ids: list[str], body: bytes | None = None) -> Outcome:
    now = int(time.time() * 1000)
    batch = decode_body(body or _body(ids, now), msgpack=False, received_ms=now, limits=Limits()).batch
    sub = Submission(app_id, batch, now, asyncio.get_running_loop().create_future())
    await writer.flush([sub])
    return sub.future.result()


class _Probing(Writer):
    """A writer that runs ``probe`` (once) when it starts replaying another process's commits."""

    probe: Callable[[], Awaitable[Any]] | None = None
    probe_done_at: float | None = None

    async def catch_up(self, conn: asyncpg.Connection, state: AppKernel, app_id: int, seq_db: int) -> None:
        if self.probe is not None:
            probe, self.probe = self.probe, None
            await asyncio.wait_for(probe(), timeout=10)
            self.probe_done_at = time.monotonic()
        await super().catch_up(conn, state, app_id, seq_db)


def test_a_writer_behind_catches_up_without_holding_the_app(database: Any, app: dict[str, Any]) -> None:
    app_id = int(app["app_id"])

    async def scenario() -> tuple[Outcome, float | None, Outcome]:
        pools = [await asyncpg.create_pool(database.url, min_size=1, max_size=2) for _ in range(2)]
        try:
            a, b = Writer(pools[0], Limits()), _Probing(pools[1], Limits())
            assert (await _flush(a, app_id, ["a-0"])).accepted == 1
            assert (await _flush(b, app_id, ["b-0"])).accepted == 1      # b holds a state now
            for n in range(1, 6):                                        # b falls 5 commits behind
                assert (await _flush(a, app_id, [f"a-{n}-{i}" for i in range(200)])).accepted == 200
            probe: dict[str, Outcome] = {}

            async def a_flushes_meanwhile() -> None:
                probe["a"] = await _flush(a, app_id, ["late-1", "late-2"])

            b.probe = a_flushes_meanwhile
            out_b = await _flush(b, app_id, ["late-1", "a-3-7", "b-1", "a-0"])
            return out_b, b.probe_done_at, probe["a"]
        finally:
            for p in pools:
                await p.close()

    out_b, probed, out_a = asyncio.run(scenario())
    # a's flush went through while b was replaying (under the lock, it would have waited for b: timeout)
    assert probed is not None and out_a.accepted == 2
    # b's batch was decided on everything committed before its transaction: a's five commits and the
    # one a made during the replay
    assert out_b.accepted == 1 and out_b.duplicates == 3
    assert out_b.by_kind["event"] == {"accepted": 1, "duplicate": 3}


def _touches_and_installs(tag: str, devices: int, now: int) -> tuple[bytes, bytes]:
    """Clicks (one per device, campaign by device) and, apart, the installs of the same devices."""
    clicks = [{"type": "click", "id": f"{tag}-c{d}", "ts": now - 600_000, "device": {"gaid": f"{tag}-g{d}"},
               "campaign": {"network": "meta", "campaign": f"c{d % 7}"}} for d in range(devices)]
    installs = [{"type": "install", "id": f"{tag}-i{d}", "ts": now - 60_000, "device": {"gaid": f"{tag}-g{d}"}}
                for d in range(devices)]
    return json.dumps({"batch": clicks}).encode(), json.dumps({"batch": installs}).encode()


@pytest.mark.parametrize("chunk", [37, writer_module.REPLAY_CHUNK])
def test_a_replay_in_chunks_decides_as_one(database: Any, app: dict[str, Any], monkeypatch: Any,
                                           chunk: int) -> None:
    """A writer that warms up, then catches up, through chunks of 37 rows (commits cut anywhere) attributes
    the other writer's clicks and knows its record ids, as with one chunk."""
    monkeypatch.setattr(writer_module, "REPLAY_CHUNK", chunk)
    app_id = int(app["app_id"])

    async def scenario() -> list[Outcome]:
        pools = [await asyncpg.create_pool(database.url, min_size=1, max_size=2) for _ in range(2)]
        try:
            a, b = Writer(pools[0], Limits()), Writer(pools[1], Limits())
            now = int(time.time() * 1000)
            first_clicks, first_installs = _touches_and_installs("w", 150, now)
            later_clicks, later_installs = _touches_and_installs("u", 120, now)
            for n in range(3):                                             # a: 3 commits of events, then clicks
                assert (await _flush(a, app_id, [f"e{n}-{i}" for i in range(50)])).accepted == 50
            assert (await _flush(a, app_id, [], first_clicks)).accepted == 150
            warmed = await _flush(b, app_id, [], first_installs)           # b warms up: 300 rows
            assert (await _flush(a, app_id, [], later_clicks)).accepted == 120
            caught = await _flush(b, app_id, [], later_installs)           # b catches up: 120 rows
            dups = await _flush(b, app_id, ["e0-1", "e2-49", "w-c3", "u-c119", "new"])
            return [warmed, caught, dups]
        finally:
            for p in pools:
                await p.close()

    warmed, caught, dups = asyncio.run(scenario())
    for out, devices, tag in ((warmed, 150, "w"), (caught, 120, "u")):
        assert out.accepted == devices
        assert [i["status"] for i in out.installs] == ["attributed"] * devices
        assert sorted(i["touch_id"] for i in out.installs) == sorted(f"{tag}-c{d}" for d in range(devices))
    assert dups.accepted == 1 and dups.duplicates == 4


def test_a_device_older_than_the_window_is_found_by_its_identifier(database: Any, app: dict[str, Any]) -> None:
    """An install older than the re-attribution window (and the grace) is not in a warmed state: a later
    event of its device finds it in the database by identifier (the GIN index on installs.device_hashes,
    probed an identifier at a time) and inherits its campaign; a device never installed stays
    unattributed; the same device's newer install in another app is not seen."""
    app_id = int(app["app_id"])
    other_id = int(database.create_app()["app_id"])
    now = int(time.time() * 1000)
    old = now - 120 * 86_400_000
    device = {"gaid": "0a0a0a0a-0000-4000-8000-00000000beef"}
    history = json.dumps({"batch": [
        {"type": "click", "id": "old-c", "ts": old - 60_000, "device": device,
         "campaign": {"network": "meta", "campaign": "spring"}},
        {"type": "install", "id": "old-i", "ts": old, "device": device}]}).encode()
    other_history = json.dumps({"batch": [
        {"type": "click", "id": "other-c", "ts": old + 60_000, "device": device,
         "campaign": {"network": "google", "campaign": "autumn"}},
        {"type": "install", "id": "other-i", "ts": old + 120_000, "device": device}]}).encode()
    later = json.dumps({"batch": [
        {"type": "event", "id": "ev-1", "ts": now - 1000, "name": "buy", "device": device},
        {"type": "event", "id": "ev-2", "ts": now - 1000, "name": "buy", "device": {"gaid": "never-installed"}}],
    }).encode()

    async def scenario() -> list[Any]:
        pool = await asyncpg.create_pool(database.url, min_size=1, max_size=2)
        try:
            first = await _flush(Writer(pool, Limits()), app_id, [], history)
            assert first.installs[0]["status"] == "attributed"
            elsewhere = await _flush(Writer(pool, Limits()), other_id, [], other_history)
            assert elsewhere.installs[0]["status"] == "attributed"
            fresh = Writer(pool, Limits())             # warms up without the 120-day-old install
            out = await _flush(fresh, app_id, [], later)
            assert out.accepted == 2
            async with pool.acquire() as conn:
                return await conn.fetch("SELECT record_id, outcome, network, campaign FROM unmo.records "
                                        "WHERE app_id = $1 AND kind = 5 ORDER BY record_id", app_id)
        finally:
            await pool.close()

    rows = asyncio.run(scenario())
    assert [(r["record_id"], r["outcome"], r["network"], r["campaign"]) for r in rows] == [
        ("ev-1", 1, "meta", "spring"), ("ev-2", 5, None, None)]


def test_a_writer_new_to_an_app_makes_the_other_stop_deciding_it_ahead(database: Any, app: dict[str, Any]) -> None:
    """Before a writer writes an app it has not been the only writer of lately (warmed at start, behind, or
    new to it), it announces it (NOTIFY on WRITERS_CHANNEL): a
    writer that has been writing the app alone hears it and decides the app under its lock for CONTENDED_S, so
    no flush of its decided ahead finds the newcomer's first commit and throws its whole state away.  A
    writer does not take its own announcement for another's."""
    app_id = int(app["app_id"])

    async def scenario() -> tuple[bool, bool, bool, bool]:
        pools = [await asyncpg.create_pool(database.url, min_size=1, max_size=2) for _ in range(2)]
        a = Writer(pools[0], Limits(), database_url=database.url)
        b = Writer(pools[1], Limits(), database_url=database.url)
        try:
            await a.start()
            for n in range(writer_module.EXCLUSIVE_FLUSHES + 1):          # a writes the app alone
                assert (await _flush(a, app_id, [f"a-{n}"])).accepted == 1
            ahead_before = a._can_decide_ahead([Submission(app_id, Batch(), 0, asyncio.Future())])
            await b.start()
            assert (await _flush(b, app_id, ["b-0"])).accepted == 1      # b's first flush of it: announced
            for _ in range(100):                                          # the notification is asynchronous
                if a._contended.get(app_id, 0.0) > time.monotonic():
                    break
                await asyncio.sleep(0.02)
            ahead_after = a._can_decide_ahead([Submission(app_id, Batch(), 0, asyncio.Future())])
            heard_own = b._contended.get(app_id, 0.0) > time.monotonic()
            # and a's next flush, under the lock, replays b's commit and stores its own
            out = await _flush(a, app_id, ["a-last"])
            return ahead_before, ahead_after, heard_own, out.accepted == 1
        finally:
            for w in (a, b):
                await w.close()
            for p in pools:
                await p.close()

    ahead_before, ahead_after, heard_own, stored = asyncio.run(scenario())
    assert ahead_before and not ahead_after
    assert not heard_own
    assert stored
