"""Apps, their keys and their attribution settings (spec: ingest-api.md "Keys", attribution.md)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from unmo.durations import format_duration_ms, parse_duration_ms
from unmo.errors import NotFoundError, ValidationError

HOUR = 3_600_000
DAY = 24 * HOUR

# setting -> (column, default ms, low ms, high ms); the allowed ranges of the attribution spec.
WINDOWS: dict[str, tuple[str, int, int, int]] = {
    "click_window": ("click_window_ms", 7 * DAY, HOUR, 30 * DAY),
    "impression_window": ("impression_window_ms", DAY, HOUR, 7 * DAY),
    "probabilistic_window": ("probabilistic_window_ms", DAY, 0, DAY),
    "reattribution_window": ("reattribution_window_ms", 90 * DAY, DAY, 730 * DAY),
    "min_ctit": ("min_ctit_ms", 10_000, 0, HOUR),
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


@dataclass(frozen=True)
class AppSettings:
    """Per-app attribution settings, in milliseconds."""

    click_window_ms: int = 7 * DAY
    impression_window_ms: int = DAY
    probabilistic_window_ms: int = DAY
    reattribution_window_ms: int = 90 * DAY
    min_ctit_ms: int = 10_000
    ip_blocklist: tuple[str, ...] = ()

    @property
    def longest_touch_window_ms(self) -> int:
        return max(self.click_window_ms, self.impression_window_ms, self.probabilistic_window_ms)

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(c, strict=False) for c in self.ip_blocklist]


@dataclass
class App:
    app_id: int
    name: str
    platform: str | None
    settings: AppSettings
    rate_limit: int | None = None
    keys: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "app_id": self.app_id,
            "name": self.name,
            "platform": self.platform,
            "settings": {
                "click_window": format_duration_ms(s.click_window_ms),
                "impression_window": format_duration_ms(s.impression_window_ms),
                "probabilistic_window": format_duration_ms(s.probabilistic_window_ms),
                "reattribution_window": format_duration_ms(s.reattribution_window_ms),
                "min_ctit": format_duration_ms(s.min_ctit_ms),
                "ip_blocklist": list(s.ip_blocklist),
            },
            "rate_limit": self.rate_limit,
            "keys": self.keys,
        }


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def new_key(kind: str) -> str:
    """A 192-bit random key, ``sdk_...`` or ``sec_...``."""
    return ("sdk_" if kind == "sdk" else "sec_") + secrets.token_urlsafe(24)


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValidationError(
            f"name: expected 1-64 letters, digits, spaces or ._- starting with a letter or digit, got {name!r}"
        )
    return name


def validate_platform(platform: str | None) -> str | None:
    if platform not in (None, "ios", "android"):
        raise ValidationError(f"platform: expected ios or android, got {platform!r}")
    return platform


def parse_window(setting: str, text: str) -> int:
    _column, _default, low, high = WINDOWS[setting]
    ms = parse_duration_ms(text, what=setting.replace("_", "-"))
    if not low <= ms <= high:
        raise ValidationError(
            f"{setting.replace('_', '-')}: expected {format_duration_ms(low)} .. {format_duration_ms(high)}, "
            f"got {text!r}"
        )
    return ms


def parse_blocklist(text: str) -> list[str]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); empty text clears the list."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValidationError(f"ip-blocklist: expected CIDRs like 10.0.0.0/8, got {part!r}") from None
    return out


def _row_to_app(row: asyncpg.Record) -> App:
    return App(
        app_id=row["app_id"],
        name=row["name"],
        platform=row["platform"],
        settings=AppSettings(
            click_window_ms=row["click_window_ms"],
            impression_window_ms=row["impression_window_ms"],
            probabilistic_window_ms=row["probabilistic_window_ms"],
            reattribution_window_ms=row["reattribution_window_ms"],
            min_ctit_ms=row["min_ctit_ms"],
            ip_blocklist=tuple(str(n) for n in row["ip_blocklist"]),
        ),
        rate_limit=row["rate_limit"],
    )


async def create_app(conn: asyncpg.Connection, name: str, platform: str | None = None) -> dict[str, Any]:
    """Create an app and its two keys; the keys are returned once and stored only hashed."""
    validate_name(name)
    validate_platform(platform)
    sdk_key, secret_key = new_key("sdk"), new_key("secret")
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM unmo.apps WHERE name = $1", name):
            raise ValidationError(f"name: an app named {name!r} exists already")
        while True:
            app_id = secrets.randbelow(2**53 - 2) + 1  # fits a JSON number exactly
            if not await conn.fetchval("SELECT 1 FROM unmo.apps WHERE app_id = $1", app_id):
                break
        await conn.execute(
            "INSERT INTO unmo.apps (app_id, name, platform) VALUES ($1, $2, $3)", app_id, name, platform
        )
        await conn.execute("INSERT INTO unmo.app_log (app_id) VALUES ($1)", app_id)
        await conn.execute("INSERT INTO unmo.report_watermark (app_id) VALUES ($1)", app_id)  # docs/reports.md
        for kind, key in (("sdk", sdk_key), ("secret", secret_key)):
            await conn.execute(
                "INSERT INTO unmo.api_keys (key_hash, app_id, kind, key_prefix) VALUES ($1, $2, $3, $4)",
                hash_key(key),
                app_id,
                kind,
                key[:8],
            )
    return {
        "app_id": app_id,
        "name": name,
        "platform": platform,
        "sdk_key": sdk_key,
        "secret_key": secret_key,
    }


async def get_app(conn: asyncpg.Connection, name: str) -> App:
    row = await conn.fetchrow("SELECT * FROM unmo.apps WHERE name = $1", name)
    if row is None:
        raise NotFoundError(f"app: no app named {name!r}")
    app = _row_to_app(row)
    app.keys = [
        {
            "kind": r["kind"],
            "prefix": r["key_prefix"] + "...",
            "created_at": r["created_at"].isoformat(),
            "revoked": r["revoked_at"] is not None,
        }
        for r in await conn.fetch(
            "SELECT kind, key_prefix, created_at, revoked_at FROM unmo.api_keys WHERE app_id = $1 ORDER BY kind",
            app.app_id,
        )
    ]
    return app


async def get_app_by_id(conn: asyncpg.Connection, app_id: int) -> App:
    row = await conn.fetchrow("SELECT * FROM unmo.apps WHERE app_id = $1", app_id)
    if row is None:
        raise NotFoundError(f"app: no app with id {app_id}")
    return _row_to_app(row)


async def list_apps(conn: asyncpg.Connection) -> list[App]:
    return [_row_to_app(r) for r in await conn.fetch("SELECT * FROM unmo.apps ORDER BY name")]


async def set_app(conn: asyncpg.Connection, name: str, changes: dict[str, Any]) -> App:
    """Apply validated setting changes: column name -> value."""
    allowed = {c for c, *_ in WINDOWS.values()} | {"ip_blocklist", "rate_limit"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationError(f"settings: unknown {sorted(unknown)}")
    if not changes:
        return await get_app(conn, name)
    assignments = ", ".join(f"{col} = ${i + 2}" for i, col in enumerate(changes))
    status = await conn.execute(
        f"UPDATE unmo.apps SET {assignments}, updated_at = now() WHERE name = $1", name, *changes.values()
    )
    if status.endswith(" 0"):
        raise NotFoundError(f"app: no app named {name!r}")
    return await get_app(conn, name)


async def load_keys(conn: asyncpg.Connection) -> dict[bytes, tuple[int, str]]:
    """key hash -> (app_id, kind) for every key not revoked."""
    rows = await conn.fetch("SELECT key_hash, app_id, kind FROM unmo.api_keys WHERE revoked_at IS NULL")
    return {bytes(r["key_hash"]): (r["app_id"], r["kind"]) for r in rows}


async def load_settings(conn: asyncpg.Connection) -> dict[int, tuple[AppSettings, int | None]]:
    return {
        r["app_id"]: (_row_to_app(r).settings, r["rate_limit"])
        for r in await conn.fetch("SELECT * FROM unmo.apps")
    }


def settings_dict(settings: AppSettings) -> dict[str, Any]:
    return asdict(settings)
