"""POST /v1/batch bodies -> the good records as columns, and the bad ones by index.

The envelope is decoded first (a malformed body fails as a whole: 400); each
record is then decoded on its own with msgspec's typed decoder, so a bad record
is reported by index and the good ones go on.  Error texts name the field path
and quote the bad value cut short (docs/api.md).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec
import numpy as np

from unmo.config import Limits
from unmo.errors import cut
from unmo.hashing import xxh64
from unmo.ingest.body import BodyError, LimitError
from unmo.ingest.fingerprint import fingerprint_hash, fingerprint_parts
from unmo.model import (
    CAMPAIGN_FIELDS,
    DEVICE_ID_FIELDS,
    KIND_BY_NAME,
    TOUCH_KINDS,
    ZERO_ID,
    Envelope,
    Kind,
    Record,
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MIN_TS_MS = 946_684_800_000  # 2000-01-01: smaller integers are seconds or garbage, not epoch milliseconds
ID_SEED_1 = 0
ID_SEED_2 = 0x9E3779B97F4A7C15
# One seed per identifier type, so that an IDFA never matches an IDFV of the same text.
DEVICE_SEEDS = {name: 0xD1CE_0000 + i for i, name in enumerate(DEVICE_ID_FIELDS)}
_CURRENCY = re.compile(r"^[A-Z]{3}$")

_json_envelope = msgspec.json.Decoder(Envelope)
_mp_envelope = msgspec.msgpack.Decoder(Envelope)
_json_record = msgspec.json.Decoder(Record)
_mp_record = msgspec.msgpack.Decoder(Record)
_json_any = msgspec.json.Decoder()
_mp_any = msgspec.msgpack.Decoder()
_PATH = re.compile(r" - at `\$(.*)`$")
_MISSING = re.compile(r"Object missing required field `([^`]+)`")

EXPECTED = {
    ".type": "expected one of click, impression, install, open, event",
    ".id": "expected a string of 1 to 128 characters",
    ".ts": "expected RFC 3339 timestamp or epoch milliseconds",
    ".device.platform": "expected ios or android",
    ".revenue": "expected a number",
    ".properties": "expected an object",
}


def to_ms(value: int | dt.datetime) -> int:
    if isinstance(value, int):
        return value
    return (value - EPOCH) // dt.timedelta(milliseconds=1)


def device_hash(field_name: str, value: str) -> int:
    """Typed 64-bit hash of a normalised identifier (never 0)."""
    h: int = xxh64(value, DEVICE_SEEDS[field_name])
    return h or 1


def id_hashes(record_id: str) -> tuple[int, int]:
    """The 128-bit dedup key of a record id, as two uint64 halves (never 0)."""
    return (xxh64(record_id, ID_SEED_1) or 1, xxh64(record_id, ID_SEED_2) or 1)


def to_signed(u: int) -> int:
    return u - (1 << 64) if u >= (1 << 63) else u


def normalize_device_id(value: str | None) -> str | None:
    """Lower-case and trim; empty and the all-zero IDFA/GAID mean "no identifier"."""
    if value is None:
        return None
    v = value.strip().lower()
    if not v or v == ZERO_ID:
        return None
    return v


def referrer_click_id(referrer: str | None) -> str | None:
    """The ``click_id`` of a Google Play install referrer, once or twice URL-encoded."""
    if not referrer:
        return None
    once = unquote(referrer)
    for text in (referrer, once, unquote(once)):  # as sent, decoded once (encoded once), twice
        for key, value in parse_qsl(text, keep_blank_values=False):
            if key == "click_id" and value:
                return value
    return None


def canonical_ip(text: str) -> tuple[str, bytes] | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            packed = socket.inet_pton(family, text.strip())
        except OSError:
            continue
        if family == socket.AF_INET6 and packed[:12] == b"\x00" * 10 + b"\xff\xff":
            packed = packed[12:]  # ::ffff:a.b.c.d is the IPv4 address a.b.c.d
            family = socket.AF_INET
        return socket.inet_ntop(family, packed), packed
    return None


@dataclass
class Batch:
    """Good records of one or more requests, as columns, in arrival order."""

    n: int = 0
    index: list[int] = field(default_factory=list)  # position in its request's batch
    kind: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)  # ms, clock-skew corrected
    record_id: list[str] = field(default_factory=list)
    id_h1: list[int] = field(default_factory=list)
    id_h2: list[int] = field(default_factory=list)
    dev: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    device_key: list[int] = field(default_factory=list)
    ids: dict[str, list[str | None]] = field(default_factory=lambda: {f: [] for f in DEVICE_ID_FIELDS})
    ip: list[str | None] = field(default_factory=list)
    ip_packed: list[bytes | None] = field(default_factory=list)
    ua: list[str | None] = field(default_factory=list)
    platform: list[str | None] = field(default_factory=list)
    os: list[str | None] = field(default_factory=list)
    os_version: list[str | None] = field(default_factory=list)
    model: list[str | None] = field(default_factory=list)
    campaign: dict[str, list[str | None]] = field(default_factory=lambda: {f: [] for f in CAMPAIGN_FIELDS})
    referrer: list[str | None] = field(default_factory=list)
    ref_h1: list[int] = field(default_factory=list)
    ref_h2: list[int] = field(default_factory=list)
    name: list[str | None] = field(default_factory=list)
    revenue: list[float | None] = field(default_factory=list)
    currency: list[str | None] = field(default_factory=list)
    properties: list[str | None] = field(default_factory=list)
    fp: list[int] = field(default_factory=list)

    def extend(self, other: Batch) -> None:
        for name, value in vars(other).items():
            if name == "n":
                continue
            if isinstance(value, dict):
                mine = getattr(self, name)
                for k, v in value.items():
                    mine[k].extend(v)
            else:
                getattr(self, name).extend(value)
        self.n += other.n

    def select(self, rows: list[int]) -> Batch:
        out = Batch()
        for name, value in vars(self).items():
            if name == "n":
                continue
            if isinstance(value, dict):
                setattr(out, name, {k: [v[i] for i in rows] for k, v in value.items()})
            else:
                setattr(out, name, [value[i] for i in rows])
        out.n = len(rows)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric columns the kernel reads."""
        return {
            "kind": np.asarray(self.kind, dtype=np.uint8),
            "ts": np.asarray(self.ts, dtype=np.int64),
            "id_h1": np.asarray(self.id_h1, dtype=np.uint64),
            "id_h2": np.asarray(self.id_h2, dtype=np.uint64),
            "dev": np.asarray(self.dev, dtype=np.uint64).reshape(self.n, 5),
            "fp": np.asarray(self.fp, dtype=np.uint64),
            "ref_h1": np.asarray(self.ref_h1, dtype=np.uint64),
            "ref_h2": np.asarray(self.ref_h2, dtype=np.uint64),
        }


@dataclass
class Decoded:
    batch: Batch
    errors: list[dict[str, Any]]
    received_ms: int
    sent_at_ms: int | None


def _value_at(raw: bytes, path: str, msgpack: bool) -> Any:
    try:
        value: Any = (_mp_any if msgpack else _json_any).decode(raw)
    except msgspec.DecodeError:
        return None
    for part in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path):
        key, idx = part
        try:
            value = value[key] if key else value[int(idx)]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _describe(i: int, raw: bytes, exc: msgspec.ValidationError, msgpack: bool) -> str:
    text = str(exc)
    missing = _MISSING.match(text)
    m = _PATH.search(text)
    base = m.group(1) if m else ""
    if missing:
        return f"batch[{i}]{base}.{missing.group(1)}: required field is missing"
    value = _value_at(raw, base, msgpack)
    expected = EXPECTED.get(base)
    if expected is None:
        head = text[: m.start()] if m else text
        expected = "expected " + head.removeprefix("Expected ").replace("`", "").split(", got")[0]
        expected = expected.replace("expected Invalid", "invalid").replace("expected Object", "object")
    return f"batch[{i}]{base}: {expected}, got {cut(value)}"


def _has_nul(rec: Record) -> str | None:
    """Path of the first string holding U+0000, which PostgreSQL text cannot store."""
    for name in ("id", "referrer", "name", "currency"):
        v = getattr(rec, name)
        if v is not None and "\x00" in v:
            return "." + name
    for sub, fields in (("device", rec.device), ("campaign", rec.campaign)):
        if fields is None:
            continue
        for name in fields.__struct_fields__:
            v = getattr(fields, name)
            if v is not None and "\x00" in v:
                return f".{sub}.{name}"
    return None


def decode_body(body: bytes, *, msgpack: bool, received_ms: int, limits: Limits) -> Decoded:
    """Decode a whole (inflated) request body.  Raises BodyError/LimitError for the request."""
    try:
        env = (_mp_envelope if msgpack else _json_envelope).decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "batch" in text or "Expected `object`" in text:
            raise BodyError('body: expected an object with a "batch" array') from None
        if "sent_at" in text:
            raise BodyError(
                f"sent_at: expected RFC 3339 timestamp or epoch milliseconds, got "
                f"{cut(_value_at(body, '.sent_at', msgpack))}"
            ) from None
        raise BodyError(f"body: {text}") from None
    except msgspec.DecodeError as exc:
        raise BodyError(f"body: not valid {'MessagePack' if msgpack else 'JSON'} ({exc})") from None
    if len(env.batch) > limits.max_records:
        raise LimitError("records", f"batch: more than {limits.max_records} records ({len(env.batch)})")
    sent_at_ms = None
    skew = 0
    if env.sent_at is not None:
        sent_at_ms = to_ms(env.sent_at)
        if sent_at_ms < MIN_TS_MS:
            raise BodyError(
                f"sent_at: expected RFC 3339 timestamp or epoch milliseconds, got {cut(env.sent_at)}"
            )
        skew = received_ms - sent_at_ms
    b = Batch()
    errors: list[dict[str, Any]] = []
    record_decoder = _mp_record if msgpack else _json_record
    future_limit = received_ms + limits.max_future_ms

    def bad(i: int, raw: bytes, message: str) -> None:
        rid = _value_at(raw, ".id", msgpack)
        errors.append({"index": i, "id": rid if isinstance(rid, str) else None, "error": message})

    for i, raw_rec in enumerate(env.batch):
        raw = bytes(raw_rec)
        if len(raw) > limits.max_record_bytes:
            errors.append(
                {
                    "index": i,
                    "id": None,
                    "error": f"batch[{i}]: record larger than {limits.max_record_bytes} bytes ({len(raw)})",
                }
            )
            continue
        try:
            rec = record_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            bad(i, raw, _describe(i, raw, exc, msgpack))
            continue
        if (msgpack or b"\\u0000" in raw) and (path := _has_nul(rec)):
            bad(
                i,
                raw,
                f"batch[{i}]{path}: NUL characters are not allowed, got {cut(_value_at(raw, path, msgpack))}",
            )
            continue
        kind = KIND_BY_NAME[rec.type]
        ts = to_ms(rec.ts)
        if ts < MIN_TS_MS:
            bad(
                i, raw, f"batch[{i}].ts: expected RFC 3339 timestamp or epoch milliseconds, got {cut(rec.ts)}"
            )
            continue
        ts += skew
        if ts > future_limit:
            bad(i, raw, f"batch[{i}].ts: more than 24 h in the future, got {cut(rec.ts)}")
            continue
        dev = rec.device
        camp = rec.campaign
        if kind in TOUCH_KINDS and (camp is None or not camp.network):
            bad(
                i,
                raw,
                f"batch[{i}].campaign.network: required for a {rec.type}, got "
                f"{cut(camp.network if camp is not None else None)}",
            )
            continue
        if kind == Kind.EVENT and not rec.name:
            bad(i, raw, f"batch[{i}].name: required for an event, got {cut(rec.name)}")
            continue
        revenue = rec.revenue
        currency = rec.currency
        if revenue is not None:
            if not math.isfinite(revenue):
                bad(i, raw, f"batch[{i}].revenue: expected a finite number, got {cut(revenue)}")
                continue
            currency = (currency or "USD").upper()
        if currency is not None and not _CURRENCY.match(currency.upper()):
            bad(i, raw, f"batch[{i}].currency: expected an ISO 4217 code like USD, got {cut(rec.currency)}")
            continue
        ip = packed = None
        if dev is not None and dev.ip is not None:
            parsed = canonical_ip(dev.ip)
            if parsed is None:
                bad(i, raw, f"batch[{i}].device.ip: expected an IPv4 or IPv6 address, got {cut(dev.ip)}")
                continue
            ip, packed = parsed
        props = None
        praw = bytes(rec.properties)
        if praw and praw != b"null" and praw != b"\xc0":
            if len(praw) > limits.max_properties_bytes:
                bad(
                    i,
                    raw,
                    f"batch[{i}].properties: larger than {limits.max_properties_bytes} bytes ({len(praw)})",
                )
                continue
            try:
                value = _mp_any.decode(praw) if msgpack else None
                if msgpack:
                    if not isinstance(value, dict):
                        raise TypeError
                    props = msgspec.json.encode(value).decode()
                else:
                    if praw.lstrip()[:1] != b"{":
                        raise TypeError
                    if b"\\u0000" in praw:
                        raise ValueError
                    props = praw.decode()
            except (TypeError, ValueError, msgspec.MsgspecError):
                bad(
                    i,
                    raw,
                    f"batch[{i}].properties: expected an object without NUL characters, got "
                    f"{cut(_value_at(raw, '.properties', msgpack))}",
                )
                continue

        # -- the record is good: append its columns
        rid = rec.id
        h1, h2 = id_hashes(rid)
        hashes = [0, 0, 0, 0, 0]
        first = 0
        for j, fname in enumerate(DEVICE_ID_FIELDS):
            v = normalize_device_id(getattr(dev, fname)) if dev is not None else None
            b.ids[fname].append(v)
            if v is not None:
                hashes[j] = device_hash(fname, v)
                if not first:
                    first = hashes[j]
        b.device_key.append(to_signed(first or (h1 ^ h2) or 1))
        b.dev.append((hashes[0], hashes[1], hashes[2], hashes[3], hashes[4]))
        b.n += 1
        b.index.append(i)
        b.kind.append(int(kind))
        b.ts.append(ts)
        b.record_id.append(rid)
        b.id_h1.append(h1)
        b.id_h2.append(h2)
        b.ip.append(ip)
        b.ip_packed.append(packed)
        ua = dev.ua if dev is not None else None
        b.ua.append(ua)
        b.platform.append(dev.platform if dev is not None else None)
        b.os.append(dev.os if dev is not None else None)
        b.os_version.append(dev.os_version if dev is not None else None)
        b.model.append(dev.model if dev is not None else None)
        for fname in CAMPAIGN_FIELDS:
            b.campaign[fname].append(getattr(camp, fname) if camp is not None else None)
        b.referrer.append(rec.referrer)
        click_id = referrer_click_id(rec.referrer) if kind == Kind.INSTALL else None
        if click_id is not None:
            r1, r2 = id_hashes(click_id)
        else:
            r1 = r2 = 0
        b.ref_h1.append(r1)
        b.ref_h2.append(r2)
        b.name.append(rec.name)
        b.revenue.append(revenue)
        b.currency.append(currency)
        b.properties.append(props)
        if kind in TOUCH_KINDS:
            b.fp.append(fingerprint_hash(fingerprint_parts(ip, ua)))
        elif kind == Kind.INSTALL and dev is not None:
            b.fp.append(fingerprint_hash(fingerprint_parts(ip, ua, dev.os, dev.os_version, dev.model)))
        else:
            b.fp.append(0)
    return Decoded(b, errors, received_ms, sent_at_ms)
