"""``unmo load`` (spec: tools.md "unmo load"; docs/performance.md shows it at work)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from unmo.durations import parse_duration_s
from unmo.errors import ValidationError
from unmo.load.workload import MAX_BATCH, new_run_id

DEFAULT_CONCURRENCY = 8
DEFAULT_CEILING_CONCURRENCY = 2
MAX_CONCURRENCY = 4096


def _usage(message: str) -> Exception:
    from unmo.cli import UsageError

    return UsageError(f"unmo load: {message}")


def _duration(args: argparse.Namespace, flag: str, low: float, high: float) -> float:
    text = getattr(args, flag.replace("-", "_"))
    try:
        value = parse_duration_s(text, what=f"--{flag}")
    except ValidationError as exc:
        raise _usage(str(exc)) from None
    if not low <= value <= high:
        raise _usage(f"--{flag}: expected {low:g}s .. {high:g}s, got {text!r}")
    return value


def _check_range(flag: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise _usage(f"--{flag}: expected {low:g} .. {high:g}, got {value:g}")


def cmd_load(args: argparse.Namespace) -> int:
    import asyncpg

    from unmo.load.client import Target
    from unmo.load.driver import LoadConfig, run_load
    from unmo.load.report import progress, table
    from unmo.load.verify import app_ids_for_keys, create_load_apps, verify_stored

    duration = _duration(args, "duration", 0.1, 7 * 86_400)
    timeout = _duration(args, "timeout", 0.1, 600)
    _check_range("concurrency", args.concurrency, 1, MAX_CONCURRENCY)
    _check_range("rate", args.rate, 1, 1e9)
    _check_range("batch-size", args.batch_size, 1, MAX_BATCH)
    _check_range("apps", args.apps, 1, 1000)
    _check_range("devices", args.devices, 1, 100_000_000)
    _check_range("processes", args.processes, 1, 64)
    _check_range("templates", args.templates, 1, 1024)
    if args.batch_size * args.templates > 2_000_000:
        raise _usage(f"--templates: {args.templates} bodies of {args.batch_size} records is more than 2000000 "
                     "records to hold in memory")
    run_id = new_run_id()
    show_progress = sys.stderr.isatty()
    console = Console()

    def finish(result: Any, title: str, extra: dict[str, Any]) -> int:
        if args.json:
            print(json.dumps(result.to_json()))
        else:
            console.print(table(result, title, extra))
        if result.verified is False:
            print(f"unmo load: verification failed: {result.verify_problem}", file=sys.stderr)
            return 1
        return 0 if result.acked_records else 1

    if args.copy_ceiling:
        from unmo.load.ceiling import run_ceiling

        if not args.database_url:
            raise _usage("--copy-ceiling: needs --database-url")
        if args.rate is not None:
            raise _usage("--copy-ceiling: takes --concurrency, not --rate")
        if args.timeline:
            raise _usage("--timeline: not with --copy-ceiling (it times requests, not COPY statements)")
        concurrency = args.concurrency or DEFAULT_CEILING_CONCURRENCY
        result = run_ceiling(
            args.database_url, duration_s=duration, concurrency=concurrency, batch_size=args.batch_size,
            devices=args.devices, seed=args.seed, run_id=run_id,
            on_start=progress(duration, 1, "COPY ceiling") if show_progress else None)
        return finish(result, "unmo load --copy-ceiling: raw binary COPY, no HTTP, no kernel",
                      {"connections": concurrency, "rows per COPY": args.batch_size})

    if not args.url:
        raise _usage("--url: required (the ingest server, e.g. http://127.0.0.1:8080)")
    try:
        Target(args.url)
    except ValueError as exc:
        raise _usage(f"--{exc}") from None
    keys: list[str] = list(args.key or [])
    if len(keys) > args.apps:
        args.apps = len(keys)
    if not args.database_url and len(keys) < args.apps:
        raise _usage(f"--apps {args.apps}: needs {args.apps} --key flags, or --database-url to create the apps"
                     if keys or args.apps > 1 else "--key: required (or --database-url to create an app)")
    if args.timeline:
        try:   # before the run, not after it
            open(args.timeline, "w").close()
        except OSError as exc:
            raise _usage(f"--timeline: cannot write {args.timeline!r}: {exc.strerror}") from None
    concurrency = None if args.rate is not None else (args.concurrency or DEFAULT_CONCURRENCY)
    if concurrency is not None and args.processes > concurrency:
        raise _usage(f"--processes: expected at most --concurrency ({concurrency}), got {args.processes}")

    app_ids: list[int] = []
    if args.database_url:
        import uvloop

        async def prepare() -> list[int]:
            conn = await asyncpg.connect(args.database_url)
            try:
                keys.extend(await create_load_apps(conn, run_id, args.apps - len(keys)))
                return await app_ids_for_keys(conn, keys)
            finally:
                await conn.close()

        app_ids = uvloop.run(prepare())
    try:
        cfg = LoadConfig(url=args.url, keys=keys, duration_s=duration, concurrency=concurrency, rate=args.rate,
                         batch_size=args.batch_size, devices=args.devices, processes=args.processes,
                         seed=args.seed, run_id=run_id, timeout_s=timeout, templates=args.templates,
                         timeline=bool(args.timeline))
    except ValueError as exc:
        raise _usage(str(exc)) from None
    mode = f"closed loop, {concurrency} connections" if concurrency else f"open loop, {args.rate:,.0f} events/s"
    result = run_load(cfg, on_start=progress(duration, args.processes, "unmo load") if show_progress else None)
    if args.timeline:
        result.write_timeline(args.timeline)
    if args.database_url:
        async def check() -> str | None:
            conn = await asyncpg.connect(args.database_url)
            try:
                return await verify_stored(conn, table=args.verify_table, app_ids=app_ids, prefix=f"ld{run_id}",
                                           acked=result.acked, refused=result.refused,
                                           unanswered=result.unanswered_keys)
            finally:
                await conn.close()

        import uvloop

        result.verify_problem = uvloop.run(check())
        result.verified = result.verify_problem is None
    return finish(result, f"unmo load: {mode}, batches of {args.batch_size}",
                  {"apps": len(keys), "driver processes": args.processes, "run id / seed": f"{run_id} / {args.seed}"})


def register(sub: Any) -> None:
    """Add ``unmo load`` to the command line."""
    p = sub.add_parser("load", help="drive an ingest server with generated traffic and measure it",
                       description="Closed loop at a concurrency or open loop at a rate; reports events/s, latency "
                                   "percentiles and status counts, and with --database-url checks that the database "
                                   "holds exactly the acknowledged records.")
    p.add_argument("--url", help="the ingest server, e.g. http://127.0.0.1:8080")
    p.add_argument("--key", action="append", metavar="KEY",
                   help="an app's sdk or secret key; repeat it for several apps (--apps)")
    p.add_argument("--duration", default="10s", metavar="DURATION", help="how long to send (default 10s)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--concurrency", type=int, default=None, metavar="N",
                      help=f"closed loop: N connections each waiting for its answer (default {DEFAULT_CONCURRENCY})")
    mode.add_argument("--rate", type=float, default=None, metavar="EVENTS_PER_S",
                      help="open loop: send on a timer at this many events/s whatever the answers do")
    p.add_argument("--batch-size", type=int, default=1000, metavar="N", help="records per request (default 1000)")
    p.add_argument("--apps", type=int, default=1, metavar="N",
                   help="apps to spread the requests over (default 1); with --database-url, the apps --key does "
                        "not name are created")
    p.add_argument("--devices", type=int, default=100_000, metavar="N",
                   help="device population, Zipf-distributed activity (default 100000)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--database-url", default=None,
                   help="the server's database: create apps there and verify the stored records at the end")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="driver processes sharing the concurrency or the rate (default 1)")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated traffic (default 1)")
    p.add_argument("--timeout", default="30s", metavar="DURATION", help="per request (default 30s)")
    p.add_argument("--templates", type=int, default=16, metavar="N",
                   help="distinct pre-encoded bodies per process (default 16)")
    p.add_argument("--copy-ceiling", action="store_true",
                   help="measure the limit instead: raw binary COPY of the same rows from prebuilt buffers "
                        f"(no HTTP, no kernel) on --concurrency connections (default {DEFAULT_CEILING_CONCURRENCY})"
                        ", --batch-size rows per COPY; needs --database-url")
    p.add_argument("--verify-table", default="unmo.records", metavar="SCHEMA.TABLE",
                   help="where the verification looks for the records (default unmo.records)")
    p.add_argument("--timeline", default=None, metavar="FILE",
                   help="write one CSV line per request to FILE: seconds from the start to its send (the "
                        "scheduled send in an open loop), latency in ms, status, driver process")
    p.set_defaults(func=cmd_load)

