"""``unmo autoscale-sim``: the HPA rule against a spike, before the spike finds out (docs/deploy.md)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from unmo.durations import parse_duration_s
from unmo.errors import ConfigError, ValidationError

# Measured with tools/scripts/replica_capacity.py on the 2-core development machine
# (docs/deploy.md, "Sizing"): one `unmo serve`, batches of 1000 records from `unmo load`.
# Operators pass their own with --capacity, --latency-curve and --cpu-per-1000.
MEASURED_CAPACITY = 16_000.0
MEASURED_P95_UNLOADED_MS = 120.0
MEASURED_CPU_MS_PER_1000 = 17.5
# open-loop p95 at shares of that capacity (utilisation:ms), the median of three runs
MEASURED_CURVE = "0.1:120,0.3:91,0.5:111,0.7:551"
SHIPPED_CPU_REQUEST = 0.5  # deploy/k8s/ingest-deployment.yaml, resources.requests.cpu


def _usage(message: str) -> Exception:
    from unmo.cli import UsageError

    return UsageError(f"unmo autoscale-sim: {message}")


def _duration(text: str, flag: str, low: float, high: float) -> float:
    try:
        value = parse_duration_s(text, what=flag)
    except ValidationError as exc:
        raise _usage(str(exc)) from None
    if not low <= value <= high:
        raise _usage(f"{flag}: expected {low:g}s .. {high:g}s, got {text!r}")
    return value


def _positive(value: float, flag: str, high: float) -> float:
    if not 0 < value <= high:
        raise _usage(f"{flag}: expected a number above 0 and at most {high:g}, got {value:g}")
    return value


def _spike(text: str) -> tuple[float, float]:
    """``10x:5m`` -> (10.0, 300.0), the same spelling as `unmo soak --spike`."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)x:(.+)", text)
    if m is None:
        raise _usage(f"--spike: expected FACTORx:DURATION like 10x:5m, got {text[:40]!r}")
    factor = float(m.group(1))
    if not 1 <= factor <= 1000:
        raise _usage(f"--spike: factor: expected 1 .. 1000, got {factor:g}")
    return factor, _duration(m.group(2), "--spike", 1, 7 * 86_400)


def _curve(text: str) -> tuple[tuple[float, float], ...]:
    """``0.1:120,0.5:74`` -> ((0.1, 120.0), (0.5, 74.0)); ``none`` -> () (M/M/1 only)."""
    if text.strip().lower() == "none":
        return ()
    points: list[tuple[float, float]] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(0?\.\d+|0|1(?:\.0*)?):(\d+(?:\.\d+)?)\s*", part)
        if m is None:
            raise _usage(f"--latency-curve: expected UTILISATION:P95_MS pairs like 0.1:120,0.5:74, got {part[:40]!r}")
        rho, ms = float(m.group(1)), float(m.group(2))
        if not 0 < rho < 1 or ms <= 0:
            raise _usage(f"--latency-curve: {part.strip()!r}: utilisation must be in (0, 1) and p95 above 0")
        if points and rho <= points[-1][0]:
            raise _usage(f"--latency-curve: utilisations must increase, got {rho:g} after {points[-1][0]:g}")
        points.append((rho, ms))
    return tuple(points)


def _load_hpa(path: str) -> Any:
    from unmo.deploy.hpa import HpaSpec

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise _usage(f"--hpa: cannot read {path!r}: {exc.strerror}") from None
    docs: list[Any]
    if p.suffix == ".json":
        try:
            docs = [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise _usage(f"--hpa: {path}: not JSON: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise _usage("--hpa: reading YAML needs PyYAML (pip install pyyaml); or give the JSON of "
                         "`kubectl get hpa NAME -o json`") from None
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise _usage(f"--hpa: {path}: not YAML: {str(exc).splitlines()[0]}") from None
    found = [d for d in docs if isinstance(d, dict) and d.get("kind") == "HorizontalPodAutoscaler"]
    if len(found) != 1:
        raise _usage(f"--hpa: {path}: expected one HorizontalPodAutoscaler, found {len(found)}")
    try:
        return HpaSpec.from_manifest(found[0])
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise _usage(f"--hpa: {path}: {exc}") from None


def cmd_autoscale_sim(args: argparse.Namespace) -> int:
    from unmo.deploy.autoscale import SHIPPED_HPA, Config, Replica, Workload, simulate

    hpa = _load_hpa(args.hpa) if args.hpa else SHIPPED_HPA
    factor, spike_s = _spike(args.spike)
    replica = Replica(
        capacity=_positive(args.capacity, "--capacity", 1e9),
        p95_unloaded_ms=_duration(args.p95_unloaded, "--p95-unloaded", 0.001, 60) * 1000,
        cpu_ms_per_1000=_duration(args.cpu_per_1000, "--cpu-per-1000", 0.001, 60) * 1000,
        cpu_request_cores=_positive(args.cpu_request, "--cpu-request", 256),
        max_queue=_positive(args.max_queue, "--max-queue", 1e9),
        curve=_curve(args.latency_curve),
    )
    workload = Workload(base=_positive(args.base, "--base", 1e10), spike_factor=factor,
                        spike_at_s=_duration(args.spike_at, "--spike-at", 0, 7 * 86_400),
                        ramp_s=_duration(args.ramp, "--ramp", 1, 86_400), spike_s=spike_s)
    if args.start_replicas is not None and not hpa.min_replicas <= args.start_replicas <= hpa.max_replicas:
        raise _usage(f"--start-replicas: expected {hpa.min_replicas} .. {hpa.max_replicas} (the HPA's range), "
                     f"got {args.start_replicas}")
    cfg = Config(
        hpa=hpa, replica=replica, workload=workload,
        duration_s=_duration(args.duration, "--duration", 60, 7 * 86_400),
        pod_startup_s=_duration(args.pod_startup, "--pod-startup", 0, 3600),
        scrape_s=_duration(args.scrape, "--scrape", 1, 600),
        rate_window_s=_duration(args.rate_window, "--rate-window", 1, 3600),
        start_replicas=args.start_replicas,
        slo_p95_ms=_duration(args.slo, "--slo", 0.001, 600) * 1000,
        sample_s=_duration(args.sample, "--sample", 1, 86_400),
    )
    result = simulate(cfg)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        _print_table(result.to_json())
    return 0


def _print_table(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"unmo autoscale-sim: {out['workload']['spike_factor']:g}x spike on "
                        f"{out['workload']['base_per_s']:,.0f} events/s, {out['capacity_per_replica']:,.0f} "
                        "events/s per replica")
    for name in ("t", "offered/s", "replicas", "ready", "utilization", "queue/pod", "p95 ms", "shed/s"):
        table.add_column(name, justify="right")
    for s in out["timeline"]:
        table.add_row(f"{s['t_s']:.0f}s", f"{s['offered_per_s']:,}", str(s["replicas"]), str(s["ready"]),
                      f"{s['utilization']:.2f}", f"{s['queue_per_pod']:,}", f"{s['p95_ms']:,.0f}",
                      f"{s['shed_per_s']:,}")
    console.print(table)
    summary = Table(show_header=False, title="summary")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    for key in ("peak_replicas", "final_replicas", "max_p95_ms", "p95_over_slo_s", "shed_records", "shed_share",
                "first_scale_up_s", "back_to_start_s", "replica_hours"):
        summary.add_row(key, str(out[key]))
    summary.add_row("model", out["model"])
    console.print(summary)


def register(sub: Any) -> None:
    """Add ``unmo autoscale-sim`` to the command line."""
    p = sub.add_parser(
        "autoscale-sim", help="replay a traffic spike against the HPA rule (replicas and latency over time)",
        description="Simulates the Kubernetes HPA of deploy/k8s/ingest-hpa.yaml (or --hpa FILE) against a spike: "
                    "metric pipeline lag, stabilisation windows, scale policies, pod start-up, and an M/M/1 "
                    "latency model per replica from measured capacity.")
    p.add_argument("--hpa", metavar="FILE", help="an autoscaling/v2 HPA manifest (YAML or kubectl's JSON); "
                                                 "default: the one shipped in deploy/k8s/")
    p.add_argument("--capacity", type=float, default=MEASURED_CAPACITY, metavar="EVENTS_PER_S",
                   help=f"events/s one replica serves at saturation (default {MEASURED_CAPACITY:g}, measured)")
    p.add_argument("--p95-unloaded", default=f"{MEASURED_P95_UNLOADED_MS:g}ms", metavar="DURATION",
                   help="p95 of a 1000-record batch on an idle replica (default %(default)s, measured)")
    p.add_argument("--latency-curve", default=MEASURED_CURVE, metavar="RHO:MS,...",
                   help="measured p95 at utilisations (default %(default)s, measured); 'none': M/M/1 from "
                        "--p95-unloaded over the whole range")
    p.add_argument("--cpu-per-1000", default=f"{MEASURED_CPU_MS_PER_1000:g}ms", metavar="DURATION",
                   help="server CPU time per 1000 records (default %(default)s, measured)")
    p.add_argument("--cpu-request", type=float, default=SHIPPED_CPU_REQUEST, metavar="CORES",
                   help="the pods' cpu request, for the CPU utilisation metric (default %(default)s)")
    p.add_argument("--max-queue", type=float, default=200_000, metavar="RECORDS",
                   help="records a replica queues before answering 503 (unmo serve --max-queue; default 200000)")
    p.add_argument("--base", type=float, default=8_000, metavar="EVENTS_PER_S",
                   help="traffic before and after the spike (default 8000)")
    p.add_argument("--spike", default="10x:5m", metavar="FACTORxDURATION",
                   help="spike height and time at the top (default %(default)s)")
    p.add_argument("--spike-at", default="2m", metavar="DURATION", help="when the ramp starts (default 2m)")
    p.add_argument("--ramp", default="30s", metavar="DURATION", help="ramp up and down time (default 30s)")
    p.add_argument("--duration", default="30m", metavar="DURATION", help="simulated time (default 30m)")
    p.add_argument("--pod-startup", default="30s", metavar="DURATION",
                   help="from the HPA's decision to a ready pod (default 30s)")
    p.add_argument("--scrape", default="15s", metavar="DURATION", help="Prometheus scrape interval (default 15s)")
    p.add_argument("--rate-window", default="1m", metavar="DURATION",
                   help="the adapter rule's rate() window (default 1m, as in the shipped rule)")
    p.add_argument("--start-replicas", type=int, default=None, metavar="N",
                   help="replicas at t=0 (default: what the HPA settles at for --base)")
    p.add_argument("--slo", default="100ms", metavar="DURATION", help="p95 objective to count time over (100ms)")
    p.add_argument("--sample", default="15s", metavar="DURATION", help="timeline resolution (default 15s)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.set_defaults(func=cmd_autoscale_sim)
