"""A profile's traffic as records, each install with its story.

``Generator.history`` writes a whole history (``days`` ending at ``end_ms``):
the installs of a Poisson process, each with the touches that led to it (or
none: organic), fraud around it, reinstalls, sessions and in-app events; plus
the clicks and impressions that never convert and the clicks of a flooding
network.  ``Generator.live_story`` makes one user's records around "now" for
``unmo soak``, with the sessions compressed into minutes.

Timestamps keep margins so that the answer never hangs on a millisecond: honest
clicks are at least ``ctit.min`` before the install, injected ones 1 s to
``min_ctit - 2 s``, and no click-to-install time lies within 5 s of a window's
edge.  The server corrects SDK timestamps by ``received_at - sent_at``, which
on loopback is milliseconds, so the truth (computed on the true times) holds.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from unmo.apps import AppSettings
from unmo.durations import parse_duration_ms
from unmo.sim.devices import Device, Fingerprint, Population
from unmo.sim.profile import Network, Profile

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
EDGE_MARGIN_MS = 5 * SECOND

# channels: who sends a record
NETWORK, SDK, SERVER = "network", "sdk", "server"


@dataclass(slots=True)
class Rec:
    """One record to send, with what the truth needs that the wire does not say."""

    wire: dict[str, Any]
    kind: str
    ts: int  # true time, ms (the wire ts adds the device's clock skew)
    channel: str  # network | sdk | server
    lane: str  # records of one lane are sent in order (a network, a device, a server shard)
    device: int = -1  # device index (-1: a network's non-converting traffic)
    fp: Fingerprint | None = None  # the fingerprint the server computes (touches: from the ua)
    scenario: str = ""  # installs: the story that made it
    prehistory: bool = False  # an install from before the history (sent first)


@dataclass
class Traffic:
    """Everything a simulated history sends, in no particular order."""

    profile: Profile
    settings: AppSettings
    start_ms: int
    end_ms: int
    records: list[Rec] = field(default_factory=list)
    skew: dict[int, int] = field(default_factory=dict)  # device index -> clock skew ms (SDK devices)

    @property
    def installs(self) -> int:
        return sum(1 for r in self.records if r.kind == "install")


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method for small means, a rounded normal above 30 (ample for volumes per user)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


class Generator:
    """Makes one run's records from a profile; ``seed`` fixes the shapes, ``salt`` the identities."""

    def __init__(self, profile: Profile, *, seed: int, salt: str, scale: float = 1.0) -> None:
        self.profile = profile
        self.settings = profile.settings()
        self.rng = random.Random(seed)
        self.salt = salt
        self.scale = scale
        ident = profile.identity
        self.pop = Population(
            salt,
            self.rng,
            ios_idfa_share=ident.ios_idfa_share,
            android_gaid_share=ident.android_gaid_share,
            android_oaid_share=ident.android_oaid_share,
            shared_ip_share=ident.shared_ip_share,
            clock_skew_share=ident.clock_skew_share if profile.integration != "s2s" else 0.0,
        )
        self.id_prefix = salt
        self.counter = itertools.count(1)  # shared by the generators of one soak
        self._used_ts: set[int] = set()
        self.ctit_min = parse_duration_ms(profile.ctit.min)
        self.ctit_max = parse_duration_ms(profile.ctit.max)
        s = self.settings
        self._click_edges = [
            s.min_ctit_ms,
            s.click_window_ms,
            min(s.probabilistic_window_ms, s.click_window_ms),
        ]
        self._platforms = list(profile.platforms)
        self._platform_w = [profile.platforms[p] for p in self._platforms]
        self._networks = [n for n in profile.networks if n.share > 0]
        self._network_w = [n.share for n in self._networks]
        self.installers: list[tuple[Device, int]] = []  # (device, install ts) for flooding targets
        self.skew: dict[int, int] = {}
        self.engagement_mean_ms = 36 * HOUR
        self.installs_channel = SERVER if profile.integration == "s2s" else SDK
        self.events_channel = SDK if profile.integration == "sdk" else SERVER

    # -- small helpers -------------------------------------------------------------------
    def next_id(self) -> str:
        return f"{self.id_prefix}-{next(self.counter)}"

    def unique_ts(self, t: int) -> int:
        """Touches and installs get distinct milliseconds: "ties: the later ingested wins" never decides."""
        while t in self._used_ts:
            t += 1
        self._used_ts.add(t)
        return t

    def sample_ctit(self) -> int:
        c = self.profile.ctit
        rng = self.rng
        while True:
            u = rng.random()
            if u < c.within_1h:
                ms = log_uniform(rng, self.ctit_min, HOUR)
            elif u < c.within_24h:
                ms = log_uniform(rng, HOUR, min(DAY, self.ctit_max))
            else:
                ms = log_uniform(rng, min(DAY, self.ctit_max), self.ctit_max - EDGE_MARGIN_MS)
            ctit = int(ms)
            if all(abs(ctit - e) > EDGE_MARGIN_MS for e in self._click_edges):
                return ctit

    def platform(self) -> str:
        return self.rng.choices(self._platforms, self._platform_w)[0]

    def network(self) -> Network:
        return self.rng.choices(self._networks, self._network_w)[0]

    def campaign(self, n: Network) -> dict[str, str]:
        rng = self.rng
        c = {"network": n.name, "campaign": rng.choice(n.campaigns)}
        if n.adsets:
            c["adset"] = rng.choice(n.adsets)
        if n.ads:
            c["ad"] = rng.choice(n.ads)
        if n.sites:
            c["site"] = rng.choice(n.sites)
        return c

    def touch(
        self,
        out: list[Rec],
        kind: str,
        device: Device,
        t: int,
        campaign: dict[str, str],
        *,
        ip: str | None = None,
        with_ids: bool = True,
    ) -> Rec:
        t = self.unique_ts(t)
        agent = device.click_agent(campaign["network"], self.rng)
        ids = device.touch_ids() if with_ids else {}
        address = ip or device.ip
        wire = {
            "type": kind,
            "id": self.next_id(),
            "ts": t,
            "device": {**ids, "ip": address, "ua": agent.ua},
            "campaign": campaign,
        }
        has_ids = with_ids and device.has_touch_id()
        fp = (address, agent.os, agent.version, agent.model) if kind == "click" and not has_ids else None
        rec = Rec(wire, kind, t, NETWORK, campaign["network"], device.index, fp)
        out.append(rec)
        return rec

    def device_rec(
        self,
        out: list[Rec],
        kind: str,
        device: Device,
        t: int,
        channel: str,
        extra: dict[str, Any] | None = None,
        ip: str | None = None,
        scenario: str = "",
    ) -> Rec:
        dev, fp = device.sdk_device(ip or device.ip)
        skew = device.clock_skew_ms if channel == SDK else 0
        if skew:
            self.skew[device.index] = skew
        wire: dict[str, Any] = {"type": kind, "id": self.next_id(), "ts": t + skew, "device": dev}
        if extra:
            wire.update(extra)
        lane = f"d{device.index}" if channel == SDK else f"s{device.index % 8}"
        rec = Rec(wire, kind, t, channel, lane, device.index, fp if kind == "install" else None, scenario)
        out.append(rec)
        return rec

    # -- one user's story ----------------------------------------------------------------
    def story(self, out: list[Rec], t_install: int, end_ms: int, start_ms: int) -> None:
        """An install at ``t_install`` and everything around it; records after ``end_ms`` are not made."""
        p = self.profile
        rng = self.rng
        s = self.settings
        device = self.pop.new(self.platform())
        t = self.unique_ts(t_install)
        paid = rng.random() >= p.organic_share
        scenario = "organic"
        install_ip = device.ip
        referrer = None
        if paid:
            n = self.network()
            camp = self.campaign(n)
            if device.has_touch_id() and rng.random() < n.view_through_share:
                scenario = "view_through"
                gap = rng.randint(MINUTE, s.impression_window_ms - HOUR)
                self.touch(out, "impression", device, t - gap, camp)
            else:
                scenario = "click_through"
                ctit = self.sample_ctit()
                click_ts = max(t - ctit, start_ms)
                if t - click_ts < self.ctit_min or any(
                    abs(t - click_ts - e) <= EDGE_MARGIN_MS for e in self._click_edges
                ):
                    click_ts = t - self.ctit_min  # the history starts: keep the click inside it
                click = self.touch(out, "click", device, click_ts, camp)
                ctit = t - click.ts
                if rng.random() < 0.4:  # the ad was seen before it was clicked
                    self.touch(out, "impression", device, click.ts - rng.randint(MINUTE, HOUR), camp)
                if rng.random() < 0.25:  # an older click of another campaign: the latest one must win
                    other = self.network()
                    older = click.ts - rng.randint(HOUR, 2 * DAY)
                    if (
                        older > start_ms
                        and abs(t - older - s.click_window_ms) > EDGE_MARGIN_MS
                        and abs(t - older - s.probabilistic_window_ms) > EDGE_MARGIN_MS
                    ):
                        self.touch(out, "click", device, older, self.campaign(other))
                # the address may have changed since the click (home Wi-Fi, mobile data)
                if rng.random() < p.identity.ip_change_share_24h * min(1.0, ctit / DAY):
                    install_ip = self.pop.moved(device, 1)
                if device.platform == "android" and rng.random() < p.identity.android_referrer_share:
                    text = (
                        f"utm_source={n.name}&utm_medium=cpi&utm_campaign={quote(camp['campaign'])}"
                        f"&click_id={click.wire['id']}"
                    )
                    referrer = quote(text, safe="") if rng.random() < 0.2 else text
                if p.fraud.blocklisted_click_share and rng.random() < p.fraud.blocklisted_click_share:
                    # a click relayed through a data-center proxy, after the honest one: rejected, skipped
                    scenario = "blocklisted_click"
                    latest = t - s.min_ctit_ms - 2 * EDGE_MARGIN_MS
                    if latest > click.ts + SECOND:
                        bad = self.campaign(n)
                        bad["site"] = "dc-proxy"
                        self.touch(
                            out,
                            "click",
                            device,
                            rng.randint(click.ts + SECOND, latest),
                            bad,
                            ip=self.pop.blocklisted(s.ip_blocklist[0]),
                        )
        elif device.platform == "android" and rng.random() < 0.8:
            referrer = "utm_source=google-play&utm_medium=organic"
        if (
            device.platform == "android"
            and device.has_touch_id()
            and s.min_ctit_ms >= 5 * SECOND
            and rng.random() < p.fraud.click_injection_share
        ):
            # malware that watches for installs clicks seconds before the first open
            scenario = "click_injection"
            inj = {"network": p.fraud.injection_network, "campaign": "cpi_android", "site": "sub_9187"}
            self.touch(
                out, "click", device, t - rng.randint(SECOND, s.min_ctit_ms - 2 * SECOND), inj, ip=install_ip
            )
        if rng.random() < p.reinstalls.outside_window_share:
            # the phone had installed the app long ago, before the re-attribution window
            before = t - s.reattribution_window_ms - rng.randint(DAY, 30 * DAY)
            prior = self.device_rec(
                out,
                "install",
                device,
                self.unique_ts(before),
                self.installs_channel,
                ip=self.pop.moved(device, 2),
                scenario="prior_install",
            )
            prior.prehistory = True
            scenario = "reattribution"
        extra = {"referrer": referrer} if referrer else None
        self.device_rec(out, "install", device, t, self.installs_channel, extra, install_ip, scenario)
        self.installers.append((device, t))
        self.engagement(out, device, t, end_ms, install_ip)
        if rng.random() < p.reinstalls.inside_window_share:
            again = t + rng.randint(2 * HOUR, 5 * DAY)
            if again < end_ms - MINUTE and again - t < s.reattribution_window_ms - EDGE_MARGIN_MS:
                self.device_rec(
                    out,
                    "install",
                    device,
                    self.unique_ts(again),
                    self.installs_channel,
                    ip=install_ip,
                    scenario="reinstall",
                )

    def engagement(self, out: list[Rec], device: Device, t: int, end_ms: int, ip: str) -> None:
        p = self.profile
        rng = self.rng
        mean = self.engagement_mean_ms
        for _ in range(poisson(rng, p.engagement.sessions_per_install)):
            at = t + MINUTE + int(rng.expovariate(1.0 / mean))
            if at < end_ms:
                self.device_rec(out, "open", device, at, self.installs_channel, ip=ip)
        for e in p.engagement.events:
            for _ in range(poisson(rng, e.per_install)):
                at = t + MINUTE + int(rng.expovariate(1.0 / mean))
                if at >= end_ms:
                    continue
                extra: dict[str, Any] = {"name": e.name}
                if e.revenue_share and rng.random() < e.revenue_share:
                    extra["revenue"] = round(rng.uniform(e.revenue_min, e.revenue_max), 2)
                    extra["currency"] = e.currency
                self.device_rec(out, "event", device, at, self.events_channel, extra, ip=ip)

    # -- traffic that never converts ---------------------------------------------------
    def noise(self, out: list[Rec], installs: float, start_ms: int, end_ms: int) -> None:
        """Clicks and impressions of people who never install, and the flooding network's clicks."""
        rng = self.rng
        paid_installs = installs * (1.0 - self.profile.organic_share)
        for n in self._networks:
            net_installs = paid_installs * n.share
            clicks = poisson(rng, max(0.0, n.clicks_per_install - (1 - n.view_through_share)) * net_installs)
            impressions = poisson(
                rng, max(0.0, n.impressions_per_install - n.view_through_share - 0.4) * net_installs
            )
            for kind, count in (("click", clicks), ("impression", impressions)):
                for _ in range(count):
                    d = self.pop.new(self.platform())
                    self.touch(out, kind, d, rng.randint(start_ms, end_ms - 1), self.campaign(n))
        f = self.profile.fraud
        total = poisson(rng, f.flooding_clicks_per_install * installs)
        camp = {"network": f.flooding_network, "campaign": "cpi_flood", "site": "sub_4411"}
        for _ in range(total):
            at = rng.randint(start_ms, end_ms - 1)
            if self.installers and rng.random() < 0.3:
                target, t_install = rng.choice(self.installers)
                if target.has_touch_id():
                    # keep clear of the install's edges: before/after, min CTIT, the windows
                    gap = t_install - at
                    if all(abs(gap - e) > EDGE_MARGIN_MS for e in (0, *self._click_edges)):
                        self.touch(out, "click", target, at, dict(camp))
                    continue
            self.touch(out, "click", self.pop.new(self.platform()), at, dict(camp))

    # -- whole histories and live users ---------------------------------------------------
    def history(self, days: float, end_ms: int) -> Traffic:
        """``days`` of traffic ending at ``end_ms``."""
        start_ms = end_ms - int(days * DAY)
        out: list[Rec] = []
        n = poisson(self.rng, self.profile.installs_per_day(self.scale) * days)
        # keep the first installs clear of the history's start, so that their clicks fit in it
        first = start_ms + max(self.ctit_min + MINUTE, 2 * HOUR if days > 0.5 else MINUTE)
        if first >= end_ms - MINUTE:
            raise ValueError(f"history of {days} days is too short for installs with their clicks")
        times = sorted(self.rng.randint(first, end_ms - MINUTE) for _ in range(n))
        for t in times:
            self.story(out, t, end_ms, start_ms)
        self.noise(out, n, start_ms, end_ms)
        traffic = Traffic(self.profile, self.settings, start_ms, end_ms, out, dict(self.skew))
        return traffic

    def live_story(self, now_ms: int, horizon_ms: int, out: list[Rec]) -> None:
        """One user installing now; sessions within ``horizon_ms`` (soak: minutes, not days)."""
        self.engagement_mean_ms = max(MINUTE, horizon_ms // 4)
        self.story(out, now_ms, now_ms + horizon_ms, now_ms - self.settings.click_window_ms)
        if len(self.installers) > 10_000:
            del self.installers[:5_000]
        if len(self._used_ts) > 200_000:
            self._used_ts.clear()

    def live_noise(self, out: list[Rec], installs: float, now_ms: int, span_ms: int) -> None:
        """The never-converting touches that go with ``installs`` installs, over the last ``span_ms``."""
        self.noise(out, installs, now_ms - span_ms, now_ms)
