"""Every report parameter is checked: a 400 naming the parameter and quoting the value, and the server goes on."""

from __future__ import annotations

import datetime as dt
import struct
import zoneinfo
from pathlib import Path

import httpx
import pytest

from tests.reports.conftest import get_report

TODAY = dt.datetime.now(dt.UTC).date()
OK = {"from": str(TODAY - dt.timedelta(days=7)), "to": str(TODAY)}

BAD = [
    # (report, params replacing OK's, parameter named, text the error must hold)
    ("daily", {"from": None}, "from", "required"),
    ("daily", {"from": "2026-13-01"}, "from", "'2026-13-01'"),
    ("daily", {"from": "2026-02-30"}, "from", "'2026-02-30'"),
    ("daily", {"from": "yesterday"}, "from", "'yesterday'"),
    ("daily", {"from": "1999-12-31"}, "from", "2000-01-01"),
    ("daily", {"to": "2026-1-5"}, "to", "'2026-1-5'"),
    ("daily", {"to": str(TODAY - dt.timedelta(days=8))}, "to", "on or after"),
    ("daily", {"from": "2024-01-01", "to": "2025-01-01"}, "to", "367 days"),
    ("daily", {"group_by": "network,country"}, "group_by", "'country'"),
    ("daily", {"group_by": "network,network"}, "group_by", "network given twice"),
    ("daily", {"tz": "Mars/Olympus_Mons"}, "tz", "'Mars/Olympus_Mons'"),
    ("daily", {"tz": "../../etc/passwd"}, "tz", "'../../etc/passwd'"),
    ("daily", {"tz": "UTC+05:30"}, "tz", "'UTC+05:30'"),
    ("daily", {"format": "xml"}, "format", "'xml'"),
    ("daily", {"days": "0,1"}, "days", "unknown parameter"),
    ("daily", {"groupby": "network"}, "groupby", "unknown parameter"),
    ("cohorts", {"days": "0,1,x"}, "days", "'x'"),
    ("cohorts", {"days": "1,-1"}, "days", "'-1'"),
    ("cohorts", {"days": "9999"}, "days", "'9999'"),
    ("cohorts", {"days": ",".join(map(str, range(40)))}, "days", "at most 32"),
    ("cohorts", {"to": "x" * 500}, "to", "'xxxxxxxx"),
]


@pytest.mark.parametrize(("kind", "change", "parameter", "text"), BAD,
                         ids=[f"{k}-{p}-{i}" for i, (k, _c, p, _t) in enumerate(BAD)])
def test_bad_parameters_are_a_400_naming_them(server, traffic_app, kind, change, parameter, text):
    params = {k: v for k, v in {**OK, **change}.items() if v is not None}
    r = get_report(server, kind, traffic_app["secret_key"], **params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["parameter"] == parameter
    assert body["error"].startswith(f"{parameter}: ") and text in body["error"], body["error"]
    assert len(body["error"]) < 300  # the value is cut short


def test_a_repeated_parameter_is_refused_and_the_server_stays_up(server, traffic_app):
    r = httpx.get(f"{server.url}/v1/reports/daily?from=2026-01-01&from=2026-01-02&to=2026-01-03",
                  headers={"Authorization": f"Bearer {traffic_app['secret_key']}"})
    assert r.status_code == 400 and r.json()["parameter"] == "from"
    assert get_report(server, "daily", traffic_app["secret_key"], **OK).status_code == 200
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_defaults_and_the_widest_range(server, traffic_app):
    body = get_report(server, "daily", traffic_app["secret_key"], **OK).json()
    assert (body["tz"], body["group_by"]) == ("UTC", ["network", "campaign"])
    cohorts = get_report(server, "cohorts", traffic_app["secret_key"], **OK).json()
    assert cohorts["days"] == [0, 1, 7, 30]
    year = {"from": str(TODAY - dt.timedelta(days=365)), "to": str(TODAY), "group_by": ""}
    body = get_report(server, "daily", traffic_app["secret_key"], **year).json()
    assert body["group_by"] == [] and body["totals"]["installs"] > 0
    assert all(set(r) == {"date", *body["totals"]} for r in body["rows"])


def _offsets_since(path: Path, since: int) -> set[int]:
    """UTC offsets (seconds) a TZif file (RFC 8536) puts in force at or after ``since`` (epoch seconds),
    read from its 64-bit (version 2+) data block: the type in force at ``since`` and every later one."""
    raw = path.read_bytes()
    if raw[:4] != b"TZif":
        return set()

    def counts(at: int) -> tuple[int, ...]:
        return struct.unpack(">6l", raw[at + 20:at + 44])

    isut, isstd, leap, timecnt, typecnt, charcnt = counts(0)
    at = 44 + timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut  # skip the 32-bit block
    isut, isstd, leap, timecnt, typecnt, charcnt = counts(at)
    at += 44
    times = struct.unpack(f">{timecnt}q", raw[at:at + timecnt * 8])
    idx = raw[at + timecnt * 8:at + timecnt * 9]
    at += timecnt * 9
    utoff = [struct.unpack(">l", raw[at + 6 * i:at + 6 * i + 4])[0] for i in range(typecnt)]
    before = [i for i, t in enumerate(times) if t <= since]
    used = {utoff[idx[before[-1]]] if before else utoff[0]}
    used |= {utoff[idx[i]] for i, t in enumerate(times) if t > since}
    return used


def test_every_zone_has_used_only_quarter_hour_offsets_since_2000():
    """Why 15-minute buckets make every zone's local day exact (docs/reports.md): every UTC offset any zone
    of the tz database has put in force since 2000 is a multiple of 15 minutes (Kolkata's 5:30,
    Kathmandu's 5:45 and Chatham's 12:45 included)."""
    since = int(dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp())
    seen: dict[str, set[int]] = {}
    for name in sorted(zoneinfo.available_timezones()):
        path = next((Path(d) / name for d in zoneinfo.TZPATH if (Path(d) / name).is_file()), None)
        if path is not None:
            seen[name] = _offsets_since(path, since)
    assert len(seen) > 400 and 5 * 3600 + 45 * 60 in seen["Asia/Kathmandu"]
    assert 12 * 3600 + 45 * 60 in seen["Pacific/Chatham"] and 10 * 3600 + 30 * 60 in seen["Australia/Adelaide"]
    odd = {name: sorted(o for o in offs if o % 900) for name, offs in seen.items() if any(o % 900 for o in offs)}
    assert not odd
