"""Device fingerprints for probabilistic matching (spec: attribution.md "fingerprint").

A fingerprint is ``(ip, os, os_version major.minor, model)``.  Touches take os,
version and model from their user agent, parsed by ua-parser (the maintained
port of the uap-core rules, with its Rust accelerator when installed); installs
take the explicit ``os``, ``os_version`` and ``model`` fields, each falling back
to the user agent.  Values are compared lower-cased; a record without an IP
address has no fingerprint.
"""

from __future__ import annotations

from functools import lru_cache

import ua_parser

from unmo.hashing import xxh64

FP_SEED = 0x5EED_F1A9


@lru_cache(maxsize=65536)
def parse_ua(ua: str) -> tuple[str | None, str | None, str | None]:
    """(os family, "major.minor", model) of a user agent, lower-cased; parses are cached."""
    result = ua_parser.parse(ua)
    os_family = version = model = None
    if result.os is not None and result.os.family and result.os.family != "Other":
        os_family = result.os.family.lower()
        if result.os.major:
            version = f"{result.os.major}.{result.os.minor or '0'}"
    if result.device is not None and result.device.model:
        model = result.device.model.lower()
    return os_family, version, model


def major_minor(version: str | None) -> str | None:
    """'17.1.2' -> '17.1', '14' -> '14.0'."""
    if not version:
        return None
    parts = version.strip().split(".")
    return f"{parts[0]}.{parts[1] if len(parts) > 1 and parts[1] else '0'}"


def fingerprint_parts(
    ip: str | None,
    ua: str | None,
    os: str | None = None,
    os_version: str | None = None,
    model: str | None = None,
) -> tuple[str, str | None, str | None, str | None] | None:
    """The fingerprint tuple, or None when there is no IP address."""
    if not ip:
        return None
    ua_os = ua_version = ua_model = None
    if ua and (os is None or os_version is None or model is None):
        ua_os, ua_version, ua_model = parse_ua(ua)
    return (
        ip,
        os.strip().lower() if os else ua_os,
        major_minor(os_version) if os_version else ua_version,
        model.strip().lower() if model else ua_model,
    )


def fingerprint_hash(parts: tuple[str, str | None, str | None, str | None] | None) -> int:
    """uint64 hash of the fingerprint; 0 for none."""
    if parts is None:
        return 0
    text = "\x1f".join(p if p is not None else "\x00" for p in parts)
    h: int = xxh64(text, FP_SEED)
    return h or 1
