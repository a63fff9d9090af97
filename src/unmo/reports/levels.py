"""Local days of any time zone as signed sums of rollup buckets (UTC days, hours, quarters).

A local day of zone Z is the UTC interval [midnight of the day in Z, midnight of
the next day in Z).  Both ends are multiples of 15 minutes for every zone since
2000 (tests/reports/test_parameters.py), so each part of the day inside one UTC
day is covered exactly by quarters and whole hours, or by the whole UTC day
minus the quarters and hours outside it, whichever reads fewer buckets:
Asia/Kolkata's day (18:30 to 18:30 UTC) is 15 buckets instead of 96, a day in
UTC or in any whole-hour zone a handful.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from unmo.reports.rollup import LEVEL_DAY, LEVEL_HOUR, LEVEL_QUARTER

QUARTER = dt.timedelta(minutes=15)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


class UnalignedZoneError(ValueError):
    """A local midnight that is not on a 15-minute boundary (a tz database older than 2000's rules)."""


@dataclass(frozen=True)
class Pieces:
    """Parallel columns: add ``sign`` times the rollup rows at (level, bucket) to local day ``day``."""

    level: list[int]
    bucket: list[dt.datetime]
    sign: list[int]
    day: list[int]


def day_starts(start: dt.date, end: dt.date, tz: str) -> list[dt.datetime]:
    """The UTC instants that start each local day from ``start`` to ``end``, and the one after ``end``.

    A midnight that does not exist (a DST gap at 00:00) maps, with fold=0, to the first instant of the
    day; one that exists twice, to the first (PEP 495)."""
    z = zoneinfo.ZoneInfo(tz)
    out = []
    day = start
    while day <= end + dt.timedelta(days=1):
        t = dt.datetime.combine(day, dt.time(), z).astimezone(dt.UTC)
        if t.timestamp() % 900:
            raise UnalignedZoneError(f"tz: {tz} starts {day} at {t.isoformat()}, not on a 15-minute boundary")
        out.append(t)
        day += dt.timedelta(days=1)
    return out


def _cover(a: dt.datetime, b: dt.datetime, hours: bool) -> list[tuple[int, dt.datetime]]:
    """Quarters and (when the grain has them) whole hours covering [a, b)."""
    out = []
    t = a
    while t < b:
        if hours and t.minute == 0 and t + HOUR <= b:
            out.append((LEVEL_HOUR, t))
            t += HOUR
        else:
            out.append((LEVEL_QUARTER, t))
            t += QUARTER
    return out


def pieces(starts: list[dt.datetime], *, hours: bool, days: bool) -> Pieces:
    """The buckets to read for local days [starts[k], starts[k + 1]); ``hours``/``days``: levels the grain has."""
    p = Pieces([], [], [], [])

    def emit(level: int, bucket: dt.datetime, sign: int, k: int) -> None:
        p.level.append(level)
        p.bucket.append(bucket)
        p.sign.append(sign)
        p.day.append(k)

    for k in range(len(starts) - 1):
        s, e = starts[k], starts[k + 1]
        d = dt.datetime.combine(s.date(), dt.time(), dt.UTC)
        while d < e:
            nd = d + DAY
            a, b = max(s, d), min(e, nd)
            if days and a == d and b == nd:
                emit(LEVEL_DAY, d, 1, k)
            else:
                direct = _cover(a, b, hours)
                outside = _cover(d, a, hours) + _cover(b, nd, hours) if days else None
                if outside is not None and len(outside) + 1 < len(direct):
                    emit(LEVEL_DAY, d, 1, k)
                    for level, t in outside:
                        emit(level, t, -1, k)
                else:
                    for level, t in direct:
                        emit(level, t, 1, k)
            d = nd
    return p
