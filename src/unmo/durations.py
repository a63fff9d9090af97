"""Durations as people write them: ``10s``, ``5m``, ``24h``, ``7d``, ``2w``, ``500ms``."""

import re

from unmo.errors import ValidationError

_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)\s*$")


def parse_duration_ms(text: str, *, what: str = "duration") -> int:
    """Milliseconds in ``text``; ``0`` alone means zero.  Raises ValidationError naming ``what``."""
    if text.strip() == "0":
        return 0
    match = _PATTERN.match(text)
    if match is None:
        raise ValidationError(f"{what}: expected a duration like 10s, 5m, 24h or 7d, got {text!r}")
    return round(float(match.group(1)) * _UNITS_MS[match.group(2)])


def format_duration_ms(ms: int) -> str:
    """The shortest exact spelling of ``ms`` (``604800000`` -> ``7d``)."""
    if ms == 0:
        return "0"
    for unit in ("y", "d", "h", "m", "s"):  # days rather than weeks: "7d" is how windows are spoken of
        size = _UNITS_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_duration_s(text: str, *, what: str = "duration") -> float:
    return parse_duration_ms(text, what=what) / 1000.0
