"""The .pyi of the compiled module matches the module (pydantic-core's stubtest habit)."""

import subprocess
import sys

from tests.support import ROOT

# Names stubtest reports that are not part of the API, with the reason.
ALLOWLIST = [
    "unmo._native.__test__",  # Cython's doctest table
    "unmo._native.__reduce_cython__",  # Cython's pickling helpers, leaked to module level by the unity build
    "unmo._native.__setstate_cython__",
]


def test_stub_matches_module(tmp_path):
    allow = tmp_path / "allowlist.txt"
    allow.write_text("\n".join(ALLOWLIST) + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "unmo._native", "--allowlist", str(allow), "--ignore-unused-allowlist"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
