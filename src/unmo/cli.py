"""The ``unmo`` command line (spec: ingest-api.md "Command line", tools.md, tracker.md).

Every command reads the same database settings (``--database-url`` or
``UNMO_DATABASE_URL``, else the embedded PostgreSQL under ``$UNMO_HOME``).  Bad
input to any command: one line on stderr naming what is wrong, exit status 2,
nothing changed.  Each command group lives in its own module and registers its
parser here (``COMMAND_MODULES``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import asyncpg

from unmo.errors import NotFoundError, UnmoError, ValidationError

# Modules with a register(subparsers) function adding their commands.
COMMAND_MODULES = [
    "unmo.cli",
    "unmo.load.cli",
    "unmo.reports.cli",
    "unmo.tracker.cli",
    "unmo.sim.cli",
    "unmo.soak.cli",
    "unmo.deploy.cli",
]


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def add_database_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL (default: $UNMO_DATABASE_URL, else the embedded server under $UNMO_HOME)",
    )


def run_with_database(flag: str | None, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    """Run ``fn(conn)`` on a migrated database (embedded when no URL is configured)."""
    from unmo.db.embedded import database_url_or_embedded
    from unmo.db.migrate import migrate

    url, embedded = database_url_or_embedded(flag)

    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            return await fn(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    finally:
        if embedded is not None:
            embedded.stop()


# ---------------------------------------------------------------- serve / migrate
def _serve_int(flag: int | None, name: str, env: str, default: int, lo: int, hi: int) -> int:
    """A numeric ``unmo serve`` setting: the flag, else ``$env``, else the default; checked against lo..hi."""
    value, where = flag, name
    if value is None and os.environ.get(env):
        raw, where = os.environ[env], env
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(f"unmo serve: {env}: expected a number, got {raw[:40]!r}") from None
    if value is None:
        value = default
    if not lo <= value <= hi:
        raise UsageError(f"unmo serve: {where}: expected {lo}..{hi}, got {value}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    from unmo.config import ServerSettings, report_fold_seconds
    from unmo.db.embedded import database_url_or_embedded
    from unmo.db.migrate import migrate_url
    from unmo.server.logs import setup as setup_logging
    from unmo.server.run import serve

    # flag > environment > default: a container is configured through its environment alone
    host = args.host or os.environ.get("UNMO_HOST") or "127.0.0.1"
    port = _serve_int(args.port, "--port", "UNMO_PORT", 8080, 0, 65535)
    workers = _serve_int(args.workers, "--workers", "UNMO_WORKERS", 1, 1, 64)
    pool_size = _serve_int(args.pool_size, "--pool-size", "UNMO_POOL_SIZE", 4, 1, 100)
    max_queue = args.max_queue
    if max_queue is None and os.environ.get("UNMO_MAX_QUEUE"):
        try:
            max_queue = int(os.environ["UNMO_MAX_QUEUE"])
        except ValueError:
            raise UsageError(  # noqa: B904 - the one-line message is the whole story
                f"unmo serve: UNMO_MAX_QUEUE: expected a number, got {os.environ['UNMO_MAX_QUEUE']!r}"
            )
    if max_queue is not None and not 1_000 <= max_queue <= 100_000_000:
        raise UsageError(f"unmo serve: --max-queue: expected 1000..100000000, got {max_queue}")
    try:
        report_fold_seconds()
    except ValueError as exc:
        raise UsageError(f"unmo serve: {exc}") from None
    setup_logging()
    url, embedded = database_url_or_embedded(args.database_url)
    try:

        migrate_url(url)
        settings = ServerSettings(
            host=host, port=port, database_url=url, workers=workers, pool_size=pool_size
        )
        if max_queue is not None:
            settings.limits.queue_max_records = max_queue
            settings.limits.flush_max_records = min(settings.limits.flush_max_records, max_queue)
        return serve(settings, url)
    finally:
        if embedded is not None:
            embedded.stop()


def cmd_migrate(args: argparse.Namespace) -> int:
    from unmo.db.embedded import database_url_or_embedded
    from unmo.db.migrate import migrate_url

    url, embedded = database_url_or_embedded(args.database_url)
    try:
        applied = migrate_url(url)
    finally:
        if embedded is not None:
            embedded.stop()
    print("\n".join(f"applied {name}" for name in applied) if applied else "schema is up to date")
    return 0


# ---------------------------------------------------------------------- apps
def _print_app(app: Any, as_json: bool) -> None:
    data = app.to_json()
    if as_json:
        print(json.dumps(data))
        return
    s = data["settings"]
    print(f"{data['name']}  (app id {data['app_id']}, platform {data['platform'] or '-'})")
    for key in (
        "click_window",
        "impression_window",
        "probabilistic_window",
        "reattribution_window",
        "min_ctit",
    ):
        print(f"  {key.replace('_', '-'):22} {s[key]}")
    print(f"  {'ip-blocklist':22} {', '.join(s['ip_blocklist']) or '-'}")
    print(f"  {'rate-limit':22} {data['rate_limit'] or 'server default'}")
    for k in data["keys"]:
        print(f"  {k['kind'] + ' key':22} {k['prefix']}{' (revoked)' if k['revoked'] else ''}")


def cmd_apps_create(args: argparse.Namespace) -> int:
    from unmo.apps import create_app, validate_name, validate_platform

    validate_name(args.name)
    validate_platform(args.platform)
    created = run_with_database(args.database_url, lambda conn: create_app(conn, args.name, args.platform))
    if args.json:
        print(
            json.dumps(
                {
                    "app_id": created["app_id"],
                    "sdk_key": created["sdk_key"],
                    "secret_key": created["secret_key"],
                }
            )
        )
    else:
        print(f"created app {created['name']} (app id {created['app_id']})")
        print(f"  sdk key:    {created['sdk_key']}   (ship it in the app: it can only send records)")
        print(f"  secret key: {created['secret_key']}   (servers only: sends and reads)")
        print("  keep them now: unmo stores only their hashes")
    return 0


def cmd_apps_list(args: argparse.Namespace) -> int:
    from unmo.apps import list_apps

    apps = run_with_database(args.database_url, list_apps)
    if args.json:
        print(json.dumps({"apps": [a.to_json() for a in apps]}))
    elif not apps:
        print("no apps yet: create one with `unmo apps create NAME`")
    else:
        print(f"{'NAME':32} {'APP ID':>18} {'PLATFORM':9}")
        for a in apps:
            print(f"{a.name:32} {a.app_id:>18} {a.platform or '-':9}")
    return 0


def cmd_apps_show(args: argparse.Namespace) -> int:
    from unmo.apps import get_app

    app = run_with_database(args.database_url, lambda conn: get_app(conn, args.name))
    _print_app(app, args.json)
    return 0


def cmd_apps_set(args: argparse.Namespace) -> int:
    from unmo.apps import WINDOWS, parse_blocklist, parse_window, set_app

    changes: dict[str, Any] = {}
    for setting, (column, *_rest) in WINDOWS.items():
        value = getattr(args, setting)
        if value is not None:
            changes[column] = parse_window(setting, value)
    if args.ip_blocklist is not None:
        changes["ip_blocklist"] = parse_blocklist(args.ip_blocklist)
    if args.rate_limit is not None:
        if args.rate_limit <= 0:
            raise ValidationError(
                f"rate-limit: expected a positive number of records per second, got {args.rate_limit}"
            )
        changes["rate_limit"] = args.rate_limit
    if not changes:
        raise UsageError("unmo apps set: nothing to change (give at least one setting flag)")
    app = run_with_database(args.database_url, lambda conn: set_app(conn, args.name, changes))
    _print_app(app, args.json)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the ingest server")
    p.add_argument("--host", default=None, help="address to listen on (default: $UNMO_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: $UNMO_PORT, else 8080)")
    add_database_flag(p)
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes sharing the port (default: $UNMO_WORKERS, else 1)")
    p.add_argument("--pool-size", type=int, default=None,
                   help="database connections per worker (default: $UNMO_POOL_SIZE, else 4)")
    p.add_argument(
        "--max-queue",
        type=int,
        default=None,
        metavar="RECORDS",
        help="records waiting for commit before the server sheds load with 503 "
        "(default 200000, or $UNMO_MAX_QUEUE)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="create or upgrade the schema")
    add_database_flag(p)
    p.set_defaults(func=cmd_migrate)

    apps = sub.add_parser("apps", help="create and configure apps")
    asub = apps.add_subparsers(dest="apps_command", required=True, parser_class=Parser)
    p = asub.add_parser("create", help="create an app and its keys")
    p.add_argument("name")
    p.add_argument("--platform", choices=["ios", "android"])
    p.add_argument("--json", action="store_true")
    add_database_flag(p)
    p.set_defaults(func=cmd_apps_create)
    p = asub.add_parser("list", help="list apps")
    p.add_argument("--json", action="store_true")
    add_database_flag(p)
    p.set_defaults(func=cmd_apps_list)
    p = asub.add_parser("show", help="an app's settings and keys")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    add_database_flag(p)
    p.set_defaults(func=cmd_apps_show)
    p = asub.add_parser("set", help="change an app's attribution settings")
    p.add_argument("name")
    p.add_argument("--click-window", metavar="DURATION")
    p.add_argument("--impression-window", metavar="DURATION")
    p.add_argument("--probabilistic-window", metavar="DURATION")
    p.add_argument("--reattribution-window", metavar="DURATION")
    p.add_argument("--min-ctit", metavar="DURATION")
    p.add_argument("--ip-blocklist", metavar="CIDR,...", help="replaces the list; '' clears it")
    p.add_argument("--rate-limit", type=int, metavar="RECORDS_PER_S", help="per server process")
    p.add_argument("--json", action="store_true")
    add_database_flag(p)
    p.set_defaults(func=cmd_apps_set)


def build_parser() -> Parser:
    parser = Parser(prog="unmo", description="Self-hosted mobile attribution and event ingestion.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (ValidationError, NotFoundError) as exc:
        print(f"unmo: {exc}", file=sys.stderr)
        return 2
    except UnmoError as exc:
        print(f"unmo: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"unmo: database: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
