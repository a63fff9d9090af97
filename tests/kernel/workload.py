"""Seeded random workloads of one app: long histories of wire records for the differential and
eviction tests (hypothesis explores small edges; these explore long, busy histories).

Devices are a fixed population, each with a few identifiers (some with none: the
probabilistic tier), an address and a user agent; every record reports its device with the
identifiers respelled and sometimes one of them left out, as SDKs and networks do.  Batches
arrive every ``step_ms``; each record's ts lags its batch's receive time by up to ``lag_ms``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tests.kernel.records import ANDROID_UA, IOS_UA, PIXEL_UA, T0

UAS = (IOS_UA, ANDROID_UA, PIXEL_UA)
KINDS = ("click", "impression", "install", "open", "event")


@dataclass
class Mix:
    """Share of each record type (relative weights)."""

    click: float = 0.35
    impression: float = 0.25
    install: float = 0.08
    open: float = 0.12
    event: float = 0.2

    def weights(self) -> list[float]:
        return [self.click, self.impression, self.install, self.open, self.event]


def make_devices(rng: random.Random, n: int, idless: float = 0.15) -> list[dict[str, str]]:
    devices = []
    for d in range(n):
        net = "198" if rng.random() < 0.9 else "10"  # 10.0.0.0/24 is the blocklist of some tests
        ip = f"{net}.{d // 65536 % 256}.{d // 256 % 256}.{d % 256}"
        dev = {"ip": ip, "ua": UAS[d % 3]}
        if rng.random() >= idless:
            if d % 3 == 0:
                dev["idfa"] = f"{d:08X}-0000-4000-8000-{rng.getrandbits(48):012X}"
                if rng.random() < 0.5:
                    dev["idfv"] = f"{d:08X}-1111-4000-8000-{rng.getrandbits(48):012X}"
            else:
                dev["gaid"] = f"{d:08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
                if rng.random() < 0.3:
                    dev["android_id"] = f"{rng.getrandbits(64):016x}"
        devices.append(dev)
    return devices


def report(rng: random.Random, device: dict[str, str]) -> dict[str, str]:
    """The device as one record reports it."""
    out = dict(device)
    for name in ("idfa", "gaid", "idfv", "android_id"):
        if name in out:
            r = rng.random()
            if r < 0.1:
                out[name] = out[name].swapcase()
            elif r < 0.15:
                out[name] = f" {out[name]} "
            elif r < 0.22 and len([k for k in out if k not in ("ip", "ua")]) > 1:
                del out[name]
    if rng.random() < 0.03:
        out["idfa"] = "00000000-0000-0000-0000-000000000000"
    return out


def history(
    rng: random.Random,
    *,
    batches: int,
    batch_size: int,
    devices: int,
    step_ms: int,
    lag_ms: int,
    mix: Mix | None = None,
    dup_rate: float = 0.02,
    start: int = T0,
) -> list[tuple[int, list[dict[str, Any]]]]:
    """``batches`` batches of ``batch_size`` records, received ``step_ms`` apart."""
    pop = make_devices(rng, devices)
    weights = (mix or Mix()).weights()
    recent: list[str] = []
    clicks: list[str] = []
    out = []
    n = 0
    for b in range(batches):
        received = start + b * step_ms
        records = []
        for _ in range(batch_size):
            kind = rng.choices(KINDS, weights)[0]
            if recent and rng.random() < dup_rate:
                rid = rng.choice(recent)
            else:
                rid = f"{kind[0]}{n}"
                n += 1
            rec: dict[str, Any] = {"type": kind, "id": rid, "ts": received - rng.randint(0, lag_ms),
                                   "device": report(rng, rng.choice(pop))}
            if kind in ("click", "impression"):
                rec["campaign"] = {"network": f"net{rng.randrange(4)}", "campaign": f"c{rng.randrange(20)}"}
                if kind == "click":
                    clicks.append(rid)
            elif kind == "install" and clicks and rng.random() < 0.1:
                rec["referrer"] = f"utm_source=google-play&click_id={rng.choice(clicks[-2000:])}"
            elif kind == "event":
                rec["name"] = "purchase"
                rec["revenue"] = 1.0
            records.append(rec)
            recent.append(rid)
        del recent[:-5000]
        out.append((received, records))
    return out
