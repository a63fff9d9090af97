"""The figures block of docs/performance.md, from bench/perf_report.py's JSON."""

from __future__ import annotations

import statistics
from typing import Any

GOAL_EPS = 1_000_000
GOAL_P95 = 85.0


def _n(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def render(out: dict[str, Any], command: str) -> str:
    ceil = max(out["ceiling_start"]["events_per_s"], out.get("ceiling_end", out["ceiling_start"])["events_per_s"])
    L: list[str] = []
    add = L.append
    # the load average at the end counts the report's own server, database and driver (about 2 on 2 cores);
    # the one at the start says whether something else was running
    shared = ("; other work was using the same cores" if out["load_avg_start"] > 1
              else "; the end figure is the report's own load, nothing else of note was running")
    add(f"Measured {out['when']} at commit `{out['commit']}` on {out['machine']} (load average "
        f"{out['load_avg_start']:.1f} at the start, {out['load_avg_end']:.1f} at the end{shared}), "
        f"{out['seconds_per_run']:g} s per load run, {out['total_s']} s in all, by")
    add("")
    add(f"    {command}")
    add("")
    add("Every load run below was verified: the database held exactly the acknowledged records, once each.")
    add("")
    for name, error in out.get("failed", {}).items():
        add(f"**Not measured: {name}** ({error}).")
        add("")
    # -- goals
    best_1000 = max([v["events_per_s"] for v in out.get("concurrency", {}).values()]
                    + [v["events_per_s"] for k, v in out.get("grid", {}).items() if k.endswith("x1000")] or [0])
    pool = out.get("pool", {})
    default = next(iter(pool.values()), None)  # the setup unmo ships, first pair
    pairs = [p for p in out.get("pool_pairs", []) if p.get("ratio") is not None]
    pool_ratio = statistics.median(p["ratio"] for p in pairs) if pairs else None
    untuned_median = statistics.median(p["untuned"] for p in pairs) if pairs else None
    others = {k: v for k, v in pool.items() if not k.startswith(("default", "untuned"))}
    best_other = max(others.items(), key=lambda kv: kv[1]["capacity_events_per_s"]) if others else None
    p95_80 = default["p95_at_80pct_of_peak_ms"] if default else None
    base = out.get("baseline", {})
    dec = out["decode"]
    add("### Goals")
    add("")
    add("| goal | measured | met |")
    add("| --- | --- | --- |")
    add(f"| end to end >= 1,000,000 events/s, 1000-record batches | {_n(best_1000)} events/s "
        f"({best_1000 / GOAL_EPS:.1%} of the goal) | {'yes' if best_1000 >= GOAL_EPS else 'no'} |")
    own = ""
    if default is not None and p95_80 is not None:
        own = (f"; at 80 % of the default setup's own peak (the capacity search's step, {default['batch']:,}-record "
               f"batches): {_ms(p95_80)} ms")
    add(f"| P95 < 85 ms at 80 % of that rate (800,000 events/s) | not measurable: that rate is not reached on "
        f"this machine (see \"What the figures say\"){own} | no |")
    add(f"| >= 0.7 of the raw COPY ceiling | {best_1000 / ceil:.3f} of {_n(ceil)} rows/s | "
        f"{'yes' if best_1000 / ceil >= 0.7 else 'no'} |")
    if base.get("ratio") is not None:
        rounds = base.get("rounds")
        of = (f"; median of {len(rounds)} interleaved rounds: "
              + ", ".join(f"{_x(r['ratio'])}x" for r in rounds)) if rounds else ""
        add(f"| >= 3x the hand-written baseline | {_x(base['ratio'])}x ({_n(base['unmo_1_worker']['events_per_s'])} vs "
            f"{_n(base['handwritten_1_worker']['events_per_s'])} events/s, 1 worker each, 8 connections{of}) | "
            f"{'yes' if base['ratio'] >= 3 else 'no'} |")
    add(f"| decode >= 3x stdlib json | msgspec decode {_x(dec['unmo_vs_stdlib'])}x; whole batch-to-columns "
        f"(`decode_body`) {_x(dec['decode_body_vs_stdlib'])}x | "
        f"{'yes' if dec['unmo_vs_stdlib'] >= 3 else 'no'} / {'yes' if dec['decode_body_vs_stdlib'] >= 3 else 'no'} |")
    if pool_ratio is not None:
        each = ", ".join(f"{_x(p['ratio'])}x ({_n(p['tuned'])} vs {_n(p['untuned'])})" for p in pairs)
        other = ""
        if best_other is not None and untuned_median:
            cap = best_other[1]["capacity_events_per_s"]
            other = (f"; the best of the other setups, {best_other[0]}: {_n(cap)} events/s, "
                     f"{cap / untuned_median - 1:+.0%} against the untuned setup's median")
        add(f"| pool tuning >= +33 % capacity | {pool_ratio - 1:+.0%}: the default setup against the untuned one, "
            f"median of {len(pairs)} interleaved pairs: {each}{other} | {'yes' if pool_ratio >= 1.33 else 'no'} |")
    elif pool:
        add("| pool tuning >= +33 % capacity | not measured: no pair of the default and the untuned setup had "
            "a capacity (neither met P95 < 85 ms at any rate tried) | no |")
    add("")
    # -- ceiling
    add("### The limit: raw binary COPY (`unmo load --copy-ceiling`)")
    add("")
    add("| when | rows per COPY | connections | rows/s | P95 per COPY, ms |")
    add("| --- | --- | --- | --- | --- |")
    for key, label in (("ceiling_start", "start"), ("ceiling_1000_rows", "start"), ("ceiling_end", "end")):
        c = out.get(key)
        if c:
            add(f"| {label} | {c['rows']:,} | {c['connections']} | {_n(c['events_per_s'])} | {_ms(c['p95_ms'])} |")
    add("")
    add(f"Ratios below divide by the higher of the two 10,000-row figures, {_n(ceil)} rows/s.")
    add("")
    # -- concurrency
    if "concurrency" in out:
        add("### `unmo serve` defaults (1 worker, pool 4), 1000-record batches, closed loop")
        add("")
        add("| connections | events/s | ratio to COPY ceiling | P50 ms | P95 ms | P99 ms |")
        add("| --- | --- | --- | --- | --- | --- |")
        for c, r in out["concurrency"].items():
            add(f"| {c} | {_n(r['events_per_s'])} | {r['events_per_s'] / ceil:.3f} | {_ms(r['p50_ms'])} | "
                f"{_ms(r['p95_ms'])} | {_ms(r['p99_ms'])} |")
        add("")
    if "grid" in out:
        add("### events/s against workers and batch size (8 connections, closed loop)")
        add("")
        add("| workers \\ batch | " + " | ".join(f"{b:,}" for b in (100, 1000, 10_000)) + " |")
        add("| --- | --- | --- | --- |")
        for w in (1, 2):
            cells = []
            for b in (100, 1000, 10_000):
                r = out["grid"].get(f"{w}x{b}")
                cells.append("-" if r is None else f"{_n(r['events_per_s'])} ({r['events_per_s'] / ceil:.3f}; "
                                                   f"P95 {_ms(r['p95_ms'])} ms)")
            add(f"| {w} | " + " | ".join(cells) + " |")
        add("")
        add("Cells: events/s (ratio to the COPY ceiling; P95).")
        add("")
    if pool:
        first = next(iter(pool.values()))
        steps = f", {first['step_s']:g} s a step" if first.get("step_s") else ""
        add(f"### Capacity: highest open-loop rate answered in full with P95 < 85 ms "
            f"({first.get('batch', 1000):,}-record batches{steps})")
        add("")
        add("| setup | peak, closed loop 16 conn. | capacity events/s | capacity vs the untuned setup's median "
            "| P95 at 80 % of peak, ms | connections in use at peak: mean / P95 / max |")
        add("| --- | --- | --- | --- | --- | --- |")
        for label, c in pool.items():
            cap = c["capacity_events_per_s"]
            cap_vs = f"{cap / untuned_median - 1:+.0%}" if untuned_median else "-"
            use = c.get("pool_in_use_at_peak") or {}
            in_use = f"{use['mean']} / {use['p95']:g} / {use['max']:g}" if use.get("samples") else "-"
            add(f"| {label} | {_n(c['peak_closed_loop']['events_per_s'])} | {_n(cap)} | {cap_vs} "
                f"| {_ms(c['p95_at_80pct_of_peak_ms'])} | {in_use} |")
        add("")
    drv = out.get("driver")
    if drv:
        add("### The driver")
        add("")
        add(f"One driver process spent {drv['cpu_us_per_request']:,} µs of CPU per 1000-record request "
            f"({drv['cpu_share_of_a_core']:.1%} of a core) at {_n(drv['processes_1']['events_per_s'])} events/s; "
            f"two driver processes reached {_n(drv['processes_2']['events_per_s'])} events/s on the same server.")
        add("")
    prof = out.get("profile")
    if prof:
        add("### Where the time goes: py-spy, the serving process under 8 connections")
        add("")
        add(f"{prof['samples']:,} samples at 250 Hz while serving {_n(prof['load']['events_per_s'])} events/s. "
            "Inclusive share of samples (a function and what it calls), unmo's own frames:")
        add("")
        add("| function | inclusive % |")
        add("| --- | --- |")
        shown = 0
        for f, pct in prof["inclusive"]:
            # skip the frames every sample passes through (event loop, uvicorn, Starlette middleware)
            if 1.0 <= pct < 95.0 and "(unmo/" in f and shown < 25:
                add(f"| `{f}` | {pct} |")
                shown += 1
        add("")
        add("Self time (where the CPU is actually spent):")
        add("")
        add("| function | self % |")
        add("| --- | --- |")
        for f, pct in prof["self"][:15]:
            add(f"| `{f}` | {pct} |")
        add("")
    add("### Decode, 1000 records (ms per body, best of 7)")
    add("")
    m = dec["ms_per_1000"]
    add("| stdlib json + hand validation | msgspec per record (unmo) | msgspec whole body "
        "| `decode_body` (to columns) |")
    add("| --- | --- | --- | --- |")
    add(f"| {m['stdlib']} | {m['unmo']} | {m['whole']} | {m['decode_body']} |")
    return "\n".join(L)
