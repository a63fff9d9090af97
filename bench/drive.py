"""Running ``unmo load`` from the suites and drivers: one verified run, as a LoadResult."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import asyncpg
from tests.support import ROOT, free_port

from unmo.load.driver import LoadConfig, LoadResult, run_load
from unmo.load.verify import app_ids_for_keys, create_load_apps, verify_stored
from unmo.load.workload import new_run_id


def make_keys(database_url: str, apps: int = 1) -> list[str]:
    async def go() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return await create_load_apps(conn, new_run_id(), apps)
        finally:
            await conn.close()

    return asyncio.run(go())


def drive(url: str, database_url: str, *, keys: list[str] | None = None, seconds: float = 5.0,
          concurrency: int | None = 8, rate: float | None = None, batch_size: int = 1000, processes: int = 1,
          table: str = "unmo.records", timeout_s: float = 30.0) -> LoadResult:
    """One load run against ``url``, verified against ``table``; raises when it does not verify."""
    keys = keys or make_keys(database_url)
    run_id = new_run_id()
    cfg = LoadConfig(url=url, keys=keys, duration_s=seconds, concurrency=None if rate else concurrency, rate=rate,
                     batch_size=batch_size, processes=processes, run_id=run_id, timeout_s=timeout_s,
                     templates=max(2, min(16, 200_000 // batch_size)))
    result = run_load(cfg)

    async def check() -> str | None:
        conn = await asyncpg.connect(database_url)
        try:
            app_ids = await app_ids_for_keys(conn, keys)
            return await verify_stored(conn, table=table, app_ids=app_ids, prefix=f"ld{run_id}", acked=result.acked,
                                       refused=result.refused, unanswered=result.unanswered_keys)
        finally:
            await conn.close()

    result.verify_problem = asyncio.run(check())
    result.verified = result.verify_problem is None
    if not result.verified:
        raise AssertionError(f"load run did not verify: {result.verify_problem}")
    return result


class Handwritten:
    """bench/baselines/handwritten.py as a subprocess on a free loopback port."""

    def __init__(self, database_url: str, workers: int = 1) -> None:
        self.database_url = database_url
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Handwritten:
        import httpx

        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        with open(ROOT / "test-artifacts" / f"handwritten-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "baselines" / "handwritten.py"), "--port", str(self.port),
                 "--database-url", self.database_url, "--workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"handwritten baseline exited with {self.proc.returncode}")
            try:
                httpx.post(self.url + "/v1/batch", content=b"{}", timeout=1.0)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("handwritten baseline did not start in 30 s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
