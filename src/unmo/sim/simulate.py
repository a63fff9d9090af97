"""``unmo simulate``: send a profile's history through the API and compare every install with its truth.

The send plan makes the server's order of decisions known, so that the truth
can follow it exactly (attribution.md: "inside one batch, records are applied
in ts order; across batches in arrival order"):

* time is cut into waves (1 h of history at ``--speed max``, one second of
  wall time otherwise); a wave is sent only when the one before is fully
  acknowledged;
* inside a wave the networks' touches go first, then the SDK batches, then the
  server-to-server batches, each phase acknowledged before the next;
* inside a phase, batches run concurrently across lanes that cannot affect each
  other: a lane is one network (touches never affect each other: distinct
  timestamps), one device (SDK), or one server shard (a device always uses the
  same shard); the batches of a lane go one after the other.

Retries from the profile's ``delivery``: some batches are sent again right after
their answer (a lost answer), some again hours later; some devices are offline
for hours and send their held batches in order when they come back.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from unmo.sim.generate import HOUR, NETWORK, SDK, SERVER, Generator, Rec, Traffic
from unmo.sim.profile import Profile
from unmo.sim.send import Sender
from unmo.sim.truth import Expected, Truth, compare

PHASES = (NETWORK, SDK, SERVER)
SDK_BATCH_MAX = 100
VERIFY_SAMPLE = 200


@dataclass
class Batch:
    recs: list[Rec]
    channel: str
    skew_ms: int | None  # SDK batches carry sent_at on the device's clock
    resend: bool = False  # sent again right after its answer (the answer was "lost")
    late_copy: bool = False  # a batch sent again hours after the first time


@dataclass
class Wave:
    at_ms: int  # history time at the end of the wave (pacing)
    lanes: list[dict[str, list[Batch]]] = field(default_factory=lambda: [{}, {}, {}])

    @property
    def batches(self) -> int:
        return sum(len(b) for phase in self.lanes for b in phase.values())


def _split(recs: list[Rec], size: int) -> list[list[Rec]]:
    return [recs[i : i + size] for i in range(0, len(recs), size)]


def make_plan(traffic: Traffic, wave_ms: int, rng: random.Random) -> list[Wave]:
    """Waves of batches in the order the server must decide them."""
    p = traffic.profile
    d = p.delivery
    start = traffic.start_ms
    waves: dict[int, dict[tuple[str, str], list[Rec]]] = defaultdict(lambda: defaultdict(list))
    pre: dict[tuple[str, str], list[Rec]] = defaultdict(list)
    # devices offline for 1-12 hours: their SDK records wait and go out in order when they are back
    offline: dict[str, tuple[int, int]] = {}
    for r in sorted(traffic.records, key=lambda r: r.ts):
        if r.prehistory:
            pre[(r.channel, r.lane)].append(r)
            continue
        w = max(0, (r.ts - start) // wave_ms)
        if (
            r.channel == SDK
            and r.kind == "install"
            and r.lane not in offline
            and rng.random() < d.offline_share
        ):
            offline[r.lane] = (w, w + max(1, rng.randint(HOUR, 12 * HOUR) // wave_ms))
        span = offline.get(r.lane) if r.channel == SDK else None
        if span is not None and span[0] <= w < span[1]:
            w = span[1]
        waves[w][(r.channel, r.lane)].append(r)
    plan: list[Wave] = []
    late: dict[int, list[tuple[str, Batch]]] = defaultdict(list)

    def fill(wave: Wave, groups: dict[tuple[str, str], list[Rec]], index: int) -> None:
        for (channel, lane), recs in sorted(groups.items()):
            size = {NETWORK: d.network_batch_size, SDK: SDK_BATCH_MAX, SERVER: d.s2s_batch_size}[channel]
            skew = traffic.skew.get(recs[0].device, 0) if channel == SDK else None
            for chunk in _split(recs, size):
                b = Batch(chunk, channel, skew, resend=rng.random() < d.retry_share)
                wave.lanes[PHASES.index(channel)].setdefault(lane, []).append(b)
                if rng.random() < d.retry_share / 2:  # and once more, hours later
                    late[index + max(1, rng.randint(HOUR, 24 * HOUR) // wave_ms)].append((lane, b))

    if pre:
        w0 = Wave(start)
        fill(w0, pre, -1)
        plan.append(w0)
    last = max(waves) if waves else 0
    for i in range(last + 1):
        wave = Wave(start + (i + 1) * wave_ms)
        if i in waves:
            fill(wave, waves[i], i)
        for lane, b in late.pop(i, []):
            wave.lanes[PHASES.index(b.channel)].setdefault(lane, []).append(
                Batch(b.recs, b.channel, b.skew_ms, late_copy=True)
            )
        if wave.batches:
            plan.append(wave)
    return plan


def decide_truth(traffic: Traffic, plan: list[Wave]) -> dict[str, Expected]:
    """Apply the plan to the reference waterfall, in the server's order."""
    truth = Truth(traffic.settings)
    for wave in plan:
        for phase in wave.lanes:
            for batches in phase.values():
                for b in batches:
                    truth.apply_batch(b.recs)
                    if b.resend:
                        truth.apply_batch(b.recs)
    return truth.expected


@dataclass
class Outcome:
    """What a simulation found."""

    installs: int
    agreement: float
    exact: float
    by_rule: dict[str, dict[str, float]]
    by_scenario: dict[str, dict[str, float]]
    records_sent: int
    requests: int
    errors: int
    ambiguous: int
    verified_get: int
    mismatches: list[dict[str, Any]]
    error_samples: list[str]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "installs": self.installs,
            "agreement": self.agreement,
            "by_rule": self.by_rule,
            "records_sent": self.records_sent,
            "errors": self.errors,
            "exact_agreement": self.exact,
            "by_scenario": self.by_scenario,
            "requests": self.requests,
            "ambiguous": self.ambiguous,
            "verified_get": self.verified_get,
            "mismatches": self.mismatches[:20],
            "error_samples": self.error_samples[:10],
            "seconds": round(self.seconds, 2),
        }


class Simulation:
    def __init__(
        self,
        profile: Profile,
        *,
        url: str,
        key: str,
        days: float,
        scale: float,
        speed: float,
        seed: int,
        concurrency: int = 16,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.profile = profile
        self.url = url
        self.key = key
        self.days = days
        self.scale = scale
        self.speed = speed
        self.seed = seed
        self.concurrency = concurrency
        self.on_progress = on_progress
        self.salt = secrets.token_hex(4)  # fresh identities per run: reruns never meet each other's devices
        self.answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.records_sent = 0
        self.requests = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.done = 0

    def build(self) -> tuple[Traffic, list[Wave], dict[str, Expected]]:
        now = int(time.time() * 1000)
        gen = Generator(self.profile, seed=self.seed, salt=self.salt, scale=self.scale)
        if self.speed == 1.0:
            # real time is live traffic: the history starts now and each record goes out at its time
            traffic = gen.history(self.days, now + int(self.days * 24 * HOUR))
            wave_ms = 1000
        else:
            traffic = gen.history(self.days, now)
            wave_ms = HOUR if self.speed == 0 else max(1000, int(self.speed * 1000))
        plan = make_plan(traffic, wave_ms, random.Random(self.seed + 1))
        return traffic, plan, decide_truth(traffic, plan)

    async def _send(self, sender: Sender, b: Batch) -> None:
        for copy in range(2 if b.resend else 1):
            d = await sender.post([r.wire for r in b.recs], sent_at_skew_ms=b.skew_ms)
            self.requests += len(d.attempts)
            if copy == 0 and not b.late_copy:  # records_sent counts each record once
                self.records_sent += len(b.recs)
            if d.body is not None:
                for e in d.body.get("errors") or []:
                    self.errors += 1
                    self.error_samples.append(str(e.get("error")))
                for res in d.body.get("installs") or []:
                    self.answers[res["id"]].append(res)
            if not d.ok:
                self.errors += 1 if d.body is None else 0
                self.error_samples.append(d.error)
                return

    async def _lane(self, sender: Sender, sem: asyncio.Semaphore, batches: list[Batch], total: int) -> None:
        async with sem:
            for b in batches:
                await self._send(sender, b)
                self.done += 1
                if self.on_progress:
                    self.on_progress(self.done, total)

    async def run(self) -> Outcome:
        t0 = time.monotonic()
        _traffic, plan, expected = await asyncio.to_thread(self.build)
        total = sum(w.batches for w in plan)
        sem = asyncio.Semaphore(self.concurrency)
        wall0 = time.time() * 1000
        first_at = plan[0].at_ms if plan else 0
        verified = 0
        # a batch that never gets through would break the order the truth follows: retry for minutes
        async with Sender(
            self.url, self.key, concurrency=self.concurrency, seed=self.seed, max_attempts=60
        ) as sender:
            for wave in plan:
                if self.speed > 0:
                    due = wall0 + (wave.at_ms - first_at) / self.speed
                    delay = (due - time.time() * 1000) / 1000
                    if delay > 0:
                        await asyncio.sleep(delay)
                for phase in wave.lanes:
                    await asyncio.gather(
                        *(self._lane(sender, sem, batches, total) for batches in phase.values())
                    )
            verified, get_mismatch = await self._verify_get(sender, expected)
        return self._outcome(expected, get_mismatch, verified, time.monotonic() - t0)

    async def _verify_get(
        self, sender: Sender, expected: dict[str, Expected]
    ) -> tuple[int, dict[str, dict[str, Any]]]:
        """Read a sample of the installs back with GET /v1/installs/{id}: the stored result is the answer."""
        ids = sorted(expected)
        sample = random.Random(self.seed + 2).sample(ids, min(VERIFY_SAMPLE, len(ids)))
        stored: dict[str, dict[str, Any]] = {}
        checked = 0
        for rid in sample:
            status, body = await sender.get_json(f"/v1/installs/{rid}")
            if status == 403:
                self.errors += 1
                self.error_samples.append(
                    "--key: GET /v1/installs needs the app's secret key (sec_...), the sdk key may only send"
                )
                break
            checked += 1
            if status != 200 or not isinstance(body, dict):
                stored[rid] = {"status": f"HTTP {status}"}
            else:
                stored[rid] = body
        return checked, stored

    def _outcome(
        self, expected: dict[str, Expected], stored: dict[str, dict[str, Any]], verified: int, seconds: float
    ) -> Outcome:
        agree_n = exact_n = 0
        rules: dict[str, Counter[str]] = defaultdict(Counter)
        scenarios: dict[str, Counter[str]] = defaultdict(Counter)
        mismatches = []
        ambiguous = 0
        flooder = self.profile.fraud.flooding_network
        for rid, exp in expected.items():
            answers = list(self.answers.get(rid, []))
            if rid in stored:
                answers.append(stored[rid])
            ok = bool(answers)
            exact = ok
            diffs: list[str] = [] if answers else ["no answer"]
            for a in answers:
                agree, d = compare(exp.result, a)
                ok = ok and agree
                exact = exact and not d
                diffs.extend(x for x in d if x not in diffs)
            ambiguous += exp.ambiguous
            agree_n += ok
            exact_n += exact
            rules[exp.rule]["installs"] += 1
            rules[exp.rule]["agree"] += ok
            # an install the flooding network took is the flooding story, whatever the user did
            scenario = "click_flooding" if exp.result.get("network") == flooder else exp.scenario
            scenarios[scenario]["installs"] += 1
            scenarios[scenario]["agree"] += ok
            if not exact:
                got = answers[0] if answers else {}
                mismatches.append(
                    {
                        "id": rid,
                        "rule": exp.rule,
                        "scenario": exp.scenario,
                        "fields": diffs,
                        "expected": {
                            k: exp.result.get(k)
                            for k in ("status", "network", "campaign", "touch_id", "match")
                        },
                        "got": {
                            k: got.get(k) for k in ("status", "network", "campaign", "touch_id", "match")
                        },
                    }
                )
        n = len(expected)

        def table(c: dict[str, Counter[str]]) -> dict[str, dict[str, float]]:
            return {
                k: {"installs": v["installs"], "agreement": round(v["agree"] / v["installs"], 6)}
                for k, v in sorted(c.items())
            }

        return Outcome(
            installs=n,
            agreement=round(agree_n / n, 6) if n else 1.0,
            exact=round(exact_n / n, 6) if n else 1.0,
            by_rule=table(rules),
            by_scenario=table(scenarios),
            records_sent=self.records_sent,
            requests=self.requests,
            errors=self.errors,
            ambiguous=ambiguous,
            verified_get=verified,
            mismatches=mismatches,
            error_samples=self.error_samples,
            seconds=seconds,
        )
