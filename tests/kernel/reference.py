"""A plain-Python reference of the attribution spec (/work/shared/spec/attribution.md), for tests only.

It is the independent check of the Cython kernel (src/native/kernel.pyx): written from the
spec text and the interpretation decisions of docs/kernel.md, not from the kernel.  It keeps
every record it accepted in dicts and lists, never forgets anything and is slow on purpose
only in the sense that nothing here is clever: each rule reads like the sentence it implements.

Input is wire records as in the ingest spec (dicts), one batch at a time with its receive time;
output is one :class:`Out` per record of the batch, in the batch's order.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import ua_parser

from unmo.apps import AppSettings

DAY_MS = 86_400_000
DEDUP_WINDOW_MS = 7 * DAY_MS  # spec "Duplicates": default 7 days
ID_FIELDS = ("idfa", "gaid", "oaid", "idfv", "android_id")
CAMPAIGN_FIELDS = ("network", "campaign", "adset", "ad", "site")
NO_ID = "00000000-0000-0000-0000-000000000000"  # spec "Words": the all-zero IDFA/GAID means none

Campaign = tuple[str | None, str | None, str | None, str | None, str | None]
Fingerprint = tuple[str, str | None, str | None, str | None]


@dataclass
class Out:
    """What happened to one record of a batch."""

    dup: bool
    # ok / ip_blocklist (touches); attributed / organic / reinstall / reattributed (installs);
    # attributed / organic / unattributed (opens and events); None for duplicates.
    outcome: str | None
    campaign: Campaign | None  # touches: their own; installs, opens, events: the credited one
    result: dict[str, Any] | None = None  # installs (not duplicates): the spec's result


@dataclass
class Touch:
    id: str
    kind: str  # "click" | "impression"
    ts: int
    ids: frozenset[tuple[str, str]]  # typed: ("idfa", "ab-cd...")
    fingerprint: Fingerprint | None
    campaign: Campaign
    blocked: bool
    order: int  # processing order, for "ties: the touch ingested later wins"


@dataclass
class Install:
    id: str
    ts: int
    ids: frozenset[tuple[str, str]]
    status: str
    winner: Touch | None
    match: str | None
    order: int
    rejected: list[dict[str, str]] = field(default_factory=list)


# -- reading records -------------------------------------------------------------------------

def ts_ms(value: int | str) -> int:
    """Epoch milliseconds of an RFC 3339 timestamp or an integer of epoch milliseconds."""
    if isinstance(value, int):
        return value
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def device_ids(device: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """Typed identifiers, lower-case and trimmed; empty and all-zero ones are no identifier."""
    out = set()
    for name in ID_FIELDS:
        value = device.get(name)
        if value is None:
            continue
        value = value.strip().lower()
        if value and value != NO_ID:
            out.add((name, value))
    return frozenset(out)


@functools.lru_cache(maxsize=65536)
def canonical_ip(text: str) -> str:
    addr = ipaddress.ip_address(text.strip())
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:a.b.c.d is the IPv4 host a.b.c.d
    return str(addr)


@functools.lru_cache(maxsize=4096)
def parse_user_agent(ua: str | None) -> tuple[str | None, str | None, str | None]:
    """(os, "major.minor", model) from a user agent with ua-parser, the maintained uap-core port."""
    if not ua:
        return None, None, None
    parsed = ua_parser.parse(ua)
    os_name = version = model = None
    if parsed.os is not None and parsed.os.family and parsed.os.family != "Other":  # "Other": unknown
        os_name = parsed.os.family.lower()
        if parsed.os.major:
            version = f"{parsed.os.major}.{parsed.os.minor or '0'}"
    if parsed.device is not None and parsed.device.model:
        model = parsed.device.model.lower()
    return os_name, version, model


def major_minor(version: str) -> str:
    parts = version.strip().split(".")
    return f"{parts[0]}.{parts[1] if len(parts) > 1 and parts[1] else '0'}"


def fingerprint(device: dict[str, Any], explicit: bool) -> Fingerprint | None:
    """``(ip, os, os_version, model)``; touches parse the UA, installs' explicit fields win."""
    if not device.get("ip"):
        return None
    os_name, version, model = parse_user_agent(device.get("ua"))
    if explicit:
        if device.get("os"):
            os_name = device["os"].strip().lower()
        if device.get("os_version"):
            version = major_minor(device["os_version"])
        if device.get("model"):
            model = device["model"].strip().lower()
    return canonical_ip(device["ip"]), os_name, version, model


def referrer_click_id(referrer: str | None) -> str | None:
    """``click_id`` of a Play install referrer, URL-encoded once or twice."""
    if not referrer:
        return None
    once = unquote(referrer)
    for text in (referrer, once, unquote(once)):
        for key, value in parse_qsl(text):
            if key == "click_id" and value:
                return value
    return None


def campaign_of(record: dict[str, Any]) -> Campaign:
    c = record.get("campaign") or {}
    return (c.get("network"), c.get("campaign"), c.get("adset"), c.get("ad"), c.get("site"))


# -- the reference ---------------------------------------------------------------------------

class Reference:
    """All state of one app, in plain dicts and lists; nothing is ever evicted."""

    def __init__(self, settings: AppSettings, dedup_window_ms: int = DEDUP_WINDOW_MS) -> None:
        self.s = settings
        self.blocklist = [ipaddress.ip_network(c, strict=False) for c in settings.ip_blocklist]
        self.dedup_window = dedup_window_ms
        self.accepted_at: dict[str, int] = {}          # record id -> receive time of its accepted copy
        self.touches: list[Touch] = []                 # every accepted touch, in processing order
        self.click_by_id: dict[str, Touch] = {}
        self.touches_by_device: dict[tuple[str, str], list[Touch]] = {}
        self.idless_clicks_by_fp: dict[Fingerprint, list[Touch]] = {}
        self.primary_of: dict[tuple[str, str], Install] = {}  # identifier -> its device's primary install
        self.order = 0

    def configure(self, settings: AppSettings) -> None:
        self.s = settings
        self.blocklist = [ipaddress.ip_network(c, strict=False) for c in settings.ip_blocklist]

    def feed(self, records: list[dict[str, Any]], received_ms: int, sent_at: int | str | None = None) -> list[Out]:
        """Apply one batch received at ``received_ms``; one Out per record, in batch order."""
        skew = received_ms - ts_ms(sent_at) if sent_at is not None else 0
        # spec "Order": inside one batch, records are applied in ts order, stable for equal ts
        stamped = [(ts_ms(r["ts"]) + skew, i, r) for i, r in enumerate(records)]
        outs: list[Out | None] = [None] * len(records)
        for ts, i, record in sorted(stamped, key=lambda x: (x[0], x[1])):
            outs[i] = self._apply(record, ts, received_ms)
        return [o for o in outs if o is not None]

    # -- one record ------------------------------------------------------------------------
    def _apply(self, record: dict[str, Any], ts: int, received: int) -> Out:
        rid = record["id"]
        first = self.accepted_at.get(rid)
        if first is not None and received - first <= self.dedup_window:
            return Out(dup=True, outcome=None, campaign=None)
        self.accepted_at[rid] = received
        self.order += 1
        device = record.get("device") or {}
        kind = record["type"]
        if kind in ("click", "impression"):
            return self._touch(record, kind, ts, device)
        if kind == "install":
            return self._install(record, ts, device)
        primary = self._primary(device_ids(device))
        if primary is None:
            return Out(False, "unattributed", None)
        if primary.winner is None:
            return Out(False, "organic", None)
        return Out(False, "attributed", primary.winner.campaign)

    def _touch(self, record: dict[str, Any], kind: str, ts: int, device: dict[str, Any]) -> Out:
        # spec "Rejections": a touch from a blocklisted address is stored, flagged, never eligible
        blocked = bool(device.get("ip")) and self._blocked(canonical_ip(device["ip"]))
        touch = Touch(record["id"], kind, ts, device_ids(device), fingerprint(device, explicit=False),
                      campaign_of(record), blocked, self.order)
        self.touches.append(touch)
        for ident in touch.ids:
            self.touches_by_device.setdefault(ident, []).append(touch)
        if kind == "click":
            self.click_by_id[touch.id] = touch
            if not touch.ids and touch.fingerprint is not None:
                self.idless_clicks_by_fp.setdefault(touch.fingerprint, []).append(touch)
        return Out(False, "ip_blocklist" if blocked else "ok", touch.campaign)

    def _blocked(self, ip: str) -> bool:
        if not self.blocklist:
            return False
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in self.blocklist)

    def _primary(self, ids: frozenset[tuple[str, str]]) -> Install | None:
        """The most recently processed primary install sharing an identifier."""
        found = [self.primary_of[i] for i in ids if i in self.primary_of]
        return max(found, key=lambda inst: inst.order) if found else None

    def _install(self, record: dict[str, Any], ts: int, device: dict[str, Any]) -> Out:
        ids = device_ids(device)
        last = self._primary(ids)
        if last is not None and ts - last.ts <= self.s.reattribution_window_ms:
            # spec "Reinstalls": no new credit, the original attribution is kept and returned
            for ident in ids:
                self.primary_of[ident] = last
            result = self._result(last, "reinstall", [])
            return Out(False, "reinstall", last.winner.campaign if last.winner else None, result)
        winner, match, rejected = self._waterfall(record, ts, ids, fingerprint(device, explicit=True))
        if winner is None:
            status = "organic"
        else:
            status = "reattributed" if last is not None else "attributed"
        install = Install(record["id"], ts, ids, status, winner, match, self.order, rejected)
        for ident in ids:
            self.primary_of[ident] = install
        return Out(False, status, winner.campaign if winner else None, self._result(install, status, rejected))

    def _eligible(self, touch: Touch, ts: int, window: int) -> bool:
        return touch.ts <= ts and ts - touch.ts <= window

    def _waterfall(self, record: dict[str, Any], ts: int, ids: frozenset[tuple[str, str]],
                   fp: Fingerprint | None) -> tuple[Touch | None, str | None, list[dict[str, str]]]:
        s = self.s
        rejected: list[dict[str, str]] = []
        listed: set[int] = set()

        def reason(t: Touch) -> str | None:
            if t.blocked:
                return "ip_blocklist"
            if t.kind == "click" and ts - t.ts < s.min_ctit_ms:
                return "ctit_anomaly"
            return None

        def first_accepted(candidates: list[Touch]) -> Touch | None:
            # latest first; equal ts: the later ingested first
            for t in sorted(set_of(candidates), key=lambda t: (t.ts, t.order), reverse=True):
                why = reason(t)
                if why is None:
                    return t
                if t.order not in listed:
                    listed.add(t.order)
                    rejected.append({"touch_id": t.id, "reason": why})
            return None

        # 1. referrer
        click_id = referrer_click_id(record.get("referrer"))
        if click_id is not None and click_id in self.click_by_id:
            click = self.click_by_id[click_id]
            if self._eligible(click, ts, s.click_window_ms):
                won = first_accepted([click])
                if won is not None:
                    return won, "referrer", rejected
        # 2. device click
        device_touches = [t for i in ids for t in self.touches_by_device.get(i, [])]
        won = first_accepted([t for t in device_touches
                              if t.kind == "click" and self._eligible(t, ts, s.click_window_ms)])
        if won is not None:
            return won, "device", rejected
        # 3. probabilistic click, within the probabilistic window (never the longer click window)
        if s.probabilistic_window_ms > 0 and fp is not None:
            window = min(s.probabilistic_window_ms, s.click_window_ms)
            won = first_accepted([t for t in self.idless_clicks_by_fp.get(fp, [])
                                  if self._eligible(t, ts, window)])
            if won is not None:
                return won, "probabilistic", rejected
        # 4. device impression
        won = first_accepted([t for t in device_touches
                              if t.kind == "impression" and self._eligible(t, ts, s.impression_window_ms)])
        if won is not None:
            return won, "device", rejected
        return None, None, rejected

    def _result(self, install: Install, status: str, rejected: list[dict[str, str]]) -> dict[str, Any]:
        t = install.winner
        out: dict[str, Any] = {"status": status, "touch": None, "match": None, "touch_id": None, "touch_ts": None}
        out.update(dict.fromkeys(CAMPAIGN_FIELDS))
        out["ctit_s"] = None
        if t is not None:
            out.update(touch=t.kind, match=install.match, touch_id=t.id, touch_ts=iso(t.ts))
            out.update(zip(CAMPAIGN_FIELDS, t.campaign, strict=True))
            if t.kind == "click":
                out["ctit_s"] = (install.ts - t.ts) / 1000
        out["rejected"] = list(rejected)
        return out


def set_of(touches: list[Touch]) -> list[Touch]:
    """Each touch once, though an install may reach it through several identifiers."""
    seen: dict[int, Touch] = {}
    for t in touches:
        seen.setdefault(t.order, t)
    return list(seen.values())
