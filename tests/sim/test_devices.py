"""The user-agent catalog says what ua-parser reads; the truth relies on it (unmo.sim.devices)."""

import random

import pytest

from unmo.ingest.fingerprint import fingerprint_parts, parse_ua
from unmo.sim import devices
from unmo.sim.devices import (
    ANDROID_MODELS,
    IOS_VERSIONS,
    IPHONE_MODELS,
    Population,
    android_chrome_reduced,
    android_dalvik,
    android_webview,
    ios_facebook,
    ios_safari,
    ios_webview,
)

AGENTS = (
    [ios_safari(v, s) for v, s, _w in IOS_VERSIONS]
    + [ios_webview(v) for v, _s, _w in IOS_VERSIONS]
    + [ios_facebook(v, m) for v, _s, _w in IOS_VERSIONS for m in IPHONE_MODELS]
    + [android_webview(m, b, v) for m, b, v, _w in ANDROID_MODELS]
    + [android_dalvik(m, b, v) for m, b, v, _w in ANDROID_MODELS]
    + [android_chrome_reduced()]
)


@pytest.mark.parametrize("agent", AGENTS, ids=lambda a: a.ua[:60])
def test_catalog_matches_ua_parser(agent):
    assert parse_ua(agent.ua) == (agent.os, agent.version, agent.model)


def test_sdk_install_fingerprint_is_what_the_server_computes():
    pop = Population(
        "salt",
        random.Random(3),
        ios_idfa_share=0.5,
        android_gaid_share=0.5,
        android_oaid_share=0.5,
        shared_ip_share=0.1,
        clock_skew_share=0.1,
    )
    for platform in ("ios", "android") * 40:
        d = pop.new(platform)
        dev, fp = d.sdk_device(d.ip)
        server = fingerprint_parts(
            dev["ip"], dev["ua"], dev.get("os"), dev.get("os_version"), dev.get("model")
        )
        assert server == fp


def test_safari_click_and_ios_sdk_install_share_a_fingerprint_but_facebook_clicks_do_not():
    pop = Population(
        "salt",
        random.Random(5),
        ios_idfa_share=0.0,
        android_gaid_share=1.0,
        android_oaid_share=0.0,
        shared_ip_share=0.0,
        clock_skew_share=0.0,
    )
    d = pop.new("ios")
    _dev, install_fp = d.sdk_device(d.ip)
    safari = ios_safari(d.os_version, d.safari)
    assert (d.ip, *parse_ua(safari.ua)) == install_fp
    fb = ios_facebook(d.os_version, d.hardware)
    assert (d.ip, *parse_ua(fb.ua)) != install_fp


def test_identities_depend_on_the_salt_only():
    a = Population(
        "one",
        random.Random(1),
        ios_idfa_share=1,
        android_gaid_share=1,
        android_oaid_share=0,
        shared_ip_share=0,
        clock_skew_share=0,
    )
    b = Population(
        "one",
        random.Random(1),
        ios_idfa_share=1,
        android_gaid_share=1,
        android_oaid_share=0,
        shared_ip_share=0,
        clock_skew_share=0,
    )
    c = Population(
        "two",
        random.Random(1),
        ios_idfa_share=1,
        android_gaid_share=1,
        android_oaid_share=0,
        shared_ip_share=0,
        clock_skew_share=0,
    )
    da, db, dc = a.new("ios"), b.new("ios"), c.new("ios")
    assert da.idfa == db.idfa and da.ip == db.ip
    assert da.idfa != dc.idfa and da.ip != dc.ip
    assert devices.major_minor("17") == "17.0"
