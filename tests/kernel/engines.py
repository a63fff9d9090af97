"""The two engines every kernel test runs against, behind one interface.

``KernelEngine`` drives the real kernel exactly as the server does: the records are encoded as
a POST /v1/batch body, decoded by ``unmo.ingest.batch.decode_body`` and decided by
``AppKernel.decide``.  ``ReferenceEngine`` is the plain-Python reference of the spec
(tests/kernel/reference.py).  Both answer one :class:`Out` per record, in batch order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

import msgspec

from tests.kernel.reference import Out, Reference
from unmo.apps import AppSettings
from unmo.config import Limits
from unmo.ingest.batch import decode_body
from unmo.kernel import CAMPAIGN_FIELDS, AppKernel
from unmo.model import Outcome

OUTCOME_NAMES = {
    Outcome.OK: "ok",
    Outcome.ATTRIBUTED: "attributed",
    Outcome.ORGANIC: "organic",
    Outcome.REINSTALL: "reinstall",
    Outcome.REATTRIBUTED: "reattributed",
    Outcome.UNATTRIBUTED: "unattributed",
    Outcome.IP_BLOCKLIST: "ip_blocklist",
}
LIMITS = Limits()


class Engine(Protocol):
    name: str

    def feed(self, records: list[dict[str, Any]], received_ms: int, sent_at: int | str | None = None) -> list[Out]:
        """Apply one batch; one Out per record, in batch order."""

    def configure(self, settings: AppSettings) -> None:
        """New settings for records decided from now on."""


class ReferenceEngine:
    name = "reference"

    def __init__(self, settings: AppSettings) -> None:
        self.ref = Reference(settings)

    def feed(self, records: list[dict[str, Any]], received_ms: int, sent_at: int | str | None = None) -> list[Out]:
        return self.ref.feed(records, received_ms, sent_at)

    def configure(self, settings: AppSettings) -> None:
        self.ref.configure(settings)


class KernelEngine:
    """The Cython kernel behind AppKernel, fed through the server's own decoder.

    It plays the writer's part of the install store too: every result it decided is kept as
    the row the writer would commit to unmo.installs, and devices the in-memory index no
    longer holds (evicted) are looked up in it and replayed, as Writer._load_installs does.
    """

    name = "kernel"

    def __init__(self, settings: AppSettings, rebuild_min: int | None = None) -> None:
        self.app = AppKernel(settings)
        if rebuild_min is not None:
            self.app.native.rebuild_min = rebuild_min
        self.stored: dict[int, list[dict[str, Any]]] = {}  # unmo.installs rows by device hash, commit order
        self.lookups = 0

    def configure(self, settings: AppSettings) -> None:
        self.app.configure(settings)

    def feed(self, records: list[dict[str, Any]], received_ms: int, sent_at: int | str | None = None) -> list[Out]:
        body: dict[str, Any] = {"batch": records}
        if sent_at is not None:
            body["sent_at"] = sent_at
        decoded = decode_body(msgspec.json.encode(body), msgpack=False, received_ms=received_ms, limits=LIMITS)
        assert not decoded.errors, decoded.errors
        batch = decoded.batch
        self._load_installs(batch)
        d = self.app.decide(batch, received_ms)
        outs: list[Out] = []
        for row in range(batch.n):
            assert batch.index[row] == row
            if d.dup[row]:
                outs.append(Out(dup=True, outcome=None, campaign=None))
                continue
            outs.append(Out(False, OUTCOME_NAMES[Outcome(int(d.outcome[row]))], d.campaign[row],
                            d.results.get(row)))
        # committed as the writer does: seq of the commit, ord = rank in ts order, then seq + 1
        seq = self.app.seq + 1
        rank = {row: k for k, row in enumerate(sorted(range(batch.n), key=lambda r: (batch.ts[r], r)))}
        for row in sorted(d.results, key=rank.__getitem__):
            stored = self._install_row(tuple(batch.dev[row].tolist()), int(batch.ts[row]), d.results[row])
            stored.update(seq=seq, ord=rank[row])
            for h in _unsigned(stored["device_hashes"]):
                self.stored.setdefault(h, []).append(stored)
        self.app.seq = seq
        return outs

    # -- the writer's install store --------------------------------------------------------
    def _install_row(self, dev: tuple[int, ...], ts: int, res: dict[str, Any]) -> dict[str, Any]:
        """The unmo.installs row the writer commits (writer.py INSTALL_COLUMNS, the kernel's part)."""
        row = {k: res[k] for k in ("status", "touch", "match", "touch_id", "ctit_s", *CAMPAIGN_FIELDS)}
        row["device_hashes"] = [h - (1 << 64) if h >= 1 << 63 else h for h in dev if h]
        row["ts"] = _datetime(ts)
        row["touch_ts"] = (dt.datetime.fromisoformat(res["touch_ts"].replace("Z", "+00:00"))
                           if res["touch_ts"] else None)
        return row

    def _load_installs(self, batch: Any) -> None:
        """What the writer does before deciding (Writer._load_installs): look up the installs of
        identifiers the state does not hold, round after round until the devices' whole install
        histories are loaded, and replay them."""
        unknown = self.app.unknown_devices(batch)
        if not unknown:
            return
        self.lookups += 1
        asked = set(unknown)
        wanted = set(unknown)
        rows: dict[tuple[int, int], dict[str, Any]] = {}
        while wanted:
            found = list({id(r): r for h in wanted for r in self.stored.get(h, ())}.values())
            for r in found:
                rows[(r["seq"], r["ord"])] = r
            more = self.app.lookup_hashes(found, asked)
            asked.update(more)
            wanted = set(more)
        self.app.replay_lookup([rows[k] for k in sorted(rows)])
        found_hashes = {h for r in rows.values() for h in _unsigned(r["device_hashes"])}
        self.app.mark_absent([h for h in unknown if h not in found_hashes])


def _unsigned(hashes: list[int]) -> list[int]:
    return [h & 0xFFFFFFFFFFFFFFFF for h in hashes]


def _datetime(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)


def make_engine(name: str, settings: AppSettings, **kwargs: Any) -> Engine:
    if name == "kernel":
        return KernelEngine(settings, **kwargs)
    return ReferenceEngine(settings)
