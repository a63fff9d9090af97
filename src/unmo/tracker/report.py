"""The weekly results report: each success criterion, its target, the measured value, pass/fail.

``unmo tracker report [--week YYYY-Www]`` writes it as Markdown and as a
self-contained HTML page.  The week is the ISO week (Monday 00:00 UTC to the
next Monday); latency, throughput, errors and uptime are measured inside it,
statuses, MRR, onboarding and satisfaction as of its end (or now, for the
running week), "new" counts the customers created inside it.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import asyncpg

from unmo.tracker.figures import Window, iso_week, programme, week_label


async def build(conn: asyncpg.Connection, week: str | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """The report's figures for ``week`` (default: the current week) as of ``now``."""
    now = now or dt.datetime.now(dt.UTC)
    w = iso_week(week, now)
    at = min(w.end, now)
    measured = Window(w.start, max(at, w.start + dt.timedelta(seconds=1)))
    data = await programme(conn, at=at, perf=measured, uptime_window=measured, week=w)
    data["week"] = week_label(w)
    data["complete"] = now >= w.end
    data["generated_at"] = now.isoformat(timespec="seconds")
    return data


def fmt(value: Any, unit: str) -> str:
    """A figure as a person reads it."""
    if value is None:
        return "no data"
    if unit == "ratio":
        return f"{100 * value:.2f} %" if value > 0.99 else f"{100 * value:.1f} %"
    if unit == "seconds":
        return f"{value / 60:.1f} min" if value >= 60 else f"{value:.{2 if value < 10 else 1}f} s"
    if unit == "usd":
        return f"${value:,.0f}"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "records/day":
        return f"{value:,.0f} /day"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def target_text(c: dict[str, Any]) -> str:
    """A criterion's target as a person reads it."""
    if c["target"] is None:
        if c["key"] == "throughput":
            return f"expected {c.get('expected_per_day', 0):,} /day (no target in spec)"
        return "-"
    word = "at least" if c["op"] == ">=" else "at most"
    return f"{word} {fmt(c['target'], c['unit'])}"


def verdict(c: dict[str, Any]) -> str:
    """PASS, FAIL or n/a."""
    return {True: "PASS", False: "FAIL", None: "n/a"}[c["pass"]]


def savings_text(s: dict[str, Any]) -> str:
    """A customer's savings as a person reads them."""
    if s["percent"] is None:
        return "no data"
    if not s["validated"]:
        return f"none yet ({fmt(s['provider_cost'], 'usd')}/month at the provider vs {fmt(s['plan_price'], 'usd')})"
    return f"{s['percent']:.1f} % ({fmt(s['saved'], 'usd')}/month)"


def to_markdown(data: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [
        f"# unmo pilot programme: results of week {data['week']}",
        "",
        f"Generated {data['generated_at']}" + ("" if data["complete"] else " (week still running: figures so far)"),
        "",
        "| Success criterion | Target | Measured | Result |",
        "|---|---|---|---|",
    ]
    for c in data["criteria"]:
        lines.append(f"| {c['label']} | {target_text(c)} | {fmt(c['value'], c['unit'])} | {verdict(c)} |")
    passed = sum(c["pass"] is True for c in data["criteria"])
    judged = sum(c["pass"] is not None for c in data["criteria"])
    lines += ["", f"**{passed} of {judged} judged criteria pass.**", "", "## Customers", "",
              "| Customer | Status | Onboarding | Records/day | P95 | Error rate | Agreement | Savings |",
              "|---|---|---|---|---|---|---|---|"]
    for r in data["customers"]:
        agree = r["agreement"]["share"] if r["agreement"] else None
        saving = savings_text(r["cost_savings"])
        lines.append(
            f"| {r['company'].replace('|', '/')} | {r['status']} | {fmt(r['onboarding_seconds'], 'seconds')} | "
            f"{fmt(r['records_per_day'], 'records/day')} | {fmt(r['p95_ms'], 'ms')} | "
            f"{fmt(r['error_rate'], 'ratio')} | {fmt(agree, 'ratio')} | "
            f"{saving} |"
        )
    up = data["uptime"]
    lines += ["", f"Uptime rests on {up['probes']} probes of {len(up['servers'])} ingest server(s), "
                  f"{up['failed']} failed.", ""]
    return "\n".join(lines)


def to_html(data: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    e = html.escape
    rows = "".join(
        f"<tr class='{verdict(c).lower().replace('/', '')}'><td>{e(c['label'])}</td><td>{e(target_text(c))}</td>"
        f"<td>{e(fmt(c['value'], c['unit']))}</td><td><b>{verdict(c)}</b></td></tr>"
        for c in data["criteria"]
    )
    cust = "".join(
        f"<tr><td>{e(r['company'])}</td><td>{e(r['status'])}</td><td>{e(fmt(r['onboarding_seconds'], 'seconds'))}</td>"
        f"<td>{e(fmt(r['records_per_day'], 'records/day'))}</td><td>{e(fmt(r['p95_ms'], 'ms'))}</td>"
        f"<td>{e(fmt(r['error_rate'], 'ratio'))}</td>"
        f"<td>{e(fmt(r['agreement']['share'] if r['agreement'] else None, 'ratio'))}</td>"
        f"<td>{e(savings_text(r['cost_savings']))}</td></tr>"
        for r in data["customers"]
    )
    passed = sum(c["pass"] is True for c in data["criteria"])
    judged = sum(c["pass"] is not None for c in data["criteria"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>unmo pilot report {e(data['week'])}</title>
<style>
body{{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#1d2433}}
table{{border-collapse:collapse;width:100%;margin:1em 0}}
td,th{{border-bottom:1px solid #dde;padding:.4em .6em;text-align:left}}
tr.pass td:last-child{{color:#0a7d38}}tr.fail td:last-child{{color:#c0262d}}tr.na td:last-child{{color:#777}}
</style></head><body>
<h1>unmo pilot programme: week {e(data['week'])}</h1>
<p>Generated {e(data['generated_at'])}{'' if data['complete'] else ' (week still running: figures so far)'}.
<b>{passed} of {judged}</b> judged criteria pass.</p>
<table><thead><tr><th>Success criterion</th><th>Target</th><th>Measured</th><th>Result</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Customers</h2>
<table><thead><tr><th>Customer</th><th>Status</th><th>Onboarding</th><th>Records/day</th><th>P95</th>
<th>Error rate</th><th>Agreement</th><th>Savings</th></tr></thead><tbody>{cust}</tbody></table>
</body></html>
"""
