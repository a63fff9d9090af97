"""The truth: every install decided by the attribution spec, in plain Python.

This is a reference of /work/shared/spec/attribution.md written from the spec,
not from the native kernel, so that ``unmo simulate`` compares two independent
readings of it.  Records are applied in the order the server applies them
(``simulate`` sends so that this order is determined: see ``plan``); within a
batch by ``ts``, stable.

Interpretation notes it follows (the server's, docs/attribution.md): typed
identifiers (an IDFA matches IDFAs only), lower-cased, the all-zero IDFA/GAID is
no identifier; a touch is eligible when ``touch.ts <= install.ts <= touch.ts +
window``; tiers referrer > device click > probabilistic click (clicks with no
identifier at all, equal fingerprint, within min(probabilistic, click window))
> device impression > organic; inside a tier the latest touch wins (ties: the
later processed); a blocklisted touch or a click with ``ctit < min_ctit`` is
skipped and listed once under ``rejected``; a reinstall is an install sharing
an identifier with an earlier primary install no older than the re-attribution
window, and carries that install's attribution.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from unmo.apps import AppSettings
from unmo.model import CAMPAIGN_FIELDS, DEVICE_ID_FIELDS, ZERO_ID
from unmo.sim.devices import Fingerprint

TypedId = tuple[str, str]


@dataclass(slots=True)
class Touch:
    order: int
    record_id: str
    kind: str
    ts: int
    ids: frozenset[TypedId]
    fp: Fingerprint | None
    campaign: dict[str, Any]
    blocked: bool


@dataclass(slots=True)
class Primary:
    """A primary install (not a reinstall) and the attribution it got."""

    order: int
    ts: int
    result: dict[str, Any]


@dataclass
class Expected:
    """The truth of one install."""

    result: dict[str, Any]  # status, touch, match, touch_id, campaign fields, ctit_s, rejected
    rule: str  # what decided it (docs/operations.md, "Rules")
    scenario: str
    ambiguous: bool = False  # the answer would change if the server's ts were 2 s later


def typed_ids(device: dict[str, Any] | None) -> frozenset[TypedId]:
    if not device:
        return frozenset()
    out = set()
    for f in DEVICE_ID_FIELDS:
        v = device.get(f)
        if isinstance(v, str):
            v = v.strip().lower()
            if v and v != ZERO_ID:
                out.add((f, v))
    return frozenset(out)


def referrer_click_id(referrer: str | None) -> str | None:
    if not referrer:
        return None
    for text in (referrer, unquote(referrer)):
        for key, value in parse_qsl(text):
            if key == "click_id" and value:
                return value
    return None


@dataclass
class Truth:
    """The spec's decisions over records applied one by one."""

    settings: AppSettings
    touches: list[Touch] = field(default_factory=list)
    by_id: dict[TypedId, list[Touch]] = field(default_factory=dict)
    by_fp: dict[Fingerprint, list[Touch]] = field(default_factory=dict)
    by_record: dict[str, Touch] = field(default_factory=dict)
    primary_by_id: dict[TypedId, Primary] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    expected: dict[str, Expected] = field(default_factory=dict)
    order: int = 0

    def __post_init__(self) -> None:
        self._nets = [ipaddress.ip_network(c, strict=False) for c in self.settings.ip_blocklist]

    def blocked(self, ip: str | None) -> bool:
        if not ip or not self._nets:
            return False
        addr = ipaddress.ip_address(ip)
        return any(addr in n for n in self._nets if n.version == addr.version)

    def apply_batch(self, recs: list[Any], skewed: bool = False) -> None:
        """Apply one batch (``Rec`` objects) the way the server does: stable by ts."""
        for r in sorted(recs, key=lambda r: r.ts):
            self.apply(r, skewed)

    def apply(self, r: Any, skewed: bool = False) -> None:
        rid = r.wire["id"]
        if rid in self.seen:
            return
        self.seen.add(rid)
        self.order += 1
        if r.kind in ("click", "impression"):
            dev = r.wire.get("device") or {}
            t = Touch(
                self.order,
                rid,
                r.kind,
                r.ts,
                typed_ids(dev),
                r.fp,
                {f: r.wire["campaign"].get(f) for f in CAMPAIGN_FIELDS},
                self.blocked(dev.get("ip")),
            )
            self.touches.append(t)
            self.by_record[rid] = t
            for i in t.ids:
                self.by_id.setdefault(i, []).append(t)
            if t.kind == "click" and not t.ids and t.fp is not None:
                self.by_fp.setdefault(t.fp, []).append(t)
        elif r.kind == "install":
            self.install(r, skewed)

    # -- the waterfall -----------------------------------------------------------------
    def _last_primary(self, ids: frozenset[TypedId]) -> Primary | None:
        found = [self.primary_by_id[i] for i in ids if i in self.primary_by_id]
        return max(found, key=lambda p: p.order) if found else None

    def decide(
        self, ts: int, ids: frozenset[TypedId], fp: Fingerprint | None, referrer: str | None
    ) -> tuple[Touch | None, str | None, list[dict[str, str]], str]:
        """(winner, match, rejected, rule) for an install at ``ts`` that is not a reinstall."""
        s = self.settings
        rejected: list[dict[str, str]] = []
        skipped: set[int] = set()
        reasons: list[str] = []

        def pick(cands: list[Touch]) -> Touch | None:
            for t in sorted(cands, key=lambda t: (t.ts, t.order), reverse=True):
                reason = None
                if t.blocked:
                    reason = "ip_blocklist"
                elif t.kind == "click" and ts - t.ts < s.min_ctit_ms:
                    reason = "ctit_anomaly"
                if reason is None:
                    return t
                if t.order not in skipped:
                    skipped.add(t.order)
                    rejected.append({"touch_id": t.record_id, "reason": reason})
                    reasons.append(reason)
            return None

        def within(t: Touch, window: int) -> bool:
            return t.ts <= ts and ts - t.ts <= window

        tiers: list[tuple[str, str, list[Touch]]] = []
        click_id = referrer_click_id(referrer)
        named = self.by_record.get(click_id) if click_id else None
        tiers.append(
            (
                "referrer",
                "referrer",
                [named]
                if named is not None and named.kind == "click" and within(named, s.click_window_ms)
                else [],
            )
        )
        device_touches = {t.order: t for i in ids for t in self.by_id.get(i, ())}
        tiers.append(
            (
                "device_click",
                "device",
                [t for t in device_touches.values() if t.kind == "click" and within(t, s.click_window_ms)],
            )
        )
        if s.probabilistic_window_ms > 0 and fp is not None:
            window = min(s.probabilistic_window_ms, s.click_window_ms)
            tiers.append(
                (
                    "probabilistic_click",
                    "probabilistic",
                    [t for t in self.by_fp.get(fp, ()) if within(t, window)],
                )
            )
        tiers.append(
            (
                "device_impression",
                "device",
                [
                    t
                    for t in device_touches.values()
                    if t.kind == "impression" and within(t, s.impression_window_ms)
                ],
            )
        )
        for rule, match, cands in tiers:
            winner = pick(cands)
            if winner is not None:
                return winner, match, rejected, reasons[0] if reasons else rule
        return None, None, rejected, reasons[0] if reasons else "organic"

    def install(self, r: Any, skewed: bool) -> None:
        dev = r.wire.get("device") or {}
        ids = typed_ids(dev)
        ts = r.ts
        s = self.settings
        last = self._last_primary(ids)
        if last is not None and ts - last.ts <= s.reattribution_window_ms:
            again = dict(last.result, status="reinstall", rejected=[])
            for i in ids:  # the reinstall's identifiers now lead to the original install too
                self.primary_by_id[i] = last
            self.expected[r.wire["id"]] = Expected(again, "reinstall", r.scenario)
            return
        winner, match, rejected, rule = self.decide(ts, ids, r.fp, r.wire.get("referrer"))
        # Would the answer change if the server saw this install up to 2 s later (sent_at correction)?
        later = self.decide(ts + 2000, ids, r.fp, r.wire.get("referrer"))
        ambiguous = (later[0] is not winner) or later[2] != rejected
        result: dict[str, Any] = {
            "status": "organic",
            "touch": None,
            "match": None,
            "touch_id": None,
            "touch_ts": None,
            **dict.fromkeys(CAMPAIGN_FIELDS),
            "ctit_s": None,
            "rejected": rejected,
        }
        if winner is not None:
            result.update(
                status="reattributed" if last is not None else "attributed",
                touch=winner.kind,
                match=match,
                touch_id=winner.record_id,
                touch_ts=winner.ts,
                **winner.campaign,
                ctit_s=(ts - winner.ts) / 1000.0 if winner.kind == "click" else None,
            )
        if last is not None:
            rule = "reattribution" if rule not in ("ctit_anomaly", "ip_blocklist") else rule
        self.order += 1
        primary = Primary(self.order, ts, result)
        for i in ids:
            self.primary_by_id[i] = primary
        self.expected[r.wire["id"]] = Expected(result, rule, r.scenario, ambiguous)


# What "agreement" compares (tools.md), and what "exact" adds.
AGREEMENT_FIELDS = ("status", "network", "campaign")
EXACT_FIELDS = ("touch", "match", "touch_id", "adset", "ad", "site")


def iso_ms(text: Any) -> int | None:
    """Milliseconds of an RFC 3339 answer field (None when it is not one)."""
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def compare(expected: dict[str, Any], answer: dict[str, Any]) -> tuple[bool, list[str]]:
    """(status, network and campaign agree; every field that differs)."""
    diffs = [f for f in AGREEMENT_FIELDS + EXACT_FIELDS if expected.get(f) != answer.get(f)]
    e_ctit, a_ctit = expected.get("ctit_s"), answer.get("ctit_s")
    if (e_ctit is None) != (a_ctit is None) or (e_ctit is not None and abs(e_ctit - a_ctit) > 5.0):
        diffs.append("ctit_s")
    e_tts, a_tts = expected.get("touch_ts"), answer.get("touch_ts")
    if (e_tts is None) != (a_tts is None) or (e_tts is not None and iso_ms(a_tts) != e_tts):
        diffs.append("touch_ts")
    e_rej = sorted((x["touch_id"], x["reason"]) for x in expected.get("rejected") or [])
    a_rej = sorted((x.get("touch_id"), x.get("reason")) for x in answer.get("rejected") or [])
    if e_rej != a_rej:
        diffs.append("rejected")
    return not any(f in AGREEMENT_FIELDS for f in diffs), diffs
