"""nginx on loopback in front of test replicas, configured by deploy/nginx/unmo.conf.

The deploy file is used unchanged except for two substitutions the test asserts happen
exactly once: its listen port becomes a free loopback address, and the include of the
replica list points at a file naming the test's replicas.  Everything nginx writes (pid,
logs, temp files) lives in a temporary directory of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support import ROOT, free_port

UNMO_CONF = ROOT / "deploy" / "nginx" / "unmo.conf"
UPSTREAM_INCLUDE = "include /etc/nginx/conf.d/unmo-upstream.inc;"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


class Nginx:
    def __init__(self, upstreams: list[str], *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.upstreams = upstreams
        # world-traversable: nginx's workers run as nobody when the master is root
        self.dir = Path(tempfile.mkdtemp(prefix="unmo-nginx-"))
        os.chmod(self.dir, 0o755)
        self.access_log = self.dir / "access.log"
        self.error_log = self.dir / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def render(self) -> Path:
        conf = UNMO_CONF.read_text()
        assert conf.count("listen 8080;") == 1 and conf.count(UPSTREAM_INCLUDE) == 1
        upstream = self.dir / "upstream.conf"
        upstream.write_text("".join(f"server {u} max_fails=1 fail_timeout=2s;\n" for u in self.upstreams))
        conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{self.port};")
        conf = conf.replace(UPSTREAM_INCLUDE, f"include {upstream};")
        conf = conf.replace("access_log /dev/stdout unmo_safe;", f"access_log {self.access_log} unmo_safe;")
        (self.dir / "unmo.conf").write_text(conf)
        temp = "\n".join(f"    {kind}_temp_path {self.dir / kind};" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        main = self.dir / "nginx.conf"
        main.write_text(
            f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {self.dir / 'nginx.pid'};\n"
            f"error_log {self.error_log} info;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n{temp}\n    include {self.dir / 'unmo.conf'};\n}}\n"
        )
        return main

    def check(self) -> subprocess.CompletedProcess[str]:
        binary = nginx_binary()
        assert binary
        return subprocess.run([binary, "-t", "-p", str(self.dir), "-c", str(self.render())],
                              capture_output=True, text=True, timeout=30)

    def start(self) -> Nginx:
        binary = nginx_binary()
        assert binary
        main = self.render()
        stderr_path = self.dir / "stderr.log"
        with open(stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen([binary, "-p", str(self.dir), "-c", str(main)],
                                         stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {stderr_path.read_text()[-2000:]}")
            try:
                httpx.get(self.url + "/healthz", timeout=1.0)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx not listening on {self.url}; {self.error_log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for log in (self.access_log, self.error_log):
            if log.exists():
                shutil.copy2(log, ROOT / "test-artifacts" / f"nginx-{self.port}-{log.name}")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
