"""Customers, their apps and their onboarding (spec: tracker.md "Customers and onboarding").

Creating a customer creates one unmo app per platform, with its keys, in the same
transaction (unmo.apps.create_app), so a customer never exists half made.  The
customer is ``onboarding`` until the first record of any of its apps is accepted;
then it goes ``live`` by itself and its onboarding time is that record's
``received_at`` minus the customer's creation.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import asyncpg

from unmo.apps import create_app
from unmo.errors import NotFoundError, ValidationError, cut

VERTICALS = ("gaming", "ecommerce", "fintech", "other")
PROVIDERS = ("appsflyer", "adjust", "branch", "singular", "kochava", "none")
INTEGRATIONS = ("sdk", "s2s", "hybrid")
PLATFORMS = ("ios", "android")
STATUSES = ("onboarding", "live", "paused", "churned")
MAX_EVENTS_PER_DAY = 10_000_000_000
MAX_PLAN_PRICE = 10_000_000.0
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$")
_APP_NAME_BAD = re.compile(r"[^A-Za-z0-9 ._-]+")


class ConflictError(ValidationError):
    """The request is well formed but clashes with what exists (HTTP 409)."""


@dataclass(frozen=True)
class NewCustomer:
    """A validated ``POST /v1/customers`` body."""

    company: str
    vertical: str
    provider: str
    events_per_day: int
    integration: str
    platforms: tuple[str, ...]
    plan_price: float | None
    contact_email: str | None


def _choice(body: dict[str, Any], key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise ValidationError(f"{key}: expected one of {', '.join(allowed)}, got {cut(value)}")
    return value.strip().lower()


def _number(body: dict[str, Any], key: str, low: float, high: float, *, integer: bool) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer and isinstance(value, float) and not value.is_integer():
        ok = False
    if not ok or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise ValidationError(f"{key}: expected {kind} {low:g}..{high:g}, got {cut(value)}")
    return float(value)


def parse_platforms(value: Any) -> tuple[str, ...]:
    """``["ios", "android"]`` or ``"ios,android"``, each at most once, in the order given."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValidationError(f"platforms: expected a list of ios and/or android, got {cut(value)}")
    out: list[str] = []
    for item in items:
        name = item.strip().lower() if isinstance(item, str) else item
        if name not in PLATFORMS:
            raise ValidationError(f"platforms: expected ios or android, got {cut(item)}")
        if name in out:
            raise ValidationError(f"platforms: {name} given twice")
        out.append(name)
    return tuple(out)


def parse_new_customer(body: Any) -> NewCustomer:
    """Validate a customer as the API receives it; errors name the field and quote the value."""
    if not isinstance(body, dict):
        raise ValidationError(f"body: expected a JSON object, got {cut(body)}")
    unknown = set(body) - {"company", "vertical", "provider", "events_per_day", "integration", "platforms",
                           "plan_price", "contact_email"}
    if unknown:
        raise ValidationError(f"body: unknown field {cut(sorted(unknown)[0])}")
    company = body.get("company")
    if not isinstance(company, str) or not 1 <= len(company.strip()) <= 100 or not company.isprintable():
        raise ValidationError(f"company: expected 1 to 100 printable characters, got {cut(company)}")
    events = _number(body, "events_per_day", 0, MAX_EVENTS_PER_DAY, integer=True)
    if events is None:
        raise ValidationError("events_per_day: expected a whole number of events per day, got nothing")
    email = body.get("contact_email")
    if email is not None and (not isinstance(email, str) or not _EMAIL.match(email)):
        raise ValidationError(f"contact_email: expected an e-mail address, got {cut(email)}")
    return NewCustomer(
        company=" ".join(company.split()),
        vertical=_choice(body, "vertical", VERTICALS),
        provider=_choice(body, "provider", PROVIDERS),
        events_per_day=int(events),
        integration=_choice(body, "integration", INTEGRATIONS),
        platforms=parse_platforms(body.get("platforms")),
        plan_price=_number(body, "plan_price", 0, MAX_PLAN_PRICE, integer=False),
        contact_email=email,
    )


def app_name(company: str, platform: str, customer_id: int) -> str:
    """An unmo app name (64 characters of ``[A-Za-z0-9 ._-]``) that says whose app it is."""
    base = _APP_NAME_BAD.sub(" ", company).strip(" ._-") or "customer"
    suffix = f" {platform} c{customer_id}"
    return " ".join(base.split())[: 64 - len(suffix)].rstrip() + suffix


async def insert_customer(conn: asyncpg.Connection, new: NewCustomer, plan_price: float) -> dict[str, Any]:
    """Create the customer and its apps in one transaction; returns the row and the created app keys."""
    try:
        return await _insert_customer(conn, new, plan_price)
    except asyncpg.UniqueViolationError:  # two creations of one company at once: the index decides
        raise ConflictError(f"company: a customer named {cut(new.company)} exists already") from None


async def _insert_customer(conn: asyncpg.Connection, new: NewCustomer, plan_price: float) -> dict[str, Any]:
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM tracker.customers WHERE lower(company) = lower($1)", new.company):
            raise ConflictError(f"company: a customer named {cut(new.company)} exists already")
        row = await conn.fetchrow(
            """INSERT INTO tracker.customers (company, vertical, provider, events_per_day, integration,
                   platforms, plan_price, contact_email)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
            new.company, new.vertical, new.provider, new.events_per_day, new.integration,
            list(new.platforms), plan_price, new.contact_email,
        )
        assert row is not None
        apps = []
        for platform in new.platforms:
            created = await create_app(conn, app_name(new.company, platform, row["customer_id"]), platform)
            await conn.execute(
                "INSERT INTO tracker.customer_apps (customer_id, app_id, platform) VALUES ($1, $2, $3)",
                row["customer_id"], created["app_id"], platform,
            )
            apps.append(created)
        await conn.execute(
            "INSERT INTO tracker.status_log (customer_id, status, at) VALUES ($1, 'onboarding', $2)",
            row["customer_id"], row["created_at"],
        )
    return {"row": row, "apps": apps}


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def customer_json(row: asyncpg.Record | dict[str, Any], apps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The API's customer object."""
    onboarding_s = None
    if row["first_record_at"] is not None:
        onboarding_s = round(max(0.0, (row["first_record_at"] - row["created_at"]).total_seconds()), 3)
    out: dict[str, Any] = {
        "id": row["customer_id"],
        "company": row["company"],
        "vertical": row["vertical"],
        "provider": row["provider"],
        "events_per_day": row["events_per_day"],
        "integration": row["integration"],
        "platforms": list(row["platforms"]),
        "plan_price": float(row["plan_price"]),
        "contact_email": row["contact_email"],
        "status": row["status"],
        "created_at": _iso(row["created_at"]),
        "first_record_at": _iso(row["first_record_at"]),
        "live_at": _iso(row["live_at"]),
        "onboarding_seconds": onboarding_s,
    }
    if apps is not None:
        out["apps"] = apps
    return out


async def customer_apps(conn: asyncpg.Connection, customer_id: int) -> list[dict[str, Any]]:
    """The customer's apps (id, name, platform), iOS first."""
    rows = await conn.fetch(
        """SELECT a.app_id, a.name, ca.platform FROM tracker.customer_apps ca
           JOIN unmo.apps a USING (app_id) WHERE ca.customer_id = $1 ORDER BY ca.platform DESC""",
        customer_id,
    )
    return [{"app_id": r["app_id"], "name": r["name"], "platform": r["platform"]} for r in rows]


async def get_customer(conn: asyncpg.Connection, customer_id: int) -> asyncpg.Record:
    """The customer's row; NotFoundError when there is none."""
    row = await conn.fetchrow("SELECT * FROM tracker.customers WHERE customer_id = $1", customer_id)
    if row is None:
        raise NotFoundError(f"customer: no customer with id {customer_id}")
    return row


async def list_customers(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every customer's row, oldest first."""
    return list(await conn.fetch("SELECT * FROM tracker.customers ORDER BY customer_id"))


async def set_status(conn: asyncpg.Connection, customer_id: int, status: str) -> None:
    """Change a customer's status by hand (paused, churned, back to live) and log it."""
    if status not in STATUSES:
        raise ValidationError(f"status: expected one of {', '.join(STATUSES)}, got {cut(status)}")
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT status, first_record_at FROM tracker.customers WHERE customer_id = $1 FOR UPDATE", customer_id
        )
        if row is None:
            raise NotFoundError(f"customer: no customer with id {customer_id}")
        if status == "live" and row["first_record_at"] is None:
            raise ConflictError("status: a customer goes live by itself with its first accepted record")
        if status == "onboarding" and row["status"] != "onboarding":
            raise ConflictError(f"status: a {row['status']} customer cannot go back to onboarding")
        if row["status"] == status:
            return
        await conn.execute(
            "UPDATE tracker.customers SET status = $2, updated_at = now(), "
            "live_at = CASE WHEN $2 = 'live' AND live_at IS NULL THEN now() ELSE live_at END "
            "WHERE customer_id = $1",
            customer_id, status,
        )
        await conn.execute("INSERT INTO tracker.status_log (customer_id, status) VALUES ($1, $2)", customer_id, status)


async def set_plan_price(conn: asyncpg.Connection, customer_id: int, price: float) -> None:
    """Change the customer's monthly plan price (USD)."""
    status = await conn.execute(
        "UPDATE tracker.customers SET plan_price = $2, updated_at = now() WHERE customer_id = $1", customer_id, price
    )
    if status.endswith(" 0"):
        raise NotFoundError(f"customer: no customer with id {customer_id}")


async def check_onboarding(conn: asyncpg.Connection, customer_ids: list[int] | None = None) -> list[int]:
    """Move customers whose apps have accepted a record from ``onboarding`` to ``live``.

    The first accepted record is the oldest commit of the app (``unmo.records``
    ordered by ``seq``, ``ord``: the index the writer keeps); ``unmo.ingest_minute``
    is the fallback once that record's day partition has been dropped.  Returns the
    ids that went live.
    """
    rows = await conn.fetch(
        """SELECT c.customer_id, array_agg(ca.app_id) AS app_ids FROM tracker.customers c
           JOIN tracker.customer_apps ca USING (customer_id)
           WHERE c.status = 'onboarding' AND ($1::bigint[] IS NULL OR c.customer_id = ANY($1))
           GROUP BY c.customer_id""",
        customer_ids,
    )
    went_live = []
    for row in rows:
        first: dt.datetime | None = None
        for app_id in row["app_ids"]:
            at = await conn.fetchval(
                "SELECT received_at FROM unmo.records WHERE app_id = $1 ORDER BY seq, ord LIMIT 1", app_id
            )
            if at is None:
                at = await conn.fetchval(
                    "SELECT min(minute) FROM unmo.ingest_minute WHERE app_id = $1 AND accepted > 0", app_id
                )
            if at is not None and (first is None or at < first):
                first = at
        if first is None:
            continue
        async with conn.transaction():
            done = await conn.fetchval(
                """UPDATE tracker.customers SET status = 'live', first_record_at = $2, live_at = now(),
                       updated_at = now()
                   WHERE customer_id = $1 AND status = 'onboarding' RETURNING customer_id""",
                row["customer_id"], first,
            )
            if done is not None:
                await conn.execute(
                    "INSERT INTO tracker.status_log (customer_id, status) VALUES ($1, 'live')", row["customer_id"]
                )
                went_live.append(row["customer_id"])
    return went_live
