"""``unmo report daily|cohorts``: the reports on the command line (docs/reports.md).

Same database settings as every command; the same parameters, checks and
figures as ``GET /v1/reports/...``; a rich table by default, ``--format csv``
or ``json`` for scripts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import asyncpg

from unmo.cli import Parser, UsageError, add_database_flag, run_with_database
from unmo.reports import query, render


def cmd_report(args: argparse.Namespace) -> int:
    from unmo.apps import get_app

    cohort = args.report_command == "cohorts"
    values = {"from": args.start, "to": args.end, "group_by": args.group_by, "tz": args.tz}
    if cohort:
        values["days"] = args.days
    try:
        params = query.parse_params({k: v for k, v in values.items() if v is not None}, cohort=cohort)
    except query.ParameterError as exc:
        flag = {"from": "--from", "to": "--to"}.get(exc.parameter, "--" + exc.parameter.replace("_", "-"))
        raise UsageError(f"unmo report {args.report_command}: {flag}: {exc.detail}") from None

    async def go(conn: asyncpg.Connection) -> query.Report:
        app = await get_app(conn, args.app)
        if cohort:
            return await query.cohorts(conn, app.app_id, params)
        return await query.daily(conn, app.app_id, params)

    try:
        report = run_with_database(args.database_url, go)
    except asyncpg.exceptions.InvalidParameterValueError:
        raise UsageError(f"unmo report {args.report_command}: --tz: this database does not know the time zone "
                         f"{params.tz!r}") from None
    if args.format == "json":
        sys.stdout.buffer.write(render.to_json(report) + b"\n")
    elif args.format == "csv":
        sys.stdout.write(render.to_csv(report))
    else:
        from rich.console import Console

        # a pipe gets the whole width (rich would fold the table to 80 columns)
        console = Console(width=None if sys.stdout.isatty() else 400)
        console.print(render.to_table(report))
    sys.stdout.flush()
    return 0


def register(sub: Any) -> None:
    """Add ``unmo report daily`` and ``unmo report cohorts``."""
    report = sub.add_parser("report", help="daily and cohort reports by network and campaign")
    rsub = report.add_subparsers(dest="report_command", required=True, parser_class=Parser)
    for name, help_text in (("daily", "per day and group: clicks, installs, events, revenue, rejected touches"),
                            ("cohorts", "per install day and group: retention and revenue on day N")):
        p = rsub.add_parser(name, help=help_text)
        p.add_argument("--app", required=True, metavar="NAME", help="the app's name")
        p.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD", help="first local day")
        p.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD",
                       help=f"last local day (at most {query.MAX_RANGE_DAYS} days)")
        p.add_argument("--group-by", default=None, metavar="DIMS",
                       help=f"comma-separated {', '.join(query.DIMENSIONS)} (default network,campaign; '' for "
                            "totals per day)")
        p.add_argument("--tz", default=None, metavar="ZONE", help="IANA time zone of the days (default UTC)")
        if name == "cohorts":
            p.add_argument("--days", default=None, metavar="N,...",
                           help="days after the install (default 0,1,7,30)")
        p.add_argument("--format", choices=["table", "csv", "json"], default="table")
        add_database_flag(p)
        p.set_defaults(func=cmd_report)
