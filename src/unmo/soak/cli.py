"""``unmo soak``: endurance and spike runs against a running server (spec: tools.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from unmo.durations import parse_duration_s
from unmo.errors import ValidationError, cut
from unmo.sim.cli import check_key, check_url, profiles_from
from unmo.sim.profile import BUILTIN

_SPIKE = re.compile(r"^(\d+(?:\.\d+)?)x:(.+)$")


def parse_spike(text: str) -> tuple[float, float]:
    """``10x:60s`` -> (10.0, 60.0)."""
    m = _SPIKE.match(text.strip())
    if m is None:
        raise ValidationError(f"--spike: expected FACTORx:DURATION like 10x:60s, got {cut(text)}")
    factor = float(m.group(1))
    if not 1.0 < factor <= 1000.0:
        raise ValidationError(f"--spike: expected a factor above 1 and at most 1000, got {cut(m.group(1))}")
    seconds = parse_duration_s(m.group(2), what="--spike")
    if seconds < 1:
        raise ValidationError(f"--spike: expected a duration of at least 1s, got {cut(m.group(2))}")
    return factor, seconds


def build_config(args: argparse.Namespace) -> Any:
    from unmo.soak.run import SoakConfig, Spike

    url = check_url(args.url)
    key = check_key(args.key)
    duration = parse_duration_s(args.duration, what="--duration")
    if not 5 <= duration <= 30 * 86_400:
        raise ValidationError(f"--duration: expected 5s to 30d, got {cut(args.duration)}")
    if not 0 < args.rate <= 1_000_000:
        raise ValidationError(f"--rate: expected 0 < events per second <= 1000000, got {args.rate}")
    sample = parse_duration_s(args.sample, what="--sample")
    if not 1 <= sample <= duration / 2:
        raise ValidationError(
            f"--sample: expected 1s to half of --duration ({duration / 2:g}s), got {cut(args.sample)}"
        )
    if not 1 <= args.batch_size <= 10_000:
        raise ValidationError(f"--batch-size: expected 1 to 10000, got {args.batch_size}")
    if not 1 <= args.max_in_flight <= 1024:
        raise ValidationError(f"--max-in-flight: expected 1 to 1024, got {args.max_in_flight}")
    spike = None
    if args.spike is not None:
        factor, seconds = parse_spike(args.spike)
        # the spike starts after the warm-up, at 30 % of the run, and leaves at least as long again to recover
        start = max(sample, round(0.3 * duration))
        if start + 2 * seconds > duration:
            raise ValidationError(
                f"--spike: a {seconds:g}s spike needs a --duration of at least {start + 2 * seconds:g}s "
                f"(it starts at 30 % and the run must observe the recovery), got {cut(args.duration)}"
            )
        spike = Spike(factor, seconds, start)
    out = Path(args.out) if args.out else Path(f"soak-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and not out.is_dir():
        raise ValidationError(f"--out: expected a directory, got a file {cut(str(out))}")
    return SoakConfig(
        url=url,
        key=key,
        duration_s=duration,
        rate=float(args.rate),
        profiles=profiles_from(args.profile or list(BUILTIN)),
        sample_s=sample,
        out=out,
        spike=spike,
        database_url=args.database_url,
        seed=args.seed,
        batch_size=args.batch_size,
        max_in_flight=args.max_in_flight,
    )


def _table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from unmo.soak.report import SUMMARY_ROWS

    t = Table(title="unmo soak", show_header=False)
    for key, label in SUMMARY_ROWS:
        if key in result:
            t.add_row(label, str(result[key]))
    t.add_row("report", str(Path(result["out"]) / "report.html"))
    Console().print(t)


def cmd_soak(args: argparse.Namespace) -> int:
    from unmo.soak.report import plot, write_html
    from unmo.soak.run import Soak

    cfg = build_config(args)
    live = not args.json and sys.stderr.isatty()
    command = (
        "unmo soak " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if sys.argv[1:2] == ["soak"]
        else "unmo soak"
    )
    command = command.replace(cfg.key, cfg.key[:8] + "...")  # never write a key into a report
    progress: Any = None
    if live:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("soak"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            transient=True,
        )
        task = progress.add_task("soak", total=cfg.duration_s, info="starting")
        progress.start()

    def on_sample(row: dict[str, Any]) -> None:
        if progress is not None:
            progress.update(
                task,
                completed=min(row["t"], cfg.duration_s),
                info=f"{row['acked_events_per_s']:.0f} rec/s  p99 {row['p99_ms']} ms  "
                f"rss {row['rss_mb']} MB  shed {row['shed']}  backlog {row['backlog_records']}",
            )

    try:
        result = asyncio.run(Soak(cfg, on_sample).run())
    finally:
        if progress is not None:
            progress.stop()
    samples = [json.loads(line) for line in (cfg.out / "samples.jsonl").read_text().splitlines() if line]
    if samples:
        plot(samples, result, cfg.out)
    write_html(result, cfg.out, command)
    (cfg.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        _table(result)
    failed = (
        result["leak"] or (result.get("lost_acked") or 0) > 0 or (result.get("duplicated_acked") or 0) > 0
    )
    return 1 if failed else 0


def register(sub: Any) -> None:
    p = sub.add_parser("soak", help="endurance and spike run of a profile mix against a running server")
    p.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    p.add_argument("--key", required=True, help="an app's sdk or secret key")
    p.add_argument("--duration", default="24h", help="how long to run (10s, 5m, 24h; default 24h)")
    p.add_argument(
        "--rate",
        type=float,
        default=100.0,
        metavar="EVENTS_PER_S",
        help="records per second at the base rate (default 100)",
    )
    p.add_argument(
        "--profile",
        action="append",
        metavar="NAME|FILE",
        help=f"a profile of the mix, repeatable (default: {', '.join(BUILTIN)})",
    )
    p.add_argument(
        "--spike", metavar="FACTORx:DURATION", help="raise the rate FACTOR times for DURATION, e.g. 10x:60s"
    )
    p.add_argument("--sample", default="10s", help="sampling interval (default 10s)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where samples.jsonl, report.html and the plots go (default ./soak-YYYYmmdd-HHMMSS)",
    )
    p.add_argument(
        "--database-url",
        help="check that every acknowledged record is stored exactly once (the server's database)",
    )
    p.add_argument("--batch-size", type=int, default=200, help="records per request (default 200)")
    p.add_argument("--max-in-flight", type=int, default=64, help="open requests at most (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=cmd_soak)
