"""The tracker's HTTP API and dashboard (spec: tracker.md; docs/tracker.md "API").

Everything under ``/v1`` and ``/metrics`` needs the admin token
(``Authorization: Bearer $UNMO_ADMIN_TOKEN``).  Public: ``/healthz``,
``/openapi.json``, the dashboard's page and scripts (they hold no data: the page
asks for the token and calls the API with it), and the survey-answer pages
``/survey/{token}``, which carry their own unguessable token.  Failed tokens are
rate limited per client address.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hmac
import html
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from unmo import __version__
from unmo.errors import NotFoundError, ValidationError, cut
from unmo.tracker import agreement, customers, feedback, figures, pricing, probes, report, surveys
from unmo.tracker.customers import ConflictError
from unmo.tracker.kit import build_kit
from unmo.tracker.openapi import openapi_document
from unmo.tracker.service import Tracker
from unmo.tracker.settings import TrackerSettings

log = logging.getLogger("unmo.tracker.http")
_json = msgspec.json.Encoder()
Handler = Callable[[Request], Awaitable[Response]]
STATIC = resources.files("unmo.tracker") / "static"
FEED_POLL_S = 1.0
FEED_MAX_S = 600.0          # a feed connection ends after this; EventSource-style clients reconnect
FEED_HEARTBEAT_S = 15.0


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (msgspec encodes datetimes and large ints exactly)."""
    return Response(_json.encode(body), status_code=status, media_type="application/json", headers=headers)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The tracker's error answer: ``{"error": message}``."""
    return json_response({"error": message}, status, headers)


class FailureLimiter:
    """At most ``limit`` failed tokens per client address per ``window_s`` (then 429)."""

    def __init__(self, limit: int = 20, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._fails: dict[str, list[float]] = {}

    def blocked(self, client: str) -> float:
        now = time.monotonic()
        recent = [t for t in self._fails.get(client, []) if now - t < self.window_s]
        if recent:
            self._fails[client] = recent
        else:
            self._fails.pop(client, None)
        return self.window_s - (now - recent[0]) if len(recent) >= self.limit else 0.0

    def fail(self, client: str) -> None:
        if len(self._fails) > 10_000:  # bounded memory under a spray of addresses
            self._fails.clear()
        self._fails.setdefault(client, []).append(time.monotonic())


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def endpoint(route: str, *, admin: bool = True) -> Callable[[Handler], Handler]:
    """Auth, error mapping and metrics around a handler."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def handler(request: Request) -> Response:
            tracker: Tracker = request.app.state.tracker
            t0 = time.perf_counter()
            try:
                response = await _guarded(fn, request, tracker, admin)
            finally:
                tracker.metrics.request_seconds.labels(route).observe(time.perf_counter() - t0)
            tracker.metrics.requests.labels(route, str(response.status_code)).inc()
            return response

        return handler

    return wrap


async def _guarded(fn: Handler, request: Request, tracker: Tracker, admin: bool) -> Response:
    limiter: FailureLimiter = request.app.state.admin_limiter
    if admin:
        wait = limiter.blocked(_client(request))
        if wait > 0:
            return error(429, "authorization: too many failed attempts from this address",
                         {"Retry-After": str(int(wait) + 1)})
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return error(401, "authorization: expected 'Bearer <admin token>' (UNMO_ADMIN_TOKEN)",
                         {"WWW-Authenticate": 'Bearer realm="unmo-tracker"'})
        if not hmac.compare_digest(token.strip().encode(), tracker.settings.admin_token.encode()):
            limiter.fail(_client(request))
            return error(401, "authorization: wrong admin token", {"WWW-Authenticate": 'Bearer realm="unmo-tracker"'})
    try:
        return await fn(request)
    except BodyTooLarge as exc:
        return error(413, str(exc))
    except ConflictError as exc:
        return error(409, str(exc))
    except ValidationError as exc:
        return error(400, str(exc))
    except NotFoundError as exc:
        return error(404, str(exc))
    except (TimeoutError, OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        log.warning("database unavailable", extra={"error": exc.__class__.__name__})
        return error(503, "database: unavailable, try again", {"Retry-After": "2"})
    except Exception:
        log.exception("request failed", extra={"path": request.url.path})
        return error(500, "internal error (logged by the tracker)")


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, at most ``limit`` bytes; ValidationError names what is wrong."""
    body = await read_body(request, limit)
    if not body:
        raise ValidationError("body: expected a JSON object, got an empty body")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"body: expected JSON, got {cut(body[:60].decode('utf-8', 'replace'))} ({exc})") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (BodyTooLarge) as soon as it passes ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class BodyTooLarge(ValidationError):
    """A body over its limit: HTTP 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body: larger than {limit} bytes")
        self.limit = limit


def path_id(request: Request, name: str = "id") -> int:
    """A numeric path parameter; anything else is a 404, as no such object exists."""
    raw = request.path_params[name]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFoundError(f"{name}: expected a numeric id, got {cut(raw)}")
    return int(raw)


def tracker_of(request: Request) -> Tracker:
    t: Tracker = request.app.state.tracker
    return t


@contextlib.asynccontextmanager
async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled database connection for one request."""
    t = tracker_of(request)
    assert t.pool is not None
    async with t.pool.acquire(timeout=5.0) as conn:
        yield conn


# ------------------------------------------------------------------ customers
@endpoint("customers_create")
async def create_customer(request: Request) -> Response:
    t = tracker_of(request)
    new = customers.parse_new_customer(await read_json(request, t.settings.max_json_bytes))
    price = new.plan_price if new.plan_price is not None else t.settings.default_plan_price
    async with connection(request) as conn:
        made = await customers.insert_customer(conn, new, price)
        apps = await customers.customer_apps(conn, made["row"]["customer_id"])
    customer = customers.customer_json(made["row"], apps)
    kit = build_kit(customer, made["apps"], t.settings.ingest_urls[0] if t.settings.ingest_urls else None)
    log.info("customer created", extra={"customer_id": customer["id"], "apps": [a["app_id"] for a in apps]})
    return json_response({"customer": customer, "kit": kit}, 201)


@endpoint("customers_list")
async def list_customers(request: Request) -> Response:
    async with connection(request) as conn:
        await customers.check_onboarding(conn)  # answer with the status as of now, not as of the last round
        rows = await customers.list_customers(conn)
        out = [customers.customer_json(r, await customers.customer_apps(conn, r["customer_id"])) for r in rows]
    return json_response({"customers": out})


@endpoint("customers_get")
async def get_customer(request: Request) -> Response:
    cid = path_id(request)
    now = dt.datetime.now(dt.UTC)
    async with connection(request) as conn:
        await customers.check_onboarding(conn, [cid])
        row = await customers.get_customer(conn, cid)
        apps = await customers.customer_apps(conn, cid)
        prices = {p["provider"]: p["price_per_conversion"] for p in await pricing.price_table(conn)}
        fig = await figures.customer_figures(conn, row, [a["app_id"] for a in apps],
                                             figures.Window(now - figures.DAY, now), prices, now)
    return json_response({**fig, "apps": apps})


@endpoint("customers_update")
async def update_customer(request: Request) -> Response:
    cid = path_id(request)
    body = await read_json(request, tracker_of(request).settings.max_json_bytes)
    if not isinstance(body, dict) or not body or set(body) - {"status", "plan_price"}:
        raise ValidationError(f"body: expected an object with status and/or plan_price, got {cut(body)}")
    async with connection(request) as conn:
        if "plan_price" in body:
            price = body["plan_price"]
            if isinstance(price, bool) or not isinstance(price, int | float) or not 0 <= price <= 1e7:
                raise ValidationError(f"plan_price: expected a number of USD per month 0..10000000, got {cut(price)}")
            await customers.set_plan_price(conn, cid, float(price))
        if "status" in body:
            if not isinstance(body["status"], str):
                raise ValidationError(
                    f"status: expected one of {', '.join(customers.STATUSES)}, got {cut(body['status'])}")
            await customers.set_status(conn, cid, body["status"])
        row = await customers.get_customer(conn, cid)
        apps = await customers.customer_apps(conn, cid)
    return json_response(customers.customer_json(row, apps))


# ------------------------------------------------------------------ agreement
@endpoint("agreement_upload")
async def upload_agreement(request: Request) -> Response:
    t = tracker_of(request)
    cid = path_id(request)
    ctype = request.headers.get("content-type", "text/csv").split(";")[0].strip().lower()
    if ctype not in ("text/csv", "text/plain", "application/csv", "application/octet-stream", ""):
        return error(415, f"content-type: expected text/csv (send the file as the body), got {cut(ctype)}")
    try:
        data = await read_body(request, t.settings.max_upload_bytes)
    except BodyTooLarge as exc:
        return error(413, str(exc))
    filename = request.query_params.get("filename")
    if filename is not None and len(filename) > 200:
        raise ValidationError(f"filename: expected at most 200 characters, got {len(filename)}")
    upload = agreement.parse_upload(data, t.settings.max_upload_rows)
    async with connection(request) as conn:
        await customers.get_customer(conn, cid)
        app_ids = [a["app_id"] for a in await customers.customer_apps(conn, cid)]
        result = await agreement.compare(conn, cid, app_ids, upload, filename)
    return json_response(result, 201)


@endpoint("agreement_latest")
async def latest_agreement(request: Request) -> Response:
    cid = path_id(request)
    async with connection(request) as conn:
        await customers.get_customer(conn, cid)
        run = await agreement.latest_run(conn, cid)
    if run is None:
        raise NotFoundError(f"agreement: customer {cid} has uploaded no provider report yet")
    return json_response(run)


# ------------------------------------------------------------------ feedback
@endpoint("feedback_create")
async def create_feedback(request: Request) -> Response:
    cid = path_id(request)
    category, severity, text = feedback.parse_feedback(
        await read_json(request, tracker_of(request).settings.max_json_bytes))
    async with connection(request) as conn:
        item = await feedback.record(conn, cid, category, severity, text)
    return json_response(item, 201)


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise ValidationError(f"{name}: expected a whole number 0..{high}, got {cut(raw)}")
    return int(raw)


@endpoint("feedback_customer")
async def customer_feedback(request: Request) -> Response:
    cid = path_id(request)
    async with connection(request) as conn:
        await customers.get_customer(conn, cid)
        items = await feedback.list_feedback(conn, cid, limit=_int_param(request, "limit", 100, 1000))
    return json_response({"feedback": items})


@endpoint("feedback_list")
async def list_feedback(request: Request) -> Response:
    async with connection(request) as conn:
        items = await feedback.list_feedback(conn, None, _int_param(request, "after", 0, 2**62),
                                             _int_param(request, "limit", 100, 1000))
    return json_response({"feedback": items})


@endpoint("feedback_stream")
async def feedback_stream(request: Request) -> Response:
    """Server-sent events: one ``feedback`` event per new item (``Last-Event-ID`` or ``?after=`` resumes)."""
    t = tracker_of(request)
    if t.streams >= t.settings.max_streams:
        return error(503, f"feed: more than {t.settings.max_streams} open feeds", {"Retry-After": "5"})
    last = request.headers.get("last-event-id", "")
    after = int(last) if last.isdigit() and len(last) < 18 else _int_param(request, "after", 0, 2**62)
    if after == 0:
        async with connection(request) as conn:
            after = int(await conn.fetchval("SELECT coalesce(max(feedback_id), 0) FROM tracker.feedback"))

    async def events() -> AsyncIterator[bytes]:
        nonlocal after
        t.streams += 1
        t.metrics.streams.set(t.streams)
        started = beat = time.monotonic()
        try:
            yield f"retry: 2000\nevent: hello\ndata: {json.dumps({'after': after})}\n\n".encode()
            while time.monotonic() - started < FEED_MAX_S and not t.stopping.is_set():
                if await request.is_disconnected():
                    break
                try:
                    async with connection(request) as conn:
                        items = await feedback.list_feedback(conn, None, after, 100)
                except Exception:
                    items = []
                for item in reversed(items):
                    after = max(after, item["id"])
                    yield f"id: {item['id']}\nevent: feedback\ndata: {json.dumps(item)}\n\n".encode()
                if time.monotonic() - beat > FEED_HEARTBEAT_S:
                    beat = time.monotonic()
                    yield b": keep-alive\n\n"
                await asyncio.sleep(FEED_POLL_S)
        finally:
            t.streams -= 1
            t.metrics.streams.set(t.streams)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@endpoint("webhook")
async def webhook_status(request: Request) -> Response:
    t = tracker_of(request)
    async with connection(request) as conn:
        summary = await feedback.outbox_summary(conn)
        log_rows = await feedback.attempts(conn, _int_param(request, "limit", 200, 5000))
    url = t.settings.webhook_url
    return json_response({"url": feedback.safe_url(url) if url else None, "configured": bool(url),
                          **summary, "attempts": log_rows})


# ------------------------------------------------------------------ surveys
@endpoint("surveys_list")
async def list_surveys(request: Request) -> Response:
    async with connection(request) as conn:
        return json_response({"surveys": await surveys.list_surveys(conn)})


@endpoint("surveys_create")
async def create_survey(request: Request) -> Response:
    cid = path_id(request)
    async with connection(request) as conn:
        await customers.get_customer(conn, cid)
        sid = await surveys.create_manual(conn, cid)
        token = await surveys.issue_link(conn, sid)
    return json_response({"id": sid, "link": _survey_link(request, token)}, 201)


@endpoint("surveys_link")
async def survey_link(request: Request) -> Response:
    sid = path_id(request)
    async with connection(request) as conn:
        token = await surveys.issue_link(conn, sid)
    return json_response({"id": sid, "link": _survey_link(request, token)})


def _survey_link(request: Request, token: str) -> str:
    return str(request.base_url).rstrip("/") + "/survey/" + token


_SURVEY_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>How is unmo working for you?</title>
<link rel="stylesheet" href="/static/survey.css"></head><body><main>
<h1>How is unmo working for {company}?</h1>{body}</main></body></html>"""

_SURVEY_FORM = """<form method="post">
<fieldset><legend>How satisfied are you with unmo? (1 = very unsatisfied, 5 = very satisfied)</legend>
{csat}</fieldset>
<fieldset><legend>How likely are you to recommend unmo to a colleague? (0 = not at all, 10 = extremely)</legend>
{nps}</fieldset>
<label for="comment">Anything we should know?</label>
<textarea id="comment" name="comment" maxlength="4000" rows="5"></textarea>
<button type="submit">Send</button></form>"""


def _radios(name: str, low: int, high: int, required: bool) -> str:
    req = " required" if required else ""
    return "".join(f'<label class="pick"><input type="radio" name="{name}" value="{i}"{req}>{i}</label>'
                   for i in range(low, high + 1))


@endpoint("survey_page", admin=False)
async def survey_page(request: Request) -> Response:
    limiter: FailureLimiter = request.app.state.survey_limiter
    if limiter.blocked(_client(request)) > 0:
        return HTMLResponse("<p>Too many attempts, try again in a minute.</p>", 429)
    token = request.path_params["token"]
    try:
        async with connection(request) as conn:
            row = await surveys.by_token(conn, token)
    except NotFoundError:
        limiter.fail(_client(request))
        return HTMLResponse(_SURVEY_PAGE.format(company="you", body="<p>This survey link is unknown or was "
                                                "answered already. Thank you!</p>"), 404)
    form = _SURVEY_FORM.format(csat=_radios("csat", 1, 5, True), nps=_radios("nps", 0, 10, False))
    return HTMLResponse(_SURVEY_PAGE.format(company=html.escape(row["company"]), body=form),
                        headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


@endpoint("survey_answer", admin=False)
async def survey_answer(request: Request) -> Response:
    limiter: FailureLimiter = request.app.state.survey_limiter
    if limiter.blocked(_client(request)) > 0:
        return error(429, "survey: too many attempts from this address", {"Retry-After": "60"})
    token = request.path_params["token"]
    raw = await read_body(request, 16 * 1024)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data: Any = json.loads(raw)
        except ValueError:
            raise ValidationError(f"body: expected JSON, got {cut(raw[:60].decode('utf-8', 'replace'))}") from None
    else:
        data = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    csat, nps, comment = surveys.parse_answer(data)
    try:
        async with connection(request) as conn:
            await surveys.answer(conn, token, csat, nps, comment)
    except NotFoundError:
        limiter.fail(_client(request))
        raise
    if ctype == "application/json":
        return json_response({"status": "recorded"})
    return HTMLResponse(_SURVEY_PAGE.format(company="you", body="<p class='thanks'>Thank you! Your answer is "
                                            "recorded.</p>"))


# ------------------------------------------------------------------ prices, figures, report
@endpoint("prices_list")
async def list_prices(request: Request) -> Response:
    async with connection(request) as conn:
        return json_response({"prices": await pricing.price_table(conn)})


@endpoint("prices_set")
async def set_price(request: Request) -> Response:
    provider = request.path_params["provider"]
    price, source = pricing.parse_price(await read_json(request, tracker_of(request).settings.max_json_bytes))
    async with connection(request) as conn:
        await pricing.set_price(conn, provider, price, source)
        table = await pricing.price_table(conn)
    return json_response(next(p for p in table if p["provider"] == provider))


@endpoint("dashboard")
async def dashboard_data(request: Request) -> Response:
    hours = max(1, _int_param(request, "hours", 24, 24 * 31))
    now = dt.datetime.now(dt.UTC)
    step_min = max(1, hours * 60 // 120)  # at most ~120 points a chart
    step = dt.timedelta(minutes=step_min)
    end = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    chart_window = figures.Window(end - step * (hours * 60 // step_min), end)
    async with connection(request) as conn:
        await customers.check_onboarding(conn)
        data = await figures.programme(
            conn, at=now, perf=figures.Window(now - figures.DAY, now),
            uptime_window=figures.Window(now - 7 * figures.DAY, now), week=figures.iso_week(None, now),
        )
        data["series"] = await figures.series(conn, await figures.customer_apps_map(conn), chart_window, step)
        data["feedback"] = await feedback.list_feedback(conn, None, 0, 20)
        data["outbox"] = await feedback.outbox_summary(conn)
        data["surveys"] = await surveys.list_surveys(conn)
    data["ingest_urls"] = tracker_of(request).settings.ingest_urls
    data["webhook_configured"] = bool(tracker_of(request).settings.webhook_url)
    return json_response(data)


@endpoint("uptime")
async def uptime(request: Request) -> Response:
    hours = max(1, _int_param(request, "hours", 24 * 7, 24 * 366))
    now = dt.datetime.now(dt.UTC)
    async with connection(request) as conn:
        return json_response(await probes.uptime(conn, now - dt.timedelta(hours=hours), now))


@endpoint("report")
async def weekly_report(request: Request) -> Response:
    week = request.query_params.get("week")
    async with connection(request) as conn:
        data = await report.build(conn, week)
    fmt = request.query_params.get("format", "json")
    if fmt == "markdown":
        return Response(report.to_markdown(data), media_type="text/markdown; charset=utf-8")
    if fmt == "html":
        return HTMLResponse(report.to_html(data))
    if fmt != "json":
        raise ValidationError(f"format: expected json, markdown or html, got {cut(fmt)}")
    return json_response(data)


# ------------------------------------------------------------------ operations
async def healthz(request: Request) -> Response:
    return json_response({"status": "ok", "service": "unmo-tracker", "version": __version__})


@endpoint("metrics")
async def metrics(request: Request) -> Response:
    t = tracker_of(request)
    async with connection(request) as conn:
        counts = {r["status"]: r["n"] for r in await conn.fetch(
            "SELECT status, count(*) AS n FROM tracker.customers GROUP BY status")}
        pending = await conn.fetchval("SELECT count(*) FROM tracker.outbox WHERE delivered_at IS NULL")
    for status in customers.STATUSES:
        t.metrics.customers.labels(status).set(counts.get(status, 0))
    t.metrics.outbox_pending.set(pending)
    return Response(generate_latest(t.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return json_response(openapi_document())


async def dashboard_page(request: Request) -> Response:
    page = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={
        "Cache-Control": "no-cache",
        # no assets from anywhere but here: the dashboard works offline and leaks nothing
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        "Referrer-Policy": "no-referrer",
    })


def create_app(settings: TrackerSettings, database_url: str) -> Starlette:
    """The tracker's ASGI application; background tasks start with its lifespan."""
    tracker = Tracker(settings, database_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await tracker.startup()
        try:
            yield
        finally:
            await tracker.shutdown()

    routes = [
        Route("/", dashboard_page, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/survey/{token}", survey_page, methods=["GET"]),
        Route("/survey/{token}", survey_answer, methods=["POST"]),
        Route("/v1/customers", create_customer, methods=["POST"]),
        Route("/v1/customers", list_customers, methods=["GET"]),
        Route("/v1/customers/{id}", get_customer, methods=["GET"]),
        Route("/v1/customers/{id}", update_customer, methods=["PATCH"]),
        Route("/v1/customers/{id}/agreement", upload_agreement, methods=["POST"]),
        Route("/v1/customers/{id}/agreement", latest_agreement, methods=["GET"]),
        Route("/v1/customers/{id}/feedback", create_feedback, methods=["POST"]),
        Route("/v1/customers/{id}/feedback", customer_feedback, methods=["GET"]),
        Route("/v1/customers/{id}/surveys", create_survey, methods=["POST"]),
        Route("/v1/feedback", list_feedback, methods=["GET"]),
        Route("/v1/feedback/stream", feedback_stream, methods=["GET"]),
        Route("/v1/webhook", webhook_status, methods=["GET"]),
        Route("/v1/surveys", list_surveys, methods=["GET"]),
        Route("/v1/surveys/{id}/link", survey_link, methods=["POST"]),
        Route("/v1/prices", list_prices, methods=["GET"]),
        Route("/v1/prices/{provider}", set_price, methods=["PUT"]),
        Route("/v1/dashboard", dashboard_data, methods=["GET"]),
        Route("/v1/uptime", uptime, methods=["GET"]),
        Route("/v1/report", weekly_report, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.tracker = tracker
    app.state.admin_limiter = FailureLimiter()
    app.state.survey_limiter = FailureLimiter()
    return app
