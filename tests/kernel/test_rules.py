"""One test (at least) per rule of /work/shared/spec/attribution.md, each named after its rule.

Every test runs on both engines (the Cython kernel and the plain-Python reference), through the
``make`` fixture of conftest.py.  The section comments follow the spec's headings; the
interpretation decisions they rely on are numbered as in docs/kernel.md.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest

from tests.kernel.engines import Engine
from tests.kernel.records import (
    ANDROID_UA,
    DAY,
    GAID_1,
    GAID_2,
    HOUR,
    IDFA_1,
    IDFA_2,
    IDFV_1,
    IOS_UA,
    MINUTE,
    PIXEL_UA,
    SECOND,
    T0,
    ZERO,
    click,
    event,
    feed,
    impression,
    install,
    one,
    open_,
)

Make = Callable[..., Engine]


def won(out: object) -> str | None:
    res = out.result  # type: ignore[attr-defined]
    assert res is not None
    return res["touch_id"]


# -- Words ---------------------------------------------------------------------------------

def test_words_app_two_apps_never_see_each_others_records(make: Make) -> None:
    a, b = make(), make()
    feed(a, click("c1", T0, idfa=IDFA_1))
    out_b = one(b, install("i1", T0 + HOUR, idfa=IDFA_1))
    assert out_b.outcome == "organic"
    assert one(b, click("c1", T0 + 2 * HOUR, idfa=IDFA_1)).dup is False  # ids are per app
    assert one(a, install("i1", T0 + HOUR, idfa=IDFA_1)).outcome == "attributed"


def test_words_device_identifiers_compare_case_insensitively(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfa=IDFA_1.lower()), click("c2", T0, gaid=f"  {GAID_1.upper()} "))
    assert won(one(e, install("i1", T0 + HOUR, idfa=IDFA_1.upper()))) == "c1"
    assert won(one(e, install("i2", T0 + HOUR, gaid=GAID_1))) == "c2"


def test_words_all_zero_idfa_and_gaid_mean_no_identifier(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfa=ZERO), click("c2", T0, gaid=ZERO), click("c3", T0, idfa=""))
    assert one(e, install("i1", T0 + HOUR, idfa=ZERO)).outcome == "organic"
    assert one(e, install("i2", T0 + HOUR, gaid=ZERO)).outcome == "organic"
    # and an install with only the zero id is not a reinstall of another one
    assert one(e, install("i3", T0 + 2 * HOUR, idfa=ZERO)).outcome == "organic"
    assert one(e, event("e1", T0 + 3 * HOUR, idfa=ZERO)).outcome == "unattributed"


def test_words_identifiers_are_typed(make: Make) -> None:
    """Decision 3: an idfa matches idfas only, never an idfv or gaid of the same text."""
    e = make()
    feed(e, click("c1", T0, idfv=IDFA_1))
    assert one(e, install("i1", T0 + HOUR, idfa=IDFA_1)).outcome == "organic"
    assert one(e, install("i2", T0 + HOUR, idfv=IDFA_1)).outcome == "attributed"


def test_words_touch_fingerprint_is_parsed_from_its_user_agent(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, ip="203.0.113.7", ua=IOS_UA))
    # the install's own UA (an app's, unparseable) is overridden by its explicit fields
    out = one(e, install("i1", T0 + HOUR, ip="203.0.113.7", ua="MyApp/1.0", os="iOS", os_version="17.1.2",
                         model="iPhone"))
    assert won(out) == "c1" and out.result is not None and out.result["match"] == "probabilistic"


def test_words_install_explicit_os_fields_win_over_its_user_agent(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, ip="203.0.113.7", ua=ANDROID_UA))
    # UA says android 14 sm-s918b, but the explicit model says pixel 7: no match
    assert one(e, install("i1", T0 + HOUR, ip="203.0.113.7", ua=ANDROID_UA, model="Pixel 7")).outcome == "organic"
    # only the fields the install leaves out come from its UA
    out = one(e, install("i2", T0 + HOUR, ip="203.0.113.7", ua=PIXEL_UA, os_version="14", model="SM-S918B"))
    assert won(out) == "c1"


def test_words_fingerprint_needs_an_ip(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, ua=IOS_UA))
    assert one(e, install("i1", T0 + HOUR, ua=IOS_UA)).outcome == "organic"


def test_words_ctit_is_install_ts_minus_click_ts(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfa=IDFA_1))
    out = one(e, install("i1", T0 + 5400 * SECOND + 250, idfa=IDFA_1))
    assert out.result is not None and out.result["ctit_s"] == 5400.25


# -- Windows and thresholds ------------------------------------------------------------------

@pytest.mark.parametrize("delta, expect", [(0, "attributed"), (1, "organic")])
def test_windows_click_window_limit_is_inside(make: Make, delta: int, expect: str) -> None:
    e = make(click_window_ms=HOUR, impression_window_ms=HOUR)
    feed(e, click("c1", T0, idfa=IDFA_1))
    assert one(e, install("i1", T0 + HOUR + delta, idfa=IDFA_1)).outcome == expect


@pytest.mark.parametrize("delta, expect", [(0, "attributed"), (1, "organic")])
def test_windows_impression_window_limit_is_inside(make: Make, delta: int, expect: str) -> None:
    e = make(impression_window_ms=2 * HOUR)
    feed(e, impression("m1", T0, gaid=GAID_1))
    out = one(e, install("i1", T0 + 2 * HOUR + delta, gaid=GAID_1))
    assert out.outcome == expect


@pytest.mark.parametrize("delta, expect", [(0, "attributed"), (1, "organic")])
def test_windows_probabilistic_window_never_the_longer_click_window(make: Make, delta: int, expect: str) -> None:
    e = make(click_window_ms=7 * DAY, probabilistic_window_ms=3 * HOUR)
    feed(e, click("c1", T0, ip="198.51.100.1", ua=IOS_UA))
    out = one(e, install("i1", T0 + 3 * HOUR + delta, ip="198.51.100.1", ua=IOS_UA))
    assert out.outcome == expect


def test_windows_probabilistic_window_capped_by_a_shorter_click_window(make: Make) -> None:
    """Decision 6: a probabilistic match is a click match, so the click window bounds it too."""
    e = make(click_window_ms=HOUR, probabilistic_window_ms=DAY)
    feed(e, click("c1", T0, ip="198.51.100.1", ua=IOS_UA))
    assert one(e, install("i1", T0 + HOUR, ip="198.51.100.1", ua=IOS_UA)).outcome == "attributed"
    assert one(e, install("i2", T0 + HOUR + 1, ip="198.51.100.1", ua=IOS_UA)).outcome == "organic"


def test_windows_probabilistic_window_zero_is_off(make: Make) -> None:
    e = make(probabilistic_window_ms=0)
    feed(e, click("c1", T0, ip="198.51.100.1", ua=IOS_UA))
    assert one(e, install("i1", T0 + MINUTE, ip="198.51.100.1", ua=IOS_UA)).outcome == "organic"


@pytest.mark.parametrize("delta, expect", [(0, "reinstall"), (1, "organic")])
def test_windows_reattribution_window_limit_is_inside(make: Make, delta: int, expect: str) -> None:
    e = make(reattribution_window_ms=DAY)
    feed(e, install("i1", T0, idfa=IDFA_1))
    assert one(e, install("i2", T0 + DAY + delta, idfa=IDFA_1)).outcome == expect


@pytest.mark.parametrize("delta, expect", [(0, "attributed"), (-1, "organic")])
def test_windows_min_ctit_exactly_is_accepted_one_ms_below_is_rejected(make: Make, delta: int, expect: str) -> None:
    e = make(min_ctit_ms=10 * SECOND)
    feed(e, click("c1", T0, idfa=IDFA_1))
    out = one(e, install("i1", T0 + 10 * SECOND + delta, idfa=IDFA_1))
    assert out.outcome == expect
    assert out.result is not None
    assert out.result["rejected"] == ([] if delta == 0 else [{"touch_id": "c1", "reason": "ctit_anomaly"}])


def test_windows_min_ctit_zero_is_off(make: Make) -> None:
    e = make(min_ctit_ms=0)
    feed(e, click("c1", T0, idfa=IDFA_1))
    out = one(e, install("i1", T0, idfa=IDFA_1))
    assert won(out) == "c1" and out.result is not None and out.result["ctit_s"] == 0.0


def test_windows_ip_blocklist_is_a_list_of_cidrs(make: Make) -> None:
    e = make(ip_blocklist=("10.0.0.0/8", "2001:db8::/32"))
    outs = feed(e, click("c1", T0, idfa=IDFA_1, ip="10.1.2.3"), click("c2", T0, gaid=GAID_1, ip="2001:db8::5"),
                click("c3", T0, idfv=IDFV_1, ip="11.0.0.1"), click("c4", T0, idfa=IDFA_2, ip="::ffff:10.0.0.9"))
    assert [o.outcome for o in outs] == ["ip_blocklist", "ip_blocklist", "ok", "ip_blocklist"]


# -- The waterfall ---------------------------------------------------------------------------

def test_waterfall_touch_after_install_ts_is_not_eligible(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0 + HOUR + 1, idfa=IDFA_1))
    assert one(e, install("i1", T0 + HOUR, idfa=IDFA_1), at=T0 + 2 * HOUR).outcome == "organic"


def test_waterfall_first_tier_with_a_candidate_wins(make: Make) -> None:
    def scenario() -> Engine:
        e = make()
        feed(e, click("ref", T0, network="a", gaid=GAID_2), click("dev", T0 + HOUR, network="b", gaid=GAID_1),
             click("prob", T0 + 2 * HOUR, network="c", ip="192.0.2.1", ua=ANDROID_UA),
             impression("imp", T0 + 3 * HOUR, network="d", gaid=GAID_1, oaid="o-1"))
        return e

    t = T0 + 4 * HOUR
    fp = {"ip": "192.0.2.1", "ua": ANDROID_UA}
    cases = [
        (install("i1", t, referrer="utm_source=x&click_id=ref", gaid=GAID_1, **fp), ("ref", "click", "referrer")),
        (install("i2", t, gaid=GAID_1, **fp), ("dev", "click", "device")),
        (install("i3", t, oaid="o-1", **fp), ("prob", "click", "probabilistic")),
        (install("i4", t, oaid="o-1", ip="192.0.2.99", ua=ANDROID_UA), ("imp", "impression", "device")),
        (install("i5", t, oaid="o-2", ip="192.0.2.99", ua=ANDROID_UA), (None, None, None)),
    ]
    for record, expect in cases:
        out = one(scenario(), record)
        assert out.result is not None
        assert (out.result["touch_id"], out.result["touch"], out.result["match"]) == expect, record["id"]


def test_waterfall_inside_a_tier_the_latest_touch_wins(make: Make) -> None:
    e = make()
    feed(e, click("c2", T0 + 2 * HOUR, idfa=IDFA_1), click("c1", T0 + HOUR, idfa=IDFA_1),
         click("c3", T0 + 3 * HOUR, idfa=IDFA_1))
    assert won(one(e, install("i1", T0 + 4 * HOUR, idfa=IDFA_1))) == "c3"


def test_waterfall_equal_ts_the_touch_ingested_later_wins(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfa=IDFA_1), click("c2", T0, idfa=IDFA_1))   # same batch: c2 later
    assert won(one(e, install("i1", T0 + HOUR, idfa=IDFA_1))) == "c2"
    feed(e, click("c4", T0, gaid=GAID_1))
    feed(e, click("c3", T0, gaid=GAID_1))                                 # later batch wins
    assert won(one(e, install("i2", T0 + HOUR, gaid=GAID_1))) == "c3"


@pytest.mark.parametrize("referrer", [
    "utm_source=google-play&click_id=c-1",
    "utm_source%3Dgoogle-play%26click_id%3Dc-1",                    # URL-encoded once
    quote(quote("utm_source=google-play&click_id=c-1", safe=""), safe=""),  # twice
])
def test_waterfall_referrer_click_id_names_the_click(make: Make, referrer: str) -> None:
    e = make()
    feed(e, click("c-1", T0, network="referred"), click("c-2", T0 + HOUR, network="other", gaid=GAID_1))
    out = one(e, install("i1", T0 + 2 * HOUR, referrer=referrer, gaid=GAID_1))
    assert out.result is not None
    assert (out.result["touch_id"], out.result["match"], out.result["network"]) == ("c-1", "referrer", "referred")


def test_waterfall_referrer_naming_an_impression_or_unknown_id_falls_through(make: Make) -> None:
    e = make()
    feed(e, impression("m-1", T0, gaid=GAID_2), click("c-2", T0 + HOUR, gaid=GAID_1))
    out = one(e, install("i1", T0 + 2 * HOUR, referrer="click_id=m-1", gaid=GAID_1))
    assert (won(out), out.result and out.result["match"]) == ("c-2", "device")
    out = one(e, install("i2", T0 + 2 * HOUR, referrer="click_id=nope", gaid=GAID_1))
    assert (won(out), out.result and out.result["match"]) == ("c-2", "device")


def test_waterfall_referrer_click_outside_the_click_window_falls_through(make: Make) -> None:
    e = make(click_window_ms=DAY)
    feed(e, click("c-1", T0), click("c-2", T0 + HOUR, gaid=GAID_1))
    out = one(e, install("i1", T0 + DAY + 1, referrer="click_id=c-1", gaid=GAID_1))
    assert (won(out), out.result and out.result["match"]) == ("c-2", "device")
    out = one(e, install("i2", T0 + DAY, referrer="click_id=c-1", gaid=GAID_2))
    assert won(out) == "c-1"


def test_waterfall_referrer_click_after_the_install_is_not_eligible(make: Make) -> None:
    e = make()
    feed(e, click("c-1", T0 + HOUR))
    assert one(e, install("i1", T0, referrer="click_id=c-1"), at=T0 + 2 * HOUR).outcome == "organic"


def test_waterfall_device_click_shares_any_one_identifier(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfv=IDFV_1, ip="192.0.2.1", ua=IOS_UA))
    out = one(e, install("i1", T0 + HOUR, idfa=IDFA_1, idfv=IDFV_1))
    assert (won(out), out.result and out.result["match"]) == ("c1", "device")


def test_waterfall_probabilistic_click_carries_no_device_identifier(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfv=IDFV_1, ip="192.0.2.1", ua=IOS_UA))  # has an id: never probabilistic
    assert one(e, install("i1", T0 + HOUR, idfa=IDFA_1, ip="192.0.2.1", ua=IOS_UA)).outcome == "organic"
    feed(e, click("c2", T0, idfa=ZERO, ip="192.0.2.1", ua=IOS_UA))  # the zero id is no id
    assert won(one(e, install("i2", T0 + HOUR, idfa=IDFA_2, ip="192.0.2.1", ua=IOS_UA))) == "c2"


def test_waterfall_probabilistic_click_needs_an_equal_fingerprint(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, ip="192.0.2.1", ua=IOS_UA))
    assert one(e, install("i1", T0 + HOUR, ip="192.0.2.2", ua=IOS_UA)).outcome == "organic"
    assert one(e, install("i2", T0 + HOUR, ip="192.0.2.1", ua=ANDROID_UA)).outcome == "organic"
    assert one(e, install("i3", T0 + HOUR, ip="192.0.2.1", ua=IOS_UA, os_version="16.0")).outcome == "organic"
    assert one(e, install("i4", T0 + HOUR, ip="192.0.2.1", ua=IOS_UA)).outcome == "attributed"


def test_waterfall_probabilistic_impressions_never_match(make: Make) -> None:
    e = make()
    feed(e, impression("m1", T0, ip="192.0.2.1", ua=IOS_UA))
    assert one(e, install("i1", T0 + HOUR, ip="192.0.2.1", ua=IOS_UA)).outcome == "organic"


def test_waterfall_device_impression_when_no_click(make: Make) -> None:
    e = make()
    feed(e, impression("m1", T0, idfa=IDFA_1, network="display"))
    out = one(e, install("i1", T0 + HOUR, idfa=IDFA_1))
    assert out.result is not None
    assert (out.result["touch"], out.result["match"], out.result["network"]) == ("impression", "device", "display")


def test_waterfall_otherwise_organic(make: Make) -> None:
    e = make()
    out = one(e, install("i1", T0, idfa=IDFA_1))
    assert out.outcome == "organic" and out.campaign is None
    assert out.result is not None and out.result["status"] == "organic"


# -- Rejections ------------------------------------------------------------------------------

def test_rejections_ctit_anomaly_is_skipped_listed_and_the_waterfall_continues(make: Make) -> None:
    e = make(min_ctit_ms=10 * SECOND)
    feed(e, click("old", T0, idfa=IDFA_1), click("inj2", T0 + HOUR - 2 * SECOND, idfa=IDFA_1),
         click("inj1", T0 + HOUR - SECOND, idfa=IDFA_1))
    out = one(e, install("i1", T0 + HOUR, idfa=IDFA_1))
    assert out.result is not None
    assert out.result["touch_id"] == "old"
    assert out.result["rejected"] == [{"touch_id": "inj1", "reason": "ctit_anomaly"},
                                      {"touch_id": "inj2", "reason": "ctit_anomaly"}]


def test_rejections_only_candidates_of_the_tier_examined_are_listed(make: Make) -> None:
    e = make(min_ctit_ms=10 * SECOND)
    feed(e, click("older-inj", T0 + HOUR - SECOND, idfa=IDFA_1), click("win", T0 + HOUR, idfa=IDFA_2),
         click("inj", T0 + 2 * HOUR - SECOND, idfa=IDFA_2),
         click("prob-inj", T0 + 2 * HOUR - SECOND, ip="192.0.2.1", ua=IOS_UA))
    # the device tier wins with "win": the probabilistic tier is never examined, and older
    # candidates of the device tier after the winner are not examined either
    out = one(e, install("i1", T0 + 2 * HOUR, idfa=IDFA_2, ip="192.0.2.1", ua=IOS_UA))
    assert out.result is not None and out.result["touch_id"] == "win"
    assert out.result["rejected"] == [{"touch_id": "inj", "reason": "ctit_anomaly"}]


def test_rejections_a_touch_is_listed_once_across_tiers(make: Make) -> None:
    e = make(min_ctit_ms=10 * SECOND)
    feed(e, impression("m1", T0, gaid=GAID_1), click("c1", T0 + HOUR - SECOND, gaid=GAID_1))
    out = one(e, install("i1", T0 + HOUR, referrer="click_id=c1", gaid=GAID_1))
    assert out.result is not None
    assert (out.result["touch_id"], out.result["touch"]) == ("m1", "impression")
    assert out.result["rejected"] == [{"touch_id": "c1", "reason": "ctit_anomaly"}]


def test_rejections_impressions_have_no_ctit_rule(make: Make) -> None:
    e = make(min_ctit_ms=HOUR)
    feed(e, impression("m1", T0, idfa=IDFA_1))
    out = one(e, install("i1", T0 + SECOND, idfa=IDFA_1))
    assert won(out) == "m1" and out.result is not None and out.result["rejected"] == []


def test_rejections_ip_blocklist_touch_is_stored_flagged_and_never_eligible(make: Make) -> None:
    e = make(ip_blocklist=("198.51.100.0/24",))
    outs = feed(e, click("c1", T0, idfa=IDFA_1, ip="198.51.100.20"), impression("m1", T0, idfa=IDFA_1, ip="192.0.2.1"),
                click("c2", T0 + MINUTE, ip="198.51.100.20", ua=IOS_UA))
    assert [(o.outcome, o.campaign and o.campaign[0]) for o in outs] == [
        ("ip_blocklist", "net"), ("ok", "net"), ("ip_blocklist", "net")]
    out = one(e, install("i1", T0 + HOUR, idfa=IDFA_1, referrer="click_id=c1", ip="198.51.100.20", ua=IOS_UA))
    assert out.result is not None
    assert (out.result["touch_id"], out.result["touch"]) == ("m1", "impression")
    assert out.result["rejected"] == [{"touch_id": "c1", "reason": "ip_blocklist"},
                                      {"touch_id": "c2", "reason": "ip_blocklist"}]


# -- Reinstalls and re-attribution -------------------------------------------------------------

def test_reinstall_within_the_window_keeps_and_returns_the_original_attribution(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfa=IDFA_1, network="first"))
    first = one(e, install("i1", T0 + HOUR, idfa=IDFA_1))
    feed(e, click("c2", T0 + 2 * DAY, idfa=IDFA_1, network="second"))
    again = one(e, install("i2", T0 + 2 * DAY + HOUR, idfa=IDFA_1))
    assert again.outcome == "reinstall"
    assert first.result is not None and again.result is not None
    assert again.result == {**first.result, "status": "reinstall", "rejected": []}
    assert again.campaign == first.campaign


def test_reinstall_last_is_the_most_recent_install_that_was_not_a_reinstall(make: Make) -> None:
    e = make(reattribution_window_ms=10 * DAY)
    feed(e, click("c1", T0, idfa=IDFA_1, network="a"))
    one(e, install("i1", T0 + HOUR, idfa=IDFA_1))                       # primary, t=0
    assert one(e, install("i2", T0 + 9 * DAY, idfa=IDFA_1)).outcome == "reinstall"
    # 11 days after i1 (2 after i2): i2 was a reinstall, so last is still i1: outside
    feed(e, click("c2", T0 + 11 * DAY, idfa=IDFA_1, network="b"))
    out = one(e, install("i3", T0 + 11 * DAY + HOUR, idfa=IDFA_1))
    assert (out.outcome, won(out)) == ("reattributed", "c2")
    out = one(e, install("i4", T0 + 12 * DAY, idfa=IDFA_1))
    assert (out.outcome, won(out)) == ("reinstall", "c2")              # last is now i3


def test_reinstall_outside_the_window_is_reattributed_when_a_touch_wins(make: Make) -> None:
    e = make(reattribution_window_ms=DAY)
    feed(e, click("c1", T0, gaid=GAID_1, network="a"))
    one(e, install("i1", T0 + HOUR, gaid=GAID_1))
    feed(e, click("c2", T0 + 3 * DAY, gaid=GAID_1, network="b"))
    out = one(e, install("i2", T0 + 3 * DAY + HOUR, gaid=GAID_1))
    assert (out.outcome, won(out), out.campaign and out.campaign[0]) == ("reattributed", "c2", "b")


def test_reinstall_outside_the_window_is_organic_when_no_touch_wins(make: Make) -> None:
    e = make(reattribution_window_ms=DAY)
    feed(e, click("c1", T0, gaid=GAID_1))
    one(e, install("i1", T0 + HOUR, gaid=GAID_1))
    out = one(e, install("i2", T0 + 30 * DAY, gaid=GAID_1))
    assert out.outcome == "organic" and out.result is not None and out.result["touch_id"] is None


def test_reinstall_later_events_follow_the_new_attribution(make: Make) -> None:
    e = make(reattribution_window_ms=DAY)
    feed(e, click("c1", T0, gaid=GAID_1, network="a"))
    one(e, install("i1", T0 + HOUR, gaid=GAID_1))
    assert one(e, event("e1", T0 + 2 * HOUR, gaid=GAID_1)).campaign[0] == "a"  # type: ignore[index]
    feed(e, click("c2", T0 + 3 * DAY, gaid=GAID_1, network="b"))
    one(e, install("i2", T0 + 3 * DAY + HOUR, gaid=GAID_1))
    out = one(e, event("e2", T0 + 3 * DAY + 2 * HOUR, gaid=GAID_1))
    assert (out.outcome, out.campaign and out.campaign[0]) == ("attributed", "b")
    one(e, install("i3", T0 + 40 * DAY, gaid=GAID_1))                   # organic re-install
    assert one(e, open_("o1", T0 + 40 * DAY + 1, gaid=GAID_1)).outcome == "organic"


def test_reinstall_with_a_ts_before_the_original_counts_as_within(make: Make) -> None:
    """Decision 8: install.ts - last.ts <= window holds for a negative difference."""
    e = make(reattribution_window_ms=DAY)
    one(e, install("i1", T0 + 10 * DAY, idfa=IDFA_1))
    assert one(e, install("i2", T0, idfa=IDFA_1), at=T0 + 10 * DAY).outcome == "reinstall"


def test_reinstall_identifiers_follow_the_original_install(make: Make) -> None:
    """Decision 8: the ids a reinstall adds map to its original install from then on."""
    e = make()
    feed(e, click("c1", T0, idfa=IDFA_1, network="a"))
    one(e, install("i1", T0 + HOUR, idfa=IDFA_1))
    assert one(e, install("i2", T0 + DAY, idfa=IDFA_1, idfv=IDFV_1)).outcome == "reinstall"
    out = one(e, event("e1", T0 + DAY + 1, idfv=IDFV_1))
    assert (out.outcome, out.campaign and out.campaign[0]) == ("attributed", "a")


def test_reinstall_shares_any_one_identifier(make: Make) -> None:
    e = make()
    one(e, install("i1", T0, idfa=IDFA_1, idfv=IDFV_1))
    assert one(e, install("i2", T0 + DAY, idfa=IDFA_2, idfv=IDFV_1.lower())).outcome == "reinstall"
    assert one(e, install("i3", T0 + DAY, idfa=IDFA_2)).outcome == "reinstall"      # through i2's ids
    assert one(e, install("i4", T0 + DAY, gaid=GAID_1)).outcome == "organic"


def test_reinstall_without_identifiers_is_a_new_install(make: Make) -> None:
    e = make()
    one(e, install("i1", T0, ip="192.0.2.1", ua=IOS_UA))
    assert one(e, install("i2", T0 + HOUR, ip="192.0.2.1", ua=IOS_UA)).outcome == "organic"


# -- Later events ---------------------------------------------------------------------------

def test_later_events_inherit_the_install_attribution(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfa=IDFA_1, network="n", campaign="summer"))
    one(e, install("i1", T0 + HOUR, idfa=IDFA_1))
    outs = feed(e, open_("o1", T0 + 2 * HOUR, idfa=IDFA_1), event("e1", T0 + 3 * HOUR, idfa=IDFA_1.lower()))
    assert [(o.outcome, o.campaign) for o in outs] == [("attributed", ("n", "summer", None, None, None))] * 2


def test_later_events_of_an_organic_install_are_organic(make: Make) -> None:
    e = make()
    one(e, install("i1", T0, gaid=GAID_1))
    assert one(e, event("e1", T0 + 1, gaid=GAID_1)).outcome == "organic"


def test_later_events_of_a_device_with_no_known_install_are_unattributed(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, gaid=GAID_1))
    outs = feed(e, event("e1", T0 + 1, gaid=GAID_1), open_("o1", T0 + 2), event("e2", T0 + 3, idfa=IDFA_1))
    assert [(o.outcome, o.campaign) for o in outs] == [("unattributed", None)] * 3


def test_later_events_before_the_install_in_ts_order_are_unattributed(make: Make) -> None:
    e = make()
    outs = feed(e, install("i1", T0 + 10, gaid=GAID_1), event("e1", T0 + 5, gaid=GAID_1),
                event("e2", T0 + 10, gaid=GAID_1))
    assert [o.outcome for o in outs] == ["organic", "unattributed", "organic"]


# -- Order, time and finality ----------------------------------------------------------------

def test_order_touches_earlier_in_the_same_batch_count(make: Make) -> None:
    e = make()
    outs = feed(e, install("i1", T0 + HOUR, idfa=IDFA_1), click("c1", T0, idfa=IDFA_1))
    assert outs[0].outcome == "attributed" and won(outs[0]) == "c1"


def test_order_equal_ts_in_a_batch_are_applied_in_batch_order(make: Make) -> None:
    e = make(min_ctit_ms=0)
    assert feed(e, install("i1", T0, idfa=IDFA_1), click("c1", T0, idfa=IDFA_1))[0].outcome == "organic"
    assert feed(e, click("c2", T0, gaid=GAID_1), install("i2", T0, gaid=GAID_1))[1].outcome == "attributed"


def test_order_a_touch_arriving_after_the_install_never_changes_it(make: Make) -> None:
    e = make()
    first = one(e, install("i1", T0 + HOUR, idfa=IDFA_1))
    feed(e, click("c1", T0, idfa=IDFA_1), at=T0 + 2 * HOUR)   # earlier ts, later batch
    assert first.outcome == "organic"
    assert one(e, event("e1", T0 + 3 * HOUR, idfa=IDFA_1)).outcome == "organic"
    assert one(e, install("i2", T0 + 4 * HOUR, idfa=IDFA_1)).outcome == "reinstall"


def test_order_sent_at_corrects_clock_skew(make: Make) -> None:
    e = make(click_window_ms=HOUR)
    feed(e, click("c1", T0, idfa=IDFA_1))
    # the device clock is 2 h behind: ts T0 + 1 min is really T0 + 2 h + 1 min, outside the window
    out = one(e, install("i1", T0 + MINUTE, idfa=IDFA_1), at=T0 + 2 * HOUR + MINUTE, sent_at=T0 + MINUTE)
    assert out.outcome == "organic"
    # a device clock 2 h ahead brings a record back inside
    feed(e, click("c2", T0, gaid=GAID_1))
    out = one(e, install("i2", T0 + 2 * HOUR + MINUTE, gaid=GAID_1), at=T0 + MINUTE, sent_at=T0 + 2 * HOUR + MINUTE)
    assert won(out) == "c2" and out.result is not None and out.result["ctit_s"] == 60.0


# -- Duplicates ------------------------------------------------------------------------------

def test_duplicates_within_the_dedup_window_change_no_state(make: Make) -> None:
    e = make()
    assert one(e, click("c1", T0, idfa=IDFA_1, network="a"), at=T0).dup is False
    # a copy with other fields changes nothing: not a new touch, no new campaign
    assert one(e, click("c1", T0 + HOUR, idfa=IDFA_2, network="b"), at=T0 + DAY).dup is True
    assert one(e, install("i1", T0 + 2 * HOUR, idfa=IDFA_2), at=T0 + DAY).outcome == "organic"
    assert one(e, install("i1", T0 + 2 * HOUR, idfa=IDFA_1), at=T0 + DAY).dup is True
    assert one(e, install("i3", T0 + 2 * HOUR, idfa=IDFA_1), at=T0 + DAY).outcome == "attributed"
    assert one(e, event("c1", T0 + 3 * HOUR, idfa=IDFA_1), at=T0 + DAY).dup is True  # the key is the id alone


def test_duplicates_window_counts_from_the_first_acceptance_not_from_ts(make: Make) -> None:
    e = make()
    one(e, event("e1", T0 - 30 * DAY, idfa=IDFA_1), at=T0)           # historical record
    assert one(e, event("e1", T0 - 30 * DAY, idfa=IDFA_1), at=T0 + 7 * DAY).dup is True
    assert one(e, event("e1", T0 - 30 * DAY, idfa=IDFA_1), at=T0 + 7 * DAY + 1).dup is False
    # the copy accepted again restarts the window
    assert one(e, event("e1", T0 - 30 * DAY, idfa=IDFA_1), at=T0 + 14 * DAY + 1).dup is True


def test_duplicates_inside_one_batch_the_first_processed_copy_wins(make: Make) -> None:
    e = make()
    outs = feed(e, click("c1", T0 + HOUR, idfa=IDFA_1, network="late"), click("c1", T0, idfa=IDFA_1, network="early"))
    assert [o.dup for o in outs] == [True, False]                    # ts order: the earlier ts is first
    assert won(one(e, install("i1", T0 + 2 * HOUR, idfa=IDFA_1))) == "c1"
    assert one(e, event("e1", T0 + 3 * HOUR, idfa=IDFA_1)).campaign[0] == "early"  # type: ignore[index]


def test_duplicates_of_an_install_are_not_decided_again(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfa=IDFA_1))
    first = one(e, install("i1", T0 + HOUR, idfa=IDFA_1))
    again = one(e, install("i1", T0 + HOUR, idfa=IDFA_1))
    assert first.outcome == "attributed"
    assert again.dup is True and again.result is None   # the writer answers the stored result
    assert one(e, install("i2", T0 + 2 * HOUR, idfa=IDFA_1)).outcome == "reinstall"  # i1 counted once


# -- Results ---------------------------------------------------------------------------------

def test_results_carry_every_field_of_the_winning_click(make: Make) -> None:
    e = make()
    feed(e, click("c1", T0, idfa=IDFA_1, network="net", campaign="camp", adset="set", ad="ad", site="site"))
    out = one(e, install("i1", T0 + 90 * MINUTE, idfa=IDFA_1))
    assert out.result == {
        "status": "attributed", "touch": "click", "match": "device", "touch_id": "c1",
        "touch_ts": "2026-09-21T14:13:20.000Z", "network": "net", "campaign": "camp", "adset": "set",
        "ad": "ad", "site": "site", "ctit_s": 5400.0, "rejected": [],
    }
    assert out.campaign == ("net", "camp", "set", "ad", "site")


def test_results_of_an_impression_have_no_ctit(make: Make) -> None:
    e = make()
    feed(e, impression("m1", T0, idfa=IDFA_1))
    out = one(e, install("i1", T0 + HOUR, idfa=IDFA_1))
    assert out.result is not None and out.result["touch"] == "impression" and out.result["ctit_s"] is None


def test_results_of_an_organic_install_have_no_touch(make: Make) -> None:
    e = make()
    out = one(e, install("i1", T0, idfa=IDFA_1))
    assert out.result == {"status": "organic", "touch": None, "match": None, "touch_id": None, "touch_ts": None,
                          "network": None, "campaign": None, "adset": None, "ad": None, "site": None,
                          "ctit_s": None, "rejected": []}
