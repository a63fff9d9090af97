"""What the load driver sends: realistic records, pre-encoded once, with fresh ids per request.

Records are drawn the way mobile traffic looks: a few heavy devices and a long
tail (device activity follows a Zipf law, as user activity does in every
published study of app usage, e.g. Adar & Huberman's power laws of web
traffic), impressions far more common than clicks, clicks than installs; opens
and events come from the same heavy-tailed population.  Installs are spread
evenly over the devices: a device installs an app about once.

Bodies are encoded once (``templates`` of them); each request then writes its
own request number into every record id of a copy of a template with one
numpy assignment, so that ids are unique across the run (nothing is dropped
as a duplicate) while the driver spends microseconds, not the milliseconds an
encode would cost, per 1000-record request.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

# The share of each record type (sums to 1): ad impressions outnumber clicks a
# few to one, installs are a few percent of touches (public click-to-install
# benchmarks put CTR-to-install conversion at 1-5 %), in-app events are the rest.
KIND_MIX: dict[str, float] = {"impression": 0.40, "click": 0.25, "event": 0.22, "open": 0.08, "install": 0.05}
ZIPF_EXPONENT = 1.1  # exponent of device activity (rank^-s); ~1 is what app and web usage studies report

NETWORKS = ("googleadwords_int", "Facebook Ads", "tiktokglobal_int", "unityads_int", "applovin_int",
            "ironsource_int", "snapchat_int", "mintegral_int")
EVENT_NAMES = ("af_purchase", "add_to_cart", "level_up", "login", "tutorial_complete", "af_content_view")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "BRL")
IOS_UAS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
)
ANDROID_UAS = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 "
    "Mobile Safari/537.36",
)
REQ_DIGITS = 10  # request numbers per driver process: up to 10^10
MAX_BATCH = 10_000
_encoder = msgspec.json.Encoder()


def new_run_id() -> str:
    """8 random hex digits: every record id of a run starts with ``ld<run>``, so runs never collide."""
    return secrets.token_hex(4)


def id_prefix(run_id: str, process: int) -> str:
    """The id prefix of one driver process; the request number follows it."""
    return f"ld{run_id}{process:02x}-"


@dataclass
class Workload:
    """Parameters of the generated traffic."""

    batch_size: int = 1000
    devices: int = 100_000
    seed: int = 0
    templates: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ValueError(f"batch size: expected 1..{MAX_BATCH}, got {self.batch_size}")
        if self.devices < 1:
            raise ValueError(f"devices: expected at least 1, got {self.devices}")
        ranks = np.arange(1, self.devices + 1, dtype=np.float64)
        weights = ranks ** -ZIPF_EXPONENT
        self._cdf = np.cumsum(weights / weights.sum())

    def _device(self, i: int) -> dict[str, Any]:
        # Identifiers derived from the device number, so that every template and
        # every driver process of a seed agrees on who device i is.
        rnd = uuid.UUID(int=(i * 0x9E3779B97F4A7C15 + self.seed * 0xBF58476D1CE4E5B9 + 1) & ((1 << 128) - 1))
        ip = f"{11 + (i >> 16) % 200}.{(i >> 8) & 255}.{i & 255}.{(i * 7) % 250 + 1}"
        if i % 3 == 0:  # a third iOS, as in most markets' install mix
            return {"idfa": str(rnd).upper(), "idfv": str(uuid.UUID(int=rnd.int ^ 0xFFFF)).upper(), "ip": ip,
                    "ua": IOS_UAS[i % 2], "platform": "ios", "os": "iOS", "os_version": "17.4" if i % 2 else "16.6",
                    "model": "iPhone15,2"}
        return {"gaid": str(rnd), "android_id": f"{rnd.int & 0xFFFFFFFFFFFFFFFF:016x}", "ip": ip,
                "ua": ANDROID_UAS[i % 2], "platform": "android", "os": "Android",
                "os_version": "14" if i % 2 else "13", "model": "SM-S918B" if i % 2 else "Pixel 7"}

    def records(self, rng: np.random.Generator, marker: str, now_ms: int) -> list[dict[str, Any]]:
        """One batch of records whose ids are ``marker`` + record number."""
        n = self.batch_size
        kinds = rng.choice(list(KIND_MIX), size=n, p=list(KIND_MIX.values()))
        heavy = np.searchsorted(self._cdf, rng.random(n), side="right").clip(0, self.devices - 1)
        # A fixed shuffle of ranks to device numbers: the heaviest device is not device 0.
        heavy = (heavy * 2654435761 + self.seed) % self.devices
        even = rng.integers(0, self.devices, size=n)
        offsets = rng.integers(0, 3_600_000, size=n)
        out = []
        for j in range(n):
            kind = str(kinds[j])
            dev_no = int(even[j] if kind == "install" else heavy[j])
            rec: dict[str, Any] = {"type": kind, "id": f"{marker}{j:05d}", "ts": now_ms - int(offsets[j]),
                                   "device": self._device(dev_no)}
            if kind in ("click", "impression"):
                net = NETWORKS[dev_no % len(NETWORKS)]
                camp = dev_no % 23
                rec["campaign"] = {"network": net, "campaign": f"{net}-campaign-{camp}",
                                   "adset": f"adset-{camp % 5}", "ad": f"ad-{dev_no % 11}", "site": f"site-{camp % 7}"}
            elif kind == "install" and dev_no % 3:
                rec["referrer"] = "utm_source=google-play&utm_medium=organic"
            elif kind == "event":
                name = EVENT_NAMES[int(rng.integers(len(EVENT_NAMES)))]
                rec["name"] = name
                if name == "af_purchase":
                    rec["revenue"] = round(float(rng.uniform(0.99, 49.99)), 2)
                    rec["currency"] = CURRENCIES[dev_no % len(CURRENCIES)]
                rec["properties"] = {"screen": f"s{dev_no % 9}", "session": int(rng.integers(1, 40))}
            out.append(rec)
        return out


class Template:
    """One pre-encoded JSON body and where its request-number digits sit."""

    def __init__(self, body: bytes, positions: np.ndarray) -> None:
        self.body = np.frombuffer(body, dtype=np.uint8).copy()
        self.positions = positions  # (records, REQ_DIGITS) byte offsets

    def render(self, request_no: int) -> bytes:
        """The body with ``request_no`` written into every record id (a copy: the template stays)."""
        digits = np.frombuffer(f"{request_no:0{REQ_DIGITS}d}".encode(), dtype=np.uint8)
        self.body[self.positions] = digits
        return self.body.tobytes()


def build_templates(workload: Workload, prefix: str, *, seed: int, now_ms: int | None = None) -> list[Template]:
    """``workload.templates`` bodies whose record ids read ``<prefix><request no>-<record no>``."""
    rng = np.random.default_rng(seed)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    placeholder = "0" * REQ_DIGITS
    marker = f"{prefix}{placeholder}-"
    pattern = re.compile(re.escape(f'"{marker}').encode())
    out = []
    for _ in range(workload.templates):
        body = _encoder.encode({"batch": workload.records(rng, marker, now_ms)})
        starts = np.fromiter((m.start() + 1 + len(prefix) for m in pattern.finditer(body)), dtype=np.int64)
        if starts.size != workload.batch_size:
            raise RuntimeError(f"workload: found {starts.size} record ids in a body of {workload.batch_size}")
        out.append(Template(body, starts[:, None] + np.arange(REQ_DIGITS, dtype=np.int64)))
    return out


def request_key(prefix: str, request_no: int) -> str:
    """What every record id of one request starts with (the verification groups by it)."""
    return f"{prefix}{request_no:0{REQ_DIGITS}d}"
