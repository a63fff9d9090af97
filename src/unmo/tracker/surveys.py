"""Satisfaction surveys: CSAT 1-5, NPS 0-10 and a comment (spec: tracker.md).

A survey is created by itself a set delay after a customer goes live (default
48 hours).  It is answered through a link that carries a 256-bit random token;
only the token's SHA-256 is stored (as for API keys), so an account manager
issues the link (``POST /v1/surveys/{id}/link``; issuing again replaces it) and
sends it, and nobody can read it back from the database.  Satisfaction = share
of answers with CSAT 4 or 5, the usual CSAT definition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import asyncpg

from unmo.errors import NotFoundError, ValidationError, cut
from unmo.tracker.customers import ConflictError

MAX_COMMENT = 4000


def hash_token(token: str) -> bytes:
    """SHA-256 of a survey token (what is stored)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


async def create_due(conn: asyncpg.Connection, delay_s: float) -> list[int]:
    """Create the automatic survey of every live customer that went live at least ``delay_s`` ago."""
    rows = await conn.fetch(
        """INSERT INTO tracker.surveys (customer_id, automatic)
           SELECT c.customer_id, true FROM tracker.customers c
           WHERE c.status = 'live' AND c.live_at <= now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM tracker.surveys s WHERE s.customer_id = c.customer_id AND s.automatic)
           ON CONFLICT DO NOTHING RETURNING survey_id""",
        delay_s,
    )
    return [r["survey_id"] for r in rows]


async def create_manual(conn: asyncpg.Connection, customer_id: int) -> int:
    """A survey made by hand (besides the automatic one)."""
    survey_id: int = await conn.fetchval(
        "INSERT INTO tracker.surveys (customer_id) VALUES ($1) RETURNING survey_id", customer_id
    )
    return survey_id


async def issue_link(conn: asyncpg.Connection, survey_id: int) -> str:
    """A new answer token for an unanswered survey (the previous link stops working)."""
    token = secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        "UPDATE tracker.surveys SET token_hash = $2, link_issued_at = now() WHERE survey_id = $1 "
        "RETURNING answered_at",
        survey_id, hash_token(token),
    )
    if row is None:
        raise NotFoundError(f"survey: no survey with id {survey_id}")
    if row["answered_at"] is not None:
        await conn.execute("UPDATE tracker.surveys SET token_hash = NULL WHERE survey_id = $1", survey_id)
        raise ConflictError(f"survey: survey {survey_id} is answered already")
    return token


async def by_token(conn: asyncpg.Connection, token: str) -> asyncpg.Record:
    """The survey a link's token opens; NotFoundError for unknown or used links."""
    if not 20 <= len(token) <= 100:
        raise NotFoundError("survey: unknown or expired link")
    row = await conn.fetchrow(
        """SELECT s.*, c.company FROM tracker.surveys s JOIN tracker.customers c USING (customer_id)
           WHERE s.token_hash = $1""",
        hash_token(token),
    )
    if row is None:
        raise NotFoundError("survey: unknown or expired link")
    return row


def _score(data: dict[str, Any], key: str, low: int, high: int, required: bool) -> int | None:
    value = data.get(key)
    if value in (None, "") and not required:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{key}: expected a whole number {low}..{high}, got {cut(value)}")
    return value


def parse_answer(data: Any) -> tuple[int, int | None, str | None]:
    """CSAT (required), NPS (optional) and comment (optional) from a JSON object or a submitted form."""
    if not isinstance(data, dict):
        raise ValidationError(f"body: expected a JSON object or a form, got {cut(data)}")
    csat = _score(data, "csat", 1, 5, True)
    nps = _score(data, "nps", 0, 10, False)
    comment = data.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ValidationError(f"comment: expected text, got {cut(comment)}")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise ValidationError(f"comment: expected at most {MAX_COMMENT} characters, got {len(comment)}")
    assert csat is not None
    return csat, nps, (comment.strip() or None) if comment else None


async def answer(conn: asyncpg.Connection, token: str, csat: int, nps: int | None, comment: str | None) -> None:
    """Record the answer once; the link stops working afterwards."""
    async with conn.transaction():
        row = await by_token(conn, token)
        if row["answered_at"] is not None:
            raise ConflictError("survey: this survey is answered already, thank you")
        await conn.execute(
            "UPDATE tracker.surveys SET csat = $2, nps = $3, comment = $4, answered_at = now(), token_hash = NULL "
            "WHERE survey_id = $1",
            row["survey_id"], csat, nps, comment,
        )


def survey_json(row: asyncpg.Record) -> dict[str, Any]:
    """A survey as the API answers it."""
    def iso(v: dt.datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {
        "id": row["survey_id"], "customer_id": row["customer_id"], "automatic": row["automatic"],
        "created_at": iso(row["created_at"]), "link_issued_at": iso(row["link_issued_at"]),
        "answered_at": iso(row["answered_at"]), "csat": row["csat"], "nps": row["nps"], "comment": row["comment"],
    }


async def list_surveys(conn: asyncpg.Connection, customer_id: int | None = None) -> list[dict[str, Any]]:
    """Surveys oldest first, optionally of one customer."""
    rows = await conn.fetch(
        "SELECT * FROM tracker.surveys WHERE $1::bigint IS NULL OR customer_id = $1 ORDER BY survey_id", customer_id
    )
    return [survey_json(r) for r in rows]


async def satisfaction(conn: asyncpg.Connection, end: dt.datetime,
                       customer_id: int | None = None) -> dict[str, Any]:
    """CSAT share (answers 4-5 / answers) and NPS (% promoters 9-10 minus % detractors 0-6) up to ``end``."""
    r = await conn.fetchrow(
        """SELECT count(*) AS answers, count(*) FILTER (WHERE csat >= 4) AS satisfied,
                  count(nps) AS nps_answers, count(*) FILTER (WHERE nps >= 9) AS promoters,
                  count(*) FILTER (WHERE nps <= 6) AS detractors, avg(csat) AS csat_avg
           FROM tracker.surveys WHERE answered_at IS NOT NULL AND answered_at < $1
             AND ($2::bigint IS NULL OR customer_id = $2)""",
        end, customer_id,
    )
    assert r is not None
    n, nn = r["answers"], r["nps_answers"]
    return {
        "answers": n,
        "satisfaction": r["satisfied"] / n if n else None,
        "csat_avg": float(r["csat_avg"]) if r["csat_avg"] is not None else None,
        "nps": round(100.0 * (r["promoters"] - r["detractors"]) / nn, 1) if nn else None,
    }
