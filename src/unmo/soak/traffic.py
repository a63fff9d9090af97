"""Live traffic of a profile mix at a target rate, for ``unmo soak``.

Each profile gets a share of the rate in proportion to its ``events_per_day``.
Users install "now": their clicks and impressions carry past timestamps (the
click-to-install times of the profile), their sessions and events follow within
minutes (a soak compresses each user's days into minutes so that the record mix
matches the profile while the driver's memory stays bounded).  Record ids are
``<run>-<n>`` with ``n`` counting from 1, so that the acknowledged set is a bit
array and the database check is one join (``verify``).
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from typing import Any

import msgspec

from unmo.sim.generate import MINUTE, Generator, Rec
from unmo.sim.profile import Profile


@dataclass
class Outgoing:
    """A batch ready to send."""

    records: list[dict[str, Any]]
    numbers: list[int]  # the n of each record id


class LiveMix:
    """Makes records at a rate: ``produce(now_ms, n)`` owes ``n`` more, ``due(now_ms)`` hands out what is due.

    The rate counts records handed out, not made: a user's sessions become due
    minutes after the install, and the mix makes new users only while the
    records already due do not pay what is owed, so the output rate is the target
    from the first second.
    """

    def __init__(
        self,
        profiles: list[Profile],
        *,
        run: str,
        seed: int,
        batch_size: int = 200,
        horizon_ms: int = 10 * MINUTE,
    ) -> None:
        self.run = run
        self.batch_size = batch_size
        self.horizon_ms = horizon_ms
        total = sum(p.events_per_day for p in profiles)
        self.gens: list[Generator] = []
        weights = []
        for i, p in enumerate(profiles):
            # live traffic has no clock skew: each tick's records of all devices share a batch
            p = msgspec.structs.replace(p, identity=msgspec.structs.replace(p.identity, clock_skew_share=0.0))
            self.gens.append(Generator(p, seed=seed * 1000 + i, salt=f"{run}p{i}"))
            # users per profile in proportion to its records per day over its records per user
            weights.append(p.events_per_day / total / p.records_per_install())
        self._weights = weights
        self._rng = random.Random(seed)
        self._pending: list[tuple[int, int, Rec]] = []
        self._tie = itertools.count()
        counter = itertools.count(1)
        for g in self.gens:
            g.id_prefix = run
            g.counter = counter
        self._cut = len(run) + 1
        self.owed = 0.0
        self.made = 0

    def produce(self, now_ms: int, records: float) -> None:
        """Owe ``records`` more records."""
        self.owed += records

    def _pop_due(self, now_ms: int, into: list[Rec]) -> None:
        while self._pending and self._pending[0][0] <= now_ms:
            into.append(heapq.heappop(self._pending)[2])

    @property
    def pending(self) -> int:
        return len(self._pending)

    def due(self, now_ms: int) -> list[Outgoing]:
        """The records whose time has come (and new users while more is owed), in batches."""
        recs: list[Rec] = []
        self._pop_due(now_ms, recs)
        while len(recs) < self.owed:
            g = self._rng.choices(self.gens, self._weights)[0]
            out: list[Rec] = []
            g.live_story(now_ms, self.horizon_ms, out)
            g.live_noise(out, 1.0, now_ms, 10 * MINUTE)
            self.made += len(out)
            for r in out:
                heapq.heappush(self._pending, (max(r.ts, now_ms), next(self._tie), r))
            self._pop_due(now_ms + 5_000, recs)  # the install itself is stamped a few ms ahead
        self.owed -= len(recs)
        out_batches = []
        for start in range(0, len(recs), self.batch_size):
            chunk = recs[start : start + self.batch_size]
            out_batches.append(
                Outgoing([r.wire for r in chunk], [int(r.wire["id"][self._cut :]) for r in chunk])
            )
        return out_batches
