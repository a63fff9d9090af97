from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from tests.support import ServerProcess, TestDatabase, fresh_database


def pytest_report_header(config: pytest.Config) -> str:
    seed = os.environ.setdefault("UNMO_TEST_SEED", str(random.SystemRandom().randrange(1 << 30)))
    random.seed(int(seed))
    db = os.environ.get("UNMO_TEST_DATABASE_URL") or "embedded PostgreSQL under .unmo-test/"
    return f"unmo: random seed {seed} (set UNMO_TEST_SEED to repeat); database {db}"


@pytest.fixture(scope="session")
def database() -> Iterator[TestDatabase]:
    with fresh_database() as db:
        yield db


@pytest.fixture(scope="session")
def server(database: TestDatabase) -> Iterator[ServerProcess]:
    """One ingest server for the session's read-mostly tests (tests that kill servers start their own)."""
    with ServerProcess(database.url) as srv:
        yield srv


@pytest.fixture
def app(database: TestDatabase) -> dict[str, object]:
    """A fresh app with its keys: {'app_id', 'name', 'sdk_key', 'secret_key'}."""
    return database.create_app()
