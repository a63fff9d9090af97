"""``unmo serve``: one process, or a supervisor of N workers sharing one listening socket.

With ``--workers N`` the supervisor binds the socket, starts N worker processes
that accept on it (the kernel spreads connections), restarts a worker that dies,
and on SIGTERM/SIGINT passes the signal on and waits: each worker stops
accepting, finishes and commits what it accepted, and exits 0.  The embedded
PostgreSQL, when used, is started before the workers and stopped after them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import uvicorn

from unmo.config import ServerSettings
from unmo.server.logs import setup as setup_logging

log = logging.getLogger("unmo.serve")
GRACEFUL_S = 30


def _uvicorn_config(settings: ServerSettings, database_url: str) -> uvicorn.Config:
    from unmo.server.app import create_app

    return uvicorn.Config(
        create_app(settings, database_url),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_S,
        limit_concurrency=4096,
        h11_max_incomplete_event_size=64 * 1024,
    )


def _after_graceful_stop(signum: int, frame: Any) -> None:
    """uvicorn re-raises the SIGTERM/SIGINT it handled once it has shut down gracefully; by then
    everything accepted is committed, so the process exits 0 instead of dying by the signal."""


def run_single(settings: ServerSettings, database_url: str, sock: socket.socket | None = None) -> int:
    config = _uvicorn_config(settings, database_url)
    server = uvicorn.Server(config)
    signal.signal(signal.SIGTERM, _after_graceful_stop)
    signal.signal(signal.SIGINT, _after_graceful_stop)
    server.run(sockets=[sock] if sock is not None else None)
    return 0 if server.started else 1


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: ServerSettings, database_url: str) -> int:
    if settings.workers <= 1:
        log.info("serving", extra={"url": f"http://{settings.host}:{settings.port}", "workers": 1})
        return run_single(settings, database_url)
    sock = _bind(settings.host, settings.port)
    metrics_dir = tempfile.mkdtemp(prefix="unmo-metrics-")
    # the workers' own sockets, on which each takes the batches of the apps it owns (unmo.server.peers);
    # mkdtemp makes it 0700: only this user's processes can reach them
    worker_dir = tempfile.mkdtemp(prefix="unmo-workers-")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=metrics_dir, UNMO_WORKER_DATABASE_URL=database_url)

    def spawn(index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "unmo.server.run",
                str(sock.fileno()),
                settings.host,
                str(settings.port),
                str(settings.pool_size),
                str(settings.limits.queue_max_records),
                str(index),
                str(settings.workers),
                worker_dir,
            ],
            pass_fds=(sock.fileno(),),
            env=env,
        )

    workers = [spawn(i) for i in range(settings.workers)]
    log.info("serving", extra={"url": f"http://{settings.host}:{settings.port}", "workers": settings.workers})
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w.poll() is None:
                w.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while True:
        alive = False
        for i, w in enumerate(workers):
            code = w.poll()
            if code is None:
                alive = True
            elif not stopping:
                log.error("worker exited, restarting", extra={"pid": w.pid, "code": code})
                workers[i] = spawn(i)
                alive = True
            elif code not in (0, -signal.SIGTERM, -signal.SIGINT):
                status = 1
        if not alive:
            break
        time.sleep(0.2)
    sock.close()
    # every worker has exited: nothing writes the metrics files or listens on the sockets any more
    shutil.rmtree(worker_dir, ignore_errors=True)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def _worker_main(argv: list[str]) -> int:
    fd, host, port, pool, queue = int(argv[0]), argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    index, count, worker_dir = int(argv[5]), int(argv[6]), argv[7]
    setup_logging(os.environ.get("UNMO_LOG_LEVEL", "INFO"))
    sock = socket.socket(fileno=fd)
    settings = ServerSettings(host=host, port=port, workers=1, pool_size=pool, worker_index=index,
                              worker_count=count, worker_dir=worker_dir)
    settings.limits.queue_max_records = queue
    settings.limits.flush_max_records = min(settings.limits.flush_max_records, queue)
    return run_single(settings, os.environ["UNMO_WORKER_DATABASE_URL"], sock)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    raise SystemExit(_worker_main(sys.argv[1:]))
