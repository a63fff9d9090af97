"""ruff and mypy run as part of the test suite (STYLE.md), so CI fails on either."""

import subprocess
import sys

from tests.support import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff():
    r = _run("ruff", "check", "src", "tests", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict():
    r = _run("mypy")
    assert r.returncode == 0, r.stdout + r.stderr
