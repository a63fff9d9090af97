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
    """``make(settings=None, **fields)`` -> a fresh engine of one app (AppSettings, or its fields)."""

    def factory(settings: AppSettings | None = None, **fields: Any) -> Engine:
        return make_engine(request.param, settings if settings is not None else AppSettings(**fields))

    return factory
