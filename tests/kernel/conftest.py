"""Every test of tests/kernel that takes ``make`` runs twice: on the Cython kernel and on the
plain-Python reference of the spec (uvloop's habit of one test body over two loops)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.kernel.engines import Engine, make_engine
from unmo.apps import AppSettings

ENGINES = ("kernel", "reference")


@pytest.fixture(params=ENGINES)
def make(request: pytest.FixtureRequest) -> Callable[..., Engine]:
    """``make(**settings)`` -> a fresh engine of one app with those AppSettings fields."""

    def factory(**settings: Any) -> Engine:
        return make_engine(request.param, AppSettings(**settings))

    return factory
