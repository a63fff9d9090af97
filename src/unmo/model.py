"""The wire model of POST /v1/batch (spec: ingest-api.md) and the codes stored for it."""

from __future__ import annotations

import datetime as dt
from enum import IntEnum
from typing import Annotated, Literal

import msgspec

Str = Annotated[str, msgspec.Meta(max_length=1024)]
ShortStr = Annotated[str, msgspec.Meta(max_length=256)]
Timestamp = int | Annotated[dt.datetime, msgspec.Meta(tz=True)]


class Kind(IntEnum):
    """records.kind; the native kernel's KIND_* constants mirror these."""

    CLICK = 1
    IMPRESSION = 2
    INSTALL = 3
    OPEN = 4
    EVENT = 5


KIND_BY_NAME = {k.name.lower(): k for k in Kind}
TOUCH_KINDS = (Kind.CLICK, Kind.IMPRESSION)


class Outcome(IntEnum):
    """records.outcome: what the kernel decided for a stored record."""

    OK = 0  # touches: eligible
    ATTRIBUTED = 1  # installs, opens, events
    ORGANIC = 2
    REINSTALL = 3
    REATTRIBUTED = 4
    UNATTRIBUTED = 5  # opens and events of a device with no known install
    IP_BLOCKLIST = 6  # touches from a blocklisted address (stored, never eligible)


STATUS_NAMES = {
    Outcome.ATTRIBUTED: "attributed",
    Outcome.ORGANIC: "organic",
    Outcome.REINSTALL: "reinstall",
    Outcome.REATTRIBUTED: "reattributed",
}

DEVICE_ID_FIELDS = ("idfa", "gaid", "oaid", "idfv", "android_id")
CAMPAIGN_FIELDS = ("network", "campaign", "adset", "ad", "site")
ZERO_ID = "00000000-0000-0000-0000-000000000000"


class Device(msgspec.Struct, omit_defaults=True, gc=False):
    idfa: ShortStr | None = None
    gaid: ShortStr | None = None
    oaid: ShortStr | None = None
    idfv: ShortStr | None = None
    android_id: ShortStr | None = None
    ip: ShortStr | None = None
    ua: Str | None = None
    platform: Literal["ios", "android"] | None = None
    os: ShortStr | None = None
    os_version: ShortStr | None = None
    model: ShortStr | None = None


class Campaign(msgspec.Struct, omit_defaults=True, gc=False):
    network: ShortStr | None = None
    campaign: ShortStr | None = None
    adset: ShortStr | None = None
    ad: ShortStr | None = None
    site: ShortStr | None = None


class Record(msgspec.Struct, omit_defaults=True, gc=False):
    type: Literal["click", "impression", "install", "open", "event"]
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    ts: Timestamp
    device: Device | None = None
    campaign: Campaign | None = None
    referrer: Str | None = None
    name: ShortStr | None = None
    revenue: float | None = None
    currency: ShortStr | None = None
    properties: msgspec.Raw = msgspec.Raw(b"")


# Records hold no reference cycles, so they are kept out of the cyclic garbage
# collector (msgspec's gc=False): a 10,000-record batch no longer triggers collections.


class Envelope(msgspec.Struct):
    """A request, each record kept raw: its size, its bytes for error messages."""

    batch: list[msgspec.Raw]
    sent_at: Timestamp | None = None


class TypedEnvelope(msgspec.Struct, gc=False):
    """A request decoded in one pass when every record is well typed (the common case)."""

    batch: list[Record]
    sent_at: Timestamp | None = None
