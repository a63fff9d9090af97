"""``unmo tracker``: the service, its weekly report and the onboarding client (spec: tracker.md).

- ``unmo tracker [--host 127.0.0.1] [--port 8084] [--database-url URL] [--ingest-url URL ...]``
  runs the service (same database settings as ``unmo serve``);
- ``unmo tracker report [--week YYYY-Www] [--out DIR]`` writes the week's report (Markdown and HTML);
- ``unmo tracker onboard --company ... [--send-test-event]`` onboards a customer through a running
  tracker (``tools/scripts/create-pilot-customer.sh`` is a thin wrapper over it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from unmo.cli import Parser, UsageError, add_database_flag, run_with_database
from unmo.errors import ConfigError, ValidationError
from unmo.tracker.customers import INTEGRATIONS, PROVIDERS, VERTICALS, parse_platforms
from unmo.tracker.settings import (
    TrackerSettings,
    admin_token_from_env,
    duration_setting,
    ingest_urls_from,
    parse_url,
)


def settings_from_args(args: argparse.Namespace) -> TrackerSettings:
    """TrackerSettings from flags and environment; bad values raise UsageError (exit 2)."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"unmo tracker: --port: expected 0..65535, got {args.port}")
    try:
        s = TrackerSettings(host=args.host, port=args.port, ingest_urls=ingest_urls_from(args.ingest_url))
        s.admin_token = admin_token_from_env()
        s.probe_interval_s = duration_setting(args.probe_interval, "UNMO_TRACKER_PROBE_INTERVAL", 10.0,
                                              "probe-interval")
        s.survey_delay_s = duration_setting(args.survey_delay, "UNMO_TRACKER_SURVEY_DELAY", 48 * 3600.0,
                                            "survey-delay")
        s.webhook_retry_base_s = duration_setting(args.webhook_retry, "UNMO_TRACKER_WEBHOOK_RETRY", 2.0,
                                                  "webhook-retry")
        webhook = args.webhook_url or os.environ.get("UNMO_TRACKER_WEBHOOK_URL")
        s.webhook_url = parse_url(webhook, "webhook-url") if webhook else None
        s.webhook_secret = os.environ.get("UNMO_TRACKER_WEBHOOK_SECRET") or None
    except (ValidationError, ConfigError) as exc:
        raise UsageError(f"unmo tracker: {exc}") from None
    if s.probe_interval_s < 0.1:
        raise UsageError(f"unmo tracker: --probe-interval: expected at least 100ms, got {args.probe_interval!r}")
    if not 0.05 <= s.webhook_retry_base_s <= 3600:
        raise UsageError(f"unmo tracker: --webhook-retry: expected 50ms .. 1h, got {args.webhook_retry!r}")
    if s.webhook_url and not s.webhook_secret:
        raise UsageError("unmo tracker: UNMO_TRACKER_WEBHOOK_SECRET: a webhook needs a signing secret")
    return s


def cmd_serve(args: argparse.Namespace) -> int:
    """``unmo tracker``: migrate, then serve the API, the dashboard and the background tasks."""
    import uvicorn

    from unmo.db.embedded import database_url_or_embedded
    from unmo.db.migrate import migrate_url
    from unmo.server.logs import setup as setup_logging
    from unmo.tracker.app import create_app

    settings = settings_from_args(args)
    setup_logging(os.environ.get("UNMO_LOG_LEVEL", "INFO"))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe and delivery is noise
    url, embedded = database_url_or_embedded(args.database_url)
    try:
        migrate_url(url)
        config = uvicorn.Config(
            create_app(settings, url), host=settings.host, port=settings.port, loop="uvloop", http="httptools",
            lifespan="on", log_config=None, access_log=False, server_header=False,
            timeout_graceful_shutdown=5, limit_concurrency=512,
        )
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else 1
    finally:
        if embedded is not None:
            embedded.stop()


def cmd_report(args: argparse.Namespace) -> int:
    """``unmo tracker report``: write the week's report as Markdown and HTML."""
    import datetime as dt

    from unmo.tracker import report
    from unmo.tracker.figures import iso_week

    iso_week(args.week, dt.datetime.now(dt.UTC))  # a bad --week fails before the database is touched
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"unmo tracker report: --out: expected a directory, got the file {str(out)!r}")
    data = run_with_database(getattr(args, "database_url", None), lambda conn: report.build(conn, args.week))
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"unmo-pilot-report-{data['week']}.md"
    page = out / f"unmo-pilot-report-{data['week']}.html"
    md.write_text(report.to_markdown(data), encoding="utf-8")
    page.write_text(report.to_html(data), encoding="utf-8")
    if args.json:
        print(json.dumps({"week": data["week"], "markdown": str(md), "html": str(page),
                          "criteria": {c["key"]: {"value": c["value"], "target": c["target"], "pass": c["pass"]}
                                       for c in data["criteria"]}}, default=str))
    else:
        print(report.to_markdown(data))
        print(f"written: {md}\n         {page}")
    return 0


# ------------------------------------------------------------------ onboard
def _fail(message: str, status: int) -> int:
    print(f"unmo tracker onboard: {message}", file=sys.stderr)
    return status


def cmd_onboard(args: argparse.Namespace) -> int:
    """``unmo tracker onboard``: create a customer through the tracker, print its kit, optionally test it."""
    platforms = list(parse_platforms(args.platforms))
    if args.events_per_day < 0:
        raise UsageError(f"unmo tracker onboard: --events-per-day: expected 0 or more, got {args.events_per_day}")
    if args.plan_price is not None and args.plan_price < 0:
        raise UsageError(f"unmo tracker onboard: --plan-price: expected 0 or more, got {args.plan_price}")
    if not 1 <= args.wait <= 3600:
        raise UsageError(f"unmo tracker onboard: --wait: expected 1..3600 seconds, got {args.wait}")
    try:
        tracker = parse_url(args.tracker_url or os.environ.get("UNMO_TRACKER_URL") or "http://127.0.0.1:8084",
                            "UNMO_TRACKER_URL")
    except ValidationError as exc:
        raise UsageError(f"unmo tracker onboard: {exc}") from None
    token = os.environ.get("UNMO_ADMIN_TOKEN")
    if not token:
        raise UsageError("unmo tracker onboard: UNMO_ADMIN_TOKEN: not set (the tracker's admin token)")
    body: dict[str, Any] = {"company": args.company, "vertical": args.vertical, "provider": args.provider,
                            "events_per_day": args.events_per_day, "integration": args.integration,
                            "platforms": platforms}
    if args.plan_price is not None:
        body["plan_price"] = args.plan_price
    if args.contact_email:
        body["contact_email"] = args.contact_email
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    try:
        with httpx.Client(timeout=30.0) as client:
            r = client.post(tracker + "/v1/customers", json=body, headers=headers)
            if r.status_code != 201:
                return _fail(_api_error(r), 2 if 400 <= r.status_code < 500 else 1)
            created = r.json()
            result: dict[str, Any] = {"customer": created["customer"], "kit": created["kit"]}
            if not args.json:
                print_kit(created["customer"], created["kit"])
            if args.send_test_event:
                result["test_event"] = send_test_event(client, tracker, headers, created, args.wait, started)
                if not args.json:
                    te = result["test_event"]
                    print(f"\ntest event: accepted by {created['kit']['ingest_url']} in {te['send_ms']:.0f} ms")
                    print(f"customer status: {te['status']}")
                    print(f"onboarding time: {te['onboarding_seconds']:.2f} s (first accepted record minus creation;"
                          f" target 5 min); {te['wall_seconds']:.1f} s for this whole script")
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach {tracker}: {exc.__class__.__name__}: {exc}", 1)
    except OnboardError as exc:
        return _fail(str(exc), 1)
    if args.json:
        print(json.dumps(result))
    return 0


class OnboardError(Exception):
    """The customer was created but the test event did not bring it live."""


def _api_error(r: Any) -> str:
    try:
        return f"{r.request.url.path}: {r.status_code}: {r.json()['error']}"
    except (ValueError, KeyError, TypeError):
        return f"{r.request.url.path}: {r.status_code}: {r.text[:200]}"


def send_test_event(client: httpx.Client, tracker: str, headers: dict[str, str], created: dict[str, Any], wait_s: float,
                    started: float) -> dict[str, Any]:
    """Send one event with the kit's sdk key, then wait until the tracker sees the customer live."""
    kit = created["kit"]
    app = kit["apps"][0]
    record = {"type": "event", "id": f"onboarding-test-{int(time.time() * 1000)}", "ts": int(time.time() * 1000),
              "name": kit["test_event"]["name"]}
    t0 = time.perf_counter()
    try:
        r = client.post(kit["ingest_url"] + "/v1/batch", json={"batch": [record]},
                        headers={"Authorization": f"Bearer {app['sdk_key']}"})
    except httpx.HTTPError as exc:
        raise OnboardError(f"test event: cannot reach the ingest server {kit['ingest_url']} (the tracker's "
                           f"--ingest-url): {exc.__class__.__name__}: {exc}") from None
    send_ms = (time.perf_counter() - t0) * 1000
    if r.status_code != 200 or r.json().get("accepted") != 1:
        raise OnboardError(f"test event: {kit['ingest_url']} answered {r.status_code}: {r.text[:200]}")
    cid = created["customer"]["id"]
    deadline = time.monotonic() + wait_s
    while True:
        c = client.get(f"{tracker}/v1/customers/{cid}", headers=headers)
        if c.status_code != 200:
            raise OnboardError(_api_error(c))
        customer = c.json()
        if customer["status"] == "live" and customer["onboarding_seconds"] is not None:
            return {"record_id": record["id"], "send_ms": send_ms, "status": "live",
                    "onboarding_seconds": customer["onboarding_seconds"],
                    "wall_seconds": time.monotonic() - started}
        if time.monotonic() > deadline:
            raise OnboardError(f"test event accepted but customer {cid} not live after {wait_s:g} s "
                               "(is the tracker on the same database as the ingest server?)")
        time.sleep(0.2)


def print_kit(customer: dict[str, Any], kit: dict[str, Any]) -> None:
    """The onboarding kit as text for a terminal."""
    print(f"customer {customer['company']} (id {customer['id']}): {customer['status']}, "
          f"{customer['vertical']}, from {customer['provider']}, ~{customer['events_per_day']:,} events/day, "
          f"integration {customer['integration']}")
    print(f"ingest URL: {kit['ingest_url']}")
    for app in kit["apps"]:
        print(f"\n{app['platform']} app {app['name']} (app id {app['app_id']})")
        print(f"  sdk key:    {app['sdk_key']}   (ship it in the app: it can only send records)")
        print(f"  secret key: {app['secret_key']}   (servers only: sends and reads)")
        print("  settings:   " + ", ".join(f"{k.replace('_', '-')} {v if v != [] else '-'}"
                                            for k, v in app["settings"].items()))
    for name, snippet in kit["snippets"].items():
        print(f"\n--- {name.replace('_', ' ')} ---\n{snippet.rstrip()}")
    print(f"\n--- test event ---\n{kit['test_event']['curl']}")
    print("\nkeep the keys now: unmo stores only their hashes")


def register(sub: Any) -> None:
    """Add ``unmo tracker`` and its subcommands to the ``unmo`` parser."""
    p = sub.add_parser("tracker", help="the Customer Success Tracker (service, report, onboarding)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8084)
    add_database_flag(p)
    p.add_argument("--ingest-url", action="extend", nargs="+", metavar="URL",
                   help="ingest servers (several, repeatable or comma-separated); the first goes into onboarding "
                        "kits, all are probed (default $UNMO_INGEST_URLS)")
    p.add_argument("--probe-interval", metavar="DURATION",
                   help="how often each ingest server's /readyz is probed (default 10s, $UNMO_TRACKER_PROBE_INTERVAL)")
    p.add_argument("--survey-delay", metavar="DURATION",
                   help="survey this long after go-live (default 48h, $UNMO_TRACKER_SURVEY_DELAY)")
    p.add_argument("--webhook-url", metavar="URL",
                   help="ticketing webhook for feedback (default $UNMO_TRACKER_WEBHOOK_URL; secret in "
                        "$UNMO_TRACKER_WEBHOOK_SECRET)")
    p.add_argument("--webhook-retry", metavar="DURATION",
                   help="first retry delay of a failed delivery, doubling (default 2s, $UNMO_TRACKER_WEBHOOK_RETRY)")
    p.set_defaults(func=cmd_serve)
    tsub = p.add_subparsers(dest="tracker_command", parser_class=Parser)

    r = tsub.add_parser("report", help="write the week's results report (Markdown and HTML)")
    r.add_argument("--week", metavar="YYYY-Www", help="ISO week (default: the current one)")
    r.add_argument("--out", default=".", metavar="DIR", help="directory for the two files (default .)")
    r.add_argument("--json", action="store_true", help="print a JSON summary instead of the Markdown")
    r.add_argument("--database-url", default=argparse.SUPPRESS,
                   help="PostgreSQL URL (default: $UNMO_DATABASE_URL, else the embedded server)")
    r.set_defaults(func=cmd_report)

    o = tsub.add_parser("onboard", help="create a customer through a running tracker and print its kit")
    o.add_argument("--company", required=True)
    o.add_argument("--vertical", required=True, choices=VERTICALS)
    o.add_argument("--provider", required=True, choices=PROVIDERS)
    o.add_argument("--events-per-day", required=True, type=int, metavar="N")
    o.add_argument("--integration", required=True, choices=INTEGRATIONS)
    o.add_argument("--platforms", required=True, metavar="ios,android")
    o.add_argument("--plan-price", type=float, metavar="USD", help="monthly plan price (default: the tracker's)")
    o.add_argument("--contact-email")
    o.add_argument("--send-test-event", action="store_true",
                   help="send one event with the new sdk key and print the measured onboarding time")
    o.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the customer to go live (default 60)")
    o.add_argument("--tracker-url", help="default $UNMO_TRACKER_URL, else http://127.0.0.1:8084")
    o.add_argument("--json", action="store_true", help="print one JSON object instead of the text")
    o.set_defaults(func=cmd_onboard)
