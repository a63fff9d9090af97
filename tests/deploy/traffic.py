"""Bounded click/install traffic whose correct attribution is known, and a retrying client.

Every device falls in one case of the waterfall (attribution.md), so each install's
right answer is written down before anything is sent:

* 0 organic: no touch at all;
* 1 device click, then a reinstall ten minutes later (keeps the original attribution);
* 2 two device clicks: the latest wins;
* 3 click injection (CTIT 5 s < 10 s, rejected) and an impression: the impression wins and
  the result lists the rejected click;
* 4 a click without device ids, named by the install's Google Play referrer.

A worker sends rounds in order and waits for each answer: round k carries the touches of
device group k+1, the installs of group k and the reinstalls of group k-1, so every touch
is acknowledged before its install is sent, whatever replica answers.  A request that gets
no answer (refused, reset, 502/503/504) is sent again unchanged, as an SDK does; the
database must store each record once and answer a retried install with its original result.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

HOUR = 3_600_000


@dataclass
class Expected:
    status: str
    touch_id: str | None
    match: str | None = None
    touch: str | None = None
    rejected: list[str] = field(default_factory=list)


@dataclass
class AppTraffic:
    """One app's rounds per worker, and what every install must come out as."""

    tag: str
    keys: list[str]                                      # worker w sends with keys[w % len(keys)]
    rounds: list[list[list[dict[str, Any]]]]             # [worker][round] -> records
    expected: dict[str, Expected]                        # install id -> expected result
    ids: set[str]                                        # every record id sent


def device_ids(tag: str, i: int) -> str:
    return f"{tag}-gaid-{i:05d}"


def build(tag: str, keys: list[str], devices: int, workers: int, group: int, t0: int) -> AppTraffic:
    touches: dict[int, list[dict[str, Any]]] = {}
    installs: dict[int, list[dict[str, Any]]] = {}
    later: dict[int, list[dict[str, Any]]] = {}
    expected: dict[str, Expected] = {}
    for i in range(devices):
        gaid = device_ids(tag, i)
        ts = t0 + i * 500
        dev = {"gaid": gaid, "platform": "android"}
        install: dict[str, Any] = {"type": "install", "id": f"{tag}-i-{i}", "ts": ts, "device": dict(dev)}
        t: list[dict[str, Any]] = []
        case = i % 5
        if case == 0:
            expected[install["id"]] = Expected("organic", None)
        elif case == 1:
            t.append(_click(f"{tag}-c-{i}", ts - 120_000, {"gaid": gaid.upper()}, "net-a", f"camp-{i % 7}"))
            expected[install["id"]] = Expected("attributed", f"{tag}-c-{i}", "device", "click")
            again = {"type": "install", "id": f"{tag}-r-{i}", "ts": ts + 600_000, "device": dict(dev)}
            later[i] = [again]
            expected[again["id"]] = Expected("reinstall", f"{tag}-c-{i}", "device", "click")
        elif case == 2:
            t.append(_click(f"{tag}-old-{i}", ts - 3 * HOUR, {"gaid": gaid}, "net-old", "camp-old"))
            t.append(_click(f"{tag}-new-{i}", ts - HOUR // 2, {"gaid": gaid}, "net-new", "camp-new"))
            expected[install["id"]] = Expected("attributed", f"{tag}-new-{i}", "device", "click")
        elif case == 3:
            t.append(_click(f"{tag}-inj-{i}", ts - 5_000, {"gaid": gaid}, "net-inj", "camp-inj"))
            t.append({"type": "impression", "id": f"{tag}-imp-{i}", "ts": ts - HOUR, "device": {"gaid": gaid},
                      "campaign": {"network": "net-view", "campaign": "camp-view"}})
            expected[install["id"]] = Expected("attributed", f"{tag}-imp-{i}", "device", "impression",
                                               [f"{tag}-inj-{i}"])
        else:
            t.append(_click(f"{tag}-ref-{i}", ts - 900_000, {}, "net-ref", "camp-ref"))
            install["referrer"] = f"utm_source=net-ref&click_id={tag}-ref-{i}"
            expected[install["id"]] = Expected("attributed", f"{tag}-ref-{i}", "referrer", "click")
        touches[i], installs[i] = t, [install]
    rounds: list[list[list[dict[str, Any]]]] = []
    for w in range(workers):
        mine = list(range(w, devices, workers))
        groups = [mine[g:g + group] for g in range(0, len(mine), group)]
        out = []
        for k in range(len(groups) + 2):
            batch: list[dict[str, Any]] = []
            if k < len(groups):
                batch += [r for i in groups[k] for r in touches[i]]
            if 0 <= k - 1 < len(groups):
                batch += [r for i in groups[k - 1] for r in installs[i]]
            if 0 <= k - 2 < len(groups):
                batch += [r for i in groups[k - 2] for r in later.get(i, [])]
            if batch:
                out.append(batch)
        rounds.append(out)
    ids = {r["id"] for w in rounds for b in w for r in b}
    return AppTraffic(tag, keys, rounds, expected, ids)


def _click(rid: str, ts: int, device: dict[str, str], network: str, campaign: str) -> dict[str, Any]:
    return {"type": "click", "id": rid, "ts": ts, "device": {**device, "ip": "203.0.113.7"},
            "campaign": {"network": network, "campaign": campaign, "site": "site-1"}}


@dataclass
class Ack:
    records: list[dict[str, Any]]
    body: dict[str, Any]
    attempts: int


@dataclass
class Progress:
    total: int
    done: int = 0
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fraction(self) -> float:
        with self.lock:
            return self.done / self.total


def send_until_acked(client: httpx.Client, key: str, records: list[dict[str, Any]], progress: Progress,
                     rng: random.Random, deadline_s: float = 90.0) -> Ack | None:
    """POST the same body until it is answered 200; None (and a failure noted) past the deadline."""
    body = {"batch": records}
    headers = {"Authorization": f"Bearer {key}"}
    end = time.monotonic() + deadline_s
    attempts = 0
    last = ""
    while time.monotonic() < end:
        attempts += 1
        try:
            r = client.post("/v1/batch", json=body, headers=headers)
        except httpx.HTTPError as exc:  # refused, reset, timed out: no answer, so send it again
            last = exc.__class__.__name__
        else:
            if r.status_code == 200:
                with progress.lock:
                    progress.retries += attempts - 1
                return Ack(records, r.json(), attempts)
            if r.status_code not in (429, 502, 503, 504):
                with progress.lock:
                    progress.failures.append(f"HTTP {r.status_code}: {r.text[:200]}")
                return None
            last = f"HTTP {r.status_code}"
        time.sleep(0.05 + 0.15 * rng.random())
    with progress.lock:
        progress.failures.append(f"no answer after {attempts} tries ({last})")
    return None


def run_worker(url: str, app: AppTraffic, w: int, progress: Progress, acks: list[Ack], pause_s: float,
               seed: int, gate: tuple[float, threading.Event] | None = None) -> None:
    """Send worker w's rounds in order.  With ``gate=(share, event)`` the worker waits for the
    event before sending past that share of its rounds, so that what the test does at that
    event (a kill) happens while traffic is still flowing, however fast the machine is."""
    rng = random.Random(seed)
    key = app.keys[w % len(app.keys)]
    rounds = app.rounds[w]
    with httpx.Client(base_url=url, timeout=httpx.Timeout(20.0, connect=2.0)) as client:
        for k, batch in enumerate(rounds):
            if gate is not None and k >= gate[0] * len(rounds):
                gate[1].wait(120)
            ack = send_until_acked(client, key, batch, progress, rng)
            if ack is None:
                return
            acks.append(ack)
            with progress.lock:
                progress.done += 1
            time.sleep(pause_s)
