"""Provider price table and cost savings (spec: tracker.md "cost savings").

Savings compare what the customer's attributed installs of the month would cost
at its current provider (installs x per-conversion price) with its unmo plan
price.  The seeded prices are approximate list prices as published or widely
reported (sources stored with each price, docs/tracker.md "Price table"); an
account manager replaces them with the customer's real contract price.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from unmo.errors import NotFoundError, ValidationError, cut

MAX_PRICE = 100.0


async def price_table(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """The price table, with each price's source."""
    rows = await conn.fetch("SELECT * FROM tracker.prices ORDER BY provider")
    return [{"provider": r["provider"], "price_per_conversion": float(r["price_per_conversion"]),
             "currency": "USD", "source": r["source"], "updated_at": r["updated_at"].isoformat()} for r in rows]


def parse_price(body: Any) -> tuple[float, str]:
    """price and source of a ``PUT /v1/prices/{provider}`` body."""
    if not isinstance(body, dict):
        raise ValidationError(f"body: expected a JSON object, got {cut(body)}")
    price = body.get("price_per_conversion")
    if isinstance(price, bool) or not isinstance(price, int | float) or not 0 <= price <= MAX_PRICE:
        raise ValidationError(f"price_per_conversion: expected a number of USD 0..{MAX_PRICE:g}, got {cut(price)}")
    source = body.get("source", "edited by hand")
    if not isinstance(source, str) or not 1 <= len(source) <= 500:
        raise ValidationError(f"source: expected 1 to 500 characters naming where the price comes from, "
                              f"got {cut(source)}")
    return float(price), source


async def set_price(conn: asyncpg.Connection, provider: str, price: float, source: str) -> None:
    """Replace a provider's price; NotFoundError for an unknown provider."""
    status = await conn.execute(
        "UPDATE tracker.prices SET price_per_conversion = $2, source = $3, updated_at = now() WHERE provider = $1",
        provider, price, source,
    )
    if status.endswith(" 0"):
        raise NotFoundError(f"provider: no price for {cut(provider)}")


def month_start(at: dt.datetime) -> dt.datetime:
    """00:00 UTC on the first day of the month of ``at``."""
    return at.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def attributed_installs(conn: asyncpg.Connection, app_ids: list[int], start: dt.datetime,
                              end: dt.datetime) -> int:
    """Installs a provider would bill: attributed or re-attributed (organic installs and reinstalls are free)."""
    return int(await conn.fetchval(
        """SELECT count(*) FROM unmo.installs WHERE app_id = ANY($1) AND received_at >= $2 AND received_at < $3
           AND status IN ('attributed', 'reattributed')""",
        app_ids, start, end,
    ))


def savings(installs: int, price: float, plan_price: float, elapsed_days: float, month_days: int) -> dict[str, Any]:
    """Provider cost against the unmo plan for one month.

    ``installs`` are the month's attributed installs so far, over ``elapsed_days``
    of being live this month; the month's cost is projected at that run rate
    (at least one day of data is assumed, so that an hour of traffic is not
    multiplied by 720), because a plan price is for a whole month.  ``percent``
    is None when the provider would cost nothing.
    """
    elapsed = min(max(elapsed_days, 1.0), float(month_days))
    projected = round(installs * month_days / elapsed)
    provider_cost_mtd = round(installs * price, 2)
    provider_cost = round(projected * price, 2)
    saved = round(provider_cost - plan_price, 2)
    return {
        "attributed_installs": installs,
        "projected_installs": projected,
        "price_per_conversion": price,
        "provider_cost_to_date": provider_cost_mtd,
        "provider_cost": provider_cost,
        "plan_price": plan_price,
        "saved": saved,
        "percent": round(100.0 * saved / provider_cost, 1) if provider_cost > 0 else None,
        "validated": provider_cost > 0 and saved > 0,
    }
