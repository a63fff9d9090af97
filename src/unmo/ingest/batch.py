"""POST /v1/batch bodies -> the good records as columns, and the bad ones by index.

The envelope is decoded first (a malformed body fails as a whole: 400); each
record is then decoded on its own with msgspec's typed decoder, so a bad record
is reported by index and the good ones go on.  Error texts name the field path
and quote the bad value cut short (docs/api.md).
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import struct
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec
import numpy as np

from unmo._native import (
    ERR_CURRENCY,
    ERR_IP,
    ERR_NAME,
    ERR_NETWORK,
    ERR_NUL,
    ERR_PROPS_SIZE,
    ERR_REVENUE,
    ERR_TS_FUTURE,
    ERR_TS_RANGE,
    build_columns,
    configure_structs,
    decode_json_columns,
    seg_field,
)
from unmo.config import Limits
from unmo.errors import cut
from unmo.hashing import xxh64
from unmo.ingest.body import BodyError, LimitError
from unmo.ingest.fingerprint import parse_ua
from unmo.model import (
    CAMPAIGN_FIELDS,
    DEVICE_ID_FIELDS,
    ZERO_ID,
    Campaign,
    Device,
    Envelope,
    Record,
    TypedEnvelope,
)

configure_structs(Record, Device, Campaign)  # build_columns reads their fields by slot offset

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MIN_TS_MS = 946_684_800_000  # 2000-01-01: smaller integers are seconds or garbage, not epoch milliseconds
ID_SEED_1 = 0
ID_SEED_2 = 0x9E3779B97F4A7C15
# One seed per identifier type, so that an IDFA never matches an IDFV of the same text.
DEVICE_SEEDS = {name: 0xD1CE_0000 + i for i, name in enumerate(DEVICE_ID_FIELDS)}
_CURRENCY = re.compile(r"^[A-Z]{3}$")

_json_envelope = msgspec.json.Decoder(Envelope)
_mp_envelope = msgspec.msgpack.Decoder(Envelope)
_json_typed = msgspec.json.Decoder(TypedEnvelope)
_mp_typed = msgspec.msgpack.Decoder(TypedEnvelope)
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
    if "%" not in referrer and "+" not in referrer:
        # nothing to decode (the usual case): the decoded texts below are the text as sent, and
        # parse_qsl's split on "&" and the first "=" is all there is to do
        for part in referrer.split("&"):
            key, _, value = part.partition("=")
            if key == "click_id" and value:
                return value
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


# The numeric columns: numpy arrays only (the kernel, the COPY encoder and the writer read them as arrays;
# a Python int per value and record was a tenth of the decode).  dev holds the 5 device-id hashes a row.
NUMERIC_COLUMNS: dict[str, type] = {
    "index": np.int32, "kind": np.uint8, "ts": np.int64, "id_h1": np.uint64, "id_h2": np.uint64, "dev": np.uint64,
    "fp": np.uint64, "ref_h1": np.uint64, "ref_h2": np.uint64, "device_key": np.int64,
}


def empty_arrays(n: int = 0) -> dict[str, np.ndarray]:
    """Numeric columns of ``n`` rows, zero-filled."""
    return {k: np.zeros((n, 5) if k == "dev" else n, dtype=t) for k, t in NUMERIC_COLUMNS.items()}


# A record's own columns of the COPY, in the order of its segment (unmo._native.seg_record writes them; the
# decoders encode them when they decode a request: unmo.ingest.rows).
SEGMENT_COLUMNS = [
    "kind", "record_id", "ts", *DEVICE_ID_FIELDS, "ip", "ua", "platform", "os", "os_version", "model",
    "referrer", "name", "revenue", "currency", "properties", "fp",
]
# The columns that only the COPY reads: the decoders make no Python list of them (a str, float or bytes
# a record and field, extended into every flush's batch and freed after it, was about a tenth of the
# serving process); Batch reads them back from the segments when asked (the IP blocklist, tests, tools).
SEGMENT_ONLY = ("ip", "ip_packed", "ua", "platform", "os", "os_version", "model", "referrer", "name",
                "revenue", "currency", "properties")


def _text(v: bytes | None) -> str | None:
    return None if v is None else v.decode()


def _segment_values(segs: list[tuple[bytes, np.ndarray]], name: str) -> list[Any]:
    """One SEGMENT_ONLY column (or ``ids`` field) of every row, as the decoders had it before encoding."""
    if name in ("ip", "ip_packed"):
        packed = [None if v is None else v[4:] for v in seg_field(segs, SEGMENT_COLUMNS.index("ip"))]
        if name == "ip_packed":
            return packed
        return [None if v is None else socket.inet_ntop(socket.AF_INET if len(v) == 4 else socket.AF_INET6, v)
                for v in packed]
    raw = seg_field(segs, SEGMENT_COLUMNS.index(name))
    if name == "revenue":
        return [None if v is None else struct.unpack(">d", v)[0] for v in raw]
    if name == "properties":
        return [None if v is None else v[1:].decode() for v in raw]  # jsonb: a version byte, then the text
    return [_text(v) for v in raw]


@dataclass
class Batch:
    """Good records of one or more requests, as columns, in arrival order.

    ``record_id`` and ``campaign`` are lists (one str or None a row); the numeric columns are numpy
    arrays, kept as the parts of the requests merged into this batch and joined on first use
    (``arrays()``, or the attributes ``index``, ``kind``, ``ts``, ``id_h1``, ``id_h2``, ``dev``, ``fp``,
    ``ref_h1``, ``ref_h2``, ``device_key``).  The rest of a record (SEGMENT_ONLY, and the device ids ``ids``) is
    only in its COPY segment and is read back from there by the attributes of those names.
    """

    n: int = 0
    record_id: list[str] = field(default_factory=list)
    campaign: dict[str, list[str | None]] = field(default_factory=lambda: {f: [] for f in CAMPAIGN_FIELDS})
    # numeric columns, in parts of rows that add up to n (ts is ms, clock-skew corrected)
    parts: list[dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    # the rows' own COPY columns, encoded when decoded (SEGMENT_COLUMNS): per part a buffer and its
    # rows' offsets (one more than the rows); empty for batches that are never stored (replays)
    segs: list[tuple[bytes, np.ndarray]] = field(default_factory=list, repr=False)

    def extend(self, other: Batch) -> None:
        """Append another batch's rows (the writer merges the requests of one app in a flush)."""
        for f in fields(self):
            if f.name == "n":
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                for k, v in theirs.items():
                    mine[k].extend(v)
            else:
                mine.extend(theirs)
        self.n += other.n

    def segment_column(self, name: str) -> list[Any]:
        """A SEGMENT_ONLY column, read back from the segments (a new list each call)."""
        if name not in SEGMENT_ONLY:
            raise KeyError(f"{name}: not a column kept only in the segments")
        return self._from_segments(name)

    def _from_segments(self, name: str) -> list[Any]:
        if self.n and not self.segs:
            raise ValueError(f"{name}: this batch has no segments (a replay of stored records)")
        return _segment_values(self.segs, name)

    ids = property(lambda self: {f: self._from_segments(f) for f in DEVICE_ID_FIELDS},
                   doc="device ids, normalised (lower case, trimmed; None for absent and all-zero)")
    ip = property(lambda self: self._from_segments("ip"), doc="IP address, canonical text")
    ip_packed = property(lambda self: self._from_segments("ip_packed"), doc="IP address, 4 or 16 bytes")
    ua = property(lambda self: self._from_segments("ua"), doc="user agent")
    platform = property(lambda self: self._from_segments("platform"), doc="ios or android")
    os = property(lambda self: self._from_segments("os"), doc="OS name")
    os_version = property(lambda self: self._from_segments("os_version"), doc="OS version")
    model = property(lambda self: self._from_segments("model"), doc="device model")
    referrer = property(lambda self: self._from_segments("referrer"), doc="install referrer")
    name = property(lambda self: self._from_segments("name"), doc="event name")
    revenue = property(lambda self: self._from_segments("revenue"), doc="revenue (float)")
    currency = property(lambda self: self._from_segments("currency"), doc="ISO 4217 code, upper case")
    properties = property(lambda self: self._from_segments("properties"), doc="JSON text of the properties")

    def arrays(self) -> dict[str, np.ndarray]:
        """The numeric columns (joined once; a Batch is not changed after it is read)."""
        if len(self.parts) == 1:
            return self.parts[0]
        joined = empty_arrays() if not self.parts else {
            k: np.concatenate([p[k] for p in self.parts]) for k in NUMERIC_COLUMNS}
        self.parts[:] = [joined]
        return joined

    index = property(lambda self: self.arrays()["index"], doc="position in its request's batch (int32)")
    kind = property(lambda self: self.arrays()["kind"], doc="records.kind codes (uint8)")
    ts = property(lambda self: self.arrays()["ts"], doc="event time, epoch ms, skew corrected (int64)")
    id_h1 = property(lambda self: self.arrays()["id_h1"], doc="record id hash, first half (uint64)")
    id_h2 = property(lambda self: self.arrays()["id_h2"], doc="record id hash, second half (uint64)")
    dev = property(lambda self: self.arrays()["dev"], doc="device-id hashes, (n, 5) uint64, 0 = absent")
    fp = property(lambda self: self.arrays()["fp"], doc="fingerprint hash, 0 = none (uint64)")
    ref_h1 = property(lambda self: self.arrays()["ref_h1"], doc="referrer click id hash, first half (uint64)")
    ref_h2 = property(lambda self: self.arrays()["ref_h2"], doc="referrer click id hash, second half (uint64)")
    device_key = property(lambda self: self.arrays()["device_key"], doc="partition key of the device (int64)")


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
    for sub, part in (("device", rec.device), ("campaign", rec.campaign)):
        if part is None:
            continue
        for name in part.__struct_fields__:
            v = getattr(part, name)
            if v is not None and "\x00" in v:
                return f".{sub}.{name}"
    return None


def _id_of(raw: msgspec.Raw, msgpack: bool) -> str | None:
    rid = _value_at(bytes(raw), ".id", msgpack)
    return rid if isinstance(rid, str) else None


def _props_from_msgpack(raw: msgspec.Raw) -> str | None:
    """JSON text of a msgpack ``properties`` object, or None when it is not one."""
    try:
        value = _mp_any.decode(raw)
        if not isinstance(value, dict):
            return None
        text = msgspec.json.encode(value).decode()
    except (TypeError, ValueError, msgspec.MsgspecError):
        return None
    return None if "\\u0000" in text else text


def _semantic_error(i: int, code: int, rec: Record, msgpack: bool) -> str:
    """The message of a record the native checks refused (unmo._native.build_columns codes)."""
    if code == ERR_NUL:
        path = _has_nul(rec) or ""
        value = getattr(rec, path.rsplit(".", 1)[-1], None) if path.count(".") == 1 else None
        if value is None and path.count(".") == 2:
            _, sub, name = path.split(".")
            value = getattr(getattr(rec, sub), name)
        return f"batch[{i}]{path}: NUL characters are not allowed, got {cut(value)}"
    if code == ERR_TS_RANGE:
        return f"batch[{i}].ts: expected RFC 3339 timestamp or epoch milliseconds, got {cut(rec.ts)}"
    if code == ERR_TS_FUTURE:
        return f"batch[{i}].ts: more than 24 h in the future, got {cut(rec.ts)}"
    if code == ERR_NETWORK:
        network = rec.campaign.network if rec.campaign is not None else None
        return f"batch[{i}].campaign.network: required for a {rec.type}, got {cut(network)}"
    if code == ERR_NAME:
        return f"batch[{i}].name: required for an event, got {cut(rec.name)}"
    if code == ERR_REVENUE:
        return f"batch[{i}].revenue: expected a finite number, got {cut(rec.revenue)}"
    if code == ERR_CURRENCY:
        return f"batch[{i}].currency: expected an ISO 4217 code like USD, got {cut(rec.currency)}"
    if code == ERR_IP:
        ip = rec.device.ip if rec.device is not None else None
        return f"batch[{i}].device.ip: expected an IPv4 or IPv6 address, got {cut(ip)}"
    props = bytes(rec.properties)
    if code == ERR_PROPS_SIZE:
        return f"batch[{i}].properties: larger than {Limits().max_properties_bytes} bytes ({len(props)})"
    value = _mp_any.decode(props) if msgpack else _json_any.decode(props)
    return f"batch[{i}].properties: expected an object without NUL characters, got {cut(value)}"


_HELPERS = (parse_ua, referrer_click_id, _has_nul, _props_from_msgpack)


def decode_body(body: bytes, *, msgpack: bool, received_ms: int, limits: Limits) -> Decoded:
    """Decode a whole (inflated) request body.  Raises BodyError/LimitError for the request.

    A JSON body whose records are all good is parsed natively in one pass (decode_json_columns);
    anything else takes the msgspec path (decode_body_msgspec), which words the errors.
    """
    if not msgpack and type(body) is bytes:
        got = decode_json_columns(
            body, received_ms, MIN_TS_MS, received_ms + limits.max_future_ms, limits.max_records,
            limits.max_record_bytes, limits.max_properties_bytes, _HELPERS,
        )
        if got is not None:
            sent_at_ms, columns, arrays = got
            return Decoded(Batch(n=len(arrays["index"]), **columns, parts=[arrays]), [], received_ms, sent_at_ms)
    return decode_body_msgspec(body, msgpack=msgpack, received_ms=received_ms, limits=limits)


def decode_body_msgspec(body: bytes, *, msgpack: bool, received_ms: int, limits: Limits) -> Decoded:
    """decode_body through msgspec's decoders and build_columns: every body, with its errors."""
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
    if env.sent_at is not None:
        sent_at_ms = to_ms(env.sent_at)
        if sent_at_ms < MIN_TS_MS:
            raise BodyError(
                f"sent_at: expected RFC 3339 timestamp or epoch milliseconds, got {cut(env.sent_at)}"
            )
    raws: list[msgspec.Raw] = env.batch
    if raws and max(map(len, raws)) > limits.max_record_bytes:
        i = next(i for i, raw in enumerate(raws) if len(raw) > limits.max_record_bytes)
        raise LimitError(
            "record_bytes", f"batch[{i}]: record larger than {limits.max_record_bytes} bytes ({len(raws[i])})"
        )
    errors: list[dict[str, Any]] = []
    try:
        # one pass over the body when every record is well typed
        records: list[Record] = (_mp_typed if msgpack else _json_typed).decode(body).batch
        index = list(range(len(records)))
    except msgspec.ValidationError:
        # some record is not: decode them one by one and report the bad ones by index
        record_decoder = _mp_record if msgpack else _json_record
        records, index, good_raws = [], [], []
        for i, raw in enumerate(raws):
            try:
                records.append(record_decoder.decode(raw))
            except msgspec.ValidationError as exc:
                errors.append({"index": i, "id": _id_of(raw, msgpack),
                               "error": _describe(i, bytes(raw), exc, msgpack)})
                continue
            index.append(i)
            good_raws.append(raw)
        raws = good_raws
    columns, bad, arrays = build_columns(
        records, index, raws, msgpack, received_ms - sent_at_ms if sent_at_ms is not None else 0, MIN_TS_MS,
        received_ms + limits.max_future_ms, limits.max_properties_bytes, _HELPERS,
    )
    for i, code, rec in bad:
        errors.append({"index": i, "id": rec.id, "error": _semantic_error(i, code, rec, msgpack)})
    if bad:
        errors.sort(key=lambda e: e["index"])
    b = Batch(n=len(arrays["index"]), **columns, parts=[arrays])
    return Decoded(b, errors, received_ms, sent_at_ms)
