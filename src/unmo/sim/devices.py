"""Simulated phones: identifiers, addresses, and the user agents their clicks and installs carry.

Every user agent here comes with the fingerprint parts that a maintained
user-agent parser (ua-parser, uap-core rules) reads from it; tests/sim checks the
catalog against ua-parser, so the truth never needs the parser and a parser
upgrade that reads these agents differently fails a test instead of silently
lowering accuracy.

What the simulated SDK reports at install (chosen so that an install and the
click of the same phone produce the fingerprints a real SDK + browser pair
would, attribution.md "fingerprint"):

* iOS: ``os`` "iOS" and the full ``os_version``, the WKWebView user agent, and
  no ``model``: the model falls back to the user agent ("iPhone"), which equals
  what Safari's user agent gives a click.  An explicit hardware model such as
  ``iPhone14,2`` would never equal Safari's "iPhone".  Clicks made in Facebook's
  in-app browser carry the hardware model (``FBDV/iPhone14,2``), so they do not
  match these installs probabilistically: by the spec's fingerprint that is the
  right answer, and the truth says so.
* Android: ``os`` "Android", ``os_version`` and ``model`` = ``Build.MODEL`` (what
  Android SDKs send), with the Dalvik user agent.  In-app WebView clicks carry
  the same model; Chrome's reduced user agent ("Android 10; K", Chrome 110+)
  does not, so those clicks only match through identifiers or the referrer.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import uuid
from dataclasses import dataclass

from unmo.model import ZERO_ID

Fingerprint = tuple[str, str | None, str | None, str | None]

# (os_version, Safari version) of iPhones in use, with weights (Apple's share-of-versions pages, late 2024).
IOS_VERSIONS = [
    ("18.0.1", "18.0.1", 30),
    ("17.6.1", "17.6", 25),
    ("17.4", "17.4", 15),
    ("17.1.2", "17.1.2", 10),
    ("16.7.10", "16.6", 15),
    ("15.8.3", "15.6.6", 5),
]
# Hardware identifiers Facebook's in-app browser reports (FBDV).
IPHONE_MODELS = ["iPhone12,1", "iPhone13,2", "iPhone14,2", "iPhone14,5", "iPhone15,2", "iPhone16,1"]
# (Build.MODEL, Build.ID, Android version, weight)
ANDROID_MODELS = [
    ("SM-S911B", "UP1A.231005.007", "14", 12),
    ("SM-A546B", "TP1A.220624.014", "13", 14),
    ("Pixel 8", "UQ1A.240205.004", "14", 8),
    ("Pixel 7", "TQ3A.230901.001", "13", 8),
    ("M2101K6G", "SKQ1.210908.001", "12", 10),
    ("CPH2451", "TP1A.220905.001", "13", 8),
    ("moto g(30)", "RRIS31.Q1-42-51-12", "11", 6),
    ("ANA-NX9", "HUAWEIANA-N29", "12", 4),
]
CHROME = "120.0.6099.144"
# Where the uap-core rules read a WebView agent's model differently from Build.MODEL: Motorola's
# "moto g(30) Build/..." matches a Motorola rule that keeps the rest of the platform token.  The
# server's fingerprint uses what the parser reads, so the truth does too.
WEBVIEW_MODEL_AS_PARSED = {"moto g(30)": "g(30) build/rris31.q1-42-51-12; wv"}
DALVIK_MODEL_AS_PARSED = {"moto g(30)": "g(30)"}  # installs send Build.MODEL explicitly, which wins


@dataclass(slots=True)
class Agent:
    """A user agent and the fingerprint parts ua-parser reads from it (lower-cased)."""

    ua: str
    os: str
    version: str
    model: str


def ios_safari(version: str, safari: str) -> Agent:
    v = version.replace(".", "_")
    return Agent(
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        f"Version/{safari} Mobile/15E148 Safari/604.1",
        "ios",
        major_minor(version),
        "iphone",
    )


def ios_webview(version: str) -> Agent:
    v = version.replace(".", "_")
    return Agent(
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148",
        "ios",
        major_minor(version),
        "iphone",
    )


def ios_facebook(version: str, hardware: str) -> Agent:
    v = version.replace(".", "_")
    return Agent(
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        f"Mobile/15E148 [FBAN/FBIOS;FBAV/449.0.0.33.109;FBBV/567856741;FBDV/{hardware};FBMD/iPhone;"
        f"FBSN/iOS;FBSV/{version};FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
        "ios",
        major_minor(version),
        hardware.lower(),
    )


def android_webview(model: str, build: str, version: str) -> Agent:
    return Agent(
        f"Mozilla/5.0 (Linux; Android {version}; {model} Build/{build}; wv) AppleWebKit/537.36 "
        f"(KHTML, like Gecko) Version/4.0 Chrome/{CHROME} Mobile Safari/537.36",
        "android",
        major_minor(version),
        WEBVIEW_MODEL_AS_PARSED.get(model, model.lower()),
    )


def android_chrome_reduced() -> Agent:
    # Chrome 110+ sends a frozen platform: "Android 10; K" (chromium.org, User-Agent Reduction).
    return Agent(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
        "Mobile Safari/537.36",
        "android",
        "10.0",
        "k",
    )


def android_dalvik(model: str, build: str, version: str) -> Agent:
    return Agent(
        f"Dalvik/2.1.0 (Linux; U; Android {version}; {model} Build/{build})",
        "android",
        major_minor(version),
        DALVIK_MODEL_AS_PARSED.get(model, model.lower()),
    )


def major_minor(version: str) -> str:
    parts = version.split(".")
    return f"{parts[0]}.{parts[1] if len(parts) > 1 else '0'}"


def _digest(salt: str, *parts: object) -> bytes:
    return hashlib.blake2b(":".join(map(str, (salt, *parts))).encode(), digest_size=16).digest()


@dataclass(slots=True)
class Device:
    """One phone.  Identifiers and addresses derive from (run salt, index), so every run has its own."""

    index: int
    platform: str  # ios | android
    os_version: str
    hardware: str  # iPhone14,2 or Build.MODEL
    build: str
    idfa: str | None  # known to networks only when the user allowed tracking
    gaid: str | None  # None: Limit Ad Tracking, networks send the all-zero GAID
    oaid: str | None
    idfv: str | None
    android_id: str | None
    ip: str
    clock_skew_ms: int = 0
    safari: str = ""

    # -- what a network sees on a click or impression ----------------------------------
    def touch_ids(self) -> dict[str, str]:
        if self.platform == "ios":
            return {"idfa": self.idfa} if self.idfa else {}
        if self.gaid:
            return {"gaid": self.gaid}
        if self.oaid:
            return {"oaid": self.oaid}
        return {"gaid": ZERO_ID}  # what ad networks forward for a Limit Ad Tracking user

    def has_touch_id(self) -> bool:
        return bool(self.idfa if self.platform == "ios" else (self.gaid or self.oaid))

    def click_agent(self, network: str, rng: random.Random) -> Agent:
        if self.platform == "ios":
            if network == "meta":
                return ios_facebook(self.os_version, self.hardware)
            return (
                ios_safari(self.os_version, self.safari)
                if rng.random() < 0.6
                else ios_webview(self.os_version)
            )
        if rng.random() < 0.3:
            return android_chrome_reduced()
        return android_webview(self.hardware, self.build, self.os_version)

    # -- what the SDK reports ---------------------------------------------------------
    def sdk_device(self, ip: str) -> tuple[dict[str, str], Fingerprint]:
        """The install's ``device`` object and the fingerprint the server computes for it."""
        d: dict[str, str] = {}
        if self.platform == "ios":
            if self.idfa:
                d["idfa"] = self.idfa
            if self.idfv:
                d["idfv"] = self.idfv
            agent = ios_webview(self.os_version)
            d.update(ip=ip, ua=agent.ua, platform="ios", os="iOS", os_version=self.os_version)
            return d, (ip, "ios", major_minor(self.os_version), agent.model)
        d["gaid"] = self.gaid or ZERO_ID
        if self.oaid:
            d["oaid"] = self.oaid
        if self.android_id:
            d["android_id"] = self.android_id
        agent = android_dalvik(self.hardware, self.build, self.os_version)
        d.update(
            ip=ip,
            ua=agent.ua,
            platform="android",
            os="Android",
            os_version=self.os_version,
            model=self.hardware,
        )
        return d, (ip, "android", major_minor(self.os_version), self.hardware.lower())


class Population:
    """Makes devices for one run: identifiers from the run salt, shapes from the seeded generator."""

    def __init__(
        self,
        salt: str,
        rng: random.Random,
        *,
        ios_idfa_share: float,
        android_gaid_share: float,
        android_oaid_share: float,
        shared_ip_share: float,
        clock_skew_share: float,
    ) -> None:
        self.salt = salt
        self.rng = rng
        self.ios_idfa_share = ios_idfa_share
        self.android_gaid_share = android_gaid_share
        self.android_oaid_share = android_oaid_share
        self.shared_ip_share = shared_ip_share
        self.clock_skew_share = clock_skew_share
        self.count = 0
        self._ios_w = [w for *_x, w in IOS_VERSIONS]
        self._android_w = [w for *_x, w in ANDROID_MODELS]
        self.nat_pool = 64

    def uuid_id(self, *parts: object) -> str:
        return str(uuid.UUID(bytes=_digest(self.salt, *parts)))

    def address(self, *parts: object) -> str:
        """A public-looking IPv4 (70 %) or IPv6 address derived from the salt."""
        d = _digest(self.salt, "ip", *parts)
        if d[0] < 180:
            # 1.0.0.0 - 223.255.255.255 without 10/8, 127/8 and the blocklist ranges the profiles use
            first = 1 + d[1] % 222
            if first in (10, 127, 198, 203):
                first += 1
            return f"{first}.{d[2]}.{d[3]}.{1 + d[4] % 254}"
        return str(ipaddress.IPv6Address(b"\x20\x01\x0d\xb8" + d[4:16]))

    def new(self, platform: str) -> Device:
        rng = self.rng
        k = self.count
        self.count += 1
        if rng.random() < self.shared_ip_share:
            ip = self.address("nat", rng.randrange(self.nat_pool))
        else:
            ip = self.address("dev", k)
        skew = 0
        if rng.random() < self.clock_skew_share:
            skew = rng.choice((-1, 1)) * rng.randrange(60_000, 3 * 3_600_000)
        if platform == "ios":
            version, safari, _w = rng.choices(IOS_VERSIONS, self._ios_w)[0]
            return Device(
                k,
                "ios",
                version,
                rng.choice(IPHONE_MODELS),
                "",
                self.uuid_id("idfa", k) if rng.random() < self.ios_idfa_share else None,
                None,
                None,
                self.uuid_id("idfv", k),
                None,
                ip,
                skew,
                safari,
            )
        model, build, version, _w = rng.choices(ANDROID_MODELS, self._android_w)[0]
        gaid = self.uuid_id("gaid", k) if rng.random() < self.android_gaid_share else None
        oaid = None
        if gaid is None and rng.random() < self.android_oaid_share:
            oaid = self.uuid_id("oaid", k)
        android_id = _digest(self.salt, "aid", k).hex()[:16]
        return Device(k, "android", version, model, build, None, gaid, oaid, None, android_id, ip, skew)

    def moved(self, device: Device, epoch: int) -> str:
        """The device's address after it changed network (``epoch`` numbers the changes)."""
        return self.address("move", device.index, epoch)

    def blocklisted(self, cidr: str) -> str:
        net = ipaddress.ip_network(cidr, strict=False)
        size = net.num_addresses
        offset = 1 + self.rng.randrange(max(1, size - 2)) if size > 2 else 0
        return str(net.network_address + offset)
