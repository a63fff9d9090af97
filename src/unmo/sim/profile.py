"""Customer traffic profiles: the built-in pilots and profiles described in a JSON file.

A profile says how much traffic a customer's app makes and what it looks like:
platform mix, networks and campaigns with their click and impression volumes,
organic share, which device identifiers exist, click-to-install times, fraud,
reinstalls, engagement, how the customer integrates (``sdk``, ``s2s`` or
``hybrid``) and the app settings the truth assumes.  docs/operations.md
("Describing a profile") documents every field; unknown fields are errors, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from unmo.apps import AppSettings, parse_blocklist, parse_window
from unmo.durations import parse_duration_ms
from unmo.errors import ValidationError, cut

BUILTIN = ("techstart", "ecomgrowth", "financetrack")

Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
PerInstall = Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Network(msgspec.Struct, forbid_unknown_fields=True):
    """An ad network the app buys installs from."""

    name: Name
    share: Share  # of paid (non-organic) installs
    campaigns: Annotated[list[Name], msgspec.Meta(min_length=1)]
    adsets: list[Name] = []
    ads: list[Name] = []
    sites: list[Name] = []
    clicks_per_install: PerInstall = (
        5.0  # clicks sent per paid install of this network (the rest never convert)
    )
    impressions_per_install: PerInstall = 0.0
    view_through_share: Share = 0.0  # of this network's paid installs: credited to an impression


class Ctit(msgspec.Struct, forbid_unknown_fields=True):
    """Click-to-install times of honest clicks (AppsFlyer's published CTIT curve: ~75 % within 1 h,
    ~94 % within 24 h, a tail to the 7-day click window)."""

    within_1h: Share = 0.75
    within_24h: Share = 0.94
    max: str = "7d"
    min: str = "30s"


class Identity(msgspec.Struct, forbid_unknown_fields=True):
    """Which device identifiers exist (ATT opt-in, Limit Ad Tracking, Huawei devices)."""

    ios_idfa_share: Share = 0.25  # users who allowed tracking: the IDFA is known to the network
    android_gaid_share: Share = 0.9  # the rest send the all-zero GAID (Limit Ad Tracking)
    android_oaid_share: Share = 0.0  # of those without a GAID: Huawei devices with an OAID
    android_referrer_share: Share = 0.9  # paid Android installs whose Play install referrer names the click
    shared_ip_share: Share = 0.05  # devices behind a carrier NAT address shared with others
    ip_change_share_24h: Share = 0.3  # devices whose address changed a day after the click
    clock_skew_share: Share = 0.05  # devices whose clock is off by minutes to hours (sent_at corrects)


class Fraud(msgspec.Struct, forbid_unknown_fields=True):
    """Click injection, click flooding and clicks from a blocklisted data-center range."""

    click_injection_share: Share = 0.0  # of Android installs: a click injected 1-8 s before the install
    injection_network: Name = "inject_media"
    flooding_clicks_per_install: PerInstall = 0.0  # clicks with real users' identifiers at random times
    flooding_network: Name = "flood_media"
    blocklisted_click_share: Share = 0.0  # of paid installs: an extra click from the blocklisted range


class Reinstalls(msgspec.Struct, forbid_unknown_fields=True):
    inside_window_share: Share = 0.03  # of installs: the device installs again days later
    outside_window_share: Share = 0.02  # of installs: the device had installed before the window


class Event(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    per_install: PerInstall
    revenue_share: Share = 0.0  # of these events: carry revenue
    revenue_min: Annotated[float, msgspec.Meta(ge=0.0)] = 0.99
    revenue_max: Annotated[float, msgspec.Meta(ge=0.0)] = 9.99
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = "USD"


class Engagement(msgspec.Struct, forbid_unknown_fields=True):
    sessions_per_install: PerInstall = 3.0  # opens in the days after the install
    events: list[Event] = []


class Delivery(msgspec.Struct, forbid_unknown_fields=True):
    retry_share: Share = 0.01  # batches sent again after a lost answer (duplicates)
    offline_share: Share = 0.01  # SDK batches that reach the server hours late
    s2s_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    network_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000


class AppSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The app settings the profile's truth assumes (set them with ``unmo apps set``)."""

    click_window: str = "7d"
    impression_window: str = "24h"
    probabilistic_window: str = "24h"
    reattribution_window: str = "90d"
    min_ctit: str = "10s"
    ip_blocklist: list[str] = []


class Profile(msgspec.Struct, forbid_unknown_fields=True):
    """One customer's traffic."""

    name: Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9_-]{0,63}$")]
    title: Name
    integration: Literal["sdk", "s2s", "hybrid"]
    events_per_day: Annotated[
        float, msgspec.Meta(gt=0, le=1e9)
    ]  # every record a day: touches, installs, opens, events
    platforms: dict[Literal["ios", "android"], Share]
    organic_share: Share
    networks: Annotated[list[Network], msgspec.Meta(min_length=1)]
    vertical: str = ""
    description: str = ""
    ctit: Ctit = msgspec.field(default_factory=Ctit)
    identity: Identity = msgspec.field(default_factory=Identity)
    fraud: Fraud = msgspec.field(default_factory=Fraud)
    reinstalls: Reinstalls = msgspec.field(default_factory=Reinstalls)
    engagement: Engagement = msgspec.field(default_factory=Engagement)
    delivery: Delivery = msgspec.field(default_factory=Delivery)
    app: AppSpec = msgspec.field(default_factory=AppSpec)

    # -- derived -------------------------------------------------------
    def settings(self) -> AppSettings:
        """The app settings the truth is computed with."""
        a = self.app
        return AppSettings(
            click_window_ms=parse_window("click_window", a.click_window),
            impression_window_ms=parse_window("impression_window", a.impression_window),
            probabilistic_window_ms=parse_window("probabilistic_window", a.probabilistic_window),
            reattribution_window_ms=parse_window("reattribution_window", a.reattribution_window),
            min_ctit_ms=parse_window("min_ctit", a.min_ctit),
            ip_blocklist=tuple(parse_blocklist(",".join(a.ip_blocklist))),
        )

    def records_per_install(self) -> float:
        """Records of every kind the app sees per install (for turning events/day into installs/day)."""
        paid = 1.0 - self.organic_share
        touches = (
            sum(n.share * (n.clicks_per_install + n.impressions_per_install) for n in self.networks) * paid
        )
        android = self.platforms.get("android", 0.0)
        fraud = (
            self.fraud.flooding_clicks_per_install
            + self.fraud.click_injection_share * android
            + self.fraud.blocklisted_click_share * paid
        )
        engagement = self.engagement.sessions_per_install + sum(e.per_install for e in self.engagement.events)
        reinstalls = self.reinstalls.inside_window_share + self.reinstalls.outside_window_share
        return 1.0 + touches + fraud + engagement + reinstalls

    def installs_per_day(self, scale: float = 1.0) -> float:
        return self.events_per_day * scale / self.records_per_install()

    def settings_command(self, app_name: str = "APP") -> str:
        """The ``unmo apps set`` line that gives an app this profile's settings."""
        a = self.app
        parts = [
            f"unmo apps set {app_name}",
            f"--click-window {a.click_window}",
            f"--impression-window {a.impression_window}",
            f"--probabilistic-window {a.probabilistic_window}",
            f"--reattribution-window {a.reattribution_window}",
            f"--min-ctit {a.min_ctit}",
        ]
        if a.ip_blocklist:
            parts.append(f"--ip-blocklist {','.join(a.ip_blocklist)}")
        return " ".join(parts)


_decoder = msgspec.json.Decoder(Profile)


def _check(profile: Profile, where: str) -> Profile:
    """Rules the types cannot say; each error names the field and quotes the value."""

    def fail(path: str, expected: str, value: object) -> ValidationError:
        return ValidationError(f"{where}: {path}: {expected}, got {cut(value)}")

    total = sum(profile.platforms.values())
    if not profile.platforms or abs(total - 1.0) > 1e-6:
        raise fail("platforms", "expected shares of ios and android that add up to 1", profile.platforms)
    shares = sum(n.share for n in profile.networks)
    if abs(shares - 1.0) > 1e-6:
        raise fail("networks[].share", "expected shares of paid installs that add up to 1", round(shares, 6))
    names = [n.name for n in profile.networks]
    for i, n in enumerate(profile.networks):
        if names.count(n.name) > 1:
            raise fail(f"networks[{i}].name", "expected a name used once", n.name)
        if n.share > 0 and n.clicks_per_install < 1 and n.view_through_share < 1:
            raise fail(
                f"networks[{i}].clicks_per_install",
                "expected at least 1 click per install for a network that gets click-through installs",
                n.clicks_per_install,
            )
        if n.view_through_share > 0 and n.impressions_per_install < 1:
            raise fail(
                f"networks[{i}].impressions_per_install",
                "expected at least 1 impression per install for a network with view-through installs",
                n.impressions_per_install,
            )
    for path, value in (
        ("fraud.injection_network", profile.fraud.injection_network),
        ("fraud.flooding_network", profile.fraud.flooding_network),
    ):
        if value in names:
            raise fail(path, "expected a network that is not one of the honest networks", value)
    c = profile.ctit
    if not c.within_1h <= c.within_24h:
        raise fail("ctit.within_24h", f"expected at least ctit.within_1h ({c.within_1h})", c.within_24h)
    try:
        settings = profile.settings()
    except ValidationError as exc:
        raise ValidationError(f"{where}: app.{exc}") from None
    ctit_min = parse_duration_ms(c.min, what=f"{where}: ctit.min")
    ctit_max = parse_duration_ms(c.max, what=f"{where}: ctit.max")
    if ctit_min < settings.min_ctit_ms + 10_000:
        raise fail(
            "ctit.min",
            f"expected at least app.min_ctit + 10s ({settings.min_ctit_ms // 1000 + 10}s): honest "
            "clicks must never look injected",
            c.min,
        )
    if not 3_600_000 < ctit_max <= settings.click_window_ms:
        raise fail(
            "ctit.max",
            f"expected more than 1h and at most app.click_window ({profile.app.click_window})",
            c.max,
        )
    if profile.fraud.blocklisted_click_share > 0 and not settings.ip_blocklist:
        raise fail(
            "fraud.blocklisted_click_share",
            "expected app.ip_blocklist to name the range the clicks come from",
            profile.fraud.blocklisted_click_share,
        )
    for i, e in enumerate(profile.engagement.events):
        if e.revenue_max < e.revenue_min:
            raise fail(
                f"engagement.events[{i}].revenue_max",
                f"expected at least revenue_min ({e.revenue_min})",
                e.revenue_max,
            )
    return profile


_AT = re.compile(r" - at (`key` in )?`\$([^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(.+)`$")
_ENUM = re.compile(r"^Invalid enum value (.+)$")
_CHOICES = {"integration": "expected sdk, s2s or hybrid", "platforms": "expected ios or android as keys"}


def _message(exc: msgspec.ValidationError) -> str:
    """msgspec's message as ``path: expected ..., got ...`` (docs/api.md's style)."""
    text = str(exc)
    m = _AT.search(text)
    path = m.group(2).lstrip(".") if m else ""
    head = text[: m.start()] if m else text
    if u := _UNKNOWN.match(head):
        field = f"{path}.{u.group(1)}" if path else u.group(1)
        return f"{field}: unknown field (a typo? docs/operations.md lists the fields)"
    if e := _ENUM.match(head):
        return f"{path}: {_CHOICES.get(path, 'expected one of the documented values')}, got {e.group(1)}"
    return f"{path or 'profile'}: {head[0].lower()}{head[1:]}"


def parse_profile(text: bytes | str, where: str = "profile") -> Profile:
    """A validated profile from JSON text; errors name ``where`` and the field path."""
    try:
        profile = _decoder.decode(text)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"{where}: {_message(exc).replace('`', '')}") from None
    except msgspec.DecodeError as exc:
        raise ValidationError(f"{where}: not valid JSON ({exc})") from None
    return _check(profile, where)


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name (``techstart``, ``ecomgrowth``, ``financetrack``) or a JSON file."""
    if name_or_path in BUILTIN:
        text = resources.files("unmo.sim").joinpath("profiles", f"{name_or_path}.json").read_bytes()
        return parse_profile(text, f"profile {name_or_path}")
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        raise ValidationError(
            f"profile: expected one of {', '.join(BUILTIN)} or a JSON file, got {cut(name_or_path)}"
        )
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"profile: cannot read {cut(name_or_path)} ({exc.strerror})") from None
    if len(text) > 1_000_000:
        raise ValidationError(f"profile: {cut(name_or_path)} is larger than 1 MB ({len(text)} bytes)")
    return parse_profile(text, f"profile {path.name}")


def profile_json(profile: Profile) -> str:
    """The profile as indented JSON (every field, defaults included)."""
    return json.dumps(msgspec.to_builtins(profile), indent=2)
