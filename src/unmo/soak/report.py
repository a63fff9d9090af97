"""The soak's report: PNG plots (matplotlib, Agg backend: no display needed) and report.html."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PLOTS = {"latency": "latency.png", "memory": "memory.png", "throughput": "throughput.png"}


def _minutes(samples: list[dict[str, Any]]) -> tuple[list[float], str]:
    span = samples[-1]["t"] if samples else 0.0
    if span > 3 * 3600:
        return [s["t"] / 3600 for s in samples], "hours since start"
    if span > 300:
        return [s["t"] / 60 for s in samples], "minutes since start"
    return [s["t"] for s in samples], "seconds since start"


def _shade(ax: Any, result: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    spike = result.get("spike")
    if not spike or not samples:
        return
    xs, _label = _minutes(samples)
    scale = xs[-1] / samples[-1]["t"] if samples[-1]["t"] else 1.0
    ax.axvspan(
        spike["start_s"] * scale,
        (spike["start_s"] + spike["seconds"]) * scale,
        color="orange",
        alpha=0.15,
        label=f"spike {spike['factor']:g}x",
    )
    for key, style, label in (
        ("shed_started_s", "--", "shedding started"),
        ("shed_stopped_s", ":", "shedding stopped"),
    ):
        if result.get(key) is not None:
            ax.axvline(result[key] * scale, color="red", linestyle=style, linewidth=1, label=label)


def plot(samples: list[dict[str, Any]], result: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write latency.png, memory.png and throughput.png into ``out``."""
    xs, xlabel = _minutes(samples)
    paths = {}

    fig, ax = plt.subplots(figsize=(9, 4))
    for key, label in (("p50_ms", "P50"), ("p95_ms", "P95"), ("p99_ms", "P99")):
        ax.plot(
            xs, [s[key] if s[key] is not None else float("nan") for s in samples], label=label, linewidth=1.2
        )
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("POST /v1/batch latency, ms (client side)")
    ax.set_title("Batch latency per sample interval")
    _shade(ax, result, samples)
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any(s.get("load_avg_1m") is not None for s in samples):
        # on a shared machine latency follows the host's load: show it on the same time axis
        load = ax.twinx()
        load.plot(
            xs,
            [s.get("load_avg_1m", float("nan")) for s in samples],
            color="grey",
            alpha=0.5,
            linewidth=1,
            label="host load average (1 min)",
        )
        load.set_ylabel("load average")
        load.set_ylim(bottom=0)
        h2, l2 = load.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    fig.tight_layout()
    paths["latency"] = out / PLOTS["latency"]
    fig.savefig(paths["latency"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    rss = [s["rss_mb"] if s["rss_mb"] is not None else float("nan") for s in samples]
    ax.plot(xs, rss, label="server RSS", color="tab:blue")
    db = [s["db_size_mb"] if s["db_size_mb"] is not None else float("nan") for s in samples]
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MB")
    slope = result.get("rss_slope_mb_per_h")
    judged = (
        ("yes" if result.get("leak") else "no") if result.get("leak_judged") else "run too short to judge"
    )
    ax.set_title(
        f"Memory: RSS slope {slope if slope is not None else '-'} MB/h "
        f"(expected state growth {result.get('expected_state_mb_per_h')} MB/h, leak: {judged})",
        fontsize=9,
    )
    warm = result.get("warmup_s")
    if warm and samples and samples[-1]["t"]:
        ax.axvline(warm * xs[-1] / samples[-1]["t"], color="grey", linestyle=":", label="end of warm-up")
    ax2 = ax.twinx()
    ax2.plot(xs, db, label="database size", color="tab:green", alpha=0.7)
    ax2.set_ylabel("database MB")
    _shade(ax, result, samples)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    paths["memory"] = out / PLOTS["memory"]
    fig.savefig(paths["memory"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(xs, [s["target_events_per_s"] for s in samples], label="target", color="grey", linestyle="--")
    ax.plot(xs, [s["acked_events_per_s"] for s in samples], label="acknowledged records/s", color="tab:blue")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records per second")
    ax2 = ax.twinx()
    ax2.bar(
        xs,
        [s["shed"] for s in samples],
        width=(xs[1] - xs[0]) * 0.8 if len(xs) > 1 else 1.0,
        color="tab:red",
        alpha=0.4,
        label="503/429 answers",
    )
    ax2.set_ylabel("shed requests per interval")
    _shade(ax, result, samples)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left", fontsize=8)
    ax.set_title("Throughput and load shedding")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    paths["throughput"] = out / PLOTS["throughput"]
    fig.savefig(paths["throughput"], dpi=100)
    plt.close(fig)
    return paths


SUMMARY_ROWS = [
    ("uptime", "uptime (share of requests answered 200)"),
    ("error_rate", "error rate (answers that were neither 200 nor 503/429)"),
    ("shed_rate", "shed rate (503/429 with Retry-After)"),
    ("delivered", "batches acknowledged in the end (retries included)"),
    ("events_per_s", "acknowledged records per second"),
    ("p50_ms", "P50 latency, ms"),
    ("p95_ms", "P95 latency, ms"),
    ("p99_ms", "P99 latency, ms"),
    ("rss_slope_mb_per_h", "RSS slope after warm-up, MB/h"),
    ("expected_state_mb_per_h", "expected state growth, MB/h"),
    ("leak_threshold_mb_per_h", "leak threshold, MB/h"),
    ("leak", "memory leak"),
    ("leak_judged", "run long enough to judge memory"),
    ("shed_started_s", "shedding started, s"),
    ("shed_stopped_s", "shedding stopped, s"),
    ("lost_acked", "acknowledged records missing from the database"),
    ("duplicated_acked", "acknowledged records stored twice"),
]


def write_html(result: dict[str, Any], out: Path, command: str) -> Path:
    rows = "\n".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(result.get(key)))}</td></tr>"
        for key, label in SUMMARY_ROWS
        if key in result
    )
    images = "\n".join(
        f'<h2>{name}</h2><img src="{html.escape(fname)}" alt="{name}">' for name, fname in PLOTS.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>unmo soak report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}th,td{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}
th{{font-weight:normal;color:#555}}img{{max-width:100%}}code,pre{{background:#f4f4f4;padding:2px 4px}}</style>
</head><body>
<h1>unmo soak report</h1>
<p><code>{html.escape(command)}</code></p>
<table>{rows}</table>
<p>Memory verdict: a leak is an RSS slope (after the first {result.get("warmup_s")} s of warm-up) above the
growth the server is meant to have, {result.get("expected_state_mb_per_h")} MB/h
({result.get("state_bytes_per_record")} bytes of kernel state per acknowledged record,
measured on this traffic mix),
by more than max(20 MB/h, 25 %). See docs/operations.md.</p>
{images}
<h2>Result</h2><pre>{html.escape(json.dumps(result, indent=2))}</pre>
<p>Samples, one JSON object per line: <a href="samples.jsonl">samples.jsonl</a></p>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
