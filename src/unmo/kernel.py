"""The attribution kernel of one app: policy around the native ``unmo._native.Kernel``.

The native kernel holds the state and runs the waterfall (spec: attribution.md);
this module decides what it is given (settings, the IP blocklist, campaign
interning, installs looked up in the database) and turns its columns into the
results the API answers (docs/architecture.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from unmo._native import Kernel, campaign_refs
from unmo.apps import AppSettings
from unmo.ingest.batch import Batch, to_signed
from unmo.model import CAMPAIGN_FIELDS, Kind, Outcome

DEDUP_WINDOW_MS = 7 * 86_400_000
# How late a record may arrive after its own ts and still meet every touch of its
# windows: the 24 h future limit plus a day of delivery delay.
GRACE_MS = 2 * 86_400_000

MATCH_NAMES = {1: "referrer", 2: "device", 3: "probabilistic"}
REASON_NAMES = {1: "ctit_anomaly", 2: "ip_blocklist"}
TOUCH_NAMES = {int(Kind.CLICK): "click", int(Kind.IMPRESSION): "impression"}
STATUS_NAMES = {
    int(Outcome.ATTRIBUTED): "attributed",
    int(Outcome.ORGANIC): "organic",
    int(Outcome.REINSTALL): "reinstall",
    int(Outcome.REATTRIBUTED): "reattributed",
}
STATUS_CODES = {v: k for k, v in STATUS_NAMES.items()}
MATCH_CODES = {v: k for k, v in MATCH_NAMES.items()}
TOUCH_CODES = {v: k for k, v in TOUCH_NAMES.items()}

Campaign = tuple[str | None, str | None, str | None, str | None, str | None]


def iso_ms(ms: int) -> str:
    """RFC 3339 with milliseconds, UTC: what every timestamp in an answer looks like."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Decisions:
    """What the kernel decided for a batch, row-aligned with it."""

    dup: np.ndarray        # uint8
    outcome: np.ndarray    # int16 Outcome
    results: dict[int, dict[str, Any]]  # install row -> result (without index/id)
    # The native columns behind ``campaign`` and ``results``, for the report rollups (unmo.reports.rollup):
    camp: np.ndarray | None = None     # int32 refs into AppKernel.campaigns, -1: none
    inst: np.ndarray | None = None     # int64 primary install slot (installs; opens/events: the one inherited)
    rejected: list[tuple[int, int, int]] = field(default_factory=list)  # (install row, touch campaign ref, reason)
    campaigns: list[Campaign] = field(default_factory=list)  # AppKernel.campaigns (append-only: refs stay valid)

    @cached_property
    def campaign(self) -> list[Campaign | None]:
        """Each row's campaign: touches their own; installs, opens and events their attributed source.
        Made on first use (the writer's COPY reads ``camp`` and ``campaigns`` instead)."""
        assert self.camp is not None
        return [self.campaigns[c] if c >= 0 else None for c in self.camp.tolist()]


class AppKernel:
    """Kernel state of one app plus the Python-side tables it refers to."""

    def __init__(self, settings: AppSettings) -> None:
        self.campaigns: list[Campaign] = []
        self._campaign_refs: dict[Campaign, int] = {}
        self.settings = settings
        self.native = Kernel(
            settings.click_window_ms,
            settings.impression_window_ms,
            settings.probabilistic_window_ms,
            settings.reattribution_window_ms,
            settings.min_ctit_ms,
            DEDUP_WINDOW_MS,
            GRACE_MS,
        )
        self._networks = settings.networks()
        self.seq = 0  # app_log.seq this state reflects
        self._trimmed = False
        self._next_order = 0

    def configure(self, settings: AppSettings) -> None:
        if settings == self.settings:
            return
        self.settings = settings
        self._networks = settings.networks()
        self.native.configure(
            settings.click_window_ms,
            settings.impression_window_ms,
            settings.probabilistic_window_ms,
            settings.reattribution_window_ms,
            settings.min_ctit_ms,
            DEDUP_WINDOW_MS,
            GRACE_MS,
        )

    # -- campaigns ------------------------------------------------------
    def campaign_ref(self, campaign: Campaign) -> int:
        if campaign[0] is None:
            return -1
        ref = self._campaign_refs.get(campaign)
        if ref is None:
            ref = len(self.campaigns)
            self.campaigns.append(campaign)
            self._campaign_refs[campaign] = ref
        return ref

    def _campaign_column(self, batch: Batch) -> np.ndarray:
        c = batch.campaign
        return campaign_refs(batch.arrays()["kind"], c["network"], c["campaign"], c["adset"], c["ad"], c["site"],
                             self._campaign_refs, self.campaigns)

    def blocked(self, batch: Batch) -> np.ndarray:
        out = np.zeros(batch.n, dtype=np.uint8)
        if not self._networks:
            return out
        for i, (k, ip) in enumerate(zip(batch.kind.tolist(), batch.ip, strict=True)):
            if k <= Kind.IMPRESSION and ip is not None:
                addr = ipaddress.ip_address(ip)
                if any(addr in net for net in self._networks if net.version == addr.version):
                    out[i] = 1
        return out

    # -- deciding -------------------------------------------------------
    def decide(self, batch: Batch, received: np.ndarray | int, order: np.ndarray | None = None) -> Decisions:
        """Decide a batch of new records; ``received`` is each row's (or all rows') receive time, ms.

        Rows apply in stable ``ts`` order, or in ``order`` (row indices) when given: the
        writer, which decides the requests of a group commit together, passes
        ``batch_order(...)`` so that each request stays a batch of its own (spec: across
        batches, arrival order).  The install slots in the answer (``inst``, ``install_info``)
        stay valid until the next batch's ``unknown_devices`` or ``decide``, which may trim
        the state first."""
        if not self._trimmed:
            self.trim()
        a = batch.arrays()
        if isinstance(received, int):
            received = np.full(batch.n, received, dtype=np.int64)
        dup, outcome, camp, inst, _match, rejected = self.native.process(
            a["kind"], a["ts"], a["id_h1"], a["id_h2"], a["dev"], a["fp"], a["ref_h1"], a["ref_h2"],
            self._campaign_column(batch), self.blocked(batch), batch.record_id, received, True, None,
            self.order_base(), None if order is None else np.ascontiguousarray(order, dtype=np.int64),
        )
        rejections: dict[int, list[dict[str, str]]] = {}
        for row, touch_id, _ts, _kind, _camp, reason in rejected:
            rejections.setdefault(row, []).append({"touch_id": touch_id, "reason": REASON_NAMES[reason]})
        results: dict[int, dict[str, Any]] = {}
        kinds = a["kind"]
        for row in np.flatnonzero((kinds == Kind.INSTALL) & (dup == 0)).tolist():
            results[row] = self.result(int(inst[row]), int(outcome[row]), rejections.get(row, []))
        self._trimmed = False
        return Decisions(dup, outcome, results, camp, inst,
                         [(row, c, reason) for row, _id, _ts, _kind, c, reason in rejected], self.campaigns)

    def order_base(self) -> int:
        """Decision order of the next batch's first record: ``(app_log.seq << 32) | ord`` as the
        writer stores it (the batch commits as ``self.seq + 1``; ``ord`` is the ts rank)."""
        base = (self.seq + 1) << 32
        # an AppKernel whose seq nobody advances (tests, benchmarks) still orders its batches
        base = max(base, self._next_order)
        self._next_order = base + (1 << 32)
        return base

    def result(self, slot: int, status: int, rejected: list[dict[str, str]]) -> dict[str, Any]:
        """The spec's install result for a primary install slot, under the row's own status."""
        _ts, _st, tkind, match, camp, tts, ctit, touch_id = self.native.install_info(slot)
        out: dict[str, Any] = {"status": STATUS_NAMES[status], "touch": None, "match": None, "touch_id": None,
                               "touch_ts": None}
        out.update(dict.fromkeys(CAMPAIGN_FIELDS))
        out["ctit_s"] = None
        if camp >= 0:
            out["touch"] = TOUCH_NAMES[tkind]
            out["match"] = MATCH_NAMES[match]
            out["touch_id"] = touch_id
            out["touch_ts"] = iso_ms(tts)
            out.update(zip(CAMPAIGN_FIELDS, self.campaigns[camp], strict=True))
            if tkind == Kind.CLICK:
                out["ctit_s"] = ctit / 1000.0
        out["rejected"] = rejected
        return out

    # -- loading stored state -------------------------------------------
    def replay_records(self, batch: Batch, received: np.ndarray, stored: np.ndarray) -> None:
        """Apply stored records (oldest first) to the dedup set and the touch store."""
        if batch.n == 0:
            return
        a = batch.arrays()
        self.native.process(
            a["kind"], a["ts"], a["id_h1"], a["id_h2"], a["dev"], a["fp"], a["ref_h1"], a["ref_h2"],
            self._campaign_column(batch), np.zeros(batch.n, dtype=np.uint8), batch.record_id,
            np.ascontiguousarray(received, dtype=np.int64), False, np.ascontiguousarray(stored, dtype=np.int16),
        )

    def replay_install(self, row: Any) -> None:
        """Load one stored install result (a row of unmo.installs) into the install index, in
        decision order (warming up, catching up with other processes)."""
        self._replay(row, index=True)

    def replay_lookup(self, rows: list[Any]) -> None:
        """Load installs looked up in the database for identifiers the state does not hold.

        ``rows`` are every stored install of the devices concerned, in (seq, ord) order: the
        rows sharing an identifier with the batch, and transitively the rows sharing one with
        those (see ``lookup_hashes``).  They were decided before or among the installs held, so
        they are replayed as a history of their own (which install each identifier belonged
        to, reinstalls following their primary) and only then merged in, each identifier
        keeping whichever of the two installs was decided later."""
        owner: dict[int, tuple[int, int]] = {}  # typed hash -> (decision order, slot)
        for row in rows:
            hashes = _unsigned(row["device_hashes"])
            if row["status"] == "reinstall":
                known = [owner[h] for h in hashes if h in owner]
                if not known:
                    continue  # its primary is not among the rows: nothing to point at
                target = max(known)
            else:
                target = ((row["seq"] << 32) | row["ord"], self._replay(row, index=False))
            for h in hashes:
                owner[h] = target
        by_slot: dict[int, list[int]] = {}
        for h, (_order, slot) in owner.items():
            by_slot.setdefault(slot, []).append(h)
        for slot, hashes in by_slot.items():
            self.native.map_ids(np.asarray(hashes, dtype=np.uint64), slot)

    @staticmethod
    def lookup_hashes(rows: list[Any], asked: set[int]) -> list[int]:
        """Identifiers of looked-up rows not asked for yet: the next round of the lookup, until
        a device's whole install history is loaded (a reinstall may share an identifier with
        the batch but not with its primary install)."""
        return list(dict.fromkeys(h for row in rows for h in _unsigned(row["device_hashes"]) if h not in asked))

    def _replay(self, row: Any, index: bool) -> int:
        dev = np.zeros(5, dtype=np.uint64)
        hashes = _unsigned(row["device_hashes"])[:5]
        dev[: len(hashes)] = hashes
        campaign: Campaign = (row["network"], row["campaign"], row["adset"], row["ad"], row["site"])
        touch_ts = to_ms(row["touch_ts"]) if row["touch_ts"] is not None else 0
        slot: int = self.native.replay_install(
            dev,
            to_ms(row["ts"]),
            STATUS_CODES[row["status"]],
            TOUCH_CODES.get(row["touch"], 0),
            MATCH_CODES.get(row["match"], 0),
            self.campaign_ref(campaign) if row["touch"] is not None else -1,
            touch_ts,
            round((row["ctit_s"] or 0.0) * 1000) if row["touch"] is not None else 0,
            row["touch_id"],
            (row["seq"] << 32) | row["ord"],
            index,
        )
        return slot

    def trim(self) -> None:
        """Drop what fell out of the windows as of the latest receive time (Kernel.evict).

        Deciding a batch starts here: ``unknown_devices`` trims before it answers which
        installs to look up, so that no rebuild drops them between the lookup and ``decide``;
        ``decide`` trims itself when nothing was looked up."""
        self.native.evict(self.native.last_received)
        self._trimmed = True

    def unknown_devices(self, batch: Batch) -> list[int]:
        """Typed device hashes of the batch's installs, opens and events that the state does not
        hold: the caller looks them up in unmo.installs (replay_install, mark_absent)."""
        self.trim()
        if batch.n == 0:
            return []
        a = batch.arrays()
        return list(dict.fromkeys(self.native.unknown_devices(a["dev"], a["kind"])))

    def mark_absent(self, hashes: list[int]) -> None:
        self.native.mark_absent(hashes)


def batch_order(ts: np.ndarray, sizes: list[int]) -> np.ndarray:
    """The order requests decided together apply in: request after request (arrival order),
    each in stable ``ts`` order (spec attribution.md, "Order").  ``sizes``: rows per request."""
    request = np.repeat(np.arange(len(sizes)), sizes)
    return np.lexsort((np.asarray(ts, dtype=np.int64), request)).astype(np.int64)


def to_ms(value: dt.datetime) -> int:
    return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def _unsigned(hashes: list[int]) -> list[int]:
    """unmo.installs.device_hashes (bigint[]) as the kernel's uint64 hashes."""
    return [h & 0xFFFFFFFFFFFFFFFF for h in hashes]


def signed_hashes(hashes: list[int]) -> list[int]:
    return [to_signed(h) for h in hashes]
