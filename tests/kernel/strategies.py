"""Hypothesis strategies: small random apps whose edges are easy to hit.

Windows are a few milliseconds long (AppSettings takes any value; the allowed ranges are
checked where settings are set, by ``unmo apps set``) and timestamps are drawn from a grid of
offsets plus or minus one millisecond, so that "exactly at the window limit", "one millisecond
past it", "CTIT exactly at the minimum" and equal timestamps come up in most examples.  Record
ids come from a small pool (duplicates inside a batch and across batches), identifiers from a
few values in several spellings (mixed case, padding, the all-zero IDFA) and fingerprints from
two addresses and two user agents.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.kernel.records import ANDROID_UA, GAID_1, GAID_2, IDFA_1, IDFA_2, IDFV_1, IOS_UA, T0, ZERO
from unmo.apps import AppSettings
from unmo.kernel import DEDUP_WINDOW_MS

BLOCKED_NET = "10.0.0.0/8"
GRID = (0, 5, 10, 20, 30, 40, 50, 60, 80, 100, 130)

settings_st = st.builds(
    AppSettings,
    click_window_ms=st.sampled_from((30, 50)),
    impression_window_ms=st.sampled_from((20, 30)),
    probabilistic_window_ms=st.sampled_from((0, 10, 20, 80)),
    reattribution_window_ms=st.sampled_from((50, 80)),
    min_ctit_ms=st.sampled_from((0, 5, 10)),
    ip_blocklist=st.sampled_from(((), (BLOCKED_NET,))),
)

ts_st = st.builds(lambda base, d: T0 + base + d, st.sampled_from(GRID), st.sampled_from((-1, 0, 0, 1)))

# A device: some identifiers (maybe none), an address and a user agent.
profile_st = st.fixed_dictionaries(
    {},
    optional={
        "idfa": st.sampled_from((IDFA_1, IDFA_2)),
        "gaid": st.sampled_from((GAID_1, GAID_2)),
        "idfv": st.sampled_from((IDFV_1, IDFA_1)),  # an idfv spelled like an idfa: typed, never equal
        "ip": st.sampled_from(("192.0.2.1", "10.0.0.1", "::ffff:192.0.2.1")),
        "ua": st.sampled_from((IOS_UA, ANDROID_UA)),
    },
)
# a device without identifiers, for the probabilistic tier
idless_st = st.fixed_dictionaries({"ip": st.sampled_from(("192.0.2.1", "::ffff:192.0.2.1")),
                                   "ua": st.sampled_from((IOS_UA, ANDROID_UA))})
spelling_st = st.sampled_from((str, str, str.lower, str.upper, lambda v: f" {v} "))

explicit_st = st.just({}) | st.fixed_dictionaries(
    {}, optional={"os": st.just("iOS"), "os_version": st.sampled_from(("17.1", "17.1.2", "16")),
                  "model": st.just("iPhone")})


@st.composite
def device_st(draw: st.DrawFn, profiles: list[dict[str, str]]) -> dict[str, str]:
    """One of the app's devices as a record reports it: ids respelled, sometimes one left out,
    sometimes the all-zero IDFA or an empty id in place of one."""
    device = dict(draw(st.sampled_from(profiles)))
    for name in ("idfa", "gaid", "idfv"):
        if name in device:
            device[name] = draw(spelling_st)(device[name])
    if device and draw(st.integers(0, 5)) == 0:
        device.pop(draw(st.sampled_from(sorted(device))))
    if draw(st.integers(0, 7)) == 0:
        device[draw(st.sampled_from(("idfa", "gaid")))] = draw(st.sampled_from((ZERO, "")))
    return device


@st.composite
def record_st(draw: st.DrawFn, profiles: list[dict[str, str]], used: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(("click", "click", "click", "impression", "install", "install", "open", "event")))
    if used and draw(st.integers(0, 7)) == 0:
        rid = draw(st.sampled_from(used))                   # a copy (maybe of another type)
    else:
        rid = f"r{len(used)}"
        used.append(rid)
    rec: dict[str, Any] = {"type": kind, "id": rid, "ts": draw(ts_st), "device": draw(device_st(profiles))}
    if kind in ("click", "impression"):
        rec["campaign"] = {"network": draw(st.sampled_from(("n1", "n2"))), "campaign": "c"}
    elif kind == "install":
        rec["device"].update(draw(explicit_st))
        if draw(st.integers(0, 3)) == 0:
            target = draw(st.sampled_from((*used, "unknown")))
            rec["referrer"] = draw(st.sampled_from((f"utm_source=x&click_id={target}", f"click_id%3D{target}")))
    elif kind == "event":
        rec["name"] = "purchase"
    return rec


# received-time steps between batches: the dedup window's edges and small steps
receive_step_st = st.sampled_from((0, 1, 1000, DEDUP_WINDOW_MS - 1, DEDUP_WINDOW_MS, DEDUP_WINDOW_MS + 1))


@st.composite
def history_st(draw: st.DrawFn, max_batches: int = 5, max_size: int = 12) -> list[tuple[int, list[dict[str, Any]]]]:
    """Batches of one app's records with their receive times (non-decreasing, after every ts)."""
    profiles = draw(st.lists(profile_st | idless_st, min_size=1, max_size=3))
    used: list[str] = []
    received = T0 + 200
    out = []
    for _ in range(draw(st.integers(2, max_batches))):
        received += draw(receive_step_st)
        out.append((received, draw(st.lists(record_st(profiles, used), min_size=2, max_size=max_size))))
    return out
