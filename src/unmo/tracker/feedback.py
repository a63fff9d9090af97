"""Customer feedback and its delivery to the support-ticketing webhook (spec: tracker.md).

Feedback is stored together with an outbox row in one transaction (the
transactional-outbox pattern), and a background task delivers the outbox: so a
webhook that is down, slow or misconfigured, or a tracker that restarts, never
loses feedback.  Delivery is at least once; every request carries the same
``X-Unmo-Delivery`` id on each retry so the receiver can drop repeats.

Signature (Stripe's scheme, which also stops replays): header
``X-Unmo-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
Retries back off exponentially with full jitter (AWS Architecture Blog,
"Exponential Backoff And Jitter", 2015), from ``retry_base_s`` up to
``retry_max_s``, and never stop; every attempt is logged in
``tracker.delivery_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from unmo import __version__
from unmo.errors import NotFoundError, ValidationError, cut

log = logging.getLogger("unmo.tracker.feedback")

CATEGORIES = ("bug", "feature", "question", "praise")
SEVERITIES = ("low", "medium", "high", "critical")
MAX_TEXT = 10_000
LEASE_S = 60.0          # a claimed delivery is retried by anyone after this if its claimer died


def parse_feedback(body: Any) -> tuple[str, str, str]:
    """category, severity and text of a feedback body; ValidationError names what is wrong."""
    if not isinstance(body, dict):
        raise ValidationError(f"body: expected a JSON object, got {cut(body)}")
    category = body.get("category")
    if category not in CATEGORIES:
        raise ValidationError(f"category: expected one of {', '.join(CATEGORIES)}, got {cut(category)}")
    severity = body.get("severity", "medium")
    if severity not in SEVERITIES:
        raise ValidationError(f"severity: expected one of {', '.join(SEVERITIES)}, got {cut(severity)}")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"text: expected the feedback text, got {cut(text)}")
    if len(text) > MAX_TEXT:
        raise ValidationError(f"text: expected at most {MAX_TEXT} characters, got {len(text)}")
    return category, severity, text.strip()


def safe_url(url: str) -> str:
    """The webhook URL as logged and shown: without credentials or query string (they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "..." if parts.query else "", ""))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Unmo-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse old timestamps."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, t, body), header)


def feedback_json(row: asyncpg.Record) -> dict[str, Any]:
    """A feedback row as the API answers it, with its delivery state."""
    return {
        "id": row["feedback_id"], "customer_id": row["customer_id"], "company": row["company"],
        "category": row["category"], "severity": row["severity"], "text": row["text"],
        "created_at": row["created_at"].astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "delivery": {"status": "delivered" if row["delivered_at"] else "pending", "attempts": row["attempts"],
                     "last_error": row["last_error"]},
    }


_FEEDBACK_SQL = """SELECT f.*, c.company, o.delivered_at, o.attempts, o.last_error
    FROM tracker.feedback f JOIN tracker.customers c USING (customer_id)
    LEFT JOIN tracker.outbox o USING (feedback_id)"""


async def record(conn: asyncpg.Connection, customer_id: int, category: str, severity: str,
                 text: str) -> dict[str, Any]:
    """Store feedback and its outbox row in one transaction."""
    async with conn.transaction():
        company = await conn.fetchval("SELECT company FROM tracker.customers WHERE customer_id = $1", customer_id)
        if company is None:
            raise NotFoundError(f"customer: no customer with id {customer_id}")
        row = await conn.fetchrow(
            "INSERT INTO tracker.feedback (customer_id, category, severity, text) VALUES ($1, $2, $3, $4) "
            "RETURNING feedback_id, created_at",
            customer_id, category, severity, text,
        )
        assert row is not None
        delivery_id = uuid.uuid4()
        body = json.dumps({
            "type": "feedback.created",
            "delivery_id": str(delivery_id),
            "feedback": {"id": row["feedback_id"], "category": category, "severity": severity, "text": text,
                         "created_at": row["created_at"].isoformat()},
            "customer": {"id": customer_id, "company": company},
            "source": f"unmo-tracker/{__version__}",
        }, separators=(",", ":"), ensure_ascii=False)
        await conn.execute(
            "INSERT INTO tracker.outbox (delivery_id, feedback_id, body) VALUES ($1, $2, $3)",
            delivery_id, row["feedback_id"], body,
        )
        full = await conn.fetchrow(_FEEDBACK_SQL + " WHERE f.feedback_id = $1", row["feedback_id"])
    assert full is not None
    return feedback_json(full)


async def list_feedback(conn: asyncpg.Connection, customer_id: int | None = None, after_id: int = 0,
                        limit: int = 100) -> list[dict[str, Any]]:
    """Feedback newest first, optionally of one customer and after an id."""
    rows = await conn.fetch(
        _FEEDBACK_SQL + " WHERE ($1::bigint IS NULL OR f.customer_id = $1) AND f.feedback_id > $2 "
        "ORDER BY f.feedback_id DESC LIMIT $3",
        customer_id, after_id, limit,
    )
    return [feedback_json(r) for r in rows]


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Delay before the next try after ``attempts`` failures: full jitter over base * 2^(attempts-1)."""
    ceiling = min(max_s, base_s * 2 ** min(attempts - 1, 30))
    return max(base_s / 2, random.uniform(0, ceiling))


class Deliverer:
    """Delivers due outbox rows to the webhook; several trackers may run it at once (row leases)."""

    def __init__(self, pool: asyncpg.Pool, url: str | None, secret: str | None, *, retry_base_s: float,
                 retry_max_s: float, timeout_s: float) -> None:
        self.pool = pool
        self.url = url
        self.secret = secret or ""
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def close(self) -> None:
        await self.client.aclose()

    async def run_once(self, stopping: asyncio.Event | None = None, batch: int = 20) -> int:
        """Deliver what is due now; returns the number of attempts made.

        Once ``stopping`` is set no new attempt starts and the rows claimed but not tried are handed
        back, so that the next tracker delivers them at once rather than after the lease.
        """
        if not self.url:
            return 0  # kept in the outbox until a webhook is configured
        async with self.pool.acquire(timeout=5.0) as conn:
            due = await conn.fetch(
                """UPDATE tracker.outbox SET next_attempt_at = now() + make_interval(secs => $2)
                   WHERE delivery_id IN (SELECT delivery_id FROM tracker.outbox
                       WHERE delivered_at IS NULL AND next_attempt_at <= now()
                       ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                   RETURNING delivery_id, body, attempts""",
                batch, LEASE_S,
            )
        done: set[uuid.UUID] = set()
        try:
            for row in due:
                if stopping is not None and stopping.is_set():
                    break
                await self._attempt(row["delivery_id"], row["body"], row["attempts"] + 1)
                done.add(row["delivery_id"])
        except asyncio.CancelledError:
            # stopping: hand the claimed rows back at once instead of after the lease
            left = [r["delivery_id"] for r in due if r["delivery_id"] not in done]
            await asyncio.shield(self._release(left))
            raise
        left = [r["delivery_id"] for r in due if r["delivery_id"] not in done]
        if left:
            await self._release(left)
        return len(done)

    async def _release(self, delivery_ids: list[uuid.UUID]) -> None:
        with contextlib.suppress(Exception):
            async with self.pool.acquire(timeout=2.0) as conn:
                await conn.execute(
                    "UPDATE tracker.outbox SET next_attempt_at = now() WHERE delivery_id = ANY($1) "
                    "AND delivered_at IS NULL", delivery_ids,
                )

    async def _attempt(self, delivery_id: uuid.UUID, body_text: str, attempt: int) -> None:
        assert self.url is not None
        body = body_text.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"unmo-tracker/{__version__}",
            "X-Unmo-Delivery": str(delivery_id),
            "X-Unmo-Attempt": str(attempt),
            "X-Unmo-Signature": sign(self.secret, int(time.time()), body),
        }
        t0 = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            r = await self.client.post(self.url, content=body, headers=headers)
            status = r.status_code
            if not 200 <= status < 300:
                error = f"webhook answered {status}: {cut(r.text, 200)}"
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {cut(str(exc), 200)}"
        duration_ms = (time.perf_counter() - t0) * 1000
        ok = error is None
        async with self.pool.acquire(timeout=5.0) as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO tracker.delivery_attempts (delivery_id, attempt, url, status, ok, error, duration_ms) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                delivery_id, attempt, safe_url(self.url), status, ok, error, duration_ms,
            )
            if ok:
                await conn.execute(
                    "UPDATE tracker.outbox SET attempts = $2, delivered_at = now(), last_error = NULL "
                    "WHERE delivery_id = $1", delivery_id, attempt,
                )
            else:
                await conn.execute(
                    "UPDATE tracker.outbox SET attempts = $2, last_error = $3, "
                    "next_attempt_at = now() + make_interval(secs => $4) WHERE delivery_id = $1",
                    delivery_id, attempt, error, backoff_s(attempt, self.retry_base_s, self.retry_max_s),
                )
        if not ok:
            log.warning("webhook delivery failed", extra={"delivery": str(delivery_id), "attempt": attempt,
                                                          "status": status, "error": error})


async def attempts(conn: asyncpg.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """The latest delivery attempts, newest first."""
    rows = await conn.fetch(
        """SELECT a.*, o.feedback_id FROM tracker.delivery_attempts a JOIN tracker.outbox o USING (delivery_id)
           ORDER BY a.id DESC LIMIT $1""",
        limit,
    )
    return [{"delivery_id": str(r["delivery_id"]), "feedback_id": r["feedback_id"], "attempt": r["attempt"],
             "at": r["at"].isoformat(), "url": r["url"], "status": r["status"], "ok": r["ok"], "error": r["error"],
             "duration_ms": round(r["duration_ms"], 1)} for r in rows]


async def outbox_summary(conn: asyncpg.Connection) -> dict[str, Any]:
    """Deliveries pending and delivered, and since when the oldest pending one waits."""
    r = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE delivered_at IS NULL) AS pending,
                  count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
                  min(created_at) FILTER (WHERE delivered_at IS NULL) AS oldest_pending
           FROM tracker.outbox"""
    )
    assert r is not None
    return {"pending": r["pending"], "delivered": r["delivered"],
            "oldest_pending": r["oldest_pending"].isoformat() if r["oldest_pending"] else None}
