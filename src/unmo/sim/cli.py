"""``unmo simulate`` (spec: tools.md) and the flag checks it shares with ``unmo soak``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any
from urllib.parse import urlsplit

from unmo.errors import ValidationError, cut
from unmo.sim.profile import BUILTIN, Profile, load_profile

_SPEED = re.compile(r"^(\d+(?:\.\d+)?)x$")


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"--url: expected http://HOST:PORT or https://HOST, got {cut(url)}")
    return url.rstrip("/")


def check_key(key: str) -> str:
    if not key or len(key) > 200 or not key.isprintable() or " " in key:
        raise ValidationError(
            f"--key: expected an app key (sdk_... or sec_...), got a value of {len(key)} characters"
        )
    return key


def profiles_from(names: list[str]) -> list[Profile]:
    return [load_profile(n) for n in names]


def parse_speed(text: str) -> float:
    """``realtime`` -> 1, ``10x`` -> 10, ``max`` -> 0 (as fast as the server answers)."""
    t = text.strip().lower()
    if t == "max":
        return 0.0
    if t == "realtime":
        return 1.0
    m = _SPEED.match(t)
    if m is None or not 1.0 <= float(m.group(1)) <= 100_000:
        raise ValidationError(
            f"--speed: expected realtime, max or a factor like 10x (1x..100000x), got {cut(text)}"
        )
    return float(m.group(1))


def days_limit(profile: Profile, speed: float) -> float:
    """The longest history the server still holds every touch of when its installs arrive.

    The kernel keeps touches while ``ts >= now - longest window - 2 days`` (unmo.kernel.GRACE_MS); a
    history sent at ``speed`` ends ``days / speed`` later, so ``days * (1 + 1/speed)`` must fit, with half
    a day to spare.  Real time is live traffic (the history starts now), bounded at 30 days.
    """
    if speed == 1.0:
        return 30.0
    longest = profile.settings().longest_touch_window_ms / 86_400_000
    return (longest + 2.0 - 0.5) / (1.0 + (1.0 / speed if speed else 0.0))


def _print_table(profile: Profile, out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]unmo simulate[/bold]: {profile.title} ({profile.name}, {profile.integration})")
    head = Table(show_header=False)
    for key in (
        "installs",
        "agreement",
        "exact_agreement",
        "records_sent",
        "requests",
        "errors",
        "ambiguous",
        "verified_get",
        "seconds",
        "seed",
    ):
        head.add_row(key.replace("_", " "), str(out[key]))
    console.print(head)
    for title, key in (("by rule", "by_rule"), ("by scenario", "by_scenario")):
        t = Table(title=title)
        t.add_column(title.split()[1])
        t.add_column("installs", justify="right")
        t.add_column("agreement", justify="right")
        for name, row in out[key].items():
            t.add_row(name, str(row["installs"]), f"{row['agreement']:.4f}")
        console.print(t)
    for m in out["mismatches"][:5]:
        console.print(
            f"[red]mismatch[/red] {m['id']} ({m['rule']}, {m['scenario']}): fields {m['fields']}; "
            f"expected {m['expected']}, got {m['got']}"
        )
    for e in out["error_samples"][:5]:
        console.print(f"[red]error[/red] {e}")
    if out["agreement"] < 1:
        console.print(f"The truth assumes these app settings: {profile.settings_command()}")


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio
    import random as _random

    from unmo.sim.simulate import Simulation

    profile = load_profile(args.profile)
    url = check_url(args.url)
    key = check_key(args.key)
    speed = parse_speed(args.speed)
    if not args.days >= 0.01:  # 14 minutes: room for an install and its click
        raise ValidationError(f"--days: expected at least 0.01 (about 14 minutes), got {args.days}")
    limit = days_limit(profile, speed)
    if args.days > limit:
        raise ValidationError(
            f"--days: expected at most {limit:.2f} at --speed {args.speed} with this profile's windows "
            "(the server "
            f"keeps touches for the longest window + 2 days), got {args.days}"
        )
    if not 0 < args.scale <= 100:
        raise ValidationError(f"--scale: expected more than 0 and at most 100, got {args.scale}")
    if not 1 <= args.concurrency <= 256:
        raise ValidationError(f"--concurrency: expected 1 to 256, got {args.concurrency}")
    seed = args.seed if args.seed is not None else _random.SystemRandom().randrange(1 << 31)
    live = not args.json and sys.stderr.isatty()
    progress: Any = None
    task: Any = None
    if live:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn(f"simulate {profile.name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("batches"),
            TimeElapsedColumn(),
            transient=True,
        )
        task = progress.add_task("send", total=None)
        progress.start()

    def on_progress(done: int, total: int) -> None:
        if progress is not None:
            progress.update(task, completed=done, total=total)

    sim = Simulation(
        profile,
        url=url,
        key=key,
        days=args.days,
        scale=args.scale,
        speed=speed,
        seed=seed,
        concurrency=args.concurrency,
        on_progress=on_progress,
    )
    try:
        outcome = asyncio.run(sim.run())
    finally:
        if progress is not None:
            progress.stop()
    out = outcome.to_json()
    out.update(profile=profile.name, seed=seed, days=args.days, scale=args.scale, speed=args.speed)
    if args.json:
        print(json.dumps(out))
    else:
        _print_table(profile, out)
    return 0 if out["agreement"] == 1 and out["errors"] == 0 else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate", help="send a customer profile's traffic with known truth and measure accuracy"
    )
    p.add_argument(
        "--profile",
        required=True,
        metavar="NAME|FILE",
        help=f"{', '.join(BUILTIN)} or a profile JSON file (docs/operations.md)",
    )
    p.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    p.add_argument("--key", required=True, help="the app's secret key (results are read back with it)")
    p.add_argument("--days", type=float, default=7.0, help="days of history, ending now (default 7)")
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiplies the profile's daily volume (default 1)"
    )
    p.add_argument("--speed", default="max", help="realtime, 10x (any factor) or max (default)")
    p.add_argument(
        "--seed", type=int, default=None, help="fixes the traffic's shape (default: random, printed)"
    )
    p.add_argument("--concurrency", type=int, default=16, help="batches in flight at most (default 16)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=cmd_simulate)
