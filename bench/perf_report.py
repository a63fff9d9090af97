"""Every figure of docs/performance.md, measured in one run on this machine.

    .venv/bin/python bench/perf_report.py --database-url postgresql://postgres@127.0.0.1:5432/postgres \
        [--seconds 5] [--json out.json] [--update-doc docs/performance.md]

Each setup works in a fresh database of its own (dropped after it).  In order: the COPY
ceiling; ``unmo serve`` (defaults) at several concurrencies; events/s against
workers (1, 2) and batch size (100, 1000, 10000); the hand-written baseline;
capacity (highest open-loop rate with P95 under 85 ms) for the default and the
untuned setup in interleaved pairs, and for other pool/worker settings; one vs
two driver processes; a py-spy profile of the serving process; the decode
ratio; the COPY ceiling again at the end.
Prints one JSON object (the last line) and, with ``--update-doc``, rewrites
the block between the ``figures`` markers of the document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import ServerProcess, with_database

from bench.drive import Handwritten, drive, make_keys
from unmo.db.migrate import migrate
from unmo.load.ceiling import run_ceiling
from unmo.load.driver import LoadResult
from unmo.load.workload import new_run_id

P95_GOAL_MS = 85.0
CONCURRENCIES = [1, 4, 8, 16, 32]
BASELINE_ROUNDS = 3
BATCHES = [100, 1000, 10_000]
WORKERS = [1, 2]
# Pool tuning's ratio: the setup unmo ships against the same server before that tuning, measured in
# interleaved pairs (tuned, untuned, tuned, untuned, ...): the machine drifts by 20 % and more between two
# searches minutes apart, and a pair measured back to back at least shares the machine's state of those
# minutes (docs/performance.md, "The other goals"), so the ratio is the median of the pairs' ratios, as the
# baseline's is.
TUNED: tuple[str, list[str]] = ("default: 1 worker, pool 4", [])
# the writer's own connection and thread (unmo.ingest.writer._DatabaseThread) switched off: flushes
# committed from the serving loop on the shared pool, as before that tuning
UNTUNED: tuple[str, list[str]] = ("untuned: no commit thread, pool 4", ["env:UNMO_COMMIT_THREAD=0"])
POOL_PAIRS = 3
# then once each, what --pool-size and --workers change
POOL_OTHERS = [
    ("1 worker, pool 1", ["--pool-size", "1"]),
    ("1 worker, pool 16", ["--pool-size", "16"]),
    ("2 workers, pool 4", ["--workers", "2"]),
]


def _in_pair(label: str, n: int) -> str:
    """A setup's label in pair ``n`` (from 0): the pairs after the first carry their number."""
    return label if n == 0 else f"{label} (pair {n + 1})"


def pool_setups() -> list[tuple[str, list[str]]]:
    """The capacity searches in the order they run."""
    setups: list[tuple[str, list[str]]] = []
    for n in range(POOL_PAIRS):
        setups += [(_in_pair(TUNED[0], n), TUNED[1]), (_in_pair(UNTUNED[0], n), UNTUNED[1])]
    return setups + POOL_OTHERS


def pool_pairs(pool: dict[str, Any]) -> list[dict[str, Any]]:
    """The (tuned, untuned) pairs measured, with their capacity ratio."""
    pairs = []
    for n in range(POOL_PAIRS):
        t, u = pool.get(_in_pair(TUNED[0], n)), pool.get(_in_pair(UNTUNED[0], n))
        if t is None or u is None:
            continue
        tc, uc = t["capacity_events_per_s"], u["capacity_events_per_s"]
        pairs.append({"tuned": tc, "untuned": uc, "ratio": round(tc / uc, 3) if uc else None})
    return pairs


BEGIN, END = "<!-- figures:begin (bench/perf_report.py --update-doc) -->", "<!-- figures:end -->"


def log(text: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def row(r: LoadResult) -> dict[str, Any]:
    return {"events_per_s": round(r.events_per_s), "p50_ms": _r(r.p50_ms), "p95_ms": _r(r.p95_ms),
            "p99_ms": _r(r.p99_ms), "requests": r.requests, "statuses": r.statuses, "verified": r.verified}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


@contextlib.contextmanager
def server(db: str, extra: list[str], workers: int = 1) -> Iterator[ServerProcess]:
    """``unmo serve`` with ``extra`` flags; stopped however the block ends (also when it fails to start)."""
    flags = [f for f in extra if not f.startswith("env:")]
    env = dict(f[4:].split("=", 1) for f in extra if f.startswith("env:"))
    if "--workers" in flags:
        i = flags.index("--workers")
        workers = int(flags[i + 1])
        del flags[i:i + 2]
    srv = ServerProcess(db, workers=workers, extra=flags, env=env)
    try:
        srv.start(timeout=180)
        yield srv
    finally:
        srv.stop()


@contextlib.contextmanager
def section(out: dict[str, Any], name: str) -> Iterator[None]:
    """Run one part of the report; a failure is recorded and the report goes on with the next part."""
    try:
        yield
    except Exception as exc:
        log(f"{name}: FAILED {exc!r}")
        out.setdefault("failed", {})[name] = repr(exc)[:500]


@contextlib.contextmanager
def fresh_database(base_url: str) -> Iterator[str]:
    """A new migrated database for one setup (so no setup inherits another's rows or warm-up), then dropped."""
    name = f"unmo_perf_{uuid.uuid4().hex[:8]}"
    url = with_database(base_url, name)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(base_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def setup() -> None:
        await admin(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(setup())
    try:
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class PoolSampler:
    """Samples ``unmo_db_pool_in_use`` from /metrics every 50 ms while a run goes on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import httpx

        with httpx.Client(timeout=2.0) as client:
            while not self._stop.wait(0.05):
                try:
                    text = client.get(self.url + "/metrics").text
                except httpx.HTTPError:
                    continue
                for line in text.splitlines():
                    if line.startswith("unmo_db_pool_in_use"):
                        self.values.append(float(line.rsplit(" ", 1)[1]))

    def __enter__(self) -> PoolSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        v = sorted(self.values)
        if not v:
            return {"samples": 0}
        return {"samples": len(v), "mean": round(sum(v) / len(v), 2), "p95": v[int(0.95 * (len(v) - 1))],
                "max": v[-1]}


def capacity(url: str, db: str, keys: list[str], seconds: float, batch: int = 1000,
             step_seconds: float | None = None) -> dict[str, Any]:
    """Highest open-loop rate (events/s) answered in full with P95 under the goal.

    Peak first (closed loop, 16 connections, ``seconds``), then open-loop steps of ``step_seconds`` at
    fractions of it, then two bisection steps between the last pass and the first fail.
    """
    step_s = step_seconds or seconds
    with PoolSampler(url) as sampler:
        peak = drive(url, db, keys=keys, seconds=seconds, concurrency=16, batch_size=batch)
    steps: list[dict[str, Any]] = []

    def step(rate: float) -> bool:
        r = drive(url, db, keys=keys, seconds=step_s, rate=rate, timeout_s=10.0, batch_size=batch)
        ok = (r.p95_ms is not None and r.p95_ms < P95_GOAL_MS and r.statuses == {"200": r.requests}
              and r.events_per_s >= 0.95 * rate)
        steps.append({"offered": round(rate), **row(r), "pass": ok})
        log(f"  open loop {rate:,.0f}/s: {r.events_per_s:,.0f}/s P95 {r.p95_ms} ms -> {'pass' if ok else 'fail'}")
        return ok

    best = 0.0
    low, high = 0.0, None
    for f in (0.4, 0.6, 0.8, 0.9, 1.0, 1.1):
        rate = f * peak.events_per_s
        if step(rate):
            best, low = rate, rate
        else:
            high = rate
            break
    floor = 10 * batch / step_s  # at least 10 requests in a run, or P95 means nothing
    if best == 0.0 and high is not None:
        # even 40 % of the peak misses the goal: halve until a rate meets it (a busy machine, or long batches)
        for _ in range(4):
            rate = high / 2
            if rate < floor:
                break
            if step(rate):
                best, low = rate, rate
                break
            high = rate
    if best > 0.0 and high is not None:
        for _ in range(2):
            mid = (low + high) / 2
            if step(mid):
                best, low = mid, mid
            else:
                high = mid
    at80 = next((s for s in steps if abs(s["offered"] - 0.8 * peak.events_per_s) < 1), None)
    return {"batch": batch, "step_s": step_s, "pool_in_use_at_peak": sampler.summary(), "peak_closed_loop": row(peak),
            "capacity_events_per_s": round(best), "steps": steps,
            "p95_at_80pct_of_peak_ms": at80["p95_ms"] if at80 else None}


def profile(url: str, db: str, keys: list[str], pid: int, seconds: float) -> dict[str, Any]:
    """py-spy samples of the serving process under 8 connections; inclusive share per function."""
    out = Path(tempfile.mkdtemp()) / "serve.folded"
    exe = Path(sys.executable).with_name("py-spy")  # installed by the test extra next to the interpreter
    spy = subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record", "-p", str(pid), "-d",
                            str(int(seconds)), "-r", "250", "-f", "raw", "-o", str(out), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = drive(url, db, keys=keys, seconds=seconds + 2, concurrency=8)
    spy.wait(60)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        for f in set(frames):
            inclusive[f] += count
        own[frames[-1]] += count
    return {"samples": total, "load": row(result),
            "inclusive": [(f, round(100 * n / total, 1)) for f, n in inclusive.most_common(45)],
            "self": [(f, round(100 * n / total, 1)) for f, n in own.most_common(20)]}


def _frame(text: str) -> str:
    # "decode_body (/src/unmo/ingest/batch.py:312)" -> "decode_body (unmo/ingest/batch.py)"
    m = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", text)
    if not m:
        return text
    path = m.group(2)
    if "site-packages/" in path:
        path = path.split("site-packages/")[-1]
    elif "unmo/" in path:
        path = "unmo/" + path.split("unmo/", 1)[-1]
    else:
        path = path.split("/")[-1]
    return f"{m.group(1)} ({path})"


def wait_folded(db: str, timeout_s: float = 60.0) -> float:
    """Wait until the report folder of the server on ``db`` has folded every commit (each app's watermark at
    its app_log.seq); returns the seconds waited.  The folder runs every 5 s, so an unmo run leaves up to
    5 s of folding behind it: between the baseline's runs and unmo's, that work must not fall into the
    baseline's measurement."""
    async def folded() -> bool:
        conn = await asyncpg.connect(db)
        try:
            return bool(await conn.fetchval(
                "SELECT coalesce(bool_and(w.seq >= l.seq), true) FROM unmo.app_log l "
                "JOIN unmo.report_watermark w USING (app_id)"))
        finally:
            await conn.close()

    t0 = time.monotonic()
    while not asyncio.run(folded()):
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"the report folder did not catch up within {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - t0


def decode_ratio() -> dict[str, Any]:
    from bench.test_decode import stdlib, typed_whole, unmo_way
    from unmo.load.workload import Workload, build_templates

    body = build_templates(Workload(batch_size=1000, templates=1), "dec-", seed=7)[0].render(1)
    t = {name: min(timeit.repeat(lambda fn=fn: fn(body), number=20, repeat=7)) / 20
         for name, fn in (("stdlib", stdlib), ("unmo", unmo_way), ("whole", typed_whole))}
    from unmo.config import Limits
    from unmo.ingest.batch import decode_body

    t["decode_body"] = min(timeit.repeat(
        lambda: decode_body(body, msgpack=False, received_ms=int(time.time() * 1000), limits=Limits()),
        number=10, repeat=5)) / 10
    return {"ms_per_1000": {k: round(v * 1000, 3) for k, v in t.items()},
            "unmo_vs_stdlib": round(t["stdlib"] / t["unmo"], 2), "whole_vs_stdlib": round(t["stdlib"] / t["whole"], 2),
            "decode_body_vs_stdlib": round(t["stdlib"] / t["decode_body"], 2)}


def ceiling(db: str, seconds: float, rows: int = 10_000, concurrency: int = 2) -> dict[str, Any]:
    r = run_ceiling(db, duration_s=seconds, concurrency=concurrency, batch_size=rows, devices=100_000, seed=1,
                    run_id=new_run_id())
    assert r.verified, r.verify_problem
    return {"rows": rows, "connections": concurrency, **row(r)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", required=True, help="a PostgreSQL server; a fresh database is made on it")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    p.add_argument("--json", help="also write the JSON here")
    p.add_argument("--update-doc", help="rewrite the figures block of this markdown file")
    p.add_argument("--capacity-batch", type=int, default=1000,
                   help="records per request in the capacity search (default 1000)")
    p.add_argument("--capacity-seconds", type=float, default=20.0,
                   help="length of each open-loop step of the capacity search (default 20): under load PostgreSQL "
                        "checkpoints every 15 s or so here, and a step must hold about one of them, not one or "
                        "none by chance")
    p.add_argument("--skip", default="", help="comma-separated sections to skip (pool,grid,profile,baseline)")
    a = p.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    sec = a.seconds
    base = a.database_url
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent).stdout.strip()
    out: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "commit": rev,
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                   f"Python {platform.python_version()}",
        "load_avg_start": os.getloadavg()[0], "seconds_per_run": sec,
    }
    t0 = time.monotonic()
    try:
        with fresh_database(base) as db:
            log("COPY ceiling")
            out["ceiling_start"] = ceiling(db, sec)
            out["ceiling_1000_rows"] = ceiling(db, sec, rows=1000)
            out["decode"] = decode_ratio()
            log(f"decode: {out['decode']}")
            keys = make_keys(db)
            with server(db, []) as srv:
                log("unmo serve (defaults): concurrency sweep")
                out["concurrency"] = {}
                for c in CONCURRENCIES:
                    r = drive(srv.url, db, keys=keys, seconds=sec, concurrency=c)
                    out["concurrency"][c] = row(r)
                    log(f"  {c} connections: {r.events_per_s:,.0f}/s P95 {r.p95_ms}")
                r = drive(srv.url, db, keys=keys, seconds=sec, concurrency=8)
                out["driver"] = {"processes_1": row(r),
                                 "cpu_us_per_request": round(1e6 * r.driver_cpu_s / max(r.requests, 1)),
                                 "cpu_share_of_a_core": round(r.driver_cpu_s / r.elapsed_s, 3)}
                r2 = drive(srv.url, db, keys=keys, seconds=sec, concurrency=8, processes=2)
                out["driver"]["processes_2"] = row(r2)
                log(f"driver: {out['driver']}")
                if "profile" not in skip:
                    log("profile (py-spy)")
                    assert srv.proc is not None
                    with section(out, "profile"):
                        out["profile"] = profile(srv.url, db, keys, srv.proc.pid, 8)
        if "grid" not in skip:
            out["grid"] = {}
            for w in WORKERS:
                with section(out, f"grid, {w} workers"), fresh_database(base) as db, \
                        server(db, [], workers=w) as srv:
                    keys = make_keys(db)
                    for b in BATCHES:
                        r = drive(srv.url, db, keys=keys, seconds=sec, concurrency=8, batch_size=b)
                        out["grid"][f"{w}x{b}"] = row(r)
                        log(f"grid workers {w} batch {b}: {r.events_per_s:,.0f}/s P95 {r.p95_ms}")
        if "baseline" not in skip:
            # BASELINE_ROUNDS rounds, each the baseline then unmo, both servers up throughout: the ratio is the
            # median of the rounds' ratios (a single pair moved by 15 % between runs of the same commits)
            with section(out, "baseline"), fresh_database(base) as db:
                keys = make_keys(db)
                rounds: list[dict[str, Any]] = []
                with Handwritten(db) as hw, server(db, []) as srv:
                    for n in range(BASELINE_ROUNDS):
                        hw_r = drive(hw.url, db, keys=keys, seconds=sec, concurrency=8, table="handwritten.records")
                        un_r = drive(srv.url, db, keys=keys, seconds=sec, concurrency=8)
                        waited = wait_folded(db)   # unmo's folding left over, before the baseline's next run
                        rounds.append({"handwritten": row(hw_r), "unmo": row(un_r),
                                       "ratio": un_r.events_per_s / max(hw_r.events_per_s, 1),
                                       "fold_after_s": round(waited, 1)})
                        log(f"baseline round {n + 1}: {hw_r.events_per_s:,.0f}/s, unmo {un_r.events_per_s:,.0f}/s, "
                            f"folded {waited:.1f} s after")
                mid = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
                out["baseline"] = {
                    "handwritten_1_worker": mid["handwritten"], "unmo_1_worker": mid["unmo"],
                    "ratio": round(mid["ratio"], 2),
                    "rounds": [{"handwritten": r["handwritten"]["events_per_s"], "unmo": r["unmo"]["events_per_s"],
                                "ratio": round(r["ratio"], 2), "fold_after_s": r["fold_after_s"]} for r in rounds],
                }
        if "pool" not in skip:
            out["pool"] = {}
            for label, flags in pool_setups():
                log(f"capacity: {label}")
                with section(out, f"capacity, {label}"), fresh_database(base) as db, server(db, flags) as srv:
                    out["pool"][label] = capacity(srv.url, db, make_keys(db), sec, a.capacity_batch,
                                                  a.capacity_seconds)
                    log(f"  capacity {out['pool'][label]['capacity_events_per_s']:,}/s")
            out["pool_pairs"] = pool_pairs(out["pool"])
        with fresh_database(base) as db:
            out["ceiling_end"] = ceiling(db, sec)
    finally:
        out["total_s"] = round(time.monotonic() - t0)
        out["load_avg_end"] = os.getloadavg()[0]
    text = json.dumps(out)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    if a.update_doc:
        update_doc(Path(a.update_doc), out, " ".join(sys.argv))
    print(text)
    return 0


def update_doc(path: Path, out: dict[str, Any], command: str) -> None:
    """Rewrite the generated block of the performance document."""
    from bench.perf_markdown import render

    doc = path.read_text()
    block = f"{BEGIN}\n{render(out, command)}\n{END}"
    if BEGIN in doc:
        doc = doc[: doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc += "\n" + block + "\n"
    path.write_text(doc)


if __name__ == "__main__":
    raise SystemExit(main())
